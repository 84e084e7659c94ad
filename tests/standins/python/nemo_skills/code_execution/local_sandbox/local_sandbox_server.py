"""STAND-IN for `python -m nemo_skills.code_execution.local_sandbox.local_sandbox_server` (NeMo-Skills).

The real one is a Flask app on port 6000 with `POST /execute`, `GET /health` and `DELETE /sessions/<id>`;
this runs the TEST STAND-IN sandbox (tests/standins/servers/sandbox_server.py) with that API on
127.0.0.1:6000 (or $NEMO_SKILLS_SANDBOX_PORT).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[6]))

from tests.standins.servers import sandbox_server  # noqa: E402

if __name__ == "__main__":
    sandbox_server.main(["--port", os.environ.get("NEMO_SKILLS_SANDBOX_PORT", "6000")])
