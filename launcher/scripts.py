"""Batch scripts and pyxis flags of stage jobs.

On Slurm a stage's script is the text sbatch receives: dispatch hands it to submitit as it is
(launcher.dispatch.submitit_script), and a dry run writes the same text, so a previewed script is what is submitted.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from launcher import commands, serving_commands
from launcher.contract import (ACCOUNTING, ACCOUNTING_FIELDS, MANIFEST, SANDBOX_EXIT_ENV, SANDBOX_PORT_FILE_ENV,
                               SERVER_EXIT_ENV, SERVER_LAUNCH_FILE_ENV, SERVER_LOG_ENV, WANDB_SUBDIR,
                               BenchmarkSettings, GpuRequirement, StageResources, StageSpec, experiment_dir,
                               gate_settings)
from launcher.dispatch.storage import ATTEMPT_START, SANDBOX_ENDED, SANDBOX_STOP, ExperimentDir
from launcher.plan import Plan, Stage
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


if TYPE_CHECKING:
    import jinja2
    from omegaconf import DictConfig


@functools.cache
def batch_script_template() -> jinja2.Template:
    """The batch script's template, compiled once per process (a sweep renders hundreds of scripts); jinja2 is
    imported here, not by the modules that only read an experiment's files (`status`)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("launcher", "templates"), auto_reload=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
        finalize=_within_its_line,
    )
    environment.filters["shell_quote"] = lambda v: shlex.quote(str(v))
    environment.filters["shell_join"] = lambda argv: shlex.join(str(a) for a in argv)
    environment.filters["sbatch_quote"] = sbatch_quote
    environment.filters["sbatch_file_name"] = sbatch_file_name
    return environment.get_template("stage.sbatch.j2")


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
        "WANDB_DIR": str(experiment_dir(plan.storage_root, plan.experiment) / WANDB_SUBDIR),
    }
    if not cfg.cluster.compute_has_internet:
        env["WANDB_MODE"] = "offline"
        env["HF_HUB_OFFLINE"] = "0" if stage.kind.startswith("download") else "1"
    env.update(cfg.cluster.env)  # the site's plain variables; validation keeps them off the names above
    return env


def starts_sandbox_step(stage: Stage) -> bool:
    """On Slurm the batch script starts the benchmark's code sandbox as a step of its own (locally the job does)."""
    return "sandbox" in stage.commands and stage.cfg.cluster.executor == "slurm"


def starts_server_step(stage: Stage) -> bool:
    """On Slurm the batch script starts a server that spans nodes as a step of its own over the job's nodes."""
    return "server" in stage.commands and stage.cfg.cluster.executor == "slurm" and \
        serving_commands.spans_nodes(stage.cfg)


SERVER_STEP_ENV = (SERVER_LAUNCH_FILE_ENV, SERVER_EXIT_ENV, SERVER_LOG_ENV)


def container_env_names(plan: Plan, stage: Stage, extra: Sequence[str] = ()) -> List[str]:
    """Every variable the job relies on, for --container-env: pyxis gives the image's own ENV precedence over
    any variable of the batch script not named there (an image setting PYTHONPATH would run its own code,
    not the launch's snapshot). The secrets, what setup_lines exports, and `extra` (what submitit exports)."""
    names = [*stage.cfg.cluster.env_vars, *stage_env(plan, stage, Path("/")),
             *((SANDBOX_PORT_FILE_ENV, SANDBOX_EXIT_ENV) if starts_sandbox_step(stage) else ()),
             *(SERVER_STEP_ENV if starts_server_step(stage) else ()), *extra]
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
    snapshot first). Its port goes to its stdout: its container does not see the storage, where the batch
    script writes that output for the job to read."""
    in_container = stage.cfg.cluster.container_runtime != "none"
    return commands.sandbox_command(stage.cfg, pythonpath=str(code_dir) if in_container else None, port_file="-")


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


def run_stage_argv(cfg: DictConfig, image: Optional[str] = None) -> List[str]:
    """The command that runs a stage inside its container (`image`; None: on the node itself), but for its
    last word, the stage's spec."""
    return [*python_command(cfg, image), "-u", "-m", "jobs.run_stage"]


