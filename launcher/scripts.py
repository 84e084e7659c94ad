"""Batch scripts and pyxis flags of stage jobs.

The same functions feed the scripts a dry run writes and the parameters dispatch gives submitit, so a
previewed script shows what is submitted.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import jinja2
from omegaconf import DictConfig

from jobs.services import PORT_SPREAD, SANDBOX_EXIT_ENV, SANDBOX_PORT_ENV
from launcher.plan import ACCOUNTING, Plan, Stage
from launcher.validation import FP8_MIN_CC, REDRAFTER_MIN_CC, compute_capability

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("launcher", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["shell_quote"] = lambda v: shlex.quote(str(v))


class ExperimentDir:
    """Where an experiment keeps its scripts, stage specs, logs, code snapshot and state."""

    def __init__(self, storage_root: str, experiment: str):
        self.root = Path(storage_root) / "experiments" / experiment

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    def script(self, stage: str) -> Path:
        return self.root / "scripts" / f"{stage}.sbatch"

    def spec(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage}.log"


ACCOUNTING_FIELDS = "JobIDRaw,JobName,State,ElapsedRaw,AllocTRES,Start,End"


def format_time_limit(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def job_name(experiment: str, stage: Stage) -> str:
    return f"launcher:{experiment}:{stage.name}"


def partition(stage: Stage) -> Optional[str]:
    c = stage.cfg.cluster
    return (c.cpu_partition or c.partition) if stage.resources.gpus_per_node == 0 else c.partition


def stage_env(plan: Plan, stage: Stage, code_dir: Path) -> Dict[str, str]:
    """Non-secret environment of a stage job (W&B grouping, caches on shared storage): the same for every
    stage of a kind, so that similar stages can share one array job (the job names its own W&B run)."""
    cfg = stage.cfg
    env = {
        "PYTHONPATH": str(code_dir),
        "HF_HOME": os.path.join(plan.storage_root, "hf_home"),
        "WANDB_PROJECT": cfg.launcher.wandb_project,
        "WANDB_RUN_GROUP": plan.experiment,
        "WANDB_JOB_TYPE": stage.kind,
        "WANDB_DIR": os.path.join(plan.storage_root, "experiments", plan.experiment, "wandb"),
    }
    if not cfg.cluster.compute_has_internet:
        env["WANDB_MODE"] = "offline"
        env["HF_HUB_OFFLINE"] = "0" if stage.kind.startswith("download") else "1"
    return env


def container_image_flag(image: str) -> str:
    """pyxis reads `REGISTRY#IMAGE`; a bare name ending in .sqsh would be read as a registry image."""
    return f"--container-image={image}"


def pyxis_flags(cfg: DictConfig, plan: Plan, container_key: str, code_dir: Path) -> List[str]:
    c = cfg.cluster
    if c.container_runtime == "none":
        return []
    mounts = [f"{plan.storage_root}:{plan.storage_root}", *c.mounts]
    flags = [
        container_image_flag(c.containers[container_key]),
        f"--container-mounts={','.join(mounts)}",
        f"--container-workdir={code_dir}",
        "--no-container-mount-home",
    ]
    if c.env_vars:
        flags.append(f"--container-env={','.join(c.env_vars)}")
    return flags


def sandbox_pyxis_flags(cfg: DictConfig) -> List[str]:
    if cfg.cluster.container_runtime == "none":
        return []
    return [container_image_flag(cfg.cluster.containers["sandbox"]), "--container-workdir=/tmp",
            "--no-container-mount-home"]


def sandbox_argv(stage: Stage) -> List[str]:
    """The sandbox runs model-written code: it gets none of the secrets the job environment carries."""
    unset = [arg for name in stage.cfg.cluster.env_vars for arg in ("-u", name)]
    return ["env", *unset, *stage.commands["sandbox"]]


def job_argv(cfg: DictConfig, spec_path: Path) -> List[str]:
    """What runs inside the stage's container."""
    return [cfg.cluster.python, "-u", "-m", "jobs.run_stage", str(spec_path)]


