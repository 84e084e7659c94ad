"""Tests of jobs/sandbox_guard.py, the code sandbox the benchmark's tool calls run in: loopback only, one process
per session, a memory limit and a wall-time cap, NeMo-Skills' API and answers.

Its workers import the STAND-IN NeMo-Skills module (tests/standins/python), which runs real IPython shells; the
last test runs the guard over the REAL NeMo-Skills when it is installed (see tests/standins/README.md).
Only the standard library and pytest: the real-sandbox test runs in a venv of the sandbox image's packages.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jobs import sandbox_guard

from tests.helpers import hold_ports

REPO = Path(__file__).resolve().parents[2]
STANDIN_PYTHON = REPO / "tests" / "standins" / "python"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a site's http_proxy
TIMEOUT_ANSWER = {"process_status": "timeout", "stdout": "", "stderr": "Timed out\n"}
# What NeMo-Skills' server answers for traceback_verbosity "plain" (seen from the real one at 1054be9 with
# IPython 8.37.0): IPython's FormattedTB.set_mode refuses the lowercase name.
LOWERCASE_PLAIN = {"process_status": "error", "stdout": "", "new_session_created": True,
                   "stderr": "Session error: Unrecognized mode in FormattedTB: <plain>\n"
                             "Valid modes: ['Plain', 'Context', 'Verbose', 'Minimal']\n"}


def standin_env(**extra) -> dict:
    """Ours, the stand-in NeMo-Skills first, and no Slurm job (whose id would move the guard's ports)."""
    ours = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    return {**ours, "PYTHONPATH": f"{STANDIN_PYTHON}{os.pathsep}{REPO}", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningGuard:
    """`python -m jobs.sandbox_guard` as the batch script starts it: from a free base port, writing the port it
    chose to its stdout (`--port-file -`), read here as the job reads it; its log (stderr) is kept in `lines`."""

    def __init__(self, *args: str, env=None, preexec_fn=None, memory_limit_mb=2048, timeout_s=30.0,
                 base_port=None, python=sys.executable):
        self.argv = [python, "-m", "jobs.sandbox_guard", "--host", "127.0.0.1",
                     "--base-port", str(base_port or free_port()), "--port-file", "-",
                     "--memory-limit-mb", str(memory_limit_mb), "--timeout-s", str(timeout_s), *args]
        self.env = standin_env() if env is None else env
        self.preexec_fn = preexec_fn
        self.lines = []
        self.stdout = ""
        self.url = None

    def __enter__(self) -> "RunningGuard":
        self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, preexec_fn=self.preexec_fn)
        self.stdout = self.process.stdout.readline()  # the port, once it listens ("" if it ended first)
        self.port = int(self.stdout) if self.stdout.strip().isdigit() else None
        for line in self.process.stderr:  # its log says where, before the port is written
            self.lines.append(line)
            if "guard listening on http://" in line:
                self.url = line.split("listening on ")[1].split()[0]
                self.scratch = Path(line.rsplit("sessions in ", 1)[1].rstrip(")\n"))
                break
        self._readers = [threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for reader in self._readers:
            reader.start()
        assert self.url and self.url == f"http://127.0.0.1:{self.port}", (self.stdout, "".join(self.lines))
        return self

    def _read_stdout(self) -> None:
        self.stdout += self.process.stdout.read()

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(60)
        for reader in self._readers:
            reader.join(10)

    def output(self) -> str:
        return "".join(self.lines)


def call(url: str, method: str, path: str, body=None, session: str | None = None):
    headers = {"Content-Type": "application/json", **({"X-Session-ID": session} if session else {})}
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method=method)
    try:
        with DIRECT.open(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def execute(url: str, code: str, session: str = "s1", verbosity: str = "Plain", timeout: float = 60, **more):
    body = {"generated_code": code, "timeout": timeout, "language": "ipython", "max_output_characters": 1000,
            "traceback_verbosity": verbosity, **more}
    status, answer = call(url, "POST", "/execute", body, session)
    assert status == 200, answer
    return answer


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def workers_of(guard_pid: int) -> list:
    """The live worker processes a guard started (each names its guard in --parent-pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            words = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--worker" in words and f"--parent-pid\0{guard_pid}\0".encode() in b"\0".join(words) + b"\0":
                if alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def wait_until(predicate, what: str, limit_s: float = 60.0) -> None:
    """Wait for an event (not a time assert: the limit only bounds a hung test)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------
# Loopback only
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_the_guard_refuses_to_listen_beyond_loopback(host):
    done = subprocess.run([sys.executable, "-m", "jobs.sandbox_guard", "--host", host, "--base-port", "6000",
                           "--memory-limit-mb", "2048", "--timeout-s", "10"], cwd=REPO, env=standin_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"refusing to listen on --host {host!r}" in done.stderr and "loopback" in done.stderr
    assert "STAND-IN" not in done.stderr  # refused before any worker imported the sandbox module


def test_loopback_names_resolve_to_loopback_only():
    from jobs.sandbox_guard import GuardError, loopback_address

    assert loopback_address("127.0.0.1", 6000) == (socket.AF_INET, ("127.0.0.1", 6000))
    assert loopback_address("127.0.0.2", 6000)[1][0] == "127.0.0.2"
    assert loopback_address("localhost", 6000)[1][0] in ("127.0.0.1", "::1")
    with pytest.raises(GuardError, match="loopback"):
        loopback_address("0.0.0.0", 6000)


# ---------------------------------------------------------------------------------------------------------
# NeMo-Skills' API: sessions keep their state, each in its own process
# ---------------------------------------------------------------------------------------------------------
def test_sessions_keep_their_state_between_calls_and_apart():
    with RunningGuard() as guard:
        url = guard.url
        assert call(url, "GET", "/health") == (200, {"status": "healthy", "worker": "unknown"})
        assert execute(url, "x = 41\nimport os\npid = os.getpid()") == {
            "process_status": "completed", "stdout": "", "stderr": "", "new_session_created": True}
        assert execute(url, "x + 1") == {"process_status": "completed", "stdout": "42\n", "stderr": "",
                                         "new_session_created": False}
        other = execute(url, "x", session="s2")
        assert other["process_status"] == "error" and other["new_session_created"] is True
        assert other["stdout"].endswith("NameError: name 'x' is not defined\n")
        assert execute(url, "os.getpid() == pid")["stdout"] == "True\n"  # the same process between calls
        assert execute(url, "import os; os.getpid() != %s" % execute(url, "pid")["stdout"].strip(),
                       session="s2")["stdout"] == "True\n"  # another session, another process
        # and another directory: what a cell writes stays in its session, and goes with it
        cwd = execute(url, "open('note.txt', 'w').write('s1'); print(os.getcwd())")["stdout"].strip()
        assert execute(url, "import os; os.path.exists('note.txt'), os.getcwd() == %r" % cwd,
                       session="s2")["stdout"] == "(False, False)\n"
        assert Path(cwd, "note.txt").is_file() and Path(cwd) != REPO
        status, listed = call(url, "GET", "/sessions")
        assert status == 200 and listed["backend"] == "ipython" and sorted(listed["sessions"]) == ["s1", "s2"]
        assert set(listed["sessions"]["s1"]) == {"backend", "created", "last_used", "alive"}
        assert call(url, "DELETE", "/sessions/s1") == (200, {"message": "IPython session s1 deleted successfully"})
        assert call(url, "DELETE", "/sessions/s1") == (404, {"error": "IPython session s1 not found"})
        assert not Path(cwd).exists()
        again = execute(url, "x")
        assert again["new_session_created"] is True and "NameError" in again["stdout"]
        # NeMo-Skills' answers for what it refuses
        assert call(url, "POST", "/execute", {"generated_code": "1", "timeout": 5}) == (
            400, {"error": "X-Session-ID header required for ipython sessions"})
        status, refused = call(url, "POST", "/execute", {"generated_code": "1", "timeout": 5, "language": "lean4"},
                               "s1")
        assert status == 400 and "ipython" in refused["error"]


def test_concurrent_sessions_each_get_their_own_answers():
    """The benchmark's generations call the sandbox at once, each in its session."""
    with RunningGuard() as guard:
        answers = {}

        def session(i: int) -> None:
            execute(guard.url, f"x = {i}", session=f"g{i}")
            answers[i] = execute(guard.url, "print(x * 10)", session=f"g{i}")["stdout"]

        threads = [threading.Thread(target=session, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert answers == {i: f"{i * 10}\n" for i in range(5)}
        assert len(workers_of(guard.process.pid)) >= 5  # one process each (and a spare)


def test_a_lowercase_traceback_mode_gets_ipythons_refusal():
    """The guard hands traceback_verbosity to NeMo-Skills' execute_ipython_session unchanged: `plain` is refused
    by IPython itself, in the real server's answer; `Plain` gives the real post-processed traceback."""
    with RunningGuard() as guard:
        assert execute(guard.url, "print(1)", verbosity="plain") == LOWERCASE_PLAIN
        assert execute(guard.url, "1/0") == {
            "process_status": "error", "stderr": "", "new_session_created": False,
            "stdout": "Traceback (most recent call last):\n    1/0\nZeroDivisionError: division by zero\n"}
        assert execute(guard.url, "print('x' * 50)", max_output_characters=10)["stdout"] == "x" * 10 + "<output cut>"


# ---------------------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------------------
def test_a_session_allocating_past_its_memory_limit_gets_a_memory_error():
    with RunningGuard(memory_limit_mb=1024) as guard:
        url = guard.url
        assert execute(url, "import resource\nresource.getrlimit(resource.RLIMIT_AS)")["stdout"] == \
            f"({1024 * 2**20}, {1024 * 2**20})\n"
        assert execute(url, "kept = len(bytearray(50 * 1024**2)); kept")["stdout"] == "52428800\n"
        big = execute(url, "b = bytearray(4 * 1024**3)")
        assert big["process_status"] == "error" and big["stdout"].endswith("MemoryError\n"), big
        assert execute(url, "kept")["stdout"] == "52428800\n"  # the session lives on, its state intact


def test_a_cell_past_the_cap_is_killed_with_what_it_started_and_the_session_starts_afresh():
    with RunningGuard(timeout_s=5.0) as guard:  # room for the quick cells on a loaded machine
        url = guard.url
        assert execute(url, "z = 1")["process_status"] == "completed"
        child = execute(url, "import subprocess\np = subprocess.Popen(['sleep', '300'])\nprint(p.pid)")
        child_pid = int(child["stdout"])
        # the request allows 600 s; the guard's cap (serving.sandbox.timeout_s) cuts it
        assert execute(url, "while True: pass", timeout=600) == TIMEOUT_ANSWER
        wait_until(lambda: not alive(child_pid), "a process the session started outlived its session")
        fresh = execute(url, "z")
        assert fresh["new_session_created"] is True and fresh["stdout"].endswith(
            "NameError: name 'z' is not defined\n")
        assert execute(url, "print('usable')")["stdout"] == "usable\n"
        wait_until(lambda: "session s1: timeout" in guard.output(), "the guard did not log the timeout")


def test_the_requests_own_timeout_wins_when_it_is_lower():
    with RunningGuard(timeout_s=600.0) as guard:
        assert execute(guard.url, "import time\ntime.sleep(600)", timeout=0.5) == TIMEOUT_ANSWER


# ---------------------------------------------------------------------------------------------------------
# Start and end
# ---------------------------------------------------------------------------------------------------------
def spin(url: str) -> None:
    with contextlib.suppress(OSError):  # its guard ends under it
        execute(url, "while True: pass", session="s2")


def test_the_guards_workers_end_with_it():
    """SIGTERM (the job stopping its process group): the guard stops its workers. SIGKILL: the kernel does."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with RunningGuard() as guard:
            assert execute(guard.url, "1")["process_status"] == "completed"
            spinning = threading.Thread(target=spin, args=(guard.url,), daemon=True)
            spinning.start()
            wait_until(lambda: len(workers_of(guard.process.pid)) >= 3, "the guard's workers did not start")
            assert guard.scratch.is_dir()
            guard.process.send_signal(sig)
            guard.process.wait(60)
            wait_until(lambda: not workers_of(guard.process.pid), f"workers outlived the guard after {sig!r}")
            if sig == signal.SIGTERM:  # it cleaned up; a SIGKILL leaves its directory behind, removed here
                assert not guard.scratch.exists()
            shutil.rmtree(guard.scratch, ignore_errors=True)


def test_a_sandbox_that_cannot_import_its_module_fails_at_start():
    """A wrong image (a missing package, here STANDIN_FAIL=sandbox) ends the guard before it answers /health,
    so the benchmark fails at once; the worker's own message is in the output."""
    done = subprocess.run([sys.executable, "-m", "jobs.sandbox_guard", "--base-port", "6000",
                           "--memory-limit-mb", "2048", "--timeout-s", "10", "--pass-env", "STANDIN_FAIL"], cwd=REPO,
                          env=standin_env(STANDIN_FAIL="sandbox"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "[STAND-IN] sandbox: simulated failure (STANDIN_FAIL) at start" in done.stderr
    assert "the sandbox worker" in done.stderr and "could not start" in done.stderr
    assert "listening" not in done.stderr


def test_a_memory_limit_above_the_hard_limit_fails_clearly():
    """A process can lower its hard limit but never raise it again: the guard says so instead of every worker
    failing at import."""
    def hard_limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    done = subprocess.run([sys.executable, "-m", "jobs.sandbox_guard", "--base-port", "6000",
                           "--memory-limit-mb", "4096", "--timeout-s", "10"], cwd=REPO, env=standin_env(),
                          preexec_fn=hard_limit,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "--memory-limit-mb 4096 (serving.sandbox.memory_limit_mb) is above" in done.stderr
    assert "3072 MiB (ulimit -Hv)" in done.stderr


SECRETS = {"HF_TOKEN": "hf_secret_for_the_test", "WANDB_API_KEY": "wandb_secret_for_the_test",
           "NGC_API_KEY": "ngc_secret_for_the_test", "AWS_SECRET_ACCESS_KEY": "aws_secret_for_the_test"}
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # reachable to another user, where the test's own python (a home) may not be
# A session module of the standard library only (NeMo-Skills' API: execute_ipython_session), for a guard that runs
# as another user under the system python, which has no IPython: what is tested is the guard, not the module.
PLAIN_SESSION_MODULE = """import contextlib, io
def execute_ipython_session(generated_code, session_id, traceback_verbosity):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(generated_code, {})
    return {"process_status": "completed", "stdout": out.getvalue(), "stderr": "", "new_session_created": True}
"""


ENVIRON_OF_A_CELL = """import json, os
entries = open("/proc/self/environ", "rb").read().split(b"\\0")
names = sorted(entry.split(b"=", 1)[0].decode() for entry in entries if entry)
try:
    guard = open(f"/proc/{os.getppid()}/environ", "rb").read()
    print(json.dumps([names, b"secret_for_the_test" in guard]))
except PermissionError:
    print(json.dumps([names, "hidden"]))
"""


def test_no_variable_of_the_guard_reaches_a_cell_unless_allowed_or_passed():
    """The guard's environment is the batch step's (sbatch --export=ALL: the submitting shell's secrets, in
    cluster.env_vars or not). A cell sees only the allowlist, the variables the guard sets, and --pass-env's;
    random names never; nor can it read the guard's own environment at /proc/PPID/environ."""
    random_names = {f"X{secrets.token_hex(5).upper()}": "random_value" for _ in range(20)}
    env = standin_env(**SECRETS, **random_names, PLAIN_SETTING="on", LC_ALL="C.UTF-8")
    with RunningGuard("--pass-env", "PLAIN_SETTING", env=env) as guard:
        stdout = execute(guard.url, ENVIRON_OF_A_CELL)["stdout"]
    names, _ = json.loads(stdout)
    set_by_the_guard = {"PYTHONPATH", sandbox_guard.MEM_LIMIT_ENV, *sandbox_guard.THREAD_DEFAULTS}
    assert set(names) - sandbox_guard.WORKER_ENV_NAMES - set_by_the_guard == {"PLAIN_SETTING", "LC_ALL"}
    assert "PATH" in names and "HOME" in names
    assert not set(names) & (set(SECRETS) | set(random_names))


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="starts the guard as another user (root reads any process's environment)")
def test_a_cell_cannot_read_the_guards_own_environment():
    """The guard keeps the step's whole environment (it starts from it): made undumpable, it has its
    /proc/PID/environ readable to root only, not to the cells that run as its user."""
    module_dir = Path(tempfile.mkdtemp(prefix="plain-session-"))
    try:
        (module_dir / "plain_session.py").write_text(PLAIN_SESSION_MODULE)
        module_dir.chmod(0o755)

        def as_nobody():
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

        env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{REPO}{os.pathsep}{module_dir}", **SECRETS}
        with RunningGuard("--module", "plain_session", env=env, preexec_fn=as_nobody, python=SYSTEM_PYTHON) as guard:
            stdout = execute(guard.url, ENVIRON_OF_A_CELL)["stdout"]
    finally:
        shutil.rmtree(module_dir)
    names, guard_environ = json.loads(stdout)
    assert guard_environ == "hidden"
    assert not set(names) & set(SECRETS)


NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"


@pytest.mark.parametrize("seed", range(50))
def test_only_allowed_or_passed_names_reach_the_workers(seed):
    """Property: of any environment, the allowlist's names, LC_* and the passed names are kept; nothing else."""
    rng = random.Random(seed)
    allowed = sorted(sandbox_guard.WORKER_ENV_NAMES)
    names = {"".join(rng.choices(NAME_CHARS, k=rng.randint(1, 30))) for _ in range(30)}
    names |= set(rng.sample(allowed, 3)) | {"LC_" + rng.choice(NAME_CHARS)}
    passed = set(rng.sample(sorted(names), 3))
    environ = {name: "value" for name in names}
    kept = sandbox_guard.allowed_env(environ, passed)
    assert set(kept) == {n for n in names if n in allowed or n.startswith("LC_") or n in passed}, seed
    assert set(sandbox_guard.guard_env(environ)) - set(allowed) - set(sandbox_guard.GUARD_ENV_NAMES) == {
        n for n in names if n.startswith("LC_")}, seed


def test_the_local_benchmark_starts_the_guard_without_secrets(monkeypatch, tmp_path):
    """cluster=local: the job (services.start_sandbox) starts commands.sandbox_command's argv, its port file named,
    in a process group of its own, with only the variables the guard allows: no secret reaches the guard or a
    cell, named in cluster.env_vars or not; serving.sandbox.env does; nothing of it outlives the block."""
    from jobs import services
    from launcher import commands
    from launcher.contract import BenchmarkSettings
    from tests.helpers import compose_config

    base = free_port()
    cfg = compose_config("+experiment=bf16", f"serving.sandbox.port={base}", "cluster.env_vars=[HF_TOKEN]",
                         "+serving.sandbox.env.PLAIN_SETTING=on", f"cluster.python={sys.executable}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_for_the_test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_secret_value_for_the_test")  # not in cluster.env_vars
    monkeypatch.setenv("PYTHONPATH", f"{STANDIN_PYTHON}{os.pathsep}{REPO}")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    argv = commands.sandbox_command(cfg)
    assert argv[:3] == ["env", "-u", "HF_TOKEN"]
    assert argv[-4:] == ["--base-port", str(base), "--port-file", "${LAUNCHER_SANDBOX_PORT_FILE}"]
    assert ["--pass-env", "PLAIN_SETTING"] == argv[argv.index("--pass-env"):][:2]
    bench = BenchmarkSettings(server_url="http://127.0.0.1:8000", sandbox_url=f"http://127.0.0.1:{base}",
                              health_timeout_s=120, start_sandbox=True)
    with contextlib.ExitStack() as stack:
        sandbox = services.start_sandbox(stack, bench, argv, tmp_path)
        port = sandbox.port()
        assert port >= base  # the base, or the next free one
        url = f"http://127.0.0.1:{port}"
        sandbox.wait_for_health(url)
        env = execute(url, "import os\nprint(sorted({'HF_TOKEN', 'AWS_SECRET_ACCESS_KEY'} & set(os.environ)), "
                           "os.environ.get('PLAIN_SETTING'))")
        assert env["stdout"] == "[] on\n"
        if os.geteuid() == 0:  # only root reads the environment of the guard (undumpable)
            guard_environ = Path(f"/proc/{sandbox.process.pid}/environ").read_bytes()
            assert b"secret_value_for_the_test" not in guard_environ and b"PLAIN_SETTING=on" in guard_environ
        workers = workers_of(sandbox.process.pid)
        assert workers
    assert all(not alive(pid) for pid in workers)


# ---------------------------------------------------------------------------------------------------------
# Its port: chosen and bound at once, written where the job reads it
# ---------------------------------------------------------------------------------------------------------


def test_the_guard_takes_the_first_free_port_of_its_jobs_range():
    """From --base-port + SLURM_JOB_ID % 1000 (slurmd holds 6818 = 6000 + 818): ports in use are skipped."""
    with contextlib.ExitStack() as held:
        first = hold_ports(held, 2)  # the job's first port and the next one are taken
        job_id = 7000 + 818
        with RunningGuard(base_port=first - 818, env=standin_env(SLURM_JOB_ID=str(job_id))) as guard:
            assert guard.port >= first + 2  # past both (and past anything else listening there)
            assert execute(guard.url, "6 * 7")["stdout"] == "42\n"


def test_the_port_is_all_the_guard_writes_to_its_stdout():
    """On Slurm its stdout is the port file: a cell's own output (print, a subprocess's) goes to its log."""
    with RunningGuard() as guard:
        answer = execute(guard.url, "import os, sys\nos.system('echo from-a-subprocess')\n"
                                    "os.write(1, b'from-fd-1\\n')\nprint('printed')")
        assert answer["stdout"] == "printed\n"
    assert guard.stdout == f"{guard.port}\n"
    assert "from-a-subprocess" in guard.output() and "from-fd-1" in guard.output()


def test_a_port_file_is_written_whole(tmp_path):
    """Where the job starts the guard itself (cluster=local): a file, which appears with its whole line."""
    port_file, base = tmp_path / "sandbox.port", free_port()
    guard = subprocess.Popen([sys.executable, "-m", "jobs.sandbox_guard", "--base-port", str(base),
                              "--port-file", str(port_file), "--memory-limit-mb", "2048", "--timeout-s", "10"],
                             cwd=REPO, env=standin_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(port_file.is_file, "no port file")
        port = int(port_file.read_text())
        assert port_file.read_text() == f"{port}\n" and port >= base
        assert [p.name for p in tmp_path.iterdir()] == ["sandbox.port"]  # no partial file left beside it
        assert execute(f"http://127.0.0.1:{port}", "6 * 7")["stdout"] == "42\n"
    finally:
        guard.terminate()
        guard.wait(60)


def test_no_free_port_in_its_range_fails_the_guard_naming_it():
    from jobs.ports import PORT_SEARCH

    with contextlib.ExitStack() as held:
        first = hold_ports(held, PORT_SEARCH + 1)
        done = subprocess.run([sys.executable, "-m", "jobs.sandbox_guard", "--base-port", str(first),
                               "--port-file", "-", "--memory-limit-mb", "2048", "--timeout-s", "10"], cwd=REPO,
                              env=standin_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""  # no port for the job to read
    assert (f"[sandbox] no free port on 127.0.0.1 in {first}-{first + PORT_SEARCH} (base port {first} + "
            "SLURM_JOB_ID % 1000, then 100 more): every one is in use on this node") in done.stderr


# ---------------------------------------------------------------------------------------------------------
# The real NeMo-Skills (the sandbox image's packages; see tests/standins/README.md)
# ---------------------------------------------------------------------------------------------------------
def _real_nemo_skills() -> str | None:
    """Where the real nemo_skills is, when this python has it (found without importing it: the sandbox module
    limits the address space of whatever imports it)."""
    env_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and "standins" not in p]
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if "standins" not in p] + env_path
    try:
        spec = importlib.util.find_spec("nemo_skills")
    finally:
        sys.path[:] = saved
    if spec is None or spec.origin is None or str(REPO / "tests" / "standins") in spec.origin:
        return None
    return spec.origin


@pytest.mark.skipif(_real_nemo_skills() is None, reason="the real NeMo-Skills is not installed in this python")
def test_the_guard_over_the_real_nemo_skills():
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # no stand-ins
    with RunningGuard(env=env, memory_limit_mb=1024, timeout_s=8.0) as guard:  # sympy's import fits
        assert "STAND-IN" not in guard.output()
        url = guard.url
        assert execute(url, "print(2+2)") == {"process_status": "completed", "stdout": "4\n", "stderr": "",
                                              "new_session_created": True}
        assert execute(url, "def f():\n    return 1/0\nf()")["stdout"] == (
            "Traceback (most recent call last):\n    f()\n    return 1/0\nZeroDivisionError: division by zero\n")
        assert execute(url, "x = 6\nimport sympy\nsympy.factor(sympy.Symbol('y')**2 - 1)")["stdout"] == \
            "(y - 1)*(y + 1)\n"
        assert execute(url, "x * 7")["stdout"] == "42\n"
        assert execute(url, "print(1)", session="s2", verbosity="plain") == LOWERCASE_PLAIN
        assert execute(url, "b = bytearray(4 * 1024**3)")["stdout"].endswith("MemoryError\n")
        assert execute(url, "while True: pass") == TIMEOUT_ANSWER
        assert execute(url, "x")["new_session_created"] is True
