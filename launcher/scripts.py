"""Batch scripts and pyxis flags of stage jobs.

The same functions feed the scripts a dry run writes and the parameters dispatch gives submitit, so a
previewed script shows what is submitted.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import jinja2
from omegaconf import DictConfig

from jobs.drafter_metrics import gate_settings
from jobs.services import PORT_SPREAD, SANDBOX_EXIT_ENV, SANDBOX_PORT_ENV
from launcher import commands
from launcher.plan import ACCOUNTING, Plan, Stage
from launcher.validation import (FP8_MIN_CC, REDRAFTER_MIN_CC, compute_capability, forbidden_character,
                                 signal_lead_s, umask_value)

# sbatch reads the #SBATCH lines itself, not bash (src/sbatch/opt.c, get_argument): it splits a line into words
# at whitespace; '...' and "..." group characters, whitespace and `#` included; a backslash takes the next
# character literally, inside quotes too; an unquoted `#` starts a comment. So a value is written bare when it
# has none of these (nor anything outside plain ASCII), else in double quotes with `\` and `"` escaped.
SBATCH_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./<>\[\]-]+")


def sbatch_quote(value) -> str:
    """`value` as one word of an #SBATCH line, as sbatch reads it."""
    text = str(value)
    return text if SBATCH_BARE.fullmatch(text) else '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'


def sbatch_file_name(path) -> str:
    """A file name for #SBATCH --output, which Slurm expands (%j, %x, ...; `%%` is a `%`): taken literally."""
    return str(path).replace("%", "%%")


def _within_its_line(value):
    """Every {{ value }} of the template stays on its line: validation refuses line breaks and other control
    characters in every config string; should one come from elsewhere, no script is written rather than a
    script in which the rest of that value is a command."""
    bad = forbidden_character(str(value))
    if bad:
        raise ValueError(f"a value of a batch script holds {bad}, which would end its line: {str(value)!r}")
    return value


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("launcher", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    finalize=_within_its_line,
)
TEMPLATES.filters["shell_quote"] = lambda v: shlex.quote(str(v))
TEMPLATES.filters["shell_join"] = lambda argv: shlex.join(str(a) for a in argv)
TEMPLATES.filters["sbatch_quote"] = sbatch_quote
TEMPLATES.filters["sbatch_file_name"] = sbatch_file_name


class ExperimentDir:
    """Where an experiment keeps its scripts, stage specs, logs, code snapshot and state."""

    def __init__(self, storage_root: str, experiment: str, root: Optional[Path] = None):
        """`root`: elsewhere than under the storage root (a dry run's local preview)."""
        self.root = Path(root) if root else Path(storage_root) / "experiments" / experiment

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    def script(self, stage: str) -> Path:
        return self.root / "scripts" / f"{stage_file_name(stage)}.sbatch"

    def spec(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage_file_name(stage)}.json"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage_file_name(stage)}.log"


# A stage's name carries config values (`calibration_data[calib_dataset=nvidia/x]`): its files' names keep
# what is safe in one path component and in Slurm's --output (where `%` is a pattern), and spell the rest as
# ~<hex>, so that no value makes a subdirectory, leaves the experiment's directory or collides with another.
STAGE_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,:@\[\]-]+")
STAGE_FILE_MAX = 200  # NAME_MAX is 255 bytes, with room for a suffix


def stage_file_name(stage: str) -> str:
    name = STAGE_FILE_UNSAFE.sub(lambda m: "".join(f"~{b:02x}" for b in m[0].encode()), stage)
    if len(name) > STAGE_FILE_MAX:
        name = f"{name[:STAGE_FILE_MAX - 17]}~{hashlib.sha256(stage.encode()).hexdigest()[:16]}"
    return name