def job_argv(cfg: DictConfig, spec_path: Path, image: Optional[str] = None) -> List[str]:
    """What runs the stage of the spec at `spec_path` inside its container (`image`; None: on the node itself)."""
    return [*run_stage_argv(cfg, image), str(spec_path)]


def stage_spec(plan: Plan, stage: Stage) -> StageSpec:
    """Everything the job needs, written beside the script; secrets appear by name only."""
    cfg, kind = stage.cfg, KINDS[stage.kind]
    return StageSpec(
        experiment=plan.experiment,
        name=stage.name,
        kind=stage.kind,
        fingerprint=stage.fingerprint,
        artifact=stage.artifact,
        staging_dir=stage.staging_dir,
        commands=stage.commands,
        config=stage.config_subset,
        inputs={d: plan.stages[d].artifact for d in stage.deps},
        resources=StageResources(**asdict(stage.resources)),
        secret_env_vars=list(cfg.cluster.env_vars),
        drafter=gate_settings(commands.config_values(cfg.drafter)) if kind.drafter_gate else None,
        benchmark=benchmark_settings(cfg) if kind.serves else None,
        gpu_check=gpu_requirement(plan, stage),
    )


from launcher.stages import DRAFTER_KINDS, FP8_KINDS, KINDS  # noqa: E402  (the stage table says which kinds)


def gpu_requirement(plan: Plan, stage: Stage) -> Optional[GpuRequirement]:
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
    engine = stage.inputs[0].artifact if KINDS[kind].serves else None
    return GpuRequirement(count=stage.resources.gpus_per_node, min_compute_capability=minimum or None, why=why,
                          gpu_type=cfg.cluster.gpu_type, expected_compute_capability=compute_capability(cfg),
                          engine_manifest=os.path.join(engine, MANIFEST) if engine else None)


def benchmark_settings(cfg: DictConfig) -> BenchmarkSettings:
    s = cfg.serving
    return BenchmarkSettings(
        server_url=f"http://{s.host}:{s.port}",
        sandbox_url=f"http://{s.sandbox.host}:{s.sandbox.port}",
        health_timeout_s=float(s.health_timeout_s),
        # On Slurm the batch script starts the sandbox as its own step (own container); locally the job does.
        start_sandbox=cfg.cluster.executor == "local",
    )


def accounting_argv(job_ids: Sequence[str]) -> List[str]:
    return ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), f"--format={','.join(ACCOUNTING_FIELDS)}"]


def accounting_line(plan: Plan, job_ids: Sequence[str]) -> str:
    """The report job records its experiment's accounting on the host: containers cannot see Slurm.
    Accounting lags the controller by a few seconds, so it waits (up to a minute) for no job to be live."""
    path = shlex.quote(str(experiment_dir(plan.storage_root, plan.experiment) / ACCOUNTING))
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
        logs = ExperimentDir(plan.storage_root, plan.experiment).root / "logs"
        lines.append("# the code sandbox runs beside the stage, in its own container, without the storage or the")
        lines.append("# secrets, its output in its own log. It listens on the first free port from its base port")
        lines.append(f"# (jobs.ports) and writes that port to its stdout: into ${SANDBOX_PORT_FILE_ENV}, where the job")
        lines.append("# reads it. If it ends by itself (a wrong image, no free port), its output is copied here and its")
        lines.append("# exit code tells the job it is gone.")
        for name, stem in ((SANDBOX_PORT_FILE_ENV, "sandbox-port"), (SANDBOX_EXIT_ENV, "sandbox-exit")):
            lines.append(f"export {name}={shlex.quote(str(logs / stem))}.$SLURM_JOB_ID")
        lines.append(f'rm -f "${SANDBOX_PORT_FILE_ENV}" "${SANDBOX_EXIT_ENV}"  # a requeued job starts afresh')
        lines.append(f"sandbox_log={shlex.quote(str(logs / 'sandbox'))}.$SLURM_JOB_ID.log")
        # One task on the first node, also in a job of several nodes (srun would warn, then do that).
        one_node = ["--nodes=1"] if stage.resources.nodes > 1 else []
        srun = ["srun", "--overlap", *one_node, "--ntasks=1", *sandbox_pyxis_flags(cfg, code_dir),
                *sandbox_argv(stage, code_dir)]
        lines += background_step_lines("sandbox", f'{shlex.join(srun)} > "${SANDBOX_PORT_FILE_ENV}" 2> "$sandbox_log"',
                                       [f'echo "{SANDBOX_ENDED} with exit code $code; its output:"',
                                        'cat "$sandbox_log"'],
                                       SANDBOX_EXIT_ENV, f'{SANDBOX_STOP} (its output: $sandbox_log)')
    if starts_server_step(stage):
        lines += server_step_lines(plan, stage, code_dir)
    stops = [f"stop_{step}" for step, started in (("server", starts_server_step(stage)),
                                                  ("sandbox", starts_sandbox_step(stage))) if started]
    if stops:
        lines.append(f"trap '{'; '.join(stops)}' EXIT")
    return lines