def stage_spec(plan: Plan, stage: Stage) -> dict:
    """Everything the job needs, written beside the script; secrets appear by name only."""
    cfg = stage.cfg
    return {
        "experiment": plan.experiment,
        "name": stage.name,
        "kind": stage.kind,
        "fingerprint": stage.fingerprint,
        "artifact": stage.artifact,
        "staging_dir": stage.staging_dir,
        "commands": stage.commands,
        "config": stage.config_subset,
        "inputs": {d: plan.stages[d].artifact for d in stage.deps},
        "resources": asdict(stage.resources),
        "secret_env_vars": list(cfg.cluster.env_vars),
        "drafter": {"min_top1": cfg.drafter.min_top1, "on_low_quality": cfg.drafter.on_low_quality,
                    "predict_n_tokens": cfg.drafter.predict_n_tokens} if stage.kind == "train_drafter" else None,
        "benchmark": benchmark_settings(cfg) if stage.kind == "benchmark" else None,
        "gpu_check": gpu_requirement(plan, stage),
    }


FP8_KINDS = ("quantize", "build_engine", "build_drafter_engine", "benchmark")
DRAFTER_KINDS = ("train_drafter", "convert_drafter", "build_drafter_engine", "benchmark")


def gpu_requirement(plan: Plan, stage: Stage) -> Optional[dict]:
    """What the job checks of its GPUs before running its tools (jobs.gpu_check), from the config's promises."""
    if not stage.resources.gpus_per_node:
        return None
    cfg, kind = stage.cfg, stage.kind
    needs = [(0.0, "")]
    q = cfg.quantization
    if kind in FP8_KINDS and "fp8" in (q.qformat, q.kv_cache_dtype):
        key = "quantization.qformat" if q.qformat == "fp8" else "quantization.kv_cache_dtype"
        needs.append((FP8_MIN_CC, f"{key}=fp8"))
    if kind in DRAFTER_KINDS and cfg.drafter.enabled:
        needs.append((REDRAFTER_MIN_CC, f"drafter={cfg.drafter.name}"))
    minimum, why = max(needs)
    engine = stage.inputs[0].artifact if kind == "benchmark" else None
    return {"count": stage.resources.gpus_per_node, "min_compute_capability": minimum or None, "why": why,
            "gpu_type": cfg.cluster.gpu_type, "expected_compute_capability": compute_capability(cfg),
            "engine_manifest": os.path.join(engine, "manifest.json") if engine else None}


def benchmark_settings(cfg: DictConfig) -> dict:
    s = cfg.serving
    return {
        "server_url": f"http://{s.host}:{s.port}",
        "sandbox_url": f"http://{s.sandbox.host}:{s.sandbox.port}",
        "health_timeout_s": s.health_timeout_s,
        # On Slurm the batch script starts the sandbox as its own step (own container); locally the job does.
        "start_sandbox": cfg.cluster.executor == "local",
    }


def accounting_argv(job_ids: Sequence[str]) -> List[str]:
    return ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), f"--format={ACCOUNTING_FIELDS}"]


def accounting_line(plan: Plan, job_ids: Sequence[str]) -> str:
    """The report job records its experiment's accounting on the host: containers cannot see Slurm.
    Accounting lags the controller by a few seconds, so it waits (up to a minute) for no job to be live."""
    path = shlex.quote(os.path.join(plan.storage_root, "experiments", plan.experiment, ACCOUNTING))
    return (f"for attempt in $(seq 30); do {shlex.join(accounting_argv(job_ids))} > {path} 2>/dev/null || true; "
            f"grep -qE '[|](PENDING|RUNNING|COMPLETING|REQUEUED)[|]' {path} || break; sleep 2; done")


