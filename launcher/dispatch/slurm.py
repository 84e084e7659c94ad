"""Slurm through submitit: one job per stage, `afterok` dependencies, pyxis flags, requeue on preemption.

Job states come from Slurm's accounting (sacct) when it answers, else from squeue/scontrol, which know
only jobs the controller still holds; status falls back to artifacts' completion markers beyond that.
"""
from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from launcher.dispatch import slurm_states
from launcher.plan import Plan, Stage
from launcher.scripts import (ExperimentDir, accounting_argv, job_name, partition, pyxis_flags, python_command,
                              setup_lines, stage_image)
from launcher.validation import forbidden_character, signal_lead_s

SUBMITIT_ENV = ("SUBMITIT_EXECUTOR",)
LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
               "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


def submitit_parameters(plan: Plan, stage: Stage, dependency_ids: List[str], code_dir: Path,
                        accounting_ids: Sequence[str] = ()) -> dict:
    cfg, r = stage.cfg, stage.resources
    extra = {"requeue": True}
    if dependency_ids:
        extra.update({"dependency": stage.dependency(dependency_ids), "kill-on-invalid-dep": "yes"})
    if cfg.cluster.account:
        extra["account"] = cfg.cluster.account
    params = dict(
        # An empty partition or qos is none, as in the script a dry run writes (no `--partition=`).
        job_name=job_name(plan.experiment, stage), partition=partition(stage) or None, qos=cfg.cluster.qos or None,
        nodes=r.nodes, ntasks_per_node=1, cpus_per_task=r.cpus_per_task, mem=f"{r.mem_gb}G", time=r.time_min,
        signal_delay_s=signal_lead_s(r.time_min), stderr_to_stdout=True,
        setup=setup_lines(plan, stage, code_dir, accounting_ids),
        # submitit's script exports SUBMITIT_EXECUTOR, which tells the job it runs under Slurm (requeue, checkpoint).
        srun_args=pyxis_flags(plan, stage, code_dir, extra_env=SUBMITIT_ENV), additional_parameters=extra,
    )
    if r.gpus_per_node:
        params["gpus_per_node"] = r.gpus_per_node
    params = {k: v for k, v in params.items() if v is not None}
    for key, value in [*params.items(), *extra.items()]:
        if key not in SUBMITIT_SHELL_PARAMETERS:
            _check_sbatch_value(key, value)
    return params


# What submitit writes into shell lines, quoted for the shell; every other parameter becomes an #SBATCH line.
SUBMITIT_SHELL_PARAMETERS = ("setup", "srun_args", "additional_parameters", "signal_delay_s", "stderr_to_stdout")


def _check_sbatch_value(key: str, value) -> None:
    """submitit writes each #SBATCH value quoted for a shell (shlex.quote, submitit/slurm/slurm.py
    _as_sbatch_flag), which sbatch reads back exactly (src/sbatch/opt.c get_argument: quotes group, `#` inside
    them stays) but for a backslash, an escape to sbatch even inside quotes ('a\\b' is read `ab`, a trailing one
    is a fatal "Unmatched `'`"), and a line break, which ends the line. Validation refuses both in every config
    string: one here is a launcher bug, stopped before sbatch reads it otherwise."""
    text = str(value)
    if "\\" in text or forbidden_character(text):
        raise ValueError(f"submitit cannot write {key}={text!r} on an #SBATCH line that sbatch reads back")


def submitit_python(stage: Stage) -> str:
    """submitit runs `<this> -u -m submitit.core._submit <folder>` (a shell command): cluster.python, checked
    first to be in the image."""
    return shlex.join(python_command(stage.cfg, stage_image(stage)))


class SlurmBackend:
    def __init__(self, plan: Plan, exp: ExperimentDir, code_dir: Path):
        self.plan, self.exp, self.code_dir = plan, exp, code_dir

    def batch_key(self, stage: Stage, dependency_ids: List[str]) -> str:
        """Stages with equal keys have the same batch script but for the job they run: one array can carry
        them. Everything sbatch sees counts (image, partition, time limit, the sandbox it starts), so points
        of a sweep over a cluster setting never share an array. The report (own accounting) goes alone."""
        if stage.kind == "report":
            return stage.name
        params = submitit_parameters(self.plan, stage, dependency_ids, self.code_dir)
        params.pop("job_name")
        return json.dumps([stage.kind, params], sort_keys=True, default=str)

    def submit(self, stages: List[Stage], dependency_ids: List[str],
               accounting_ids: Sequence[str] = ()) -> List[Tuple[str, str]]:
        """One sbatch call: a job for one stage, or one array job (elements `<array id>_<i>`) for several
        similar stages (one kind, same resources, same dependencies). Returns (job id, log) per stage."""
        import submitit

        from jobs.run_stage import StageJob

        first = stages[0]
        _check_sbatch_value("folder", self.exp.submitit)  # the --output file names
        executor = submitit.SlurmExecutor(folder=self.exp.submitit / "%j", python=submitit_python(first))
        params = submitit_parameters(self.plan, first, dependency_ids, self.code_dir, accounting_ids)
        if len(stages) > 1:
            params.update(job_name=job_name(self.plan.experiment, first).rsplit("[", 1)[0]
                          + f"[array of {len(stages)}]", array_parallelism=len(stages))
        executor.update_parameters(**params)
        with executor.batch() if len(stages) > 1 else contextlib.nullcontext():
            jobs = [executor.submit(StageJob(str(self.exp.spec(stage.name)))) for stage in stages]
        return [(str(job.job_id), str(job.paths.stdout)) for job in jobs]

def _run(argv: List[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return result.stdout if result.returncode == 0 else None


def accounting_rows(job_ids: List[str]) -> str | None:
    """sacct's rows for these jobs as the report reads them, or None when accounting does not answer."""
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


def cancel(job_ids: List[str]) -> str:
    """scancel these jobs; what it said on stderr (a job that ended in between: "already completing"), if anything."""
    if not job_ids:
        return ""
    result = subprocess.run(["scancel", *job_ids], check=False, capture_output=True, text=True, timeout=60)
    return " ".join(result.stderr.split())