def background_step_lines(step: str, srun_line: str, ended: List[str], exit_env: str, stop_message: str) -> List[str]:
    """A step the batch script runs beside the stage's (the sandbox; a server over several nodes): a background
    subshell that, when the step ends by itself, says so (`ended`) and writes its exit code to $`exit_env` for
    the job to see; and `stop_<step>`, which the script's EXIT trap calls when the stage's step ends: left to
    Slurm at the job's end, its `*** STEP ... CANCELLED ***` and `srun: error: ... Terminated` would end a
    successful stage's log."""
    return [
        "(",
        "  set +e",
        "  srun_pid=",
        '  trap \'kill "$srun_pid" 2>/dev/null; wait "$srun_pid" 2>/dev/null; exit 0\' TERM  # stopped below',
        f"  {srun_line} &",
        "  srun_pid=$!",
        '  wait "$srun_pid"',
        "  code=$?",
        *(f"  {line}" for line in ended),
        f'  echo "$code" > "${exit_env}"',
        ") &",
        f"{step}_step=$!",
        f"stop_{step}() {{",
        f'  kill -0 "${step}_step" 2>/dev/null || return 0',
        f'  echo "{stop_message}"',
        f'  kill "${step}_step" 2>/dev/null || return 0',
        f'  for _ in $(seq 50); do kill -0 "${step}_step" 2>/dev/null || return 0; sleep 0.2; done',
        "}",
    ]


def server_step_lines(plan: Plan, stage: Stage, code_dir: Path) -> List[str]:
    """The server that spans nodes, started beside the stage's step (which runs on the first node only) as a
    step over all of the job's nodes: its tasks wait for the argv the job writes once it has chosen the port
    (jobs.server_launch), then become the server's ranks. Stopped by this script when the stage's step ends."""
    cfg = stage.cfg
    logs = ExperimentDir(plan.storage_root, plan.experiment).root / "logs"
    waiter = [*python_command(cfg, stage_image(stage)), "-u", "-m", "jobs.server_launch",
              "--timeout", f"{cfg.serving.health_timeout_s:g}"]
    joins = serving_commands.node_args(cfg)  # vLLM, SGLang: what each node adds to the command to find the others
    if joins["all"]:
        waiter += ["--node-args", json.dumps(joins["all"])]
    if joins["workers"]:
        waiter += ["--worker-args", json.dumps(joins["workers"])]
    # Its own --cpus-per-task: srun would take the job's (SRUN_CPUS_PER_TASK, sbatch's), meant for one task per node.
    cpus = f"--cpus-per-task={max(1, stage.resources.cpus_per_task // serving_commands.tasks_per_node(cfg))}"
    srun = [*serving_commands.server_step_srun(cfg), cpus, *pyxis_flags(plan, stage, code_dir), *waiter]
    lines = [f"# the LLM server spans {serving_commands.nodes(cfg)} nodes: a step of its own over all of them, in the "
             "stage's image; its tasks",
             f"# wait (jobs.server_launch) for the command the job writes to ${SERVER_LAUNCH_FILE_ENV} once it has "
             "chosen the port,",
             f"# then run it; its output goes to ${SERVER_LOG_ENV}, its exit code to ${SERVER_EXIT_ENV} (the job "
             "fails at once on it)."]
    if joins["all"]:
        lines.append("# One task per node, which adds --node-args to the command (and --worker-args after the first "
                     "node): its rank, the head's (the job's) host and rendezvous port.")
    for name, stem in ((SERVER_LAUNCH_FILE_ENV, "server-launch"), (SERVER_EXIT_ENV, "server-exit")):
        lines.append(f"export {name}={shlex.quote(str(logs / stem))}.$SLURM_JOB_ID")
    lines.append(f"export {SERVER_LOG_ENV}={shlex.quote(str(logs / 'server'))}.$SLURM_JOB_ID.log")
    lines.append(f'rm -f "${SERVER_LAUNCH_FILE_ENV}" "${SERVER_EXIT_ENV}"  # a requeued job starts afresh')
    return lines + background_step_lines(
        "server", f'{shlex.join(srun)} >> "${SERVER_LOG_ENV}" 2>&1',
        [f'echo "launcher: the server step ended with exit code $code (its output: ${SERVER_LOG_ENV})"'],
        SERVER_EXIT_ENV, f"launcher: stopping the server step (its output: ${SERVER_LOG_ENV})")


