"""TEST STAND-IN for ``trtllm-serve``: a scripted OpenAI-compatible streaming completions server.

NOT a model server. It answers ``/health``, ``/v1/models`` and ``/v1/completions`` (streamed SSE
``data: {...choices: [{text, finish_reason, stop_reason}]}`` chunks, then ``data: [DONE]``, or one
JSON answer when ``stream`` is false) with deterministic outputs chosen by the request's ``seed``
from a script given at startup, and it records every request, including the ones whose client went
away before the end (``outcome == "disconnected"``), so tests can check cancellation reached it.

Script (JSON-able)::

    {"default": BEHAVIOUR, "seeds": {"3": BEHAVIOUR, ...}}
    BEHAVIOUR = {"tokens": [str, ...]  (or "text": str, split after whitespace),
                 "delay": 0.01,             # seconds before each token after the first
                 "first_token_delay": 0.0,  # seconds before the first token
                 "die_after": null}         # abort the connection after emitting this many tokens

``stop`` strings are honoured (text cut before the stop string, ``finish_reason="stop"``,
``stop_reason=<the string>``). A continuation request (its prompt holds k tool outputs, i.e. k
occurrences of "```output") resumes the script right after the k-th ``</tool_call>``;
``max_tokens`` is honoured (``finish_reason="length"``), counting one token per script token.

Run: ``python -m tests.standins.servers.openai_server --port 5000 [--script FILE.json]``;
in tests: ``with OpenAIStandinServer(script) as srv: srv.url ...`` (runs in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from aiohttp import web

from tests.standins.servers.threaded import ThreadedServer

STANDIN_LABEL = "TEST STAND-IN (scripted, not a model server)"
TOOL_END = "</tool_call>"
OUTPUT_MARK = "```output"

DEFAULT_TEXT = (
    "TEST STAND-IN output. Let us think step by step about the problem . "
    "After careful consideration the answer is \\boxed{42} ."
)


def split_text(text: str) -> List[str]:
    """Split into 'tokens' each ending with its trailing whitespace (joins back to ``text``)."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def _behaviour(raw: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    raw = dict(raw or {})
    if "tokens" in raw:
        tokens = [str(t) for t in raw["tokens"]]
    else:
        tokens = split_text(str(raw.get("text", DEFAULT_TEXT)))
    return {
        "tokens": tokens,
        "delay": float(raw.get("delay", 0.01)),
        "first_token_delay": float(raw.get("first_token_delay", 0.0)),
        "die_after": raw.get("die_after"),
    }


def _resume_index(tokens: List[str], n_outputs: int) -> int:
    """Index of the script token right after the n-th completed ``</tool_call>``."""
    if n_outputs <= 0:
        return 0
    acc, seen = "", 0
    for i, tok in enumerate(tokens):
        before = acc.count(TOOL_END)
        acc += tok
        seen += acc.count(TOOL_END) - before
        if seen >= n_outputs:
            return i + 1
    return len(tokens)


class _Disconnected(Exception):
    pass