# Lines the batch script writes into the job's log (launcher.status reads them).
ATTEMPT_START = "launcher: starting job"
SANDBOX_STOP = "launcher: the stage step has ended; stopping its code sandbox step"
SANDBOX_ENDED = "launcher: the code sandbox step ended by itself"

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
    env.update(cfg.cluster.env)  # the site's plain variables; validation keeps them off the names above
    return env


def starts_sandbox_step(stage: Stage) -> bool:
    """On Slurm the batch script starts the benchmark's code sandbox as a step of its own (locally the job does)."""
    return "sandbox" in stage.commands and stage.cfg.cluster.executor == "slurm"


def container_env_names(plan: Plan, stage: Stage, extra: Sequence[str] = ()) -> List[str]:
    """Every variable the job relies on, for --container-env: pyxis gives the image's own ENV precedence over
    any variable of the batch script not named there (an image setting PYTHONPATH would run its own code,
    not the launch's snapshot). The secrets, what setup_lines exports, and `extra` (what submitit exports)."""
    names = [*stage.cfg.cluster.env_vars, *stage_env(plan, stage, Path("/")),
             *((SANDBOX_PORT_ENV, SANDBOX_EXIT_ENV) if starts_sandbox_step(stage) else ()), *extra]
    return list(dict.fromkeys(names))


def container_image_flag(image: str) -> str:
    """pyxis reads `REGISTRY#IMAGE`; a bare name ending in .sqsh would be read as a registry image."""
    return f"--container-image={image}"


def pyxis_flags(plan: Plan, stage: Stage, code_dir: Path, extra_env: Sequence[str] = ()) -> List[str]:
    """The stage step's pyxis flags; `extra_env`: variables the batch script exports beyond setup_lines'."""
    c = stage.cfg.cluster
    if c.container_runtime == "none":
        return []
    mounts = [f"{plan.storage_root}:{plan.storage_root}", *c.mounts]
    return [
        container_image_flag(c.containers[stage.containers[0]]),
        f"--container-mounts={','.join(mounts)}",
        f"--container-workdir={code_dir}",
        "--no-container-mount-home",
        f"--container-env={','.join(container_env_names(plan, stage, extra_env))}",
    ]


def sandbox_pyxis_flags(cfg: DictConfig, code_dir: Path) -> List[str]:
    """The sandbox runs model-written code: its container sees the launch's code snapshot (for
    jobs.sandbox_guard), read-only, and serving.sandbox.mounts; never the storage root, nor the home."""
    if cfg.cluster.container_runtime == "none":
        return []
    mounts = [f"{code_dir}:{code_dir}:ro", *cfg.serving.sandbox.mounts]
    return [container_image_flag(cfg.cluster.containers["sandbox"]), f"--container-mounts={','.join(mounts)}",
            "--container-workdir=/tmp", "--no-container-mount-home"]


def sandbox_argv(stage: Stage, code_dir: Path) -> List[str]:
    """The sandbox step's command, without the secrets (commands.sandbox_command). The image does not hold our
    code: in a container the command names the snapshot in PYTHONPATH itself, as pyxis gives the image's ENV
    precedence over the batch script's exports; without one the step inherits the script's PYTHONPATH (the
    snapshot first)."""
    if stage.cfg.cluster.container_runtime == "none":
        return list(stage.commands["sandbox"])
    return commands.sandbox_command(stage.cfg, pythonpath=str(code_dir))


def stage_image(stage: Stage) -> Optional[str]:
    """The image the stage's step runs in, or None where it runs on the node itself."""
    c = stage.cfg.cluster
    return c.containers[stage.containers[0]] if c.executor == "slurm" and c.container_runtime == "pyxis" else None


def _double_quoted(text: str) -> str:
    return '"' + re.sub(r'([\\"$`])', r'\\\1', text) + '"'


