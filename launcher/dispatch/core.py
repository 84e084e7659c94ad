"""Submit a plan: skip complete artifacts, depend on jobs already producing one, submit the rest.

The decision runs under a lock on the storage, so two launches started together never both submit the
same artifact. If a submission fails midway, what this launch submitted is cancelled: no half-submitted
pipeline is left behind.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List

from rich.console import Console
from rich.table import Table

from launcher.dispatch import local, slurm
from launcher.dispatch.storage import (claim_path, latest_pointer, read_claim, snapshot_code, storage_lock,
                                       write_claim, write_json)
from launcher.plan import Plan
from launcher.preview import is_complete
from launcher.scripts import ExperimentDir, write_stage_files


def _claim_is_live(claim: dict | None, executor: str) -> bool:
    if not claim or executor != "slurm" or str(claim["job_id"]).startswith("local-"):
        return False
    state, _ = slurm.job_states([claim["job_id"]]).get(claim["job_id"], ("UNKNOWN", ""))
    return state in slurm.LIVE_STATES


def submit(plan: Plan, console: Console) -> Dict[str, dict]:
    first = next(iter(plan.stages.values())).cfg
    executor = first.cluster.executor
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    started = time.perf_counter()
    with storage_lock(plan.storage_root):
        code_dir = snapshot_code(plan.storage_root)
        backend = (slurm.SlurmBackend if executor == "slurm" else local.LocalBackend)(plan, exp, code_dir)
        for stage in plan.stages.values():
            for path, content in stage.files.items():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Path(path).write_text(content)
        records: Dict[str, dict] = {}
        submitted: List[str] = []
        try:
            for name, stage in plan.stages.items():
                record = {"kind": stage.kind, "fingerprint": stage.fingerprint, "artifact": stage.artifact}
                claim = read_claim(stage)
                if is_complete(stage.artifact):
                    record.update(action="complete", job_id=claim and claim["job_id"], log=claim and claim["log"])
                elif _claim_is_live(claim, executor):
                    record.update(action=f"reused from {claim['experiment']}", job_id=claim["job_id"], log=claim["log"])
                else:
                    deps = [records[d]["job_id"] for d in stage.deps if records[d]["action"] != "complete"]
                    # The report is submitted last: it records the accounting of every job of the experiment.
                    accounting = [str(r["job_id"]) for r in records.values() if r.get("job_id")] \
                        if stage.kind == "report" else []
                    write_stage_files(plan, stage, exp, stage.dependency(deps), code_dir, accounting)
                    job_id, log = backend.submit(stage, deps, accounting)
                    submitted.append(job_id)
                    write_claim(stage, job_id, plan.experiment, log)
                    record.update(action="submitted", job_id=job_id, log=log)
                records[name] = record
        except Exception:
            if executor == "slurm":
                slurm.cancel(submitted)
            for name, record in records.items():
                if record["action"] == "submitted":
                    claim_path(plan.stages[name]).unlink(missing_ok=True)
            console.print(f"[red]submission failed; cancelled the {len(submitted)} job(s) this launch submitted[/red]")
            raise
        write_json(exp.state, {"experiment": plan.experiment, "executor": executor, "storage_root": plan.storage_root,
                               "code": str(code_dir), "submitted_at": time.time(), "stages": records})
        latest_pointer(plan.storage_root).write_text(plan.experiment)
    elapsed = time.perf_counter() - started
    console.print(_submission_table(plan, records))
    console.print(f"{len(submitted)} job(s) submitted in {elapsed:.2f} s; "
                  f"follow with: python -m launcher status {plan.experiment} cluster.storage_root={plan.storage_root}")
    if executor == "local" and submitted:
        backend.run_all(lambda name, state: console.print(f"{name}: {state}"))
    return records


def _submission_table(plan: Plan, records: Dict[str, dict]) -> Table:
    table = Table(title=f"{plan.experiment}", title_justify="left")
    for column in ("stage", "job", "action", "artifact"):
        table.add_column(column, overflow="fold")
    for name, record in records.items():
        table.add_row(name, str(record["job_id"] or "-"), record["action"],
                      os.path.relpath(record["artifact"], plan.storage_root))
    return table