class OpenAIStandinServer(ThreadedServer):
    """TEST STAND-IN OpenAI completions server (aiohttp), usable in-process (thread) or from the CLI."""

    thread_name = "openai-standin"

    def __init__(self, script: Optional[Dict[str, Any]] = None, host: str = "127.0.0.1", port: int = 0,
                 model: str = "standin-model"):
        script = script or {}
        self.default = _behaviour(script.get("default"))
        self.seeds = {int(k): _behaviour(v) for k, v in (script.get("seeds") or {}).items()}
        super().__init__(host, port)
        self.model = model
        self.requests: List[Dict[str, Any]] = []  # one dict per /v1/completions request
        self._lock = threading.Lock()

    # ---- app -------------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": int(time.time()), "owned_by": STANDIN_LABEL}]})

    def behaviour_for(self, seed: Optional[int]) -> Dict[str, Any]:
        return self.seeds.get(seed, self.default) if seed is not None else self.default

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "bad JSON"}}, status=400)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return web.json_response({"error": {"message": "prompt must be a string"}}, status=400)
        seed = body.get("seed")
        stop = body.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        max_tokens = int(body.get("max_tokens") or 16)
        beh = self.behaviour_for(seed)
        rec = {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "seed": seed, "prompt": prompt, "stop": body.get("stop"),
               "max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
               "stream": bool(body.get("stream")), "model": body.get("model"), "emitted_tokens": 0, "text": "",
               "outcome": "running", "finish_reason": None, "start": time.time(), "end": None}
        with self._lock:
            self.requests.append(rec)
        tokens = beh["tokens"][_resume_index(beh["tokens"], prompt.count(OUTPUT_MARK)):]
        if not rec["stream"]:
            return await self._complete_plain(rec, beh, tokens, stop, max_tokens)

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(obj: Any) -> None:
            if request.transport is None or request.transport.is_closing():
                raise _Disconnected()
            data = obj if isinstance(obj, str) else json.dumps(obj)
            try:
                await resp.write(f"data: {data}\n\n".encode())
            except (ConnectionError, RuntimeError) as exc:  # aiohttp: ClientConnectionResetError
                raise _Disconnected() from exc

        async def sleep_watching(seconds: float) -> None:
            end = time.monotonic() + seconds
            while True:
                if request.transport is None or request.transport.is_closing():
                    raise _Disconnected()
                left = end - time.monotonic()
                if left <= 0:
                    return
                await asyncio.sleep(min(left, 0.01))

        def chunk(text: str, finish: Optional[str] = None, stop_reason: Optional[str] = None) -> Dict[str, Any]:
            return {"id": rec["id"], "object": "text_completion", "created": int(rec["start"]), "model": self.model,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                                 "stop_reason": stop_reason}]}

        try:
            finish, stop_reason = "length", None
            acc = ""
            for i, tok in enumerate(tokens):
                if i >= max_tokens:
                    break
                await sleep_watching(beh["first_token_delay"] if i == 0 else beh["delay"])
                if beh["die_after"] is not None and rec["emitted_tokens"] >= int(beh["die_after"]):
                    rec["outcome"] = "died"
                    request.transport.abort()  # simulate the server dying mid-stream
                    return resp
                hit = self._find_stop(acc, tok, stop)
                if hit is not None:
                    cut, s = hit
                    if cut:
                        await send(chunk(cut))
                        acc += cut
                    rec["emitted_tokens"] += 1
                    finish, stop_reason = "stop", s
                    break
                await send(chunk(tok))
                acc += tok
                rec["emitted_tokens"] += 1
                rec["text"] = acc
            else:
                finish = "stop"  # script exhausted: behaves like EOS
            rec["text"] = acc
            await send(chunk("", finish, stop_reason))
            await send("[DONE]")
            rec["outcome"], rec["finish_reason"] = "completed", finish
            await resp.write_eof()
        except _Disconnected:
            rec["outcome"] = "disconnected"
        except asyncio.CancelledError:
            rec["outcome"] = "disconnected"
            raise
        finally:
            rec["end"] = time.time()
        return resp

    @staticmethod
    def _find_stop(acc: str, tok: str, stop: List[str]):
        """If appending ``tok`` completes a stop string: (part of tok before it, the string)."""
        best = None
        for s in stop:
            if not s:
                continue
            window = acc[-(len(s) - 1):] if len(s) > 1 else ""
            pos = (window + tok).find(s)
            if pos >= 0:
                cut_at = pos - len(window)  # may be negative: stop began in earlier text
                if best is None or cut_at < best[0]:
                    best = (cut_at, s)
        if best is None:
            return None
        return tok[:max(best[0], 0)], best[1]

    async def _complete_plain(self, rec, beh, tokens, stop, max_tokens) -> web.Response:
        acc, finish, stop_reason = "", "stop", None
        for i, tok in enumerate(tokens):
            if i >= max_tokens:
                finish = "length"
                break
            hit = self._find_stop(acc, tok, stop)
            if hit is not None:
                acc += hit[0]
                finish, stop_reason = "stop", hit[1]
                break
            acc += tok
        rec.update(text=acc, emitted_tokens=min(len(tokens), max_tokens), outcome="completed",
                   finish_reason=finish, end=time.time())
        return web.json_response({"id": rec["id"], "object": "text_completion", "model": self.model,
                                  "choices": [{"index": 0, "text": acc, "finish_reason": finish,
                                               "stop_reason": stop_reason}]})

    # ---- introspection for tests -----------------------------------------------------------------
    def snapshot(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.requests]

    def disconnects(self) -> List[Dict[str, Any]]:
        return [r for r in self.snapshot() if r["outcome"] == "disconnected"]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is still running; True if so within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r["outcome"] != "running" for r in self.snapshot()):
                return True
            time.sleep(0.01)
        return False


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="TEST STAND-IN OpenAI-compatible completions server (scripted)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--script", help="JSON script file (see module docstring)")
    p.add_argument("--model", default="standin-model")
    args = p.parse_args(argv)
    script = None
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    srv = OpenAIStandinServer(script, host=args.host, port=args.port, model=args.model)
    print(f"{STANDIN_LABEL} listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(srv.make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
