"""The code sandbox as the benchmark job runs it, in-process for tests: the real guard (jobs.sandbox_guard)
served from a thread, its workers importing the STAND-IN NeMo-Skills module
(tests/standins/python/nemo_skills/code_execution/local_sandbox/local_sandbox_server.py).

    with GuardedSandbox(timeout_s=5) as sb:
        sb.url, sb.calls, sb.deleted_sessions

It records every /execute call (`calls`: session id, code, timeout, language, traceback_verbosity,
max_output_characters, result, start and end times) and every session deleted (`deleted_sessions`).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from jobs.sandbox_guard import Guard, GuardServer

STANDIN_PYTHON = Path(__file__).resolve().parents[1] / "python"


class RecordingGuard(Guard):
    def __init__(self, *args, **kwargs):
        self.calls: List[Dict[str, Any]] = []
        self.deleted_sessions: List[str] = []
        super().__init__(*args, **kwargs)

    def worker_env(self) -> dict:
        env = super().worker_env()
        env["PYTHONPATH"] = os.pathsep.join([str(STANDIN_PYTHON), env["PYTHONPATH"]])
        return env

    def execute(self, body, session_id):
        body_of = body if isinstance(body, dict) else {}
        call = {"session_id": session_id, "code": body_of.get("generated_code"), "timeout": body_of.get("timeout"),
                "language": body_of.get("language"), "traceback_verbosity": body_of.get("traceback_verbosity"),
                "max_output_characters": body_of.get("max_output_characters"), "start": time.time()}
        self.calls.append(call)
        status, answer = super().execute(body, session_id)
        call.update(status=status, result=answer, end=time.time())
        return status, answer

    def delete(self, session_id):
        self.deleted_sessions.append(session_id)
        return super().delete(session_id)


class GuardedSandbox:
    def __init__(self, memory_limit_mb: int = 2048, timeout_s: float = 30.0, host: str = "127.0.0.1"):
        self.memory_limit_mb, self.timeout_s, self.host = memory_limit_mb, timeout_s, host
        self.guard: Optional[RecordingGuard] = None
        self._server: Optional[GuardServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def calls(self) -> List[Dict[str, Any]]:
        return self.guard.calls

    @property
    def deleted_sessions(self) -> List[str]:
        return self.guard.deleted_sessions

    def __enter__(self) -> "GuardedSandbox":
        self.guard = RecordingGuard(self.memory_limit_mb, self.timeout_s)
        try:
            self._server = GuardServer(self.host, 0, self.guard)
        except BaseException:
            self.guard.close()
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="guarded-sandbox", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.guard.close()
