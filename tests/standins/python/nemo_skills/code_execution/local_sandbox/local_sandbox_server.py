"""STAND-IN for NeMo-Skills' `nemo_skills.code_execution.local_sandbox.local_sandbox_server` (not secure).

The real module is a Flask `app` (`POST /execute`, `GET /health`, `DELETE /sessions/<id>`); the launcher
serves it with Flask's own CLI, `python -m flask --app <this module> run --host 127.0.0.1 --port P`, so this
stand-in is a Flask `app` with the same API. Each call runs the code in a fresh Python subprocess with the
TEST STAND-IN runner of tests/standins/servers/sandbox_server.py (no state between calls).
STANDIN_FAIL=sandbox makes it exit at start.
"""
import subprocess
import sys
from pathlib import Path

from flask import Flask, request

sys.path.insert(0, str(Path(__file__).resolve().parents[6]))

from standin_tools.common import maybe_fail  # noqa: E402
from tests.standins.servers.sandbox_server import _RUNNER, STANDIN_LABEL, _cut  # noqa: E402

maybe_fail("sandbox", "at start")  # STANDIN_FAIL=sandbox: a sandbox that cannot start (e.g. a wrong image)
app = Flask(__name__)
sessions = set()


@app.route("/health", methods=["GET"])
def health():
    return {"status": "healthy", "backend": STANDIN_LABEL}


@app.route("/execute", methods=["POST"])
def execute():
    body = request.get_json()
    sessions.add(request.headers.get("X-Session-ID"))
    limit = body.get("max_output_characters")
    try:
        done = subprocess.run([sys.executable, "-c", _RUNNER, body.get("traceback_verbosity") or "plain"],
                              input=body["generated_code"], capture_output=True, text=True,
                              timeout=float(body.get("timeout") or 10))
    except subprocess.TimeoutExpired:
        return {"process_status": "timeout", "stdout": "", "stderr": "Timed out\n"}
    status = "completed" if done.returncode == 0 else "error"
    return {"process_status": status, "stdout": _cut(done.stdout, limit), "stderr": _cut(done.stderr, limit)}


@app.route("/sessions/<session_id>", methods=["DELETE"])
def delete_session(session_id):
    if session_id not in sessions:
        return {"error": f"IPython session {session_id} not found"}, 404
    sessions.discard(session_id)
    return {"status": "deleted", "session_id": session_id}