def python_command(cfg: DictConfig, image: Optional[str] = None) -> List[str]:
    """The job's interpreter, checked in its first second: cluster.python must name the python inside the
    image, and an image that only has `python3` would otherwise fail with a bare "not found". Its arguments
    follow ("$@"); exec keeps the signals going to python itself."""
    python = shlex.quote(cfg.cluster.python)
    where = f"in the container image {image}" if image else "on the PATH where the job runs"
    message = (f"launcher: error: cluster.python={cfg.cluster.python} is not {where}; "
               "set cluster.python to its interpreter (e.g. python3)")
    check = f'command -v {python} >/dev/null || {{ echo {_double_quoted(message)} >&2; exit 127; }}; exec {python} "$@"'
    return ["sh", "-c", check, cfg.cluster.python]


def job_argv(cfg: DictConfig, spec_path: Path, image: Optional[str] = None) -> List[str]:
    """What runs inside the stage's container (`image`; None: on the node itself)."""
    return [*python_command(cfg, image), "-u", "-m", "jobs.run_stage", str(spec_path)]


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
        # The drafter quality gate: measured by train_drafter, decided by convert_drafter (never fingerprinted).
        "drafter": gate_settings(cfg.drafter) if stage.kind in ("train_drafter", "convert_drafter") else None,
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
    # The log is appended to by every attempt (a requeue): `status` reads the cause of a failure after the last
    # of these lines, where a pyxis error of this attempt would be, before the job's own first line.
    # The umask first: the job's files (staging, artifacts, logs, caches) are as private as the launch's.
    lines = [f"umask {umask_value(cfg.cluster.umask):04o}",
             "set -euo pipefail",
             f'echo "{ATTEMPT_START} ${{SLURM_JOB_ID:-?}} on ${{SLURMD_NODENAME:-?}} '
             '(restart ${SLURM_RESTART_COUNT:-0})"']
    if accounting_ids:
        lines.append(accounting_line(plan, accounting_ids))
    for name, value in stage_env(plan, stage, code_dir).items():
        # Tests and sites may prepend their own paths; the code snapshot comes first.
        suffix = '${PYTHONPATH:+:$PYTHONPATH}' if name == "PYTHONPATH" else ""
        lines.append(f"export {name}={shlex.quote(value)}{suffix}")
    if cfg.cluster.env_vars:
        lines.append(f"# passed by name only, values come from the submitting shell: {', '.join(cfg.cluster.env_vars)}")
    if starts_sandbox_step(stage):
        argv = sandbox_argv(stage, code_dir)
        assert argv[-2] == "--port", argv
        host = cfg.serving.sandbox.host
        lines.append(f"# the code sandbox's port: the first free one from {argv[-1]} + SLURM_JOB_ID % {PORT_SPREAD},")
        lines.append(f"# as the job chooses its own (it reads this one from {SANDBOX_PORT_ENV})")
        lines.append(f"sandbox_port=$(({argv[-1]} + SLURM_JOB_ID % {PORT_SPREAD}))")
        lines.append(f"while (exec 3<>/dev/tcp/{host}/$sandbox_port) 2>/dev/null; do "
                     f"sandbox_port=$((sandbox_port + 1)); done")
        lines.append(f"export {SANDBOX_PORT_ENV}=$sandbox_port")
        logs = ExperimentDir(plan.storage_root, plan.experiment).root / "logs"
        exit_file = shlex.quote(str(logs / "sandbox-exit"))
        lines.append(f"export {SANDBOX_EXIT_ENV}={exit_file}.$SLURM_JOB_ID")
        lines.append(f'rm -f "${SANDBOX_EXIT_ENV}"  # a requeued job starts afresh')
        lines.append("# the code sandbox runs beside the stage, in its own container, without the storage or the")
        lines.append("# secrets, its output in its own log. If it ends by itself (a wrong image, a crash), that output")
        lines.append("# is copied here and its exit code tells the job it is gone.")
        lines.append(f"sandbox_log={shlex.quote(str(logs / 'sandbox'))}.$SLURM_JOB_ID.log")
        srun = ["srun", "--overlap", "--ntasks=1", *sandbox_pyxis_flags(cfg, code_dir), *argv[:-1]]
        lines += [
            "(",
            "  set +e",
            "  srun_pid=",
            '  trap \'kill "$srun_pid" 2>/dev/null; wait "$srun_pid" 2>/dev/null; exit 0\' TERM  # stopped below',
            f'  {shlex.join(srun)} "$sandbox_port" > "$sandbox_log" 2>&1 &',
            "  srun_pid=$!",
            '  wait "$srun_pid"',
            "  code=$?",
            f'  echo "{SANDBOX_ENDED} with exit code $code; its output:"',
            '  cat "$sandbox_log"',
            f'  echo "$code" > "${SANDBOX_EXIT_ENV}"',
            ") &",
            "sandbox_step=$!",
            "# When the stage's step ends, this script stops the sandbox itself: left to Slurm at the job's end, its",
            "# `*** STEP ... CANCELLED ***` and `srun: error: ... Terminated` would end a successful stage's log.",
            "stop_sandbox() {",
            '  kill -0 "$sandbox_step" 2>/dev/null || return 0',
            f'  echo "{SANDBOX_STOP} (its output: $sandbox_log)"',
            '  kill "$sandbox_step" 2>/dev/null || return 0',
            '  for _ in $(seq 50); do kill -0 "$sandbox_step" 2>/dev/null || return 0; sleep 0.2; done',
            "}",
            "trap stop_sandbox EXIT",
        ]
    return lines


