"""This machine, no Slurm: the plan's stages run one after another in dependency order.

The same job code, specs, artifacts and state as on Slurm; a stage whose input failed is cancelled.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from launcher.dispatch.storage import write_json
from launcher.plan import Plan, Stage
from launcher.scripts import ATTEMPT_START, ExperimentDir, job_argv, stage_env


class LocalBackend:
    def __init__(self, plan: Plan, exp: ExperimentDir, code_dir: Path):
        self.plan, self.exp, self.code_dir = plan, exp, code_dir
        self.queue: List[Tuple[Stage, str, List[str]]] = []

    def batch_key(self, stage: Stage, dependency_ids: List[str]) -> str:
        """One stage per call: they run here one after another anyway."""
        return stage.name

    def submit(self, stages: List[Stage], dependency_ids: List[str],
               accounting_ids: Sequence[str] = ()) -> List[Tuple[str, str]]:
        """Queue the stages; this machine keeps no accounting, so `accounting_ids` are not used."""
        submitted = []
        for stage in stages:
            job_id = f"local-{os.getpid()}-{len(self.queue) + 1}"
            self.queue.append((stage, job_id, [] if stage.after_any else dependency_ids))
            set_local_state(self.exp, job_id, "PENDING")
            submitted.append((job_id, str(self.exp.log(stage.name))))
        return submitted

    def run_all(self, on_change) -> Dict[str, str]:
        outcome: Dict[str, str] = {}
        for stage, job_id, deps in self.queue:
            if any(outcome.get(d) != "COMPLETED" and local_state(self.exp, d)[0] != "COMPLETED" for d in deps):
                outcome[job_id] = "CANCELLED"
            else:
                set_local_state(self.exp, job_id, "RUNNING")
                on_change(stage.name, "RUNNING")
                env = {**os.environ, **stage_env(self.plan, stage, self.code_dir)}
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.code_dir), os.environ.get("PYTHONPATH")]))
                log = self.exp.log(stage.name)
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "ab") as out:
                    # As a batch script does: `status` reads a failure's cause from the last attempt on.
                    out.write(f"{ATTEMPT_START} {job_id} on {socket.gethostname()}\n".encode())
                    out.flush()
                    code = subprocess.run(job_argv(stage.cfg, self.exp.spec(stage.name)), stdout=out,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.code_dir).returncode
                outcome[job_id] = "COMPLETED" if code == 0 else "FAILED"
            set_local_state(self.exp, job_id, outcome[job_id])
            on_change(stage.name, outcome[job_id])
        return outcome


def _states_file(exp: ExperimentDir) -> Path:
    return exp.root / "local_jobs.json"


def local_state(exp: ExperimentDir, job_id: str) -> Tuple[str, str]:
    try:
        entry = json.loads(_states_file(exp).read_text()).get(job_id)
    except FileNotFoundError:
        entry = None
    if not entry:
        return "UNKNOWN", ""
    end = entry.get("ended") or time.time()
    elapsed = int(end - entry["started"]) if entry.get("started") else 0
    return entry["state"], time.strftime("%H:%M:%S", time.gmtime(elapsed))


def set_local_state(exp: ExperimentDir, job_id: str, state: str) -> None:
    path = _states_file(exp)
    data = json.loads(path.read_text()) if path.exists() else {}
    entry = data.setdefault(job_id, {"pid": os.getpid()})
    entry["state"] = state
    if state == "RUNNING":
        entry["started"] = time.time()
    elif state in ("COMPLETED", "FAILED", "CANCELLED"):
        entry["ended"] = time.time()
    write_json(path, data)
