"""TEST STAND-IN for the NeMo-Skills code sandbox (``local_sandbox_server``): NOT a secure sandbox.

API (same shape as NeMo-Skills'): ``POST /execute`` with JSON ``{generated_code, timeout,
language: "ipython", max_output_characters, traceback_verbosity}`` and header ``X-Session-ID``,
answering ``{process_status: completed|error|timeout|failed, stdout, stderr}``;
``DELETE /sessions/<id>``; ``GET /sessions``; ``GET /health``.

Each call runs the code in a fresh Python subprocess (session state is NOT kept between calls),
IPython-style: the value of a final bare expression is printed. A call past ``timeout`` is
killed and answered ``{"process_status": "timeout", "stdout": "", "stderr": "Timed out\\n"}``.
Outputs longer than ``max_output_characters`` are cut and end with ``<output cut>``.

Run: ``python -m tests.standins.servers.sandbox_server --port 6000``; in tests:
``with SandboxStandinServer() as sb: sb.url ...`` (runs in a thread). It records every call
(``calls``) and every deleted session (``deleted_sessions``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from aiohttp import web

from tests.standins.servers.threaded import ThreadedServer

STANDIN_LABEL = "TEST STAND-IN sandbox (not secure, no state between calls)"

_RUNNER = r'''
import ast, sys, traceback
src = sys.stdin.read()
verbosity = sys.argv[1] if len(sys.argv) > 1 else "plain"
g = {"__name__": "__main__"}
try:
    tree = ast.parse(src, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), g)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), g)
        if value is not None:
            print(repr(value))
except BaseException as exc:
    sys.stdout.flush()
    only = "".join(traceback.format_exception_only(type(exc), exc))
    if verbosity.lower() == "minimal":
        sys.stderr.write(only)
    else:  # the cell's frames only, not this runner's
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<cell>"]
        sys.stderr.write("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) + only)
    sys.exit(1)
'''


def _cut(text: str, limit: Optional[int]) -> str:
    if limit and limit > 0 and len(text) > limit:
        return text[:limit] + "<output cut>"
    return text


class SandboxStandinServer(ThreadedServer):
    """TEST STAND-IN NeMo-Skills sandbox (aiohttp), usable in-process (thread) or from the CLI."""

    thread_name = "sandbox-standin"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.calls: List[Dict[str, Any]] = []
        self.sessions: Dict[str, int] = {}  # session id -> number of calls
        self.deleted_sessions: List[str] = []
        self._lock = threading.Lock()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/sessions", self._list_sessions)
        app.router.add_post("/execute", self._execute)
        app.router.add_delete("/sessions/{sid}", self._delete_session)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "backend": STANDIN_LABEL})

    async def _list_sessions(self, request: web.Request) -> web.Response:
        with self._lock:
            sessions = {k: {"calls": v} for k, v in self.sessions.items()}
        return web.json_response({"backend": "ipython", "sessions": sessions})

    async def _delete_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        with self._lock:
            known = self.sessions.pop(sid, None) is not None
            self.deleted_sessions.append(sid)
        if not known:
            return web.json_response({"error": f"session {sid} not found"}, status=404)
        return web.json_response({"status": "deleted", "session_id": sid})

    async def _execute(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001
            return web.json_response({"error": "bad JSON"}, status=400)
        code = body.get("generated_code")
        if not isinstance(code, str):
            return web.json_response({"error": "generated_code must be a string"}, status=400)
        timeout = float(body.get("timeout") or 10.0)
        limit = body.get("max_output_characters")
        sid = request.headers.get("X-Session-ID")
        call = {"session_id": sid, "code": code, "timeout": timeout, "language": body.get("language"),
                "traceback_verbosity": body.get("traceback_verbosity"), "max_output_characters": limit,
                "start": time.time()}
        with self._lock:
            self.calls.append(call)
            if sid:
                self.sessions[sid] = self.sessions.get(sid, 0) + 1
        result = await self.run_code(code, timeout, str(body.get("traceback_verbosity") or "plain"))
        result["stdout"] = _cut(result["stdout"], limit)
        result["stderr"] = _cut(result["stderr"], limit)
        call.update(result=result, end=time.time())
        return web.json_response(result)

    @staticmethod
    async def run_code(code: str, timeout: float, verbosity: str = "plain") -> Dict[str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", _RUNNER, verbosity,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            return {"process_status": "failed", "stdout": "", "stderr": f"{exc}\n"}
        try:
            out, err = await asyncio.wait_for(proc.communicate(code.encode()), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return {"process_status": "timeout", "stdout": "", "stderr": "Timed out\n"}
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        status = "completed" if proc.returncode == 0 else "error"
        return {"process_status": status, "stdout": out.decode("utf-8", "replace"),
                "stderr": err.decode("utf-8", "replace")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=STANDIN_LABEL)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6000)
    args = p.parse_args(argv)
    print(f"{STANDIN_LABEL} listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(SandboxStandinServer(args.host, args.port).make_app(), host=args.host, port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
