"""Processes a stage job starts: tools in their own process groups, and the benchmark's servers.

Every process group started here is stopped when its block ends, on success, failure or cancellation,
so a server never outlives its benchmark.
"""
from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

STOP_GRACE_S = 15  # seconds between SIGTERM and SIGKILL
KILL_WAIT_S = 5  # seconds to wait for the group to go after SIGKILL
# Benchmarks sharing a node must not share ports, and nothing may land on a port a daemon holds (slurmd's 6818
# is 6000 + 818): each benchmark starts looking at its base port + SLURM_JOB_ID % PORT_SPREAD and takes the first
# free one. The batch script does the same for the sandbox it starts and passes its choice in SANDBOX_PORT_ENV.
PORT_SPREAD = 1000
PORT_SEARCH = 100  # ports tried after the starting one
SANDBOX_PORT_ENV = "LAUNCHER_SANDBOX_PORT"
# The file where the batch script writes the sandbox step's exit code when it ends: a sandbox that cannot
# start (a wrong image, a port taken meanwhile) fails the benchmark at once instead of after the health timeout.
SANDBOX_EXIT_ENV = "LAUNCHER_SANDBOX_EXIT"
LOG_TAIL_LINES = 40
OUTPUT_TAIL_LINES = 12
HEALTH_POLL_S = 1.0
# How long a sandbox the batch script started beside the job may take to answer, once the LLM server is up.
EXTERNAL_SANDBOX_WAIT_S = 300
# Health checks go straight to the loopback servers, never through a site's http_proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StageFailed(RuntimeError):
    """The stage cannot complete; the message says why (a tool's last output lines, a failed check)."""


class StageStopped(StageFailed):
    """A tool was ended by SIGTERM from outside: Slurm stopping the job at its time limit, a preemption, a
    requeue or scancel. Not the stage's failure (a requeued attempt runs it again), and logged as such."""


def stopped_by(signum: int) -> str:
    return f"stopped by signal {signum} (time limit/preemption/requeue)"


def _tee(stream, log_file: Optional[Path], echo: bool, tail: collections.deque) -> None:
    """Copy the tool's output to our stdout, its log file and `tail` until it closes its end.

    A copy that fails (our stdout closed, the log's disk full) is dropped, but the pipe is always drained
    to the end: a tool that cannot write its output blocks forever.
    """
    out = getattr(sys.stdout, "buffer", None) if echo else None
    log = None
    if log_file:
        try:
            log = open(log_file, "ab")
        except OSError as error:
            tail.append(f"[launcher] cannot write {log_file}: {error}")
    for line in iter(stream.readline, b""):
        tail.append(line.decode(errors="replace").rstrip())
        if out is not None:
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError):
                out = None
        if log is not None:
            try:
                log.write(line)
                log.flush()
            except OSError as error:
                tail.append(f"[launcher] cannot write {log_file}: {error}")
                with contextlib.suppress(OSError):
                    log.close()
                log = None
    if log is not None:
        with contextlib.suppress(OSError):
            log.close()


def _group_alive(pgid: int) -> bool:
    """Whether process group `pgid` has a process that is not a zombie.

    A zombie cannot be signalled away: it waits for its parent (or for init, which in some containers never
    reaps), so it does not count. Linux's /proc says which members are zombies; elsewhere signal 0 decides.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop every process of the group `process` leads: SIGTERM, then SIGKILL after STOP_GRACE_S.

    The whole group, even when its leader already exited: servers and launchers (mpirun, torchrun, Flask's
    reloader) leave children behind that would keep GPUs, ports and our output pipe.
    """
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, KILL_WAIT_S)):
        process.poll()  # reap the leader if it ended, so that it does not count as alive
        if not _group_alive(process.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait_s
        while _group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):  # the leader is gone or a zombie by now: reap it
        process.wait(timeout=KILL_WAIT_S)


@contextlib.contextmanager
def process_group(argv: List[str], log_file: Optional[Path] = None, echo: bool = True,
                  cwd: Optional[Path] = None, env: Optional[dict] = None) -> Iterator[subprocess.Popen]:
    """Start `argv` as the leader of a new process group; its output goes to our stdout and `log_file`.
    `env`: its whole environment (default: ours)."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=cwd, env=env)
    except OSError as error:  # not installed, not executable: as much a failed tool as a non-zero exit
        raise StageFailed(f"cannot start {argv[0]}: {error}") from None
    process.output_tail = collections.deque(maxlen=OUTPUT_TAIL_LINES)  # for error messages
    reader = threading.Thread(target=_tee, args=(process.stdout, log_file, echo, process.output_tail), daemon=True)
    reader.start()
    try:
        yield process
    finally:
        stop_process_group(process)
        reader.join(timeout=5)
        if not reader.is_alive():
            process.stdout.close()


class ExitFile:
    """A step the batch script started, seen through the exit code it writes to `path` when it ends.

    Polled as a Popen is (`poll()`, `returncode`), so wait_for_health can fail early on it too."""

    def __init__(self, path: Optional[str]):
        self.path = Path(path) if path else None
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None and self.path is not None and self.path.is_file():
            written = self.path.read_text().strip()
            self.returncode = int(written) if written.lstrip("-").isdigit() else None
        return self.returncode


def tool_failure(argv: List[str], process: subprocess.Popen) -> StageFailed:
    """What a tool's non-zero exit means for the stage: a SIGTERM from outside stops it; the rest fail it."""
    if process.returncode == -signal.SIGTERM:
        return StageStopped(f"{argv[0]} {stopped_by(signal.SIGTERM)}")
    return StageFailed(failure_message(argv, process))


