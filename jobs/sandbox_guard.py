"""The code sandbox the benchmark's tool calls run in: NeMo-Skills' sandbox API, with limits NeMo-Skills lacks.

NeMo-Skills' local sandbox server (`nemo_skills/code_execution/local_sandbox/local_sandbox_server.py` at the
pinned commit 1054be9) runs every IPython session inside the server process: an `ipython` cell gets no time
limit at all (the request's `timeout` is used only for the other languages), and the only memory limit is the
RLIMIT_AS of 2 x NEMO_SKILLS_SANDBOX_MEM_LIMIT (20 GiB by default) that the module sets at import on the whole
server, shared by every session. One `while True: pass` from the model keeps a server thread busy for good,
and one large allocation takes memory from every other session.

This guard serves the same HTTP API (POST /execute, GET /health, GET /sessions, DELETE /sessions/<id>, with
NeMo-Skills' JSON shapes) on a loopback address only, and runs each session (X-Session-ID) in its own worker
process. A worker imports NeMo-Skills' module and calls its `execute_ipython_session`, so IPython's behaviour,
the output post-processing and the traceback modes it accepts stay NeMo-Skills'. What the guard adds:

* memory: a worker's address space (RLIMIT_AS and RLIMIT_DATA) is `--memory-limit-mb`, for its session only;
* time: a cell that runs past min(the request's `timeout`, `--timeout-s`) has its worker killed, with the
  processes it started, and gets NeMo-Skills' timeout answer. The session's state is lost; the next call in it
  starts a fresh worker, which answers `new_session_created: true` as NeMo-Skills does for a new session (its
  own client then replays the session's earlier cells);
* each worker runs in a scratch directory of its own (removed with it), not in the job's directory;
* environment: a worker gets an allowlist of the guard's variables (WORKER_ENV_NAMES: PATH, HOME, LANG, LC_*,
  TMPDIR, ...) and those --pass-env names (serving.sandbox.env's), never the rest of the step's (secrets);
  the guard itself is made undumpable, so its own environment is not readable at /proc/PID/environ either.
  Other processes of the same user on the node (the stage job, its LLM server) are not hidden from a cell:
  only a PID namespace of its own would hide them.

It chooses its own port (jobs.ports): the first free one from --base-port + SLURM_JOB_ID % 1000, bound at once,
and writes it, one line, to --port-file once it listens (`-`: its stdout, where a container cannot write the
job's storage and the batch script redirects the step's stdout; nothing else is written there).

Standard library only: it runs in the sandbox image (python:3.10), from the launch's code snapshot.

    python -m jobs.sandbox_guard --host 127.0.0.1 --memory-limit-mb 4096 --timeout-s 10 --base-port 6000 \
        --port-file sandbox.port
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import ipaddress
import json
import os
import queue
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from jobs import ports

SANDBOX_MODULE = "nemo_skills.code_execution.local_sandbox.local_sandbox_server"
# NeMo-Skills' answers, kept identical so that its client and ours read them as they read the real server's.
TIMEOUT_ANSWER = {"process_status": "timeout", "stdout": "", "stderr": "Timed out\n"}
SESSION_REQUIRED = "X-Session-ID header required for ipython sessions"
OUTPUT_CUT = "<output cut>"
DEFAULT_MAX_OUTPUT = 1000  # NeMo-Skills' default max_output_characters
# The module sets RLIMIT_AS to twice this variable at import. A process may lower its hard limit but never
# raise it again (without CAP_SYS_RESOURCE, which the sandbox's non-root user lacks), so the worker sets it
# to half our limit before the import: the module's own call then lands exactly on our limit.
MEM_LIMIT_ENV = "NEMO_SKILLS_SANDBOX_MEM_LIMIT"
# Math libraries start one thread per core on import, each reserving address space (OpenBLAS: stack and
# buffers per thread): on a 100-core node that alone would exhaust a few GiB of RLIMIT_AS. One thread each
# keeps a worker at ~0.4 GiB after importing IPython, numpy, scipy and sympy. serving.sandbox.env may set them.
THREAD_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A worker's environment is an allowlist: what Python, IPython and the math libraries need to run a cell. The
# guard's own is the batch step's, which (sbatch --export=ALL) holds every variable of the submitting shell,
# secrets too (HF_TOKEN, WANDB_API_KEY, NGC_API_KEY, AWS_*, whatever cluster.env_vars does not name), and a
# cell can print os.environ. What else a session should see, serving.sandbox.env sets; the guard is given
# those names (--pass-env). NeMo-Skills' module itself reads only its memory-limit variable (set below) and an
# idle-session timeout that a worker of one session has no use for.
WORKER_ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
                              "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONIOENCODING", *THREAD_DEFAULTS})
WORKER_ENV_PREFIXES = ("LC_",)  # the locale's categories
# The guard reads these besides: PYTHONPATH finds `jobs` (and the module), SLURM_JOB_ID moves its ports
# (jobs.ports). A worker gets PYTHONPATH rebuilt, absolute.
GUARD_ENV_NAMES = ("PYTHONPATH", "SLURM_JOB_ID")
PR_SET_DUMPABLE = 4
WORKER_START_S = 120.0  # importing IPython from a squashfs image on a busy node can take a while
KILL_WAIT_S = 5.0
PR_SET_PDEATHSIG = 1


class GuardError(RuntimeError):
    """The guard cannot start: the message says why (a non-loopback address, a worker that cannot import)."""


def loopback_address(host: str, port: int) -> Tuple[int, tuple]:
    """(family, sockaddr) to listen on; refuses any host that is not, or does not resolve only to, loopback."""
    refused = GuardError(f"refusing to listen on --host {host!r}: the sandbox runs model-written code and serves "
                         "it on a loopback address only (127.0.0.1, localhost, ::1)")
    if not host:  # every interface, to a server
        raise refused
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise GuardError(f"cannot resolve --host {host!r}: {error}") from None
    if not all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos):
        raise refused
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def allowed_env(environ: Dict[str, str], also: Iterable[str] = ()) -> Dict[str, str]:
    """The variables of `environ` that the workers' allowlist or `also` names; no other reaches them."""
    also = frozenset(also)
    return {name: value for name, value in environ.items()
            if name in WORKER_ENV_NAMES or name.startswith(WORKER_ENV_PREFIXES) or name in also}


