"""The benchmark's servers: the ports they listen on (chosen as jobs.ports says), their health, and the benchmark
run around them.

Each server runs in a process group of jobs.process, stopped when the benchmark ends however it ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from jobs import ports, sandbox_guard, server_launch
from jobs.process import StageFailed, process_group, run_command
from launcher.contract import (RESULTS, SANDBOX_EXIT_ENV, SANDBOX_PORT_ENV, SANDBOX_PORT_FILE_ENV, SERVER_EXIT_ENV,
                               SERVER_LAUNCH_FILE_ENV, SERVER_LOG_ENV, SERVER_PORT_ENV, BenchmarkSettings, StageSpec)

# The lines jobs.serve writes into a served configuration's log: where it listens (launcher.status shows them).
SERVING = "launcher: serving"
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


def serving_lines(lines: List[str]) -> List[str]:
    """The lines of a job's log that say where its served configuration listens (jobs.serve)."""
    return [line for line in lines if line.startswith(SERVING)]


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


def wait_for_port_file(path: Path, timeout_s: float, process: "subprocess.Popen | ExitFile",
                       log_file: Optional[Path], what: str) -> int:
    """The port the sandbox listens on, from the line it writes to `path` once listening (jobs.sandbox_guard
    --port-file); fail early if `process` (ours, or a step we see the end of) ends first."""
    start = time.monotonic()
    while True:
        written = path.read_text() if path.is_file() else ""
        if "\n" in written:  # the whole line
            line = written.split("\n", 1)[0].strip()
            if not (line.isdigit() and 0 < int(line) < 65536):
                raise StageFailed(_with_log(f"{what} wrote {line!r} to its port file {path}, not a port", log_file))
            return int(line)
        if process.poll() is not None:
            raise StageFailed(_with_log(f"{what} exited with code {process.returncode} before it was healthy: "
                                        f"it wrote no port to {path}", log_file))
        if time.monotonic() - start >= timeout_s:
            raise StageFailed(_with_log(f"{what} wrote no port to {path} within {timeout_s:g} s", log_file))
        time.sleep(HEALTH_POLL_S)


def at_port(url: str, port: int) -> str:
    """`url` (serving's http://HOST:BASE_PORT, as the spec has it) at the port this job uses."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def run_benchmark(spec: StageSpec, staging: Path) -> dict:
    """The sandbox, then the LLM server, then the client; always stop both servers.

    Each command's port placeholders (jobs.ports) are filled in with the ports chosen here, which its
    environment holds too: the sandbox's, which it chose itself (started here, or beside the job by the batch
    script), then the server's, the first free one from serving.port once the sandbox listens."""
    try:
        return _run_benchmark(spec.benchmark, spec.commands, staging)
    except ports.PortError as error:
        raise StageFailed(str(error)) from None


@dataclasses.dataclass
class Sandbox:
    """The benchmark's code sandbox as the job sees it: a process of its own or a step of the batch script."""
    process: "subprocess.Popen | ExitFile"
    port_file: Path
    log_file: Optional[Path]
    what: str
    wait_s: float

    def port(self) -> int:
        return wait_for_port_file(self.port_file, self.wait_s, self.process, self.log_file, self.what)

    def wait_for_health(self, url: str) -> None:
        wait_for_health(url + "/health", self.wait_s, self.process, self.log_file, self.what)


def start_sandbox(stack: contextlib.ExitStack, bench: BenchmarkSettings, argv: List[str], staging: Path) -> Sandbox:
    """The sandbox the job starts (locally), writing its port to a file of the staging directory; or the one
    the batch script started beside the job (on Slurm), as the variables it exports name it.

    Started here, it gets only the variables jobs.sandbox_guard allows (guard_env), none of the job's secrets:
    it runs model-written code."""
    if bench.start_sandbox:
        port_file, log_file = staging / "sandbox.port", staging / "sandbox.log"
        argv = ports.expand(argv, {SANDBOX_PORT_FILE_ENV: str(port_file)})
        guard = process_group(argv, log_file, echo=False, env=sandbox_guard.guard_env(dict(os.environ)))
        return Sandbox(stack.enter_context(guard), port_file, log_file, "the sandbox", bench.health_timeout_s)
    port_file = os.environ.get(SANDBOX_PORT_FILE_ENV)
    if not port_file:
        raise StageFailed(f"{SANDBOX_PORT_FILE_ENV} is not set: the batch script that starts the sandbox beside "
                          "this job sets it (was the job started without its batch script?)")
    return Sandbox(ExitFile(os.environ.get(SANDBOX_EXIT_ENV)), Path(port_file), None,
                   "the sandbox (started by the batch script; its output is in this job's log)",
                   min(bench.health_timeout_s, EXTERNAL_SANDBOX_WAIT_S))


def _run_benchmark(bench: BenchmarkSettings, commands: Dict[str, List[str]], staging: Path) -> dict:
    chosen: Dict[str, str] = {}  # placeholder: port
    server_url = urllib.parse.urlsplit(bench.server_url)
    with contextlib.ExitStack() as stack:
        sandbox = start_sandbox(stack, bench, commands["sandbox"], staging) if "sandbox" in commands else None
        if sandbox:
            chosen[SANDBOX_PORT_ENV] = str(sandbox.port())
        chosen[SERVER_PORT_ENV] = str(ports.free_port(server_url.hostname, server_url.port))
        env = {**os.environ, **chosen}
        if "server_options" in commands:  # the file the server reads (trtllm-serve --extra_llm_api_options)
            run_command(commands["server_options"], cwd=staging)
        started = time.monotonic()
        server_argv = ports.expand(commands["server"], chosen)
        launch_file = os.environ.get(SERVER_LAUNCH_FILE_ENV)
        if launch_file:  # a server over several nodes: its step (the batch script's) runs what this job writes
            server_launch.write(Path(launch_file), server_argv)
            server, server_log = ExitFile(os.environ.get(SERVER_EXIT_ENV)), Path(os.environ[SERVER_LOG_ENV])
        else:
            server_log = staging / "server.log"
            server = stack.enter_context(process_group(server_argv, server_log, echo=False, env=env))
        startup = wait_for_health(at_port(bench.server_url, chosen[SERVER_PORT_ENV]) + "/health",
                                  bench.health_timeout_s, server, server_log, "LLM server", since=started)
        if sandbox:
            # Listening is not answering: a sandbox that does not answer would turn every tool call of the
            # benchmark into an error message instead of failing it.
            sandbox.wait_for_health(at_port(bench.sandbox_url, chosen[SANDBOX_PORT_ENV]))
        # The benchmark's client; with launcher.serve_only jobs.serve instead, which keeps the servers up.
        run_command(ports.expand(commands.get("client") or commands["serve"], chosen), env=env)
    used = {"server_startup_s": startup,
            "ports": {"server": int(chosen[SERVER_PORT_ENV]),
                      "sandbox": int(chosen[SANDBOX_PORT_ENV]) if SANDBOX_PORT_ENV in chosen else None}}
    if "client" not in commands:  # served, measured nothing: never published, so a launch serves it again
        return {**used, "publish": False}
    results_file = staging / RESULTS
    if not results_file.is_file():
        raise StageFailed(f"the benchmark client exited without writing {results_file}")
    results = json.loads(results_file.read_text())
    if results.get("benchmark") == "load_sweep":  # jobs.load_sweep: per concurrency, not the notebook's summary
        return {"load_sweep_summary": results["summary"], **used}
    return {"benchmark_summary": results.get("summary"), **used}
