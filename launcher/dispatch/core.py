"""Submit a plan: skip complete artifacts, depend on jobs already producing one, submit the rest.

The decision runs under a lock on the storage, so two launches started together never both submit the
same artifact. An artifact is complete only when it is whole (jobs.artifacts); a damaged one is moved aside,
never deleted, and rebuilt. If a submission fails midway, what this launch submitted is cancelled: no
half-submitted pipeline is left behind.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from launcher import exit_codes
from launcher.contract import ExperimentState, StageRecord
from launcher.dispatch import local, slurm
from launcher.dispatch.storage import (claim_path, damaged_artifacts, latest_pointer, launched_records, move_aside,
                                       read_claim, snapshot_code, storage_lock, write_claim, write_json)
from launcher.dispatch.storage import ExperimentDir
from launcher.plan import Plan, Stage
from launcher.preview import exit_invalid, is_complete, print_requests
from launcher.scripts import remove_stale_stage_files, render_script, write_stage_files
from launcher.validation import InvalidConfig, published_drafter_gate

PARALLEL_SUBMISSIONS = 8


def _live_claims(plan: Plan, claims: Dict[str, dict | None], executor: str) -> set:
    """Stages another launch's pending or running job is already producing (one query for all)."""
    if executor != "slurm":
        return set()
    pending = {n: str(c["job_id"]) for n, c in claims.items() if c and not str(c["job_id"]).startswith("local-")}
    states = slurm.job_states(sorted(set(pending.values())))
    return {n for n, job in pending.items() if states.get(job, ("UNKNOWN", ""))[0] in slurm.LIVE_STATES}


def waves(plan: Plan, names: List[str]) -> List[List[str]]:
    """The stages to submit, grouped so that each group only depends on earlier groups' jobs."""
    depth: Dict[str, int] = {}
    for name in names:  # plan order is topological
        depth[name] = 1 + max((depth[d] for d in plan.stages[name].deps if d in depth), default=-1)
    return [[n for n in names if depth[n] == level] for level in range(max(depth.values(), default=-1) + 1)]


def _live_jobs_of_earlier_plan(plan: Plan, exp: ExperimentDir, executor: str) -> Dict[str, str]:
    """{stage: job} of the experiment's last launch whose stage is not in this plan and whose job is still
    pending or running: a job reads its spec when it starts (and again when requeued)."""
    earlier = {n: str(r["job_id"]) for n, r in launched_records(exp.state).items()
               if n not in plan.stages and r.get("job_id")}
    if executor == "slurm":
        states = slurm.job_states(sorted(set(earlier.values())))
        return {n: j for n, j in earlier.items() if states.get(j, ("UNKNOWN", ""))[0] in slurm.LIVE_STATES}
    return {n: j for n, j in earlier.items() if local.local_state(exp, j)[0] in local.LIVE_STATES}


def submit(plan: Plan, console: Console) -> Dict[str, dict]:
    exit_codes.mark_dispatch_started()  # an error from here on is not the config's (launcher.app.run)
    first = next(iter(plan.stages.values())).cfg
    executor = first.cluster.executor
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    print_requests(plan, console)
    started = time.perf_counter()
    with storage_lock(plan.storage_root):
        code_dir = snapshot_code(plan.storage_root)
        backend = (slurm.SlurmBackend if executor == "slurm" else local.LocalBackend)(plan, exp, code_dir)
        _write_plan_files(plan)
        records = _decide(plan, executor, console)
        to_submit = [name for name, record in records.items() if record["action"] == "submitted"]
        _submit_waves(plan, backend, exp, code_dir, records, to_submit, executor, console)
        _drop_earlier_plan(plan, exp, executor, console)
        write_json(exp.state, ExperimentState(
            experiment=plan.experiment, executor=executor, storage_root=plan.storage_root, code=str(code_dir),
            submitted_at=time.time(), stages={name: StageRecord(**record) for name, record in records.items()},
            umask=first.cluster.umask).to_json())
        latest_pointer(plan.storage_root).write_text(plan.experiment)
    elapsed = time.perf_counter() - started
    console.print(_submission_table(plan, records))
    if executor == "local":
        run_here(plan, backend, to_submit, console)
        return records
    console.print(f"{len(to_submit)} job(s) submitted in {elapsed:.2f} s; "
                  f"follow with: python -m launcher status {plan.experiment} cluster.storage_root={plan.storage_root}")
    return records


