"""The stage job's tools: each in its own process group, its output teed to ours, stopped when its block ends.

The leaf the other job modules build on (jobs.run_stage, jobs.services, jobs.drafter_metrics, jobs.gpu_check):
it imports none of them. Every process group started here is stopped when its block ends, on success, failure
or cancellation, so a server never outlives its benchmark.
"""
from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

STOP_GRACE_S = 15  # seconds between SIGTERM and SIGKILL
KILL_WAIT_S = 5  # seconds to wait for the group to go after SIGKILL
OUTPUT_TAIL_LINES = 12


def log(message: str) -> None:
    print(f"[launcher {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
    reaps), so it does not count.
    """
    try:
        os.killpg(pgid, 0)  # no process at all: no need to look at each one
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # Here, not at the top: the login node imports the modules built on this one (for their constants) and has
    # no psutil; only a stage job stops process groups.
    import psutil

    gone = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)  # no signal stops these
    for member in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            if os.getpgid(member.pid) == pgid and member.info["status"] not in gone:
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


def tool_failure(argv: List[str], process: subprocess.Popen) -> StageFailed:
    """What a tool's non-zero exit means for the stage: a SIGTERM from outside stops it; the rest fail it."""
    if process.returncode == -signal.SIGTERM:
        return StageStopped(f"{argv[0]} {stopped_by(signal.SIGTERM)}")
    return StageFailed(failure_message(argv, process))


def failure_message(argv: List[str], process: subprocess.Popen) -> str:
    return (f"{argv[0]} exited with code {process.returncode}; its last lines:\n  "
            + "\n  ".join(process.output_tail))


def run_command(argv, log_file: Path | None = None, cwd: Path | None = None, env: dict | None = None) -> None:
    """Run one tool in its own process group, its output to ours (and to `log_file`), failing loudly.
    `env`: its whole environment (default: ours)."""
    log("$ " + " ".join(argv))
    with process_group(argv, log_file, cwd=cwd, env=env) as process:
        process.wait()
    if process.returncode:
        raise tool_failure(argv, process)
