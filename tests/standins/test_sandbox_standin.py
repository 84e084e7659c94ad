"""The STAND-IN NeMo-Skills sandbox module, served as the real one can be (`python -m flask --app ... run`), answers
what the real server at 1054be9 answered to the same requests (recorded from it with IPython 8.37.0, see
tests/standins/README.md, "The code sandbox")."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDIN_PYTHON = REPO / "tests" / "standins" / "python"
MODULE = "nemo_skills.code_execution.local_sandbox.local_sandbox_server"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(STANDIN_PYTHON), **extra}


@pytest.fixture(scope="module")
def sandbox():
    """The stand-in server, its whole process limited as the real one limits itself (2 x 1 GiB here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", MODULE, "run", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=REPO, env=_env(NEMO_SKILLS_SANDBOX_MEM_LIMIT=str(2**30)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "the stand-in sandbox exited"
        try:
            DIRECT.open(url + "/health", timeout=5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the stand-in sandbox did not answer"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(30)


def call(url, method, path, body=None, session=None):
    headers = {"Content-Type": "application/json", **({"X-Session-ID": session} if session else {})}
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method=method)
    try:
        with DIRECT.open(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def ex(url, code, session="s1", verbosity="Plain", **more):
    body = {"generated_code": code, "timeout": 10, "language": "ipython", "max_output_characters": 1000,
            "traceback_verbosity": verbosity, **more}
    return call(url, "POST", "/execute", body, session)


def ok(stdout, stderr="", new=False):
    return 200, {"process_status": "completed", "stdout": stdout, "stderr": stderr, "new_session_created": new}


def error(stdout, stderr="", new=False):
    return 200, {"process_status": "error", "stdout": stdout, "stderr": stderr, "new_session_created": new}


def test_the_standin_answers_as_the_real_server(sandbox):
    """Each answer below is the real server's to the same request, in order (one session unless named)."""
    url = sandbox
    assert call(url, "GET", "/health") == (200, {"status": "healthy", "worker": "unknown"})
    assert ex(url, "print(2+2)") == ok("4\n", new=True)
    assert ex(url, "x = 5") == ok("")
    assert ex(url, "x * 2") == ok("10\n")  # IPython's `Out[2]: 10`, its prompt stripped
    assert ex(url, "None") == ok("")
    assert ex(url, "print('a')\n'b'") == ok("a\n'b'\n")
    assert ex(url, "1/0") == error("Traceback (most recent call last):\n    1/0\nZeroDivisionError: division by zero\n")
    assert ex(url, "1/0", verbosity="Minimal") == error("ZeroDivisionError: division by zero\n")
    assert ex(url, "def f():\n    return 1/0\nf()") == error(
        "Traceback (most recent call last):\n    f()\n    return 1/0\nZeroDivisionError: division by zero\n")
    status, context = ex(url, "1/0", verbosity="Context")  # not post-processed: colours and file lines stay
    assert context["stdout"].startswith("\x1b[0;31m-----") and "File \x1b[0;32m<ipython-input-" in context["stdout"]
    assert ex(url, "print(1)", session="s2", verbosity="plain") == error(
        "", "Session error: Unrecognized mode in FormattedTB: <plain>\n"
            "Valid modes: ['Plain', 'Context', 'Verbose', 'Minimal']\n", new=True)
    assert ex(url, "print(1)", session="s2") == ok("1\n")  # the refused call still created the session
    assert ex(url, "def (:") == error("    def (:\n        ^\nSyntaxError: invalid syntax\n")
    assert ex(url, "import sys; sys.stderr.write('err\\n')") == ok("4\n", "err\n")
    assert ex(url, "print('a\\n\\n\\n')") == ok("a\n")  # trailing newlines: one is kept
    assert ex(url, "print('x'*50)", max_output_characters=10) == ok("xxxxxxxxxx<output cut>")
    assert ex(url, "raise ValueError('y'*50)", max_output_characters=10) == error("Traceback <output cut>")
    assert ex(url, "import sys; sys.exit(3)")[1]["stdout"] == (
        "An exception has occurred, use %tb to see the full traceback.\nSystemExit: 3\n")
    assert ex(url, "print('alive')") == ok("alive\n")


def test_the_standin_refuses_as_the_real_server(sandbox):
    url = sandbox
    assert ex(url, "print(1)", session=None) == (400, {"error": "X-Session-ID header required for ipython sessions"})
    status, page = call(url, "POST", "/execute", {"generated_code": "1", "language": "ipython"}, "s1")
    assert status == 500 and "Internal Server Error" in page  # request.json["timeout"]: a KeyError
    assert call(url, "POST", "/execute", {"generated_code": "print(7)", "timeout": 5}, "s3") == ok("7\n", new=True)
    status, listed = call(url, "GET", "/sessions")
    assert listed["backend"] == "ipython" and {"s1", "s3"} <= set(listed["sessions"])
    assert set(listed["sessions"]["s3"]) == {"backend", "created", "last_used", "alive"}
    assert call(url, "DELETE", "/sessions/s3") == (200, {"message": "IPython session s3 deleted successfully"})
    assert call(url, "DELETE", "/sessions/s3") == (404, {"error": "IPython session s3 not found"})
    assert ex(url, "print(7)", session="s3") == ok("7\n", new=True)


def test_what_the_standin_does_at_import(sandbox):
    """It limits the whole process to 2 x NEMO_SKILLS_SANDBOX_MEM_LIMIT, for every session in it (a 4 GiB
    allocation fits under the real default of 20 GiB, not under 2 GiB); STANDIN_FAIL=sandbox makes it exit."""
    assert ex(sandbox, "import resource\nresource.getrlimit(resource.RLIMIT_AS)", session="m") == ok(
        f"({2 * 2**30}, {2 * 2**30})\n", new=True)
    status, big = ex(sandbox, "b = bytearray(4 * 1024**3)", session="m")
    assert big["process_status"] == "error" and big["stdout"].endswith("MemoryError\n")
    done = subprocess.run([sys.executable, "-c", f"import {MODULE}"], cwd=REPO, env=_env(STANDIN_FAIL="sandbox"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "[STAND-IN] sandbox: simulated failure (STANDIN_FAIL) at start" in done.stderr
