"""STAND-IN for NeMo-Skills' `nemo_skills.code_execution.local_sandbox.local_sandbox_server` (tests only).

Models the real module at the pinned commit 1054be9 (what each behaviour reproduces is listed in
tests/standins/README.md, "The code sandbox"). Like the real one it is NOT a secure sandbox: it runs code in its
own process, with no time limit for `ipython` cells. The launcher never serves it directly: `jobs.sandbox_guard`
imports it in one worker process per session and calls `execute_ipython_session`, as it does the real module.

* a Flask `app` with the real routes and JSON shapes (POST /execute, GET /health, GET /sessions,
  DELETE /sessions/<id>), servable with `python -m flask --app <this module> run`;
* `execute_ipython_session(generated_code, session_id, traceback_verbosity)`: one real IPython
  `TerminalInteractiveShell` per session, state kept between calls, the traceback mode given to IPython's own
  `set_mode` (so `plain` is refused by IPython, as in the real server), and the real post-processing of
  Plain/Minimal output;
* at import, RLIMIT_AS and RLIMIT_DATA of the whole process set to 2 x NEMO_SKILLS_SANDBOX_MEM_LIMIT (bytes,
  default 10 GiB).

Not modelled: languages other than `ipython` (the real server runs python/shell/lean4 in subprocesses; the
stand-in answers 501, so a test that needs them fails loudly). STANDIN_FAIL=sandbox: the import exits 1, as a
sandbox that cannot start (a wrong image, a missing package) does.
"""
import logging
import os
import re
import resource
import sys
import threading
import time
from pathlib import Path

from flask import Flask, request
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.utils.io import capture_output

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # tests/standins/python, for standin_tools

from standin_tools.common import log, maybe_fail  # noqa: E402

TOOL = "sandbox"
maybe_fail(TOOL, "at start")

app = Flask(__name__)
logging.basicConfig(level=logging.INFO, format="[STAND-IN sandbox] %(asctime)s %(levelname)s: %(message)s")

# session id -> {"shell", "created", "last_used"}, shared by every request thread, as in the real module.
sessions = {}
session_lock = threading.Lock()
SESSION_TIMEOUT = float(os.getenv("NEMO_SKILLS_SANDBOX_SESSION_TIMEOUT", 0))  # 0: sessions never expire

# The real module limits the whole server process at import, to twice the variable (10 GiB by default).
MEM_LIMIT_BYTES = int(os.environ.get("NEMO_SKILLS_SANDBOX_MEM_LIMIT", 10 * 1024**3))
for _limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
    resource.setrlimit(_limit, (2 * MEM_LIMIT_BYTES, 2 * MEM_LIMIT_BYTES))
log(TOOL, f"RLIMIT_AS and RLIMIT_DATA of this process set to {2 * MEM_LIMIT_BYTES} bytes")

ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\_-])")
OUT_PROMPT = re.compile(r"^Out\[\d+\]:\s*")
CUT_MARK = "<output cut>"


def _drop_expired(now: float) -> None:
    with session_lock:
        for session_id in [s for s, data in sessions.items() if now - data["last_used"] > SESSION_TIMEOUT]:
            sessions.pop(session_id, None)


def _shell_for(session_id: str):
    """(session data, whether it was created now); a new session gets a fresh IPython shell."""
    now = time.time()
    with session_lock:
        data = sessions.get(session_id)
        if data is not None:
            data["last_used"] = now
            return data, False
        shell = TerminalInteractiveShell()
        shell.init_create_namespaces()
        shell.user_ns["_oh"] = {}
        data = sessions[session_id] = {"shell": shell, "created": now, "last_used": now}
        return data, True


def _clean(text: str, verbosity: str) -> str:
    """Plain and Minimal output loses colours, `File <ipython-input-...>` lines, `Out[n]:` prompts and leading
    blank lines, and ends in exactly one newline (none when empty); the other modes are returned as IPython
    wrote them."""
    if verbosity not in ("Plain", "Minimal"):
        return text
    kept = [OUT_PROMPT.sub("", line) for line in ANSI_ESCAPE.sub("", text).split("\n")
            if not line.strip().startswith("File <ipython-")]
    while kept and kept[0] == "":
        del kept[0]
    body = "\n".join(kept).rstrip()
    return body + "\n" if body else ""


def execute_ipython_session(generated_code, session_id, traceback_verbosity="Plain"):
    """Run a cell in the session's shell; never raises: a refused traceback mode becomes `Session error: ...`."""
    created = False
    try:
        if SESSION_TIMEOUT > 0:
            _drop_expired(time.time())
        data, created = _shell_for(session_id)
        shell = data["shell"]
        shell.InteractiveTB.set_mode(mode=traceback_verbosity)  # IPython refuses any other spelling
        try:
            with capture_output() as captured:
                outcome = shell.run_cell(generated_code)
            status = "error" if outcome.error_before_exec or outcome.error_in_exec else "completed"
            stdout, stderr = captured.stdout, captured.stderr
        except Exception as error:  # noqa: BLE001 - the real module folds it into stdout
            status = "error"
            stdout = captured.stdout if "captured" in locals() else ""
            stdout += (captured.stderr if "captured" in locals() else "") + f"\n{type(error).__name__}: {error}"
            stderr = ""
        return {"process_status": status, "stdout": _clean(stdout, traceback_verbosity),
                "stderr": _clean(stderr, traceback_verbosity), "new_session_created": created}
    except Exception as error:  # noqa: BLE001
        return {"process_status": "error", "stdout": "", "stderr": f"Session error: {error}\n",
                "new_session_created": created}


@app.route("/execute", methods=["POST"])
def execute():
    body = request.json
    code = body["generated_code"]
    if "timeout" not in body:  # the real one reads it first (a KeyError: Flask's 500), then runs an ipython cell
        raise KeyError("timeout")  # without any time limit
    language = body.get("language", "ipython")
    limit = body.get("max_output_characters", 1000)
    verbosity = body.get("traceback_verbosity", "Plain")
    session_id = request.headers.get("X-Session-ID")
    if language != "ipython":
        return {"error": f"STAND-IN sandbox: language {language!r} is not modelled (only ipython)"}, 501
    if session_id is None:
        return {"error": "X-Session-ID header required for ipython sessions"}, 400
    result = execute_ipython_session(code, session_id, verbosity)
    for stream in ("stdout", "stderr"):
        if len(result[stream]) > limit:
            result[stream] = result[stream][:limit] + CUT_MARK
    return result


@app.route("/sessions", methods=["GET"])
def list_sessions():
    with session_lock:
        listed = {sid: {"backend": "ipython", "created": data["created"], "last_used": data["last_used"],
                        "alive": True} for sid, data in list(sessions.items())}
    return {"sessions": listed, "backend": "ipython"}


@app.route("/sessions/<session_id>", methods=["DELETE"])
def delete_session(session_id):
    with session_lock:
        if sessions.pop(session_id, None) is None:
            return {"error": f"IPython session {session_id} not found"}, 404
    return {"message": f"IPython session {session_id} deleted successfully"}


@app.route("/health", methods=["GET"])
def health():
    return {"status": "healthy", "worker": os.environ.get("WORKER_NUM", "unknown")}
