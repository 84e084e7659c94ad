"""The benchmark's servers: the ports they listen on, their health, and the benchmark run around them.

Each server runs in a process group of jobs.process, stopped when the benchmark ends however it ends.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from jobs.process import StageFailed, process_group, run_command

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
HEALTH_POLL_S = 1.0
# How long a sandbox the batch script started beside the job may take to answer, once the LLM server is up.
EXTERNAL_SANDBOX_WAIT_S = 300
# Health checks go straight to the loopback servers, never through a site's http_proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
