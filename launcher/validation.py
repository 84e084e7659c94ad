"""Checks of a composed config before anything is planned or submitted.

Every problem becomes a ConfigError naming the key, the bad value and what is allowed; all of them are
reported at once, so a user fixes a config in one round.
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import posixpath
import re
import shutil
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from launcher import stages
from launcher.schema import MIN_TIME_LIMIT_MIN, CheckpointTool, ContainerRuntime, Executor, GemmPlugin, QFormat

# Compute capability per GPU type (cluster.gpu_type); cluster.gpu_compute_capability overrides it.
GPU_COMPUTE_CAPABILITY = {
    "v100": 7.0, "t4": 7.5, "a100": 8.0, "a30": 8.0, "a10": 8.6, "a10g": 8.6, "a40": 8.6, "a6000": 8.6,
    "l4": 8.9, "l40": 8.9, "l40s": 8.9, "rtx4090": 8.9, "rtx6000ada": 8.9,
    "h100": 9.0, "h200": 9.0, "gh200": 9.0, "b200": 10.0, "gb200": 10.0,
}
FP8_MIN_CC = 8.9  # E4M3 FP8: Ada, Hopper, Blackwell
REDRAFTER_MIN_CC = 8.0
# Slurm warns a stage with USR2 this long before its time limit (`--signal=USR2@<lead>`); submitit then calls
# the stage's checkpoint and requeues it. 90 s is enough to requeue; a short limit gets a tenth of itself,
# but never under 30 s (a requeue calls scontrol).
SIGNAL_LEAD_MAX_S = 90
SIGNAL_LEAD_MIN_S = 30
# sbatch(1), --signal: "the signal may be sent up to 60 seconds earlier than specified". A time limit must
# leave the stage minutes of work before the earliest warning, or it is signalled (and requeued) at once.
SLURM_SIGNAL_EARLY_S = 60
# launcher.schema.MIN_TIME_LIMIT_MIN = 5: 300 s - 30 s lead - 60 s early = 3.5 min of work at least

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN_PATTERNS = (
    re.compile(r"hf_[A-Za-z0-9]{20,}"),  # Hugging Face
    re.compile(r"nvapi-[A-Za-z0-9_-]{20,}"),  # NGC
    re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])"),  # W&B API key
    re.compile(r"(?:ghp|github_pat)_[A-Za-z0-9_]{20,}"),
)
SECRET_KEY = re.compile(r"(token|api_key|apikey|password|secret)", re.IGNORECASE)
# Keys whose values may legitimately be 40 hex digits (a git/HF commit).
COMMIT_KEYS = ("model.revision",)
# A variable name that names a secret (HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY): SECRET_KEY as a whole
# `_`-separated part, so that TOKENIZERS_PARALLELISM or MAX_TOKENS stay plain.
ENV_SECRET_NAME = re.compile(rf"(?:^|_){SECRET_KEY.pattern}(?:_|$)", re.IGNORECASE)
# What the launcher sets in a stage job itself (launcher.scripts.stage_env, the W&B run name the job sets, the
# batch script's LAUNCHER_*, submitit's SUBMITIT_*, Slurm's SLURM_*): cluster.env may not change it.
LAUNCHER_ENV = ("PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE",
                "WANDB_DIR", "WANDB_MODE", "WANDB_NAME")
LAUNCHER_ENV_PREFIXES = ("LAUNCHER_", "SUBMITIT_", "SLURM_")


@dataclass
class ConfigError:
    key: str
    value: Any
    problem: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}: {self.problem} (allowed: {self.allowed})"


class InvalidConfig(Exception):
    def __init__(self, errors: List[ConfigError]):
        self.errors = errors
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {e}" for e in errors))


def signal_lead_s(time_min: int) -> int:
    """Seconds before a stage's time limit that Slurm sends it USR2 (the batch script and submitit agree)."""
    return max(SIGNAL_LEAD_MIN_S, min(SIGNAL_LEAD_MAX_S, time_min * 60 // 10))


def _time_limit_errors(c: DictConfig) -> List[ConfigError]:
    errors = []
    for kind, minutes in c.time_limits.items():
        if minutes < MIN_TIME_LIMIT_MIN:
            why = "must be positive" if minutes < 1 else (
                f"too short for any stage: Slurm warns a stage {signal_lead_s(minutes)} s before its limit, up to "
                f"{SLURM_SIGNAL_EARLY_S} s earlier still, and a warned stage is requeued, so it would barely run")
            errors.append(ConfigError(f"cluster.time_limits.{kind}", minutes, why,
                                      f">= {MIN_TIME_LIMIT_MIN} (minutes)"))
    return errors


def compute_capability(cfg: DictConfig) -> float | None:
    c = cfg.cluster
    if c.gpu_compute_capability is not None:
        return float(c.gpu_compute_capability)
    return GPU_COMPUTE_CAPABILITY.get(str(c.gpu_type).lower())


def _walk(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix[:-1]}[{i}].")
    else:
        yield prefix[:-1], node


REDACTED = "<redacted>"


def secret_value(key: str, value: Any) -> bool:
    """Whether validation takes `value` of `key` (a dotted key, `[i]` for list entries) for a secret given by
    value: the one test behind the errors and behind what is redacted from the config a launch saves."""
    if not isinstance(value, str) or not value:
        return False
    name = key.rsplit(".", 1)[-1]
    if key.startswith(("cluster.env_vars[", "cluster.required_env_vars[")):
        return "=" in value or any(p.search(value) for p in TOKEN_PATTERNS)
    if key.startswith(("cluster.env.", "serving.sandbox.env.")):
        return bool(ENV_SECRET_NAME.search(name)) or any(p.search(value) for p in TOKEN_PATTERNS)
    return bool(SECRET_KEY.search(name)) or any(
        p.search(value) for p in TOKEN_PATTERNS if key not in COMMIT_KEYS or "hf_" in p.pattern)


def redacted(node: Any, prefix: str = "") -> Any:
    """A plain copy of a config container with every value secret_value flags replaced by <redacted>."""
    if isinstance(node, dict):
        return {k: redacted(v, f"{prefix}{k}.") for k, v in node.items()}
    if isinstance(node, list):
        return [redacted(v, f"{prefix[:-1]}[{i}].") for i, v in enumerate(node)]
    return REDACTED if secret_value(prefix[:-1], node) else node


def redacted_overrides(overrides: List[str]) -> List[str]:
    """Command-line overrides (`+key=value`) with a secret value replaced by <redacted>, the key kept."""
    kept = []
    for override in overrides:
        key, sep, value = override.partition("=")
        kept.append(f"{key}{sep}{REDACTED}" if sep and secret_value(key.lstrip("+~"), value) else override)
    return kept


def _secret_errors(cfg: DictConfig, container: dict) -> List[ConfigError]:
    """`container`: cfg as plain_config gives it."""
    errors = []
    c = cfg.cluster
    for field in ("env_vars", "required_env_vars"):
        for i, entry in enumerate(c[field]):
            if not ENV_NAME.match(str(entry)):
                errors.append(ConfigError(f"cluster.{field}[{i}]", "<redacted>" if "=" in str(entry) else entry,
                                          "environment variables pass by name only; the value is read from your "
                                          "shell when jobs start", "a variable name such as HF_TOKEN"))
    return errors + by_section(_secret_value_errors, container)


def _secret_value_errors(container: dict) -> List[ConfigError]:
    errors = []
    for key, value in _walk(container):
        # cluster.env and serving.sandbox.env: variables, checked by _env_errors and _sandbox_errors; the
        # variable lists just above
        if not isinstance(value, str) or key.startswith(("hydra", "cluster.env.", "serving.sandbox.env.",
                                                          "cluster.env_vars[", "cluster.required_env_vars[")):
            continue
        if secret_value(key, value):
            errors.append(ConfigError(key, "<redacted>", "this looks like a secret given by value; secrets are never "
                                      "stored in configs, scripts or logs", "the variable's name in cluster.env_vars"))
    return errors


# Characters no config string may hold, anywhere (keys too): batch scripts are written line by line, so a line
# break in any value that reaches one (a `# download: ...` comment, an `#SBATCH --job-name=` line) would end
# its line and run the rest as a command; other controls (tab, ESC, DEL, C1) change what a terminal shows of
# a script or log, and a lone surrogate (a byte of the command line that is not UTF-8) cannot be written.
# Unicode categories: Cc controls (U+0000-001F, U+007F-009F), Zl/Zp line and paragraph separators, Cs.
# Those categories as one character class (fixed sets: tests/test_validation.py checks every code point against
# unicodedata), 15x faster than asking unicodedata per character, for every string of every point of a sweep.
FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A backslash is an escape wherever Slurm reads our values: sbatch's #SBATCH parser (src/sbatch/opt.c
# get_argument) drops it, and submitit writes its #SBATCH lines with shell quoting (shlex.quote), which keeps
# it; in an --output file name it turns Slurm's %-patterns off and is removed (src/common/print_fields.c
# expand_stdio_fields). Any config value can name a stage (`quantize[qformat=fp8]`: job names, log files), so
# none may hold one; the variables of cluster.env and serving.sandbox.env only reach `export` lines and argv,
# shell-quoted, and keep theirs.
BACKSLASH_FREE_EXCEPT = ("cluster.env.", "serving.sandbox.env.")
# Slurm expands %j, %x, ... in --output file names and submitit writes its logs under
# <storage_root>/experiments/<experiment>/submitit/%j_0_log.out: a `%` of the storage root would be expanded too.
PERCENT_FREE_KEYS = ("cluster.storage_root",)
TEXT_FORM = "printable text: no line breaks, tabs or other control characters, and valid UTF-8"


def forbidden_character(text: str) -> Optional[str]:
    """How the first character no config string may hold is written (`\\n`, `\\x1b`, `\\u2028`), or None."""
    found = FORBIDDEN_TEXT.search(text)
    return repr(found.group())[1:-1] if found else None


def _text_errors(container: dict) -> List[ConfigError]:
    """Every string of the composed config (`container`, as plain_config gives it), keys and list entries
    included: nothing a batch script or a path is made of can end a line or hide from the terminal; values
    shown escaped (repr), or redacted."""
    errors: List[ConfigError] = []

    def check(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                shown = repr(str(name))[1:-1]  # a bad key is named escaped, as values are shown
                path = f"{key}.{shown}" if key else shown
                bad = forbidden_character(str(name))
                if bad:
                    errors.append(ConfigError(path, "<key>", f"the key holds {bad}: keys name variables, paths and "
                                              "lines of batch scripts", TEXT_FORM))
                check(value, path)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                check(value, f"{key}[{i}]")
        elif isinstance(node, str):
            shown = "<redacted>" if secret_value(key, node) else node
            bad = forbidden_character(node)
            if bad:
                errors.append(ConfigError(key, shown, f"holds {bad}, a control character: a line break would end "
                                          "the line of the batch script the value is written on (a comment, an "
                                          "#SBATCH option) and run the rest as a command; no setting needs any "
                                          "of them", TEXT_FORM))
            elif "\\" in node and not key.startswith(BACKSLASH_FREE_EXCEPT):
                errors.append(ConfigError(key, shown, "holds a backslash, which sbatch and Slurm's log file names "
                                          "read as an escape: any value can name a stage, its job and log file",
                                          "text without a backslash"))
            elif "%" in node and key in PERCENT_FREE_KEYS:
                errors.append(ConfigError(key, shown, "holds a `%`: Slurm expands %j, %x, ... in the log file "
                                          "names made from it (#SBATCH --output)", "a path without `%`"))

    check({k: v for k, v in container.items() if k != "hydra"}, "")
    return errors


def _variable_name_error(key: str, name: str) -> List[ConfigError]:
    if ENV_NAME.match(name):
        return []
    return [ConfigError(key, name, "not an environment variable name", "letters, digits and _, not starting with a digit")]


def _env_errors(c: DictConfig) -> List[ConfigError]:
    """cluster.env: plain variables by value, which end up in batch scripts; never a secret, never one of ours."""
    errors = []
    for name, value in c.env.items():
        key = f"cluster.env.{name}"
        bad_name = _variable_name_error(key, name)
        if bad_name:
            errors += bad_name
        elif name in c.env_vars:
            errors.append(ConfigError(key, "<redacted>", f"{name} is a secret of cluster.env_vars, which passes by "
                                      "name only; a value here would be written into batch scripts",
                                      f"{name} in cluster.env_vars only"))
        elif name in LAUNCHER_ENV or name.startswith(LAUNCHER_ENV_PREFIXES):
            reserved = ", ".join([*LAUNCHER_ENV, *(f"{prefix}*" for prefix in LAUNCHER_ENV_PREFIXES)])
            errors.append(ConfigError(key, value, "the launcher sets this variable in every stage job itself",
                                      f"any name but {reserved}"))
        elif secret_value(key, value):
            errors.append(ConfigError(key, "<redacted>", "this looks like a secret given by value; cluster.env is "
                                      "written into batch scripts", f"{name} in cluster.env_vars (passed by name, "
                                      "its value read from your shell)"))
    return errors


# The code sandbox runs model-written code (jobs.sandbox_guard): on loopback only, limited in time and memory.
SANDBOX_HOSTS = "127.0.0.1 (or another 127.x.y.z), localhost"
SANDBOX_OWN_ENV = ("PYTHONPATH", "NEMO_SKILLS_SANDBOX_MEM_LIMIT")  # set by the launcher and the guard


def _sandbox_errors(cfg: DictConfig) -> List[ConfigError]:
    sb, c = cfg.serving.sandbox, cfg.cluster
    errors = []
    host = str(sb.host)
    try:
        address = None if host == "localhost" else ipaddress.ip_address(host)
    except ValueError:
        address = False
    if address is not None and (not address or not address.is_loopback or address.version != 4):
        why = ("an IPv6 address: the job's port search and URLs are IPv4" if address and address.is_loopback else
               "the sandbox runs model-written code: it listens on a loopback address only, never on one that "
               "other machines reach")
        errors.append(ConfigError("serving.sandbox.host", host, why, SANDBOX_HOSTS))
    for name, value in sb.env.items():
        key = f"serving.sandbox.env.{name}"
        bad_name = _variable_name_error(key, name)
        if bad_name:
            errors += bad_name
        elif name in SANDBOX_OWN_ENV:
            errors.append(ConfigError(key, value, "set for the sandbox by the launcher itself (the code snapshot; "
                                      "the memory limit is serving.sandbox.memory_limit_mb)",
                                      f"any name but {', '.join(SANDBOX_OWN_ENV)}"))
        elif name in c.env_vars or secret_value(key, value):
            errors.append(ConfigError(key, "<redacted>", "this looks like a secret given by value: the sandbox runs "
                                      "model-written code and gets no secrets", "plain, non-secret variables"))
    for i, mount in enumerate(sb.mounts):  # each SRC:DST[:FLAGS], its form checked by the schema (schema.MOUNT)
        key, source = f"serving.sandbox.mounts[{i}]", posixpath.normpath(mount.split(":", 1)[0])
        if c.container_runtime == "none":
            errors.append(ConfigError(key, mount, "the sandbox has no container to mount into "
                                      "(cluster.container_runtime=none)",
                                      "no mounts, or cluster.container_runtime=pyxis"))
        elif posixpath.normpath(c.storage_root) == source or posixpath.normpath(c.storage_root).startswith(
                posixpath.join(source, "")):
            errors.append(ConfigError(key, mount, "holds the storage root (cluster.storage_root): the sandbox runs "
                                      "model-written code and sees no artifacts, logs or other launches' code",
                                      "a directory outside the storage root"))
    return errors

def published_drafter_gate(plan, complete) -> Tuple[List[ConfigError], List[str]]:
    """The drafter quality gate taken at launch on a drafter already trained and published (`complete`: the
    names of the plan's complete stages): (errors, warnings). A drafter below drafter.min_top1 with
    drafter.on_low_quality=fail fails the launch before anything is submitted; with warn it is said. Changing
    the gate never retrains: its keys are in no fingerprint (the convert_drafter job takes the same decision
    when the drafter is trained by this launch)."""
    from jobs.drafter_metrics import describe, gate_decision, gate_problem, gate_remedy, passing_min_top1
    from launcher.commands import config_values
    from launcher.contract import MANIFEST, ContractError, Manifest, gate_settings

    errors: List[ConfigError] = []
    warnings: List[str] = []
    for stage in plan.stages.values():
        train = next((s for s in stage.inputs if s.kind == "train_drafter"), None)
        if stage.kind != "convert_drafter" or train is None or train.name not in complete:
            continue
        try:
            manifest = Manifest.read(os.path.join(train.artifact, MANIFEST))
        except (OSError, ContractError):
            continue  # not readable: the artifact check rebuilds it, and the convert_drafter job decides
        decision = gate_decision(manifest.outputs, gate_settings(config_values(stage.cfg.drafter)))
        where = f"the drafter trained by {train.name} ({train.artifact})"
        if decision["passed"]:
            continue
        if decision["on_low_quality"] == "fail":
            floor = "" if decision["value"] is None else f"<= {passing_min_top1(decision)} for this drafter, or "
            errors.append(ConfigError("drafter.min_top1", decision["min_top1"],
                                      f"{where} is below the quality gate (drafter.on_low_quality=fail): "
                                      f"{gate_problem(decision)}; {gate_remedy(decision)}",
                                      f"{floor}drafter.on_low_quality=warn"))
        else:
            warnings.append(f"{where} is below the quality gate (drafter.on_low_quality=warn): "
                            + (describe(decision) if decision["value"] is not None else "no measurement")
                            + f" < drafter.min_top1={decision['min_top1']}; it is used anyway")
    return errors, warnings


# Experiment names (and campaign entries, sweep points, baselines) name a directory under
# <storage_root>/experiments/ and the stage files in it: one path component, never `.`, `..` or a `/` that would
# leave the storage root, nor empty (that is experiments/ itself), and short enough for a file name.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]*$")
NAME_PART = re.compile(r"^[A-Za-z0-9._+=,-]+$")  # a value interpolated into a name
NAME_MAX = 160
NAME_FORM = f"letters, digits and . _ + = , - (not first), at most {NAME_MAX} characters"
# Campaign entries and baselines are also experiments of conf/experiment/, composed as `+experiment=<name>`.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")


def name_problem(value: Any, form: re.Pattern = NAME) -> Optional[str]:
    text = "" if value is None else str(value)
    if not text:
        return "empty: it names a directory under the storage root"
    if len(text) > NAME_MAX:
        return f"{len(text)} characters: it names a directory under the storage root and files in it"
    if not form.match(text):
        return "not one plain path component: it names a directory under the storage root"
    return None


def name_errors(cfg: DictConfig) -> List[ConfigError]:
    """launcher.experiment_name, launcher.campaign and launcher.baselines as names; checked before a campaign
    composes its entries. A default name made of other keys (${model.name}-...) blames those keys."""
    errors = []
    launcher = cfg.launcher
    problem = name_problem(launcher.experiment_name)
    if problem:
        raw = str(OmegaConf.to_container(launcher, resolve=False)["experiment_name"])
        blamed = [ref for ref in INTERPOLATION.findall(raw)
                  if not NAME_PART.match(str(OmegaConf.select(cfg, ref, default="")))]
        errors += [ConfigError(ref, OmegaConf.select(cfg, ref), f"makes the experiment's name "
                               f"(launcher.experiment_name={raw}) {launcher.experiment_name!r}, {problem}",
                               "letters, digits and . _ + = , -") for ref in blamed]
        if not blamed:
            errors.append(ConfigError("launcher.experiment_name", launcher.experiment_name, problem, NAME_FORM))
    for field in ("campaign", "baselines"):
        for i, entry in enumerate(launcher[field]):
            problem = name_problem(entry, EXPERIMENT_NAME)
            if problem:
                errors.append(ConfigError(f"launcher.{field}[{i}]", entry, problem,
                                          "the name of an experiment of conf/experiment/ (letters, digits, . _ -)"))
    return errors


# cluster.umask: octal with its leading 0 ('027', '0027', '0o027'), so that a YAML number (027 is 23) is refused.
UMASK = re.compile(r"^0o?([0-7]{1,3})$")
UMASK_ALLOWED = ("an octal string with its leading 0 (quoted in YAML): '027' (the group may read), '077' "
                 "(private), '022' (anyone may read); never granting others write, never taking the owner's rights")


def umask_value(text: Any) -> Optional[int]:
    match = UMASK.match(str(text))
    return int(match[1], 8) if match else None


def _umask_errors(cfg: DictConfig) -> List[ConfigError]:
    c = cfg.cluster
    value = umask_value(c.umask)
    if value is None:
        return [ConfigError("cluster.umask", c.umask, "not an octal umask with its leading 0 (in YAML a bare 027 "
                            "is the number 23)", UMASK_ALLOWED)]
    if not value & 0o002:
        return [ConfigError("cluster.umask", c.umask, "lets every user of the machine write the launch's files, "
                            "logs and artifacts", UMASK_ALLOWED)]
    if value & 0o700:
        return [ConfigError("cluster.umask", c.umask, "takes the owner's own rights: the launcher and its jobs "
                            "could not read or write what they write", UMASK_ALLOWED)]
    return []


STORAGE_ALLOWED = "an existing directory this user can write, or a new one inside one"


def storage_problem(storage_root: str) -> Optional[str]:
    """Why this machine cannot write under the storage root, or None. Asked before anything is created there:
    making the directories of an unmounted /lustre/... on the login node would hide that it is not mounted.
    One missing level is made by the launch; more means the filesystem is not here."""
    root = os.path.abspath(storage_root)
    existing = root
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    if existing not in (root, os.path.dirname(root)):
        return (f"neither it nor its parent exists on this machine ({existing} is the nearest that does): is the "
                "shared filesystem mounted here?")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user here (read-only, or not yours)"
    return None


def environment_errors(cfg: DictConfig, needed_containers: Tuple[str, ...]) -> List[ConfigError]:
    """What a submission needs of this (login) machine, checked before anything is submitted: a job that
    would wait hours in the queue to fail on a missing image or variable fails here instead."""
    c = cfg.cluster
    errors = [ConfigError(f"cluster.required_env_vars[{i}]", name, "is not set in this shell; jobs read it from "
                          "the environment of the submission", f"export {name}=... before launching")
              for i, name in enumerate(c.required_env_vars) if not os.environ.get(name)]
    if c.executor == "slurm" and shutil.which("sbatch") is None:
        errors.append(ConfigError("cluster.executor", "slurm", "sbatch is not on this machine's PATH",
                                  "submit from a Slurm login node, or cluster=local"))
    problem = storage_problem(c.storage_root)
    if problem:
        errors.append(ConfigError("cluster.storage_root", c.storage_root, problem, STORAGE_ALLOWED))
    if c.container_runtime == "pyxis":
        for key in needed_containers:
            image = c.containers.get(key) or ""
            # Only where this machine mounts the image's directory: a login node that sees the shared
            # storage sees a missing image; one that does not mount it cannot tell.
            if image.endswith(".sqsh") and os.path.isdir(os.path.dirname(image)) and not os.path.isfile(image):
                errors.append(ConfigError(f"cluster.containers.{key}", image, "no such image file",
                                          "an enroot image (enroot import -o ... docker://...) that exists"))
    return errors


def _one_per_key(errors: List[ConfigError]) -> List[ConfigError]:
    """The first error of each key: a specific check's says more than a generic one's on the same value."""
    seen: dict = {}
    for error in errors:
        seen.setdefault(error.key, error)
    return list(seen.values())


def validate(cfg: DictConfig, needed_containers: Optional[Tuple[str, ...]] = None, submitting: bool = False) -> None:
    """Raise InvalidConfig listing every problem of `cfg` (and of the environment, when submitting).
    `needed_containers`: the container keys its stages run in; by default those of the stages it needs."""
    # Each key on its own first: its form, range, secrecy, and whether the schema has it at all. The checks after
    # these relate keys to each other and assume each is in its range and has a value: on an out-of-range one they
    # would only say it again, wrongly (gpus_per_node=0 as "allowed: tp*pp <= 0"), or fail.
    errors = _key_errors(cfg)
    if errors:
        raise InvalidConfig(errors)
    needed = stages.needed_containers(cfg) if needed_containers is None else needed_containers
    errors += environment_errors(cfg, needed) if submitting else []
    for check in RELATION_CHECKS:
        errors += check(cfg)
    errors += _container_errors(cfg.cluster, needed)
    if errors:
        raise InvalidConfig(errors)


# Plain copies of composed configs, resolved, that their maker already has ({id(config): (config, copy)}):
# a sweep makes each point's from its composition's, converted once, and the point's overrides
# (launcher.sweep.PointComposer), so that the per-key checks of a thousand points do not convert a thousand
# whole configs again. Set for the duration of a validation by known_containers().
KNOWN_CONTAINERS: ContextVar[Dict[int, Tuple[DictConfig, dict]]] = ContextVar("known_containers", default={})


@contextmanager
def known_containers(pairs: Dict[int, Tuple[DictConfig, dict]]) -> Iterator[None]:
    token = KNOWN_CONTAINERS.set(pairs)
    try:
        yield
    finally:
        KNOWN_CONTAINERS.reset(token)


class SharedSections:
    """Top-level sections (plain, resolved) that configs being validated share by identity: a sweep's points share
    their composition's unchanged sections (launcher.sweep). The checks that read a section alone (by_section)
    check each of them once, not once per point."""

    def __init__(self) -> None:
        self.sections: Dict[int, Any] = {}  # {id: section}, each kept here, so that no other takes its id
        self.errors: Dict[Tuple[str, str, int], List[ConfigError]] = {}  # {(check, key, id): its errors}

    def add(self, sections: Iterable[Any]) -> None:
        self.sections.update((id(section), section) for section in sections)


SHARED_SECTIONS: ContextVar[Optional[SharedSections]] = ContextVar("shared_sections", default=None)


@contextmanager
def shared_sections(shared: SharedSections) -> Iterator[None]:
    token = SHARED_SECTIONS.set(shared)
    try:
        yield
    finally:
        SHARED_SECTIONS.reset(token)


def by_section(check: Callable[[dict], List[ConfigError]], container: dict) -> List[ConfigError]:
    """check(container) for a check whose errors on each top-level section depend on that section alone: made
    section by section, in order, a shared section's errors (SHARED_SECTIONS) those of its first check."""
    shared = SHARED_SECTIONS.get()
    if shared is None:
        return check(container)
    errors: List[ConfigError] = []
    for key, section in container.items():
        if shared.sections.get(id(section)) is not section:
            errors += check({key: section})
            continue
        memo = (check.__qualname__, key, id(section))
        if memo not in shared.errors:
            shared.errors[memo] = check({key: section})
        errors += shared.errors[memo]
    return errors


def plain_config(cfg: DictConfig) -> dict:
    """`cfg` as plain containers, every interpolation resolved: the known copy (known_containers), else converted."""
    config, container = KNOWN_CONTAINERS.get().get(id(cfg), (None, None))
    return container if config is cfg else OmegaConf.to_container(cfg, resolve=True)


def _key_errors(cfg: DictConfig) -> List[ConfigError]:
    """Each key on its own, one error per key: the specific checks come before the schema's generic one, which
    says nothing more of a key they named."""
    from launcher.schema_check import config_errors

    container = plain_config(cfg)
    return _one_per_key(by_section(_text_errors, container) + _secret_errors(cfg, container) + _env_errors(cfg.cluster)
                        + _time_limit_errors(cfg.cluster) + config_errors(cfg))


def _gpu_errors(cfg: DictConfig) -> List[ConfigError]:
    """What the quantization and the drafter need of cluster.gpu_type's compute capability."""
    q, d, c = cfg.quantization, cfg.drafter, cfg.cluster
    cc = compute_capability(cfg)
    if cc is None:
        return [ConfigError("cluster.gpu_type", c.gpu_type, "unknown GPU type; set cluster.gpu_compute_capability",
                            ", ".join(GPU_COMPUTE_CAPABILITY))]
    errors = []
    for key, value in (("quantization.qformat", q.qformat), ("quantization.kv_cache_dtype", q.kv_cache_dtype)):
        if value == "fp8" and cc < FP8_MIN_CC:
            errors.append(ConfigError(key, value, f"FP8 needs compute capability {FP8_MIN_CC}+ but "
                                      f"cluster.gpu_type={c.gpu_type} has {cc}; use quantization=int8_wo",
                                      "int8_wo, bf16 on this GPU"))
    if d.enabled and cc < REDRAFTER_MIN_CC:
        errors.append(ConfigError("drafter", d.name, f"ReDrafter needs compute capability {REDRAFTER_MIN_CC}+, "
                                  f"cluster.gpu_type={c.gpu_type} has {cc}", "drafter=none"))
    return errors


def _calibration_errors(cfg: DictConfig) -> List[ConfigError]:
    q = cfg.quantization
    if QFormat(q.qformat).needs_calibration and not q.calibrate:
        return [ConfigError("quantization.calibrate", q.calibrate, f"qformat {q.qformat} needs calibration", "true")]
    return []


def _available_gpus(c: DictConfig) -> int:
    return c.gpus_per_node * c.max_nodes


def _parallel_errors(cfg: DictConfig) -> List[ConfigError]:
    """The model's tensor x pipeline split: within the cluster, and along its heads and layers."""
    m, c = cfg.model, cfg.cluster
    available, tp, pp = _available_gpus(c), m.tensor_parallel, m.pipeline_parallel
    errors = []
    if tp * pp > available:
        errors.append(ConfigError("model.tensor_parallel", tp, f"tensor x pipeline parallel = {tp}x{pp} = {tp * pp} "
                                  f"GPUs, but cluster {c.name} offers {c.gpus_per_node} per node x {c.max_nodes} nodes",
                                  f"tp*pp <= {available}"))
    if tp >= 1 and m.num_attention_heads % tp:
        errors.append(ConfigError("model.tensor_parallel", tp, f"does not divide the {m.num_attention_heads} attention "
                                  f"heads of {m.hf_id}", _divisors(m.num_attention_heads)))
    elif tp >= 1 and m.num_kv_heads % tp and tp % m.num_kv_heads:
        errors.append(ConfigError("model.tensor_parallel", tp, f"neither divides nor is a multiple of the "
                                  f"{m.num_kv_heads} KV heads", _divisors(m.num_kv_heads)))
    if pp > m.num_layers:
        errors.append(ConfigError("model.pipeline_parallel", pp, f"more stages than the {m.num_layers} layers",
                                  f"<= {m.num_layers}"))
    return errors


def _model_build_errors(cfg: DictConfig) -> List[ConfigError]:
    """What the checkpoint tool and the plain engine's build limits need."""
    m = cfg.model
    errors = []
    if m.checkpoint_tool == CheckpointTool.trtllm_examples and not m.convert_script:
        errors.append(ConfigError("model.convert_script", None, "checkpoint_tool=trtllm_examples needs the model's "
                                  "convert script under TensorRT-LLM's examples/",
                                  "e.g. models/core/llama/convert_checkpoint.py"))
    return errors + _length_errors("model.max_input_len", m.max_input_len, "model.max_seq_len", m.max_seq_len)


def _drafter_errors(cfg: DictConfig) -> List[ConfigError]:
    """The drafter's training, conversion and speculative engine, against the base model and the cluster."""
    d, q, c = cfg.drafter, cfg.quantization, cfg.cluster
    if not d.enabled:
        return []
    errors = []
    available, tp = _available_gpus(c), cfg.model.tensor_parallel
    if d.draft_len_per_beam > d.predict_n_tokens:
        errors.append(ConfigError("drafter.draft_len_per_beam", d.draft_len_per_beam, "longer than the "
                                  f"{d.predict_n_tokens} tokens the drafter predicts (drafter.predict_n_tokens)",
                                  f"1..{d.predict_n_tokens}"))
    if d.tensor_parallel != tp:
        errors.append(ConfigError("drafter.tensor_parallel", d.tensor_parallel, "must equal the base checkpoint's "
                                  f"tensor parallel size (model.tensor_parallel={tp})", str(tp)))
    if d.scale_out_gpus is None and (d.num_gpus > available or d.num_gpus < 1):
        errors.append(ConfigError("drafter.num_gpus", d.num_gpus, f"cluster {c.name} offers {available} GPUs",
                                  f"1..{available}"))
    errors += _drafter_batch_errors(d)
    if d.engine_gemm_plugin == GemmPlugin.fp8 and q.qformat != QFormat.fp8:
        errors.append(ConfigError("drafter.engine_gemm_plugin", "fp8", f"needs an FP8 checkpoint, "
                                  f"quantization.qformat is {q.qformat}", "auto, or leave unset"))
    return errors + _length_errors("drafter.engine_max_input_len", d.engine_max_input_len,
                                   "drafter.engine_max_seq_len", d.engine_max_seq_len)


def _drafter_batch_errors(d: DictConfig) -> List[ConfigError]:
    """The trainer's samples per optimizer step (HF Trainer: processes x per-device batch x accumulation) must be
    drafter.global_batch_size: more GPUs shorten training only with the accumulation that keeps it."""
    if d.scale_out_gpus is not None:  # GPUs and accumulation derived from the global batch's per-device batches
        if d.global_batch_size % d.per_device_train_batch_size == 0:
            return []
        return [ConfigError("drafter.per_device_train_batch_size", d.per_device_train_batch_size, "does not divide "
                            f"drafter.global_batch_size={d.global_batch_size}, which drafter.scale_out_gpus keeps",
                            _divisors(d.global_batch_size))]
    per_step = d.num_gpus * d.per_device_train_batch_size
    if per_step * d.gradient_accumulation_steps == d.global_batch_size:
        return []
    problem = (f"drafter.num_gpus={d.num_gpus} x drafter.per_device_train_batch_size={d.per_device_train_batch_size}"
               f" x {d.gradient_accumulation_steps} = {per_step * d.gradient_accumulation_steps} samples per optimizer "
               f"step, not drafter.global_batch_size={d.global_batch_size}, which the learning rate and its "
               "schedule are tuned to")
    if d.global_batch_size % per_step == 0:
        allowed = (f"{d.global_batch_size // per_step} (= {d.global_batch_size} / ({d.num_gpus} x "
                   f"{d.per_device_train_batch_size})), or a new drafter.global_batch_size to change the optimisation")
    else:
        allowed = (f"a drafter.num_gpus x drafter.per_device_train_batch_size dividing {d.global_batch_size} "
                   f"({_divisors(d.global_batch_size)}) and the accumulation that makes up the rest")
    return [ConfigError("drafter.gradient_accumulation_steps", d.gradient_accumulation_steps, problem, allowed)]


def _benchmark_errors(cfg: DictConfig) -> List[ConfigError]:
    m, d, b = cfg.model, cfg.drafter, cfg.benchmark
    if b.kind == "load_sweep":
        return _load_sweep_errors(cfg)
    if b.kind == "cnn_dailymail":
        return _seed_protocol_errors(cfg)
    errors = []
    if not 1 <= b.cancel_after <= b.num_generations:
        errors.append(ConfigError("benchmark.cancel_after", b.cancel_after, "cannot exceed the generations started "
                                  f"(benchmark.num_generations={b.num_generations})", f"1..{b.num_generations}"))
    errors += _request_length_errors(m, d, b)
    if not b.problems_file or not os.path.isfile(b.problems_file):
        errors.append(ConfigError("benchmark.problems_file", b.problems_file, "no such file", "a JSONL file of problems"))
    return errors


PROMPT_SET_FIELDS = {"aimo": "problem", "chat": "prompt"}  # jobs.load_sweep.user_messages


def _load_sweep_errors(cfg: DictConfig) -> List[ConfigError]:
    """benchmark=load_sweep: its prompt file read as prompt_set says, its points, its SLOs and max_tokens."""
    m, d, b = cfg.model, cfg.drafter, cfg.benchmark
    errors = []
    field = PROMPT_SET_FIELDS[str(b.prompt_set)]
    allowed = f"a JSONL file of {{{field!r}: ...}} rows, or the other benchmark.prompt_set"
    try:
        with open(b.problems_file, encoding="utf-8") as rows:
            bad = next((f"row {i} has no non-empty {field!r}, which benchmark.prompt_set={b.prompt_set} reads"
                        for i, row in enumerate(json.loads(line) for line in rows if line.strip())
                        if not isinstance(row, dict) or not str(row.get(field) or "").strip()), None)
    except OSError as error:
        bad = f"cannot be read: {error.strerror}"
    except ValueError as error:
        bad = f"a line is not JSON: {error}"
    if bad:
        errors.append(ConfigError("benchmark.problems_file", b.problems_file, bad, allowed))
    if len(set(b.concurrency)) != len(b.concurrency) or not b.concurrency:
        errors.append(ConfigError("benchmark.concurrency", list(b.concurrency), "empty, or a concurrency given twice "
                                  "(each is one point of the curve)", "distinct concurrencies, e.g. [1,2,4,8]"))
    timed = [tag for tag in ("time_to_first_token", "inter_token_latency") if b.goodput[tag] is not None]
    if timed and not b.streaming:
        errors.append(ConfigError(f"benchmark.goodput.{timed[0]}", b.goodput[timed[0]], "AIPerf measures no first "
                                  "token or inter-token latency of answers that are not streamed "
                                  "(benchmark.streaming=false)", "null, or benchmark.streaming=true"))
    source, limit = served_max_seq_len(m, d)
    if b.output_tokens >= limit:
        errors.append(ConfigError("benchmark.output_tokens", b.output_tokens, "leaves no room for a prompt: the "
                                  "served engine refuses a request whose prompt tokens + max_tokens exceed its "
                                  f"max_seq_len, {source}", f"1..{limit - 1}, less the longest prompt"))
    return errors


def _seed_protocol_errors(cfg: DictConfig) -> List[ConfigError]:
    """benchmark=cnn_dailymail (seed 004): its prompts against the engine's limits; its token counts."""
    m, d, b = cfg.model, cfg.drafter, cfg.benchmark
    errors = []
    if d.enabled:
        # The C++ runtime serves ReDrafter engines (inflight batching, Triton's backend too), but a drafting step
        # streams several accepted tokens in one response, and the protocol counts one token per response.
        errors.append(ConfigError("drafter", d.name, "benchmark=cnn_dailymail counts one output token per streamed "
                                  "response, and a drafter streams several tokens in one: its OP tokens/sec would "
                                  "be wrong", "drafter=none with benchmark=cnn_dailymail"))
    if b.max_input_len > m.max_input_len:
        errors.append(ConfigError("benchmark.max_input_len", b.max_input_len, "the engine refuses a prompt longer "
                                  f"than its model.max_input_len={m.max_input_len}", f"1..{m.max_input_len}"))
    if b.max_input_len >= m.max_seq_len:
        errors.append(ConfigError("benchmark.max_input_len", b.max_input_len, "leaves no room for output tokens "
                                  f"within the engine's model.max_seq_len={m.max_seq_len}", f"1..{m.max_seq_len - 1}"))
    return errors


def _triton_errors(cfg: DictConfig) -> List[ConfigError]:
    """serving=triton: measured with the seed-004 protocol over its decoupled gRPC stream; no serve_only."""
    s, b = cfg.serving, cfg.benchmark
    if s.name != "triton":
        return []
    errors = []
    if b.kind != "cnn_dailymail":
        errors.append(ConfigError("benchmark.kind", b.kind, "serving=triton is measured with seed 004's protocol "
                                  "(Triton's gRPC stream); the notebook and the load sweep speak OpenAI's API",
                                  "benchmark=cnn_dailymail with serving=triton"))
    if not s.decoupled:
        errors.append(ConfigError("serving.decoupled", False, "the benchmark streams its requests, which Triton "
                                  "serves only from a decoupled model", "true"))
    if cfg.launcher.serve_only:
        errors.append(ConfigError("launcher.serve_only", True, "serves trtllm-serve's OpenAI API; serving=triton "
                                  "is benchmarked only", "false with serving=triton, or serving=trtllm"))
    if len({s.port, s.grpc_port, s.metrics_port}) < 3:
        errors.append(ConfigError("serving.grpc_port", s.grpc_port, "Triton's HTTP, gRPC and metrics ports start "
                                  f"from three different bases (serving.port={s.port}, serving.metrics_port="
                                  f"{s.metrics_port})", "three different ports"))
    return errors


def _serve_errors(cfg: DictConfig) -> List[ConfigError]:
    """launcher.serve_only: the benchmark job serves for serve_minutes, after its server's start-up; a time limit
    the cluster sets for it must leave it that long (a served job is not requeued: jobs.run_stage)."""
    launcher, limit = cfg.launcher, cfg.cluster.time_limits.get("benchmark")
    needed = stages.benchmark_time_limit_min(cfg)
    if not launcher.serve_only or limit is None or limit >= needed:
        return []
    return [ConfigError("launcher.serve_minutes", launcher.serve_minutes, f"with the server's start-up "
                        f"(serving.health_timeout_s={cfg.serving.health_timeout_s}) and {stages.SERVE_MARGIN_MIN} "
                        f"minutes to stop, serving needs {needed} minutes, but cluster.time_limits.benchmark={limit}",
                        f"<= {max(0, limit - needed + math.ceil(launcher.serve_minutes))} minutes, or a "
                        f"cluster.time_limits.benchmark of {needed} or more")]


def _port_errors(cfg: DictConfig) -> List[ConfigError]:
    s = cfg.serving
    if s.port == s.sandbox.port:
        return [ConfigError("serving.sandbox.port", s.sandbox.port, "the LLM server and the sandbox cannot start "
                            "from the same port", f"any other than serving.port={s.port}")]
    return []


def _storage_root_errors(cfg: DictConfig) -> List[ConfigError]:
    c = cfg.cluster
    if c.executor == Executor.slurm and not posixpath.isabs(c.storage_root):
        return [ConfigError("cluster.storage_root", c.storage_root, "a Slurm cluster's storage must be an absolute "
                            "path on a filesystem every node mounts", "an absolute path")]
    return []


def _container_errors(c: DictConfig, needed_containers: Tuple[str, ...]) -> List[ConfigError]:
    """An image for every container key the stages run in, in a form pyxis reads as meant."""
    if c.container_runtime != ContainerRuntime.pyxis:
        return []
    errors = []
    for key in needed_containers:
        if not c.containers.get(key):
            errors.append(ConfigError(f"cluster.containers.{key}", None, f"a stage needs the `{key}` container "
                                      f"but cluster {c.name} maps no image to it",
                                      "an image (nvcr.io#nvidia/...) or an absolute .sqsh path"))
        elif c.containers[key].endswith(".sqsh") and not posixpath.isabs(c.containers[key]):
            errors.append(ConfigError(f"cluster.containers.{key}", c.containers[key], "pyxis reads a relative "
                                      ".sqsh name as a registry image", "an absolute .sqsh path"))
    return errors


def _serving_stack_errors(cfg: DictConfig) -> List[ConfigError]:
    """What each serving stack serves (README "Serving stacks"): the pinned engine path ReDrafter and no other
    drafter; the checkpoint-loading stacks their own speculative methods and FP8 sources, and more GPUs than a
    node has in the layouts each stack splits over its nodes (_node_layout_errors)."""
    from launcher import serving_commands as sc

    s, d, m, q, c = cfg.serving, cfg.drafter, cfg.model, cfg.quantization, cfg.cluster
    stack = sc.stack(cfg)
    if stack == sc.TRTLLM:
        if d.method is not None:
            return [ConfigError("drafter.method", d.method, "the pinned engine path (serving=trtllm) drafts with "
                                "ReDrafter only", f"drafter=redrafter or none; drafter={d.method} with serving="
                                f"{', '.join(sc.CHECKPOINT_STACKS)}")]
        return []
    errors = []
    if d.enabled:
        errors.append(ConfigError("drafter", d.name, f"ReDrafter exists only on the TensorRT engine path "
                                  f"(trtllm-build explicit_draft_tokens), not on serving={s.name}",
                                  f"drafter={', '.join(sc.SUPPORTED_METHODS[stack])} or none; or serving=trtllm"))
    if d.method is not None and d.method not in sc.SUPPORTED_METHODS[stack]:
        errors.append(ConfigError("drafter.method", d.method, f"serving={s.name} has no such speculative decoding",
                                  ", ".join(sc.SUPPORTED_METHODS[stack])))
    if d.method == "mtp" and m.mtp_layers < 1:
        errors.append(ConfigError("drafter.method", "mtp", f"model {m.hf_id} has no multi-token-prediction layers "
                                  f"(model.mtp_layers={m.mtp_layers})", "ngram, draft_target, eagle3; or a model "
                                  "with MTP layers (model.mtp_layers > 0)"))
    if sc.downloads_draft_model(cfg) and not d.draft_model:
        errors.append(ConfigError("drafter.draft_model", d.draft_model, f"drafter={d.method} needs the draft model "
                                  "(draft_target) or EAGLE-3 head (eagle3) to download", "a Hugging Face repo id; "
                                  "for eagle3 also drafter.train_eagle3=true (trained here)"))
    if d.train_eagle3 and d.method != "eagle3":
        errors.append(ConfigError("drafter.train_eagle3", True, f"only an EAGLE-3 head is trained here, drafter="
                                  f"{d.name} has none", "false; or drafter=eagle3"))
    # Model-Optimizer 0.46.0 main.py init_distributed_env: dp_shard_size = WORLD_SIZE // cp_size must be >= 1
    # and the recipe trains on one node here (launch_train.sh without --num_nodes).
    if sc.trains_eagle3(cfg) and d.eagle3_num_gpus > c.gpus_per_node:
        errors.append(ConfigError("drafter.eagle3_num_gpus", d.eagle3_num_gpus, f"the EAGLE-3 recipe is launched on "
                                  f"one node here, which has {c.gpus_per_node} GPUs", f"1..{c.gpus_per_node}"))
    if q.qformat == "int8_wo":
        errors.append(ConfigError("quantization.qformat", q.qformat, f"serving={s.name} loads BF16 or ModelOpt FP8 "
                                  "checkpoints; INT8 weight-only is a TensorRT engine format here",
                                  "quantization=bf16 or fp8; or serving=trtllm"))
    if q.qformat == "fp8" and s.fp8_weights not in sc.SUPPORTED_FP8_WEIGHTS[stack]:
        errors.append(ConfigError("serving.fp8_weights", s.fp8_weights, f"serving={s.name} has no online FP8 "
                                  "quantization of BF16 weights", ", ".join(sc.SUPPORTED_FP8_WEIGHTS[stack])))
    errors += _node_layout_errors(cfg)
    return errors


def _node_layout_errors(cfg: DictConfig) -> List[ConfigError]:
    """A server over N nodes that places its ranks itself must split them evenly (launcher.serving_commands
    node_args). vLLM 0.33.0 (engine/arg_utils.py create_engine_config) asserts world_size % nnodes == 0; SGLang
    0.5.23 (entrypoints/engine.py _calculate_rank_ranges) starts max(pp//N, 1) pipeline x tp//max(N//pp, 1)
    tensor ranks on each node, and a world those do not make up never completes its torch.distributed group."""
    from launcher import serving_commands as sc

    m, c, n = cfg.model, cfg.cluster, sc.nodes(cfg)
    tp, pp = m.tensor_parallel, m.pipeline_parallel
    if n == 1 or sc.stack(cfg) not in ("vllm", "sglang"):
        return []
    layout = f"tensor x pipeline parallel {tp}x{pp} over {n} nodes of {c.gpus_per_node} GPUs"
    if sc.stack(cfg) == "vllm" and tp * pp % n:
        return [ConfigError("model.tensor_parallel", tp, f"{layout}: vLLM needs tp*pp divisible by its nodes "
                            "(--nnodes)", f"tp*pp a multiple of {n}, or a cluster.gpus_per_node that changes the "
                            "number of nodes")]
    per_node = max(pp // n, 1) * (tp // max(n // pp, 1))
    if sc.stack(cfg) == "sglang" and per_node * n != tp * pp:
        return [ConfigError("model.tensor_parallel", tp, f"{layout}: SGLang would start {per_node} ranks on each "
                            f"node, {per_node * n} in all, not the {tp * pp} of its world", "a layout SGLang splits "
                            "evenly: pp a multiple of the nodes, or the nodes a multiple of pp and tp a multiple "
                            "of nodes/pp")]
    return []


# The checks that relate keys to each other, in the order their errors are listed; each returns all it finds.
RELATION_CHECKS: Tuple[Callable[[DictConfig], List[ConfigError]], ...] = (
    _gpu_errors, _calibration_errors, _parallel_errors, _serving_stack_errors, _model_build_errors, _drafter_errors,
    _benchmark_errors,
    _port_errors, _sandbox_errors, name_errors, _umask_errors, _storage_root_errors, _serve_errors, _triton_errors,
)


def served_max_seq_len(m: DictConfig, d: DictConfig) -> Tuple[str, int]:
    """What bounds a request to the served engine: (its config, the engine's build_config.max_seq_len).
    trtllm-build adds the draft length to max_seq_len when the engine drafts (TensorRT-LLM builder.py build():
    max_draft_len = redrafter_num_beams x redrafter_draft_len_per_beam)."""
    if not d.enabled:
        return f"model.max_seq_len={m.max_seq_len}", m.max_seq_len
    draft = d.num_beams * d.draft_len_per_beam
    return (f"drafter.engine_max_seq_len={d.engine_max_seq_len} + {draft} draft tokens (drafter.num_beams x "
            f"drafter.draft_len_per_beam, which trtllm-build adds)", d.engine_max_seq_len + draft)


def _request_length_errors(m: DictConfig, d: DictConfig, b: DictConfig) -> List[ConfigError]:
    """TensorRT-LLM (TRT backend) refuses a request whose prompt tokens + max_tokens exceed the engine's
    max_seq_len (llmapi/llm.py _check_arguments). The client cuts each request's max_tokens to the room its prompt
    leaves; a max_new_tokens that leaves no room for a prompt cannot be what was meant."""
    source, limit = served_max_seq_len(m, d)
    if 1 <= b.max_new_tokens < limit:
        return []
    problem = "must be positive" if b.max_new_tokens < 1 else (
        "leaves no room for a prompt: the served engine refuses a request whose prompt tokens + max_tokens exceed "
        f"its max_seq_len, {source}" + (f" = {limit}" if d.enabled else ""))
    seq_key = "drafter.engine_max_seq_len" if d.enabled else "model.max_seq_len"
    return [ConfigError("benchmark.max_new_tokens", b.max_new_tokens, problem,
                        f"1..{limit - 1} (the client cuts each request to the room its prompt leaves), or a larger "
                        f"{seq_key}")]


def _length_errors(input_key: str, max_input_len: int, seq_key: str, max_seq_len: int) -> List[ConfigError]:
    if max_input_len > max_seq_len:
        return [ConfigError(input_key, max_input_len, f"above {seq_key}={max_seq_len}", f"<= {max_seq_len}")]
    return []


def _divisors(n: int) -> str:
    return ", ".join(str(i) for i in range(1, n + 1) if n % i == 0)