def render_script(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                  accounting_ids: Sequence[str] = ()) -> str:
    cfg = stage.cfg
    inner = job_argv(cfg, exp.spec(stage.name), stage_image(stage))
    flags = pyxis_flags(plan, stage, code_dir)
    launch = ["srun", *flags, inner] if cfg.cluster.executor == "slurm" else [inner]
    return TEMPLATES.get_template("stage.sbatch.j2").render(
        stage=stage, experiment=plan.experiment, cluster=cfg.cluster, partition=partition(stage),
        job_name=job_name(plan.experiment, stage), time_limit=format_time_limit(stage.resources.time_min),
        signal_lead_s=signal_lead_s(stage.resources.time_min),
        log_file=str(exp.log(stage.name)), dependency=dependency,
        setup=setup_lines(plan, stage, code_dir, accounting_ids),
        launch=launch,
    )


def write_stage_files(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                      accounting_ids: Sequence[str] = (), into: Optional[ExperimentDir] = None) -> Path:
    """Write the stage's spec and batch script (into `into`, a dry run's local preview, when given: the script
    still names `exp`'s paths); return the script's path."""
    out = into or exp
    for path in (out.spec(stage.name), out.script(stage.name), out.log(stage.name)):
        path.parent.mkdir(parents=True, exist_ok=True)
    out.spec(stage.name).write_text(json.dumps(stage_spec(plan, stage), indent=2))
    script = out.script(stage.name)
    script.write_text(render_script(plan, stage, exp, dependency, code_dir, accounting_ids))
    return script


def remove_stale_stage_files(plan: Plan, exp: ExperimentDir, keep_specs: Sequence[str] = ()) -> List[str]:
    """Remove the batch scripts and specs of stages that are not in this plan (an earlier launch's, before a
    change of `drafter=`), so that the experiment's scripts are exactly the plan's; return their stage names.
    `keep_specs`: stages whose spec a job may still read (pending or running), kept with their script gone."""
    scripts = {exp.script(name).name for name in plan.stages}
    specs = {exp.spec(name).name for name in [*plan.stages, *keep_specs]}
    removed = []
    for folder, suffix, wanted in ((exp.root / "scripts", ".sbatch", scripts), (exp.root / "stages", ".json", specs)):
        for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else ():
            if path.name not in wanted:
                path.unlink(missing_ok=True)
                removed.append(path.name[:-len(suffix)])
    return list(dict.fromkeys(removed))
