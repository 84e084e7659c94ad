"""Processes a stage job starts: tools in their own process groups, and the benchmark's servers.

Every process group started here is stopped when its block ends, on success, failure or cancellation,
so a server never outlives its benchmark.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional

STOP_GRACE_S = 15
# Benchmarks sharing a node must not share ports: each shifts its base ports by SLURM_JOB_ID % PORT_SPREAD
# (the batch script does the same for the sandbox it starts).
PORT_SPREAD = 1000
LOG_TAIL_LINES = 40
OUTPUT_TAIL_LINES = 12


def _tee(stream, log_file: Optional[Path], echo: bool, tail: collections.deque) -> None:
    sink = open(log_file, "ab") if log_file else None
    try:
        for line in iter(stream.readline, b""):
            tail.append(line.decode(errors="replace").rstrip())
            if echo:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            if sink:
                sink.write(line)
                sink.flush()
    finally:
        if sink:
            sink.close()


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def process_group(argv: List[str], log_file: Optional[Path] = None, echo: bool = True,
                  cwd: Optional[Path] = None) -> Iterator[subprocess.Popen]:
    """Start `argv` as the leader of a new process group; its output goes to our stdout and `log_file`."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=cwd)
    process.output_tail = collections.deque(maxlen=OUTPUT_TAIL_LINES)  # for error messages
    reader = threading.Thread(target=_tee, args=(process.stdout, log_file, echo, process.output_tail), daemon=True)
    reader.start()
    try:
        yield process
    finally:
        stop_process_group(process)
        reader.join(timeout=5)


def failure_message(argv: List[str], process: subprocess.Popen) -> str:
    return (f"{argv[0]} exited with code {process.returncode}; its last lines:\n  "
            + "\n  ".join(process.output_tail))


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for_health(url: str, timeout_s: float, process: subprocess.Popen, log_file: Path, what: str) -> float:
    """Poll `url` until it answers 200; fail early if the process dies. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was healthy; "
                               f"last lines of {log_file}:\n{log_tail(log_file)}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - start
        time.sleep(1)
    raise RuntimeError(f"{what} was not healthy at {url} after {timeout_s:.0f} s; last lines of {log_file}:\n"
                       f"{log_tail(log_file)}")


def port_offset() -> int:
    return int(os.environ.get("SLURM_JOB_ID", "0")) % PORT_SPREAD


def with_port_offset(argv: List[str], offset: int) -> List[str]:
    """Shift `--port N` and the ports of `http://host:N` URLs by `offset`."""
    shifted = list(argv)
    for i, word in enumerate(argv):
        if i and argv[i - 1] == "--port":
            shifted[i] = str(int(word) + offset)
        elif word.startswith("http://") and word.rsplit(":", 1)[-1].isdigit():
            base, port = word.rsplit(":", 1)
            shifted[i] = f"{base}:{int(port) + offset}"
    return shifted


def run_benchmark(spec: dict, staging: Path) -> dict:
    """Server (and, when the batch script did not start it, the sandbox), then the client; always stop both."""
    from jobs.run_stage import StageFailed, run_command

    offset = port_offset()
    bench = {k: with_port_offset([v], offset)[0] if k.endswith("_url") else v for k, v in spec["benchmark"].items()}
    commands = {name: with_port_offset(argv, offset) for name, argv in spec["commands"].items()}
    with contextlib.ExitStack() as stack:
        if bench["start_sandbox"] and "sandbox" in commands:
            sandbox = stack.enter_context(process_group(commands["sandbox"], staging / "sandbox.log", echo=False))
            waits = {"sandbox": (bench["sandbox_url"] + "/health", sandbox, staging / "sandbox.log")}
        else:
            waits = {}
        server = stack.enter_context(process_group(commands["server"], staging / "server.log", echo=False))
        waits["LLM server"] = (bench["server_url"] + "/health", server, staging / "server.log")
        startup = {}
        for what, (url, process, log_file) in waits.items():
            try:
                startup[what] = wait_for_health(url, bench["health_timeout_s"], process, log_file, what)
            except RuntimeError as error:
                raise StageFailed(str(error)) from None
        run_command(commands["client"])
    results = json.loads((staging / "results.json").read_text())
    return {"benchmark_summary": results.get("summary"), "server_startup_s": startup.get("LLM server")}