def _write_plan_files(plan: Plan) -> None:
    """The files stages read from shared storage (problem sets, the report's inputs), each directory made once."""
    made = set()
    for stage in plan.stages.values():
        for path, content in stage.files.items():
            directory = os.path.dirname(path)
            if directory not in made:
                os.makedirs(directory, exist_ok=True)
                made.add(directory)
            Path(path).write_text(content)


def _decide(plan: Plan, executor: str, console: Console) -> Dict[str, dict]:
    """{stage: record}: complete (its artifact is whole), reused (another launch's live job is producing it)
    or to be submitted (job_id None). A damaged artifact is moved aside first and its stage rebuilt; the
    drafter quality gate on a drafter already published fails the launch before anything is submitted."""
    claims = {name: read_claim(stage) for name, stage in plan.stages.items()}
    moved = {}  # stage: where its damaged artifact now is; the stage is then rebuilt like a missing one
    for name, problem in damaged_artifacts(plan).items():
        moved[name] = str(move_aside(plan.stages[name].artifact))
        console.print(f"[yellow]{escape(name)}: artifact {escape(plan.stages[name].artifact)} is damaged: "
                      f"{escape(problem)}; moved aside to {escape(moved[name])} (kept, not deleted); "
                      "rebuilding it[/yellow]", highlight=False, soft_wrap=True)
    complete = {name for name, stage in plan.stages.items() if is_complete(stage.artifact)}
    gate_errors, gate_warnings = published_drafter_gate(plan, complete)
    for warning in gate_warnings:
        console.print(f"[yellow]{escape(warning)}[/yellow]", highlight=False)
    if gate_errors:
        exit_invalid(InvalidConfig(gate_errors), console)
    live = _live_claims(plan, {n: c for n, c in claims.items() if n not in complete}, executor)
    records: Dict[str, dict] = {}
    for name, stage in plan.stages.items():
        record = records[name] = {"kind": stage.kind, "fingerprint": stage.fingerprint, "artifact": stage.artifact}
        claim = claims[name] or {}
        if name in complete:
            record.update(action="complete", job_id=claim.get("job_id"), log=claim.get("log"))
        elif name in live:
            record.update(action=f"reused from {claim['experiment']}", job_id=claim["job_id"], log=claim["log"])
        else:
            record.update(action="submitted", job_id=None, log=None)
        if name in moved:
            record["damaged_moved_to"] = moved[name]
    return records


@dataclass
class JobGroup:
    """Stages that go to Slurm in one sbatch call: one job, or an array whose element i runs stages[i]."""
    stages: List[Stage]
    dependency: Optional[str]  # its --dependency value
    waits_on: List[str]  # the jobs (array elements, whole arrays) it waits on, in the order of its inputs


def dependency_value(kind: str, jobs: List[str], arrays: List[str]) -> Optional[str]:
    """--dependency: `kind` (afterok, afterany) on whole jobs, `aftercorr` on arrays (element i after element i)."""
    parts = [f"{kind}:{':'.join(jobs)}"] if jobs else []
    parts += [f"aftercorr:{':'.join(arrays)}"] if arrays else []
    return ",".join(parts) or None


