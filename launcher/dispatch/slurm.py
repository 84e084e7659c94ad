"""Slurm through submitit: one job per stage (or an array of similar stages), `afterok` dependencies, pyxis
flags, requeue on preemption. sbatch receives the batch script the launcher wrote (submitit_script).

Job states come from Slurm's accounting (sacct) when it answers, else from squeue/scontrol, which know
only jobs the controller still holds; status falls back to artifacts' completion markers beyond that.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Tuple

from launcher.dispatch import slurm_states
from launcher.dispatch.storage import ExperimentDir

if TYPE_CHECKING:  # `status` asks Slurm for job states, and must not pay for the plan's imports (Hydra, jinja2)
    from launcher.plan import Plan, Stage

LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
               "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


def submitit_python(stage: Stage) -> str:
    """submitit runs `<this> -u -m submitit.core._submit <folder>` (a shell command): cluster.python, checked
    first to be in the image."""
    from launcher.scripts import python_command, stage_image

    return shlex.join(python_command(stage.cfg, stage_image(stage)))


class SlurmBackend:
    def __init__(self, plan: Plan, exp: ExperimentDir, code_dir: Path):
        self.plan, self.exp, self.code_dir = plan, exp, code_dir

    def batch_key(self, stage: Stage) -> str:
        """Stages with equal keys have the same batch script but for its comments, which name the stage, and its
        dependency, which launcher.dispatch.core.job_groups adds: one array can carry them. Everything sbatch and
        the node see counts (image, partition, time limit, the sandbox it starts), so points of a sweep over a
        cluster setting never share an array. The report (own accounting) goes alone."""
        from launcher.scripts import batch_job

        if stage.kind == "report":
            return stage.name
        job = batch_job(self.plan, [stage], self.exp, None, self.code_dir)
        job["sbatch"] = [option for option in job["sbatch"] if option[0] != "job-name"]
        del job["specs"]  # each stage's own; the array's script lists its elements'
        return json.dumps([stage.kind, job], sort_keys=True, default=str)

    def submit(self, group, script: str) -> List[Tuple[str, str]]:
        """One sbatch call of `script` (render_script's, as write_stage_files wrote it): a job for one stage, or
        one array job (elements `<array id>_<i>`) for a launcher.dispatch.core.JobGroup of several similar
        stages. Returns (job id, log) per stage."""
        from jobs.run_stage import StageJob

        jobs = self.executor(group.stages, script).submit_array(
            [StageJob(str(self.exp.spec(stage.name))) for stage in group.stages])
        return [(str(job.job_id), str(job.paths.stdout)) for job in jobs]

    def executor(self, stages: List[Stage], script: str):
        """The submitit executor that submits `script`, the batch script of the job of `stages`."""
        from launcher.dispatch.submitit_script import ScriptExecutor
        from launcher.scripts import submitit_argv, submitit_folder

        first = stages[0]
        executor = ScriptExecutor(submitit_folder(self.exp), python=submitit_python(first), script=script,
                                  command=shlex.join(submitit_argv(first, self.exp)), array_size=len(stages))
        # What submitit counts itself: the time limit (its requeues on timeout) and the job's tasks.
        executor.update_parameters(time=first.resources.time_min, nodes=first.resources.nodes, ntasks_per_node=1)
        return executor


def _run(argv: List[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return result.stdout if result.returncode == 0 else None


def accounting_rows(job_ids: List[str]) -> str | None:
    """sacct's rows for these jobs as the report reads them, or None when accounting does not answer."""
    from launcher.scripts import accounting_argv

    return _run(accounting_argv(job_ids)) if job_ids else None


def job_states(job_ids: List[str]) -> Dict[str, Tuple[str, str]]:
    """{job id: (state, elapsed)} from sacct, else squeue/scontrol; jobs Slurm has forgotten are absent."""
    if not job_ids:
        return {}
    states = slurm_states.parse_sacct(_run(slurm_states.sacct_argv(job_ids)) or "")
    missing = [j for j in job_ids if j not in states]
    if missing:
        states.update(slurm_states.parse_squeue(_run(slurm_states.squeue_argv(missing)) or ""))
    for job_id in [j for j in job_ids if j not in states]:
        states.update(slurm_states.parse_scontrol(_run(slurm_states.scontrol_argv(job_id)) or ""))
    return {j: states[j] for j in job_ids if j in states}


def job_nodes(job_ids: List[str]) -> Dict[str, Tuple[int, str]]:
    """{job id: (nodes, NodeList)} of these jobs while squeue knows them (%D, %N); absent where it does not."""
    text = _run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%D|%N"]) if job_ids else None
    nodes = {}
    for line in (text or "").splitlines():
        job_id, count, nodelist = (line.split("|") + ["", ""])[:3]
        if count.isdigit():
            nodes[job_id] = (int(count), nodelist)
    return nodes


def cancel(job_ids: List[str]) -> str:
    """scancel these jobs; what it said on stderr (a job that ended in between: "already completing"), if anything."""
    if not job_ids:
        return ""
    result = subprocess.run(["scancel", *job_ids], check=False, capture_output=True, text=True, timeout=60)
    return " ".join(result.stderr.split())