def failure_message(argv: List[str], process: subprocess.Popen) -> str:
    return (f"{argv[0]} exited with code {process.returncode}; its last lines:\n  "
            + "\n  ".join(process.output_tail))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _with_log(message: str, log_file: Optional[Path]) -> str:
    return f"{message}; last lines of {log_file}:\n{log_tail(log_file)}" if log_file else message


def wait_for_health(url: str, timeout_s: float, process: "subprocess.Popen | ExitFile",
                    log_file: Optional[Path], what: str, since: Optional[float] = None) -> float:
    """Poll `url` until it answers 200; fail early if `process` (ours, or a step we see the end of) ends.

    Returns the seconds from `since` (a time.monotonic() value, e.g. when the process started; default: now)
    until it was healthy. Raises StageFailed with the tail of `log_file`.
    """
    start = time.monotonic()
    since = start if since is None else since
    while True:
        if process.poll() is not None:
            raise StageFailed(_with_log(f"{what} exited with code {process.returncode} before it was healthy",
                                        log_file))
        with contextlib.suppress(OSError, http.client.HTTPException):  # refused, reset, 503 while loading
            with _DIRECT.open(url, timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - since
        if time.monotonic() - start >= timeout_s:
            break
        time.sleep(HEALTH_POLL_S)
    raise StageFailed(_with_log(f"{what} was not healthy at {url} after {timeout_s:g} s", log_file))


def port_offset() -> int:
    return int(os.environ.get("SLURM_JOB_ID", "0")) % PORT_SPREAD


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def first_free_port(host: str, start: int, taken: Sequence[int] = ()) -> int:
    for port in range(start, start + PORT_SEARCH + 1):
        if port not in taken and port_is_free(host, port):
            return port
    raise StageFailed(f"no free port on {host} in {start}-{start + PORT_SEARCH}: every one is in use on this node")


def with_ports(argv: List[str], ports: Dict[int, int]) -> List[str]:
    """Replace the configured ports (`--port N`, `http://host:N`) by the ones this job listens on."""
    moved = list(argv)
    for i, word in enumerate(argv):
        if i and argv[i - 1] == "--port" and word.isdigit():
            moved[i] = str(ports.get(int(word), int(word)))
        elif word.startswith("http://") and word.rsplit(":", 1)[-1].isdigit():
            base, port = word.rsplit(":", 1)
            moved[i] = f"{base}:{ports.get(int(port), int(port))}"
    return moved


def benchmark_ports(bench: dict) -> Dict[int, int]:
    """{configured port: port this job uses} for the LLM server and the sandbox."""
    offset = port_offset()
    server_host, server_port = bench["server_url"][len("http://"):].rsplit(":", 1)
    sandbox_host, sandbox_port = bench["sandbox_url"][len("http://"):].rsplit(":", 1)
    if os.environ.get(SANDBOX_PORT_ENV):  # the batch script started the sandbox there
        sandbox = int(os.environ[SANDBOX_PORT_ENV])
    else:
        sandbox = first_free_port(sandbox_host, int(sandbox_port) + offset)
    server = first_free_port(server_host, int(server_port) + offset, taken=[sandbox])
    return {int(server_port): server, int(sandbox_port): sandbox}


def run_benchmark(spec: dict, staging: Path) -> dict:
    """Server (and, when the batch script did not start it, the sandbox), then the client; always stop both."""
    from jobs.run_stage import run_command

    ports = benchmark_ports(spec["benchmark"])
    bench = {k: with_ports([v], ports)[0] if k.endswith("_url") else v for k, v in spec["benchmark"].items()}
    commands = {name: with_ports(argv, ports) for name, argv in spec["commands"].items()}
    timeout_s = bench["health_timeout_s"]
    with contextlib.ExitStack() as stack:
        started = {}
        if bench["start_sandbox"] and "sandbox" in commands:
            started["sandbox"] = (stack.enter_context(process_group(commands["sandbox"], staging / "sandbox.log",
                                                                    echo=False)),
                                  staging / "sandbox.log", bench["sandbox_url"], time.monotonic())
        started["LLM server"] = (stack.enter_context(process_group(commands["server"], staging / "server.log",
                                                                   echo=False)),
                                 staging / "server.log", bench["server_url"], time.monotonic())
        startup = {what: wait_for_health(url + "/health", timeout_s, process, log_file, what, since)
                   for what, (process, log_file, url, since) in started.items()}
        if "sandbox" in commands and "sandbox" not in started:
            # Started beside this job by the batch script: a sandbox that is not there would turn every tool
            # call of the benchmark into an error message instead of failing it.
            wait_for_health(bench["sandbox_url"] + "/health", min(timeout_s, EXTERNAL_SANDBOX_WAIT_S),
                            ExitFile(os.environ.get(SANDBOX_EXIT_ENV)), None,
                            "the sandbox (started by the batch script; its output is in this job's log)")
        run_command(commands["client"])
    results_file = staging / "results.json"
    if not results_file.is_file():
        raise StageFailed(f"the benchmark client exited without writing {results_file}")
    results = json.loads(results_file.read_text())
    return {"benchmark_summary": results.get("summary"), "server_startup_s": startup.get("LLM server")}
