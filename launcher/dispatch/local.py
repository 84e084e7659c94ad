"""This machine, no Slurm: the plan's stages run one after another in dependency order.

The same job code, specs, artifacts and state as on Slurm; a stage whose input failed is cancelled. The launch
runs them in the foreground; `python -m launcher cancel` from another shell stops it (`stop`): each job's
state records the process running it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from launcher.dispatch.storage import ATTEMPT_START, ExperimentDir, write_json

if TYPE_CHECKING:  # `status` reads local job states, and must not pay for the plan's imports (Hydra, jinja2)
    from launcher.plan import Plan, Stage


LIVE_STATES = ("PENDING", "RUNNING")
ENDED_STATES = ("COMPLETED", "FAILED", "CANCELLED")
CANCEL_WAIT_S = 60  # how long `cancel` waits for the run to stop its stage (which stops its tools) and say so
INPUT_FAILED = "an input did not complete"


class LocalBackend:
    def __init__(self, plan: Plan, exp: ExperimentDir, code_dir: Path):
        self.plan, self.exp, self.code_dir = plan, exp, code_dir
        self.queue: List[Tuple[Stage, str, List[str]]] = []
        self.stopped_by: Optional[str] = None  # what stopped the run: a `cancel` (SIGTERM) or Ctrl-C (SIGINT)
        self.running: Optional[subprocess.Popen] = None
        self.why_cancelled: Dict[str, str] = {}  # stage: why it was cancelled

    def batch_key(self, stage: Stage) -> str:
        """One stage per call: they run here one after another anyway."""
        return stage.name

    def submit(self, group, script: str) -> List[Tuple[str, str]]:
        """Queue the stages of a launcher.dispatch.core.JobGroup; the script only shows what the stage runs."""
        submitted = []
        for stage in group.stages:
            job_id = f"local-{os.getpid()}-{len(self.queue) + 1}"
            self.queue.append((stage, job_id, [] if stage.after_any else list(group.waits_on)))
            set_local_state(self.exp, job_id, "PENDING")
            submitted.append((job_id, str(self.exp.log(stage.name))))
        return submitted

    def _on_signal(self, signum, frame) -> None:
        """Ctrl-C reaches the running stage too (one process group), which then stops its tools; a `cancel`
        (SIGTERM, to this process only) or a second Ctrl-C is passed on as the SIGTERM a job stops on. No further
        stage starts. (Python's default, KeyboardInterrupt, had subprocess kill the stage at once: its tools, in
        their own process groups, lived on.)"""
        again = self.stopped_by is not None
        self.stopped_by = self.stopped_by or ("Ctrl-C" if signum == signal.SIGINT else "python -m launcher cancel")
        if (signum != signal.SIGINT or again) and self.running and self.running.poll() is None:
            self.running.send_signal(signal.SIGTERM)

    def _run(self, stage: Stage, job_id: str) -> str:
        from launcher.scripts import job_argv, stage_env

        env = {**os.environ, **stage_env(self.plan, stage, self.code_dir)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.code_dir), os.environ.get("PYTHONPATH")]))
        log = self.exp.log(stage.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            # As a batch script does: `status` reads a failure's cause from the last attempt on.
            out.write(f"{ATTEMPT_START} {job_id} on {socket.gethostname()}\n".encode())
            out.flush()
            self.running = subprocess.Popen(job_argv(stage.cfg, self.exp.spec(stage.name)), stdout=out,
                                            stderr=subprocess.STDOUT, env=env, cwd=self.code_dir)
            if self.stopped_by:  # a cancel that came between the check before this stage and its start
                self.running.send_signal(signal.SIGTERM)
            code = self.running.wait()
        if code == 0:
            return "COMPLETED"
        if self.stopped_by:
            self.why_cancelled[stage.name] = f"stopped by {self.stopped_by}"
            return "CANCELLED"
        return "FAILED"

    def run_all(self, on_change) -> Dict[str, str]:
        """Run the queue here; {stage: COMPLETED, FAILED or CANCELLED} (`why_cancelled` says why)."""
        outcome: Dict[str, str] = {}  # job id: its final state
        names: Dict[str, str] = {}
        signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
        previous = {signum: signal.signal(signum, self._on_signal) for signum in signals}
        try:
            for stage, job_id, deps in self.queue:
                names[job_id] = stage.name
                if self.stopped_by:
                    self.why_cancelled[stage.name] = f"stopped by {self.stopped_by}"
                    outcome[job_id] = "CANCELLED"
                elif any(outcome.get(d) != "COMPLETED" and local_state(self.exp, d)[0] != "COMPLETED" for d in deps):
                    self.why_cancelled[stage.name] = INPUT_FAILED
                    outcome[job_id] = "CANCELLED"
                else:
                    set_local_state(self.exp, job_id, "RUNNING")
                    on_change(stage.name, "RUNNING")
                    outcome[job_id] = self._run(stage, job_id)
                set_local_state(self.exp, job_id, outcome[job_id])
                on_change(stage.name, outcome[job_id])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return {names[job_id]: state for job_id, state in outcome.items()}


def _states_file(exp: ExperimentDir) -> Path:
    return exp.root / "local_jobs.json"


def _entries(exp: ExperimentDir) -> Dict[str, dict]:
    try:
        return json.loads(_states_file(exp).read_text())
    except FileNotFoundError:
        return {}


def local_state(exp: ExperimentDir, job_id: str) -> Tuple[str, str]:
    entry = _entries(exp).get(job_id)
    if not entry:
        return "UNKNOWN", ""
    end = entry.get("ended") or time.time()
    elapsed = int(end - entry["started"]) if entry.get("started") else 0
    return entry["state"], time.strftime("%H:%M:%S", time.gmtime(elapsed))


def set_local_state(exp: ExperimentDir, job_id: str, state: str) -> None:
    path = _states_file(exp)
    data = json.loads(path.read_text()) if path.exists() else {}
    # The process that runs the job (the launch, in the foreground), for `stop`; its start time tells it from a
    # later process given the same pid.
    entry = data.setdefault(job_id, {"pid": os.getpid(), "pid_start": _process_start(os.getpid())})
    entry["state"] = state
    if state == "RUNNING":
        entry["started"] = time.time()
    elif state in ("COMPLETED", "FAILED", "CANCELLED"):
        entry["ended"] = time.time()
    write_json(path, data)


def _process_start(pid: int) -> Optional[str]:
    """The process' start time (clock ticks since boot, /proc/<pid>/stat), or None without /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended: only its parent has not read its code