# What the job submitit starts (`python -m submitit.core._submit`) needs of the script beside its command: this
# variable tells it that it runs under Slurm, so that its USR2 handler checkpoints and requeues
# (submitit/slurm/slurm.py, _make_sbatch_string, which writes it in submitit's own scripts).
SUBMITIT_EXPORTS = {"SUBMITIT_EXECUTOR": "slurm"}
# Set (to 1) in a job's environment by the launch's sbatch call only (launcher.dispatch.submitit_script): the
# batch script, the same text a dry run writes, runs submitit's StageJob when it is set, else the stage itself.
SUBMITIT_LAUNCH_ENV = "LAUNCHER_SUBMITIT"


def submitit_folder(exp: ExperimentDir) -> Path:
    """submitit's folder of every job of the experiment: the pickled StageJob a job runs, its result, its log,
    each named by the job's id. One folder that exists before any job starts: Slurm fails a job whose
    --output directory is missing (JobLaunchFailure), and a script submitted by hand has no submitit to
    create a folder of its own (`%j`) for it."""
    return exp.submitit


def job_log(exp: ExperimentDir, array: bool) -> str:
    """The one log of a Slurm job, as #SBATCH --output names it: where submitit's Job finds it (JobPaths.stdout
    of task 0, the launch's record of the stage); an array's element writes its own, `<array id>_<index>`."""
    job = "%A_%a" if array else "%j"
    return f"{sbatch_file_name(submitit_folder(exp))}/{job}_0_log.out"


def submitit_argv(stage: Stage, exp: ExperimentDir) -> List[str]:
    """The command submitit gives a job (SlurmExecutor._submitit_command_str), as words: cluster.python,
    checked first to be in the image, runs the StageJob pickled in the job's folder."""
    return [*python_command(stage.cfg, stage_image(stage)), "-u", "-m", "submitit.core._submit",
            str(submitit_folder(exp))]


def sbatch_options(plan: Plan, stages: Sequence[Stage], exp: ExperimentDir,
                   dependency: Optional[str]) -> List[Tuple[str, object]]:
    """The #SBATCH options of the job that runs `stages` (several: an array, element i running stages[i]), in
    the order the script writes them; True is a flag without a value."""
    stage, array = stages[0], len(stages) > 1
    r, c = stage.resources, stage.cfg.cluster
    name = job_name(plan.experiment, stage)
    if array:
        name = name.rsplit("[", 1)[0] + f"[array of {len(stages)}]"
    log = job_log(exp, array) if c.executor == "slurm" else sbatch_file_name(exp.log(stage.name))
    options = [
        ("job-name", name), ("account", c.account), ("partition", partition(stage)), ("qos", c.qos),
        ("nodes", r.nodes), ("ntasks-per-node", 1), ("gpus-per-node", r.gpus_per_node or None),
        ("cpus-per-task", r.cpus_per_task), ("mem", f"{r.mem_gb}G"), ("time", format_time_limit(r.time_min)),
        ("output", log), ("open-mode", "append"), ("requeue", True),
        ("signal", f"USR2@{signal_lead_s(r.time_min)}"), ("array", f"0-{len(stages) - 1}" if array else None),
        ("dependency", dependency), ("kill-on-invalid-dep", "yes" if dependency else None),
    ]
    return [(key, value) for key, value in options if value is not None and value != ""]  # empty: none