def guard_env(environ: Dict[str, str]) -> Dict[str, str]:
    """The guard's own environment where the job starts it (cluster=local): the workers' allowlist and what the
    guard reads itself (its command sets serving.sandbox.env by value)."""
    return allowed_env(environ, GUARD_ENV_NAMES)


def hide_own_environment() -> None:
    """Linux keeps a process's starting environment readable at /proc/PID/environ, to every process of its user
    (its workers, that is), whatever it removes from os.environ later. A process that is not dumpable has those
    files readable by root only: the guard's environment, with whatever secrets the step passed it, stays
    out of the cells' reach. Its workers are dumpable again (execve resets it): they hold nothing to hide."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise GuardError(f"cannot make the guard undumpable (prctl PR_SET_DUMPABLE): "
                         f"{os.strerror(ctypes.get_errno())}; its environment would be readable to the cells")


def memory_limit_bytes(memory_limit_mb: int) -> int:
    limit = memory_limit_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < limit:
        raise GuardError(f"--memory-limit-mb {memory_limit_mb} (serving.sandbox.memory_limit_mb) is above this "
                         f"process's hard address-space limit of {hard // 2**20} MiB (ulimit -Hv), which it cannot "
                         "raise: lower the setting or start the sandbox with a higher limit")
    return limit


def cut(text: str, limit: int) -> str:
    """NeMo-Skills' rule: past `limit` characters the text is cut and marked."""
    return text[:limit] + OUTPUT_CUT if len(text) > limit else text


# ---------------------------------------------------------------------------------------------------------
# The worker: one process per session
# ---------------------------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Linux kills this worker when the guard ends, even by SIGKILL, so a busy cell never outlives it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the guard ended before the call above
        os._exit(1)