def _is_running(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: not ours, unless it is the very process (start time below)
        pass
    now = _process_start(pid)
    if now is None:  # a zombie (it has ended), or no /proc to tell: then the pid alone says
        return not Path("/proc").is_dir()
    return started is None or now == started


def stop(exp: ExperimentDir, job_ids: Sequence[str]) -> Tuple[List[str], Optional[int]]:
    """Stop the local run of these jobs (pending or running). The launch that runs them, in the foreground of
    another shell, gets SIGTERM: it stops its running stage (which stops its tools) and marks it and every
    stage after it CANCELLED; this waits for that. Jobs whose launch is gone (killed) were left PENDING or
    RUNNING: they are marked CANCELLED here. Returns (the jobs marked here, the pid of a launch that has not
    stopped them within CANCEL_WAIT_S, else None)."""
    entries = _entries(exp)
    runners = {(entries[j]["pid"], entries[j].get("pid_start")) for j in job_ids if j in entries}
    for pid, started in runners:
        if _is_running(pid, started):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CANCEL_WAIT_S
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        entries = _entries(exp)
        pending = {j for j in pending if entries.get(j, {}).get("state") in LIVE_STATES
                   and _is_running(entries[j]["pid"], entries[j].get("pid_start"))}
        if pending:
            time.sleep(0.1)
    entries = _entries(exp)
    marked, waiting = [], None
    for job_id in job_ids:
        entry = entries.get(job_id, {})
        if entry.get("state") in LIVE_STATES:
            if _is_running(entry["pid"], entry.get("pid_start")):
                waiting = entry["pid"]
            else:
                set_local_state(exp, job_id, "CANCELLED")
                marked.append(job_id)
    return marked, waiting