def job_groups(plan: Plan, backend, wave: List[str], job_ids: Dict[str, str],
               arrays: Dict[str, Tuple[str, int]]) -> List[JobGroup]:
    """A wave's stages as sbatch calls. `job_ids`: the job of each input that is not complete; `arrays`: {stage:
    (its array job, its element)} for the stages this launch submitted as array elements. Stages share one array
    when their scripts are equal but for the comments (backend.batch_key), they wait on the same whole jobs, and
    each waits on the same arrays' element of its own index: one call for a sweep's every point, whose chain of
    per-point stages runs element by element (`aftercorr`). Where the elements cannot line up so, each stage goes
    alone, waiting on its inputs' elements (afterok)."""
    similar: Dict[tuple, List[Tuple[Stage, List[str], set]]] = {}
    for name in wave:
        stage = plan.stages[name]
        inputs = [d for d in stage.deps if d in job_ids]
        waits_on = list(dict.fromkeys(job_ids[d] for d in inputs))
        per_element = [] if stage.after_any else [d for d in inputs if d in arrays]
        whole = list(dict.fromkeys(job_ids[d] for d in inputs if d not in per_element))
        array_ids = list(dict.fromkeys(arrays[d][0] for d in per_element))
        key = (backend.batch_key(stage), stage.dependency_kind, tuple(whole), tuple(array_ids))
        similar.setdefault(key, []).append((stage, waits_on, {arrays[d][1] for d in per_element}))
    groups = []
    for (_, kind, whole, array_ids), members in similar.items():
        if not array_ids:
            groups.append(JobGroup([stage for stage, _, _ in members], dependency_value(kind, list(whole), []),
                                   list(whole)))
            continue
        # Stages waiting on element i, in plan order; the r-th of each element's go into the r-th array (a drafter
        # trained once for 4 points: 4 arrays of conversions, each after the array of trainings element by element).
        by_element: Dict[int, List[Tuple[Stage, List[str]]]] = {}
        alone = []
        for stage, waits_on, elements in members:
            (by_element.setdefault(next(iter(elements)), []) if len(elements) == 1 else alone).append((stage, waits_on))
        for r in range(max((len(same) for same in by_element.values()), default=0)):
            row = {i: same[r] for i, same in by_element.items() if len(same) > r}
            if len(row) > 1 and sorted(row) == list(range(len(row))):
                groups.append(JobGroup([row[i][0] for i in range(len(row))],
                                       dependency_value(kind, list(whole), list(array_ids)), [*whole, *array_ids]))
            else:
                alone += list(row.values())
        groups += [JobGroup([stage], dependency_value(kind, waits_on, []), waits_on) for stage, waits_on in alone]
    return groups


def write_group_files(plan: Plan, group: JobGroup, exp: ExperimentDir, code_dir: Path, accounting: List[str],
                      into: Optional[ExperimentDir] = None) -> str:
    """Each stage's spec and the group's batch script, rendered once and written as each stage's script (an
    array's elements share it); returns the script. `into`: as write_stage_files'."""
    first = group.stages[0]
    script = render_script(plan, first, exp, group.dependency, code_dir, accounting, array=group.stages)
    for stage in group.stages:
        write_stage_files(plan, stage, exp, group.dependency, code_dir, accounting, into=into, array=group.stages,
                          script_text=script)
    return script


def element_of(job_id: str) -> Optional[Tuple[str, int]]:
    """(array job, element) of an array element's job id `<array>_<i>`, else None."""
    array, underscore, index = job_id.partition("_")
    return (array, int(index)) if underscore and index.isdigit() else None


def _submit_waves(plan: Plan, backend, exp: ExperimentDir, code_dir: Path, records: Dict[str, dict],
                  to_submit: List[str], executor: str, console: Console) -> None:
    """Submit `to_submit` wave by wave (a wave depends only on earlier ones), filling in `records`. On any
    failure, Ctrl-C too, what this launch submitted is cancelled and its claims removed: never a
    half-submitted pipeline."""
    arrays: Dict[str, Tuple[str, int]] = {}  # {stage: (array job, element)} of this launch's arrays

    def submit_group(group: JobGroup) -> None:
        # The report is submitted last: it records the accounting of every job of the experiment.
        accounting = [str(r["job_id"]) for r in records.values() if r["job_id"]] \
            if group.stages[0].kind == "report" else []
        script = write_group_files(plan, group, exp, code_dir, accounting)
        for stage, (job_id, log) in zip(group.stages, backend.submit(group, script)):
            records[stage.name].update(job_id=job_id, log=log)
            write_claim(stage, job_id, plan.experiment, log)
            if len(group.stages) > 1:
                arrays[stage.name] = element_of(job_id)

    try:
        # sbatch calls of a wave go out together: hundreds of sweep points submit in seconds.
        with ThreadPoolExecutor(max_workers=PARALLEL_SUBMISSIONS if executor == "slurm" else 1) as pool:
            for wave in waves(plan, to_submit):
                job_ids = {name: str(r["job_id"]) for name, r in records.items()
                           if r["action"] != "complete" and r["job_id"]}
                list(pool.map(submit_group, job_groups(plan, backend, wave, job_ids, arrays)))
    except BaseException:  # Ctrl-C too: never a half-submitted pipeline
        submitted = [str(records[n]["job_id"]) for n in to_submit if records[n]["job_id"]]
        if executor == "slurm":
            slurm.cancel(submitted)
        for name in to_submit:
            claim_path(plan.stages[name]).unlink(missing_ok=True)
        console.print(f"[red]submission failed; cancelled the {len(submitted)} job(s) this launch submitted[/red]")
        raise