def _clamp(limit: int) -> None:
    """Our limit, whatever the module set (a module that sets none, or a higher one)."""
    for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft, hard = resource.getrlimit(which)
        if soft == resource.RLIM_INFINITY or soft > limit or hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(which, (limit, limit))


def worker_main(read_fd: int, write_fd: int, module_name: str, limit: int, parent_pid: int) -> None:
    """Import the sandbox module, say ready, then answer one JSON line per request line until EOF."""
    _die_with_parent(parent_pid)
    out = os.fdopen(write_fd, "wb", buffering=0)

    def send(message: dict) -> None:
        out.write(json.dumps(message).encode() + b"\n")

    try:
        module = importlib.import_module(module_name)
        _clamp(limit)
        run = module.execute_ipython_session
    except BaseException as error:  # noqa: BLE001 - whatever stops the import, the guard must say it
        send({"error": f"{type(error).__name__}: {error}"})
        raise
    send({"ready": True, "pid": os.getpid(), "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0]})
    with os.fdopen(read_fd, "rb") as requests:
        for line in requests:
            request = json.loads(line)
            result = run(request["code"], request["session_id"], request["traceback_verbosity"])
            limit_chars = request["max_output_characters"]
            result["stdout"] = cut(result["stdout"], limit_chars)
            result["stderr"] = cut(result["stderr"], limit_chars)
            send(result)


class Worker:
    """A worker process seen from the guard: a request goes down one pipe, its answer comes up the other."""

    def __init__(self, process: subprocess.Popen, requests: int, answers: int, scratch: str):
        self.process, self._requests, self._answers, self.scratch = process, requests, answers, scratch
        self._buffer = b""
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read_line(self, deadline: float) -> Optional[bytes]:
        """The next line, or None at the deadline; EOFError when the worker closed its end (it ended)."""
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([self._answers], [], [], left)
            if readable:
                chunk = os.read(self._answers, 1 << 16)
                if not chunk:
                    raise EOFError
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def wait_ready(self, timeout_s: float = WORKER_START_S) -> None:
        if self.ready:
            return
        try:
            line = self._read_line(time.monotonic() + timeout_s)
        except EOFError:
            line = b'{"error": "it exited"}'
        message = json.loads(line) if line else {"error": f"not ready after {timeout_s:g} s"}
        if not message.get("ready"):
            with contextlib.suppress(subprocess.TimeoutExpired):  # its own exit code, for the message
                self.process.wait(timeout=KILL_WAIT_S)
            self.kill()
            raise GuardError(f"the sandbox worker (python -m jobs.sandbox_guard --worker, importing the sandbox "
                             f"module) could not start: {message.get('error', message)} (exit code "
                             f"{self.process.poll()}; its output is in this log above)")
        self.ready = True

    def run(self, request: dict, timeout_s: float) -> Optional[dict]:
        """The module's answer, or None when the cell ran past `timeout_s`; EOFError when the worker died."""
        data = memoryview(json.dumps(request).encode() + b"\n")
        try:
            while data:
                data = data[os.write(self._requests, data):]
        except OSError:  # a broken pipe: the worker is gone
            raise EOFError from None
        line = self._read_line(time.monotonic() + timeout_s)
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        """The worker and every process its cells started (its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=KILL_WAIT_S)
        for fd in (self._requests, self._answers):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._requests = self._answers = -1
        shutil.rmtree(self.scratch, ignore_errors=True)


class Spawner(threading.Thread):
    """Starts every worker from one thread that lives as long as the guard: Linux's parent-death signal
    (which the workers ask for) fires when the *thread* that forked them ends, so short-lived request threads
    must not fork them."""

    def __init__(self, argv, env: dict, cwd: str):
        super().__init__(name="sandbox-spawner", daemon=True)
        self.argv, self.env, self.cwd = argv, env, cwd
        self.orders: "queue.Queue[Optional[queue.Queue]]" = queue.Queue()

    def run(self) -> None:
        while True:
            reply = self.orders.get()
            if reply is None:  # the guard closed: its workers are gone
                return
            try:
                reply.put(self._start())
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                reply.put(error)

    def _start(self) -> Worker:
        # Each session's own working directory (and sys.path[0]): files a cell writes, a `json.py` say, reach
        # neither the next worker's start nor another session.
        scratch = tempfile.mkdtemp(prefix="session-", dir=self.cwd)
        down_r, down_w = os.pipe()  # guard -> worker
        up_r, up_w = os.pipe()  # worker -> guard
        try:
            # A cell's own output to fd 1/2 (print from a subprocess, os.system) goes to the guard's log (its
            # stderr: its stdout may be the port file), as with NeMo-Skills' server; the protocol has pipes of its
            # own. No stdin: input() gets EOF.
            process = subprocess.Popen([*self.argv, "--worker-fds", f"{down_r},{up_w}", "--parent-pid",
                                        str(os.getpid())], stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                                       pass_fds=(down_r, up_w), env=self.env, cwd=scratch, start_new_session=True)
        except BaseException:
            for fd in (down_w, up_r):
                os.close(fd)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            os.close(down_r)
            os.close(up_w)
        return Worker(process, down_w, up_r, scratch)

    def start_worker(self) -> Worker:
        reply: queue.Queue = queue.Queue()
        self.orders.put(reply)
        while True:
            try:
                result = reply.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.is_alive():  # stopped with the guard: no order is served any more
                    raise GuardError("the sandbox is shutting down") from None
        if isinstance(result, BaseException):
            raise GuardError(f"cannot start a sandbox worker: {result}") from result
        return result


# ---------------------------------------------------------------------------------------------------------
# The guard: sessions, limits, HTTP
# ---------------------------------------------------------------------------------------------------------
class Session:
    def __init__(self, worker: Worker):
        self.worker: Optional[Worker] = worker
        self.created = self.last_used = time.time()
        self.lock = threading.Lock()  # one cell at a time per session, as one IPython shell runs one


class Guard:
    """The sessions and their workers; `execute`, `list_sessions` and `delete` answer the HTTP routes."""

    def __init__(self, memory_limit_mb: int, timeout_s: float, module: str = SANDBOX_MODULE,
                 pass_env: Iterable[str] = ()):
        self.limit = memory_limit_bytes(memory_limit_mb)
        self.timeout_s = timeout_s
        self.pass_env = tuple(pass_env)
        self.scratch = tempfile.mkdtemp(prefix="sandbox-guard-")
        argv = [sys.executable, "-m", "jobs.sandbox_guard", "--worker", "--module", module,
                "--memory-limit-mb", str(memory_limit_mb)]
        self._spawner = Spawner(argv, self.worker_env(), self.scratch)
        self._spawner.start()
        self._sessions: Dict[str, Session] = {}
        self._lock = threading.Lock()
        self._spare: Optional[Worker] = None
        self._refilling = False  # one spare at a time is started in advance
        self._closed = False
        # The first worker proves the image can run the module (a missing package, a hard limit below ours) before
        # the guard answers /health: a sandbox that cannot run code fails its step at once. It is kept as the spare.
        try:
            self._spare = self._spawner.start_worker()
            self._spare.wait_ready()
        except GuardError:
            self.close()
            raise

    # -- workers --------------------------------------------------------------------------------------------
    def worker_env(self) -> dict:
        """The allowlist of ours and the --pass-env variables, with `jobs` importable, the module's own memory limit
        on ours, and one thread per math library."""
        env = allowed_env(os.environ, self.pass_env)
        code_root = str(Path(__file__).resolve().parents[1])  # where `jobs` is, for `-m jobs.sandbox_guard`
        # Absolute: a worker starts in its own directory, where a relative entry would name another place.
        paths = [code_root] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env[MEM_LIMIT_ENV] = str(self.limit // 2)
        for name, value in THREAD_DEFAULTS.items():
            env.setdefault(name, value)
        return env

    def _refill(self) -> None:
        try:
            worker = self._spawner.start_worker()
        except GuardError:
            worker = None
        with self._lock:
            self._refilling = False
            if worker is not None and self._spare is None and not self._closed:
                self._spare, worker = worker, None
        if worker is not None:
            worker.kill()

    def _fresh_worker(self) -> Worker:
        """A started worker: the spare one (started in advance, so a new session does not wait for IPython's
        import), and another spare is started in the background."""
        with self._lock:
            if self._closed:
                raise GuardError("the sandbox is shutting down")
            worker, self._spare = self._spare, None
            refill, self._refilling = not self._refilling, True
        if refill:
            threading.Thread(target=self._refill, name="sandbox-refill", daemon=True).start()
        if worker is None or not worker.alive:
            worker = self._spawner.start_worker()
        worker.wait_ready()
        return worker

    # -- routes ---------------------------------------------------------------------------------------------
    def execute(self, body: Any, session_id: Optional[str]) -> Tuple[int, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("generated_code"), str):
            return 400, {"error": "the body must be a JSON object with generated_code (a string)"}
        timeout = body.get("timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            return 400, {"error": f"timeout must be a positive number of seconds, got {timeout!r}"}
        language = body.get("language", "ipython")
        if language != "ipython":
            return 400, {"error": f"this sandbox runs language 'ipython' only, got {language!r}"}
        if session_id is None:
            return 400, {"error": SESSION_REQUIRED}
        max_chars = body.get("max_output_characters", DEFAULT_MAX_OUTPUT)
        if isinstance(max_chars, bool) or not isinstance(max_chars, int):
            return 400, {"error": f"max_output_characters must be an integer, got {max_chars!r}"}
        request = {"code": body["generated_code"], "session_id": session_id, "max_output_characters": max_chars,
                   "traceback_verbosity": body.get("traceback_verbosity", "Plain")}
        session = self._session(session_id)
        with session.lock:
            session.last_used = time.time()
            try:
                worker = session.worker  # a DELETE may drop it meanwhile: this call keeps its own
                if worker is None:
                    worker = session.worker = self._fresh_worker()
                answer = worker.run(request, min(float(timeout), self.timeout_s))
            except GuardError as error:  # no worker could start: there is no session to speak of
                return 200, {"process_status": "error", "stdout": "", "stderr": f"Session error: {error}\n",
                             "new_session_created": False}
            except (EOFError, ValueError, OSError):  # the worker died in the cell (or broke its pipe, or was
                # deleted): its state is gone
                code = self._drop_worker(session)
                return 200, {"process_status": "error", "stdout": "",
                             "stderr": f"Session error: the session's process ended (exit code {code}); its state "
                                       "is lost\n", "new_session_created": False}
            if answer is None:
                self._drop_worker(session)
                return 200, dict(TIMEOUT_ANSWER)
            return 200, answer

    def _session(self, session_id: str) -> Session:
        with self._lock:
            if session_id not in self._sessions:
                self._sessions[session_id] = Session(None)
            return self._sessions[session_id]

    @staticmethod
    def _drop_worker(session: Session) -> Optional[int]:
        worker, session.worker = session.worker, None
        if worker is None:
            return None
        worker.kill()
        return worker.process.returncode

    def list_sessions(self) -> Tuple[int, dict]:
        with self._lock:
            sessions = dict(self._sessions)
        return 200, {"backend": "ipython", "sessions": {
            sid: {"backend": "ipython", "created": s.created, "last_used": s.last_used,
                  "alive": s.worker is None or s.worker.alive} for sid, s in sessions.items()}}

    def delete(self, session_id: str) -> Tuple[int, dict]:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return 404, {"error": f"IPython session {session_id} not found"}
        self._drop_worker(session)  # without its lock: a cell running now is cut short, as it was deleted
        return 200, {"message": f"IPython session {session_id} deleted successfully"}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = [s.worker for s in self._sessions.values() if s.worker] + [self._spare] * bool(self._spare)
            self._sessions.clear()
            self._spare = None
        for worker in workers:
            worker.kill()
        self._spawner.orders.put(None)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the benchmark client reuses its connections
    server: "GuardServer"

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/health":
            self._answer(200, {"status": "healthy", "worker": os.environ.get("WORKER_NUM", "unknown")})
        elif self.path == "/sessions":
            self._answer(*self.server.guard.list_sessions())
        else:
            self._answer(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/execute":
            self._answer(404, {"error": f"no route POST {self.path}"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        started = time.monotonic()
        status, answer = self.server.guard.execute(body, self.headers.get("X-Session-ID"))
        self._answer(status, answer)
        print(f"[sandbox] session {self.headers.get('X-Session-ID')}: {answer.get('process_status', status)} in "
              f"{time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)

    def do_DELETE(self) -> None:  # noqa: N802
        prefix = "/sessions/"
        if self.path.startswith(prefix) and len(self.path) > len(prefix):
            self._answer(*self.server.guard.delete(self.path[len(prefix):]))
        else:
            self._answer(404, {"error": f"no route DELETE {self.path}"})

    def log_message(self, format, *args) -> None:  # noqa: A002 - one line per call is printed by do_POST
        pass


class GuardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, guard: Guard):
        family, sockaddr = loopback_address(host, port)
        self.address_family = family
        self.guard = guard
        super().__init__(sockaddr[:2], Handler)


def publish_port(port: int, port_file: str) -> None:
    """One line, written whole: the job reads the file as soon as it holds a line break."""
    if port_file == "-":
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        return
    partial = f"{port_file}.partial"
    try:
        Path(partial).write_text(f"{port}\n")
        os.replace(partial, port_file)
    except OSError as error:
        raise GuardError(f"cannot write the port it listens on to --port-file {port_file}: {error}") from None


def serve(host: str, base_port: int, port_file: Optional[str], memory_limit_mb: int, timeout_s: float,
          module: str = SANDBOX_MODULE, pass_env: Iterable[str] = ()) -> None:
    loopback_address(host, base_port)  # refused before any worker starts
    hide_own_environment()
    guard = Guard(memory_limit_mb, timeout_s, module, pass_env)
    try:
        # Bound as it is chosen: no other job can take the port between the two.
        server = ports.first_free(host, base_port, lambda host, port: GuardServer(host, port, guard))
    except BaseException:
        guard.close()
        raise

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    host_shown, bound = server.server_address[:2]
    print(f"[sandbox] guard listening on http://{host_shown}:{bound} (memory limit {memory_limit_mb} MiB per "
          f"session, cells cut at {timeout_s:g} s; {module}; sessions in {guard.scratch})", file=sys.stderr,
          flush=True)
    try:
        if port_file:
            publish_port(bound, port_file)
        server.serve_forever()
    finally:
        server.server_close()
        guard.close()


def main(argv=None) -> int:
    # No abbreviations: `--port N` of an older command must not pass for `--port-file N`.
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], allow_abbrev=False)
    p.add_argument("--host", default="127.0.0.1", help="a loopback address; any other is refused")
    p.add_argument("--base-port", type=int, default=6000,
                   help="listen on the first free port from this one + SLURM_JOB_ID %% 1000 (jobs.ports)")
    p.add_argument("--port-file", help="where to write that port once listening, one line (-: stdout)")
    p.add_argument("--memory-limit-mb", type=int, required=True, help="address space of each session's process")
    p.add_argument("--timeout-s", type=float, help="wall-time cap of a cell (the request's timeout, if lower, wins)")
    p.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                   help="a variable of ours the sessions see besides the allowlist (PATH, HOME, LANG, LC_*, TMPDIR, "
                        "...): serving.sandbox.env's names; repeatable. No other variable reaches them")
    p.add_argument("--module", default=SANDBOX_MODULE, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-fds", help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_limit_mb < 1:
        p.error(f"--memory-limit-mb must be positive, got {args.memory_limit_mb}")
    if args.worker:
        read_fd, write_fd = (int(fd) for fd in args.worker_fds.split(","))
        worker_main(read_fd, write_fd, args.module, args.memory_limit_mb * 1024 * 1024, args.parent_pid)
        return 0
    if args.timeout_s is None or not args.timeout_s > 0:
        p.error(f"--timeout-s must be a positive number of seconds, got {args.timeout_s}")
    try:
        serve(args.host, args.base_port, args.port_file, args.memory_limit_mb, args.timeout_s, args.module,
              args.pass_env)
    except (GuardError, ports.PortError) as error:
        print(f"[sandbox] {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