def setup_lines(plan: Plan, stage: Stage, code_dir: Path, accounting_ids: Sequence[str] = ()) -> List[str]:
    """Batch-script lines that run on the node before the stage's srun (submitit's `setup`)."""
    cfg = stage.cfg
    lines = ["set -euo pipefail"]
    if accounting_ids:
        lines.append(accounting_line(plan, accounting_ids))
    for name, value in stage_env(plan, stage, code_dir).items():
        # Tests and sites may prepend their own paths; the code snapshot comes first.
        suffix = '${PYTHONPATH:+:$PYTHONPATH}' if name == "PYTHONPATH" else ""
        lines.append(f"export {name}={shlex.quote(value)}{suffix}")
    if cfg.cluster.env_vars:
        lines.append(f"# passed by name only, values come from the submitting shell: {', '.join(cfg.cluster.env_vars)}")
    if "sandbox" in stage.commands and cfg.cluster.executor == "slurm":
        argv = sandbox_argv(stage)
        assert argv[-2] == "--port", argv
        host = cfg.serving.sandbox.host
        lines.append(f"# the code sandbox's port: the first free one from {argv[-1]} + SLURM_JOB_ID % {PORT_SPREAD},")
        lines.append(f"# as the job chooses its own (it reads this one from {SANDBOX_PORT_ENV})")
        lines.append(f"sandbox_port=$(({argv[-1]} + SLURM_JOB_ID % {PORT_SPREAD}))")
        lines.append(f"while (exec 3<>/dev/tcp/{host}/$sandbox_port) 2>/dev/null; do "
                     f"sandbox_port=$((sandbox_port + 1)); done")
        lines.append(f"export {SANDBOX_PORT_ENV}=$sandbox_port")
        exit_file = shlex.quote(str(ExperimentDir(plan.storage_root, plan.experiment).root / "logs" / "sandbox-exit"))
        lines.append(f"export {SANDBOX_EXIT_ENV}={exit_file}.$SLURM_JOB_ID")
        lines.append(f'rm -f "${SANDBOX_EXIT_ENV}"  # a requeued job starts afresh')
        lines.append("# the code sandbox runs beside the stage, in its own container, without the storage or the")
        lines.append("# secrets; Slurm ends it with the job. Its exit code tells the job it is gone.")
        srun = ["srun", "--overlap", "--ntasks=1", *sandbox_pyxis_flags(cfg), *argv[:-1]]
        lines.append(f'(set +e; {shlex.join(srun)} "$sandbox_port"; echo $? > "${SANDBOX_EXIT_ENV}") &')
    return lines


def render_script(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                  accounting_ids: Sequence[str] = ()) -> str:
    cfg = stage.cfg
    inner = job_argv(cfg, exp.spec(stage.name))
    flags = pyxis_flags(cfg, plan, stage.containers[0], code_dir)
    launch = ["srun", *flags, inner] if cfg.cluster.executor == "slurm" else [inner]
    return TEMPLATES.get_template("stage.sbatch.j2").render(
        stage=stage, experiment=plan.experiment, cluster=cfg.cluster, partition=partition(stage),
        job_name=job_name(plan.experiment, stage), time_limit=format_time_limit(stage.resources.time_min),
        log_file=str(exp.log(stage.name)), dependency=dependency,
        setup=setup_lines(plan, stage, code_dir, accounting_ids),
        launch=launch,
    )


def write_stage_files(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                      accounting_ids: Sequence[str] = ()) -> Path:
    """Write the stage's spec and batch script; return the script's path."""
    for path in (exp.spec(stage.name), exp.script(stage.name), exp.log(stage.name)):
        path.parent.mkdir(parents=True, exist_ok=True)
    exp.spec(stage.name).write_text(json.dumps(stage_spec(plan, stage), indent=2))
    script = exp.script(stage.name)
    script.write_text(render_script(plan, stage, exp, dependency, code_dir, accounting_ids))
    return script