def _drop_earlier_plan(plan: Plan, exp: ExperimentDir, executor: str, console: Console) -> None:
    """The experiment's scripts are this plan's: those of stages an earlier plan had (before a change of
    `drafter=`) go, under the lock; a spec whose job may still read it stays, and the user is told."""
    earlier_live = _live_jobs_of_earlier_plan(plan, exp, executor)
    stale = remove_stale_stage_files(plan, exp, keep_specs=list(earlier_live))
    if stale:
        console.print(f"removed the scripts of stages no longer in the plan: {escape(', '.join(stale))}")
    for name, job in earlier_live.items():
        console.print(f"[yellow]{escape(name)} (job {job}), of the plan launched before, is not in this one and "
                      f"has not ended; it is no longer followed: cancel it if it is not wanted "
                      f"({'scancel ' + job if executor == 'slurm' else 'in the shell that runs it'})[/yellow]",
                      highlight=False, soft_wrap=True)


def run_here(plan: Plan, backend: local.LocalBackend, to_run: List[str], console: Console) -> None:
    """cluster=local: the launch runs the stages itself, in the foreground, then says what ran, what failed and
    why (the cause lines of its log, as `status` shows them); exits PIPELINE_FAILED unless all completed."""
    from launcher.status import failure_report  # here: launcher.status imports this package

    if not to_run:
        console.print(f"nothing to run: every stage of {escape(plan.experiment)} is complete")
        return
    where = f"{plan.experiment} cluster.storage_root={plan.storage_root}"
    console.print(f"running {len(to_run)} stage(s) here, one after another; to stop them: Ctrl-C, or from another "
                  f"shell: python -m launcher cancel {escape(where)}", highlight=False, soft_wrap=True)
    started = time.perf_counter()
    outcome = backend.run_all(lambda name, state: console.print(f"{escape(name)}: {state}", highlight=False))
    elapsed = time.perf_counter() - started
    by_state: Dict[str, List[str]] = {}
    for name, state in outcome.items():
        by_state.setdefault(state, []).append(name)
    completed = len(by_state.get("COMPLETED", []))
    if completed == len(outcome):
        console.print(f"{escape(plan.experiment)}: all {completed} stage(s) completed here in {elapsed:.1f} s")
        return
    parts = [f"{completed} of {len(outcome)} stage(s) completed here in {elapsed:.1f} s"]
    if by_state.get("FAILED"):
        parts.append(f"failed: {', '.join(by_state['FAILED'])}")
    reasons: Dict[str, List[str]] = {}
    for name in by_state.get("CANCELLED", []):
        reasons.setdefault(backend.why_cancelled.get(name, "cancelled"), []).append(name)
    parts += [f"cancelled ({why}): {', '.join(names)}" for why, names in reasons.items()]
    console.print(escape(f"{plan.experiment}: " + "; ".join(parts)), highlight=False, soft_wrap=True)
    for name in by_state.get("FAILED", []):
        record_log = str(backend.exp.log(name))
        console.print(failure_report(name, "FAILED", record_log, plan.experiment), highlight=False, soft_wrap=True)
    if by_state.get("FAILED"):
        console.print("the same command runs again only what did not complete")
    raise SystemExit(exit_codes.PIPELINE_FAILED)


def _submission_table(plan: Plan, records: Dict[str, dict]) -> Table:
    table = Table(title=f"{plan.experiment}", title_justify="left")
    for column in ("stage", "job", "action", "artifact"):
        table.add_column(column, overflow="fold")
    for name, record in records.items():
        table.add_row(escape(name), str(record["job_id"] or "-"), record["action"],
                      os.path.relpath(record["artifact"], plan.storage_root))
    return table