def batch_job(plan: Plan, stages: Sequence[Stage], exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
              accounting_ids: Sequence[str] = ()) -> dict:
    """Everything of a batch script but its comments: what sbatch and the node see. The stage's step runs
    `run_stage` with its stage's spec (`specs`: each stage's, in element order) where no submitit started the
    job: cluster=local, which never submits this script (it shows what the stage runs), and a script
    submitted by hand. A launch on Slurm sets SUBMITIT_LAUNCH_ENV: the step (`srun`) then runs `submitit`,
    what submitit starts (the StageJob it pickled, requeued on USR2), with `exports`."""
    stage = stages[0]
    job = {"sbatch": sbatch_options(plan, stages, exp, dependency),
           "setup": setup_lines(plan, stage, code_dir, accounting_ids),
           "run_stage": run_stage_argv(stage.cfg, stage_image(stage)),
           "specs": [str(exp.spec(s.name)) for s in stages]}
    if stage.cfg.cluster.executor != "slurm":
        assert len(stages) == 1, "only Slurm runs array jobs"
        return {**job, "srun": [], "submitit": [], "exports": {}}
    # Beside a server step over all the nodes, the stage's own step runs once, on the first node.
    one_task = ["--nodes=1", "--ntasks=1"] if starts_server_step(stage) else []
    srun = ["srun", "--unbuffered", *one_task, *pyxis_flags(plan, stage, code_dir, extra_env=list(SUBMITIT_EXPORTS))]
    return {**job, "srun": srun, "submitit": submitit_argv(stage, exp), "exports": SUBMITIT_EXPORTS}


def render_script(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                  accounting_ids: Sequence[str] = (), array: Sequence[Stage] = ()) -> str:
    """The batch script of the job that runs `stage`; `array`: the stages of the array job it is an element
    of, in element order (the same script for each). On Slurm this is the text sbatch receives."""
    stages = list(array) or [stage]
    assert stage in stages, (stage.name, [s.name for s in stages])
    job = batch_job(plan, stages, exp, dependency, code_dir, accounting_ids)
    return batch_script_template().render(stages=stages, experiment=plan.experiment,
                                                            launch_env=SUBMITIT_LAUNCH_ENV, **job)


def write_stage_files(plan: Plan, stage: Stage, exp: ExperimentDir, dependency: Optional[str], code_dir: Path,
                      accounting_ids: Sequence[str] = (), into: Optional[ExperimentDir] = None,
                      array: Sequence[Stage] = (), script_text: Optional[str] = None) -> Path:
    """Write the stage's spec and batch script (into `into`, a dry run's local preview, when given: the script
    still names `exp`'s paths); return the script's path. `array`: as render_script's. `script_text`: the
    script render_script gave for the whole array, rendered once for all its elements."""
    out = into or exp
    spec, script = out.spec(stage.name), out.script(stage.name)
    folders = [spec.parent, script.parent, out.log(stage.name).parent]  # logs/: the sandbox step's, cluster=local's
    if stage.cfg.cluster.executor == "slurm":  # the job's log: Slurm fails a job whose --output directory is missing
        folders.append(submitit_folder(out))
    for folder in dict.fromkeys(folders):
        folder.mkdir(parents=True, exist_ok=True)
    stage_spec(plan, stage).write(spec)
    script.write_text(script_text if script_text is not None
                      else render_script(plan, stage, exp, dependency, code_dir, accounting_ids, array))
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
