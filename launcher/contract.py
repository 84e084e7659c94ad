"""What the login side (launcher/) and the stage jobs (jobs/) exchange, typed, and the names both sides use.

A launch writes files that jobs read later, on other machines, from a code snapshot that may be another version
of this package than the one a later `status` runs: the stage spec (launcher.scripts.stage_spec -> jobs.run_stage),
the report inputs (launcher.plan.report_inputs -> jobs.report), each artifact's manifest (jobs.run_stage ->
jobs.artifacts, the report, the launcher) and the experiment state (launcher.dispatch -> status, cancel). Each is
a dataclass here: writers build it, readers parse it with `from_json`, which refuses an unknown or a missing key
by name (a version skew fails at once, saying so, instead of a KeyError deep inside a job).

Standard library only, and nothing else of `launcher` is imported: jobs import this module in their containers,
where neither Hydra nor jinja2 is installed.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar, Dict, List, Optional

# --------------------------------------------------------------------------------------------------
# Names both sides use
# --------------------------------------------------------------------------------------------------
# An artifact's manifest, published last (atomically, with its directory): its presence means complete.
MANIFEST = "manifest.json"
# A benchmark artifact's results, written by jobs.benchmark_client, read by the report.
RESULTS = "results.json"
# Slurm accounting of an experiment's jobs, written on the host before the report job's container starts
# (sacct is not visible inside containers).
ACCOUNTING = "accounting.psv"
# Its columns: what the batch script asks `sacct --format=` for (comma-separated), what jobs.report parses.
ACCOUNTING_FIELDS = ("JobIDRaw", "JobName", "State", "ElapsedRaw", "AllocTRES", "Start", "End")
# TensorRT-LLM loads every data file of --calib_dataset: the parquet lives apart from the manifest.
CALIBRATION_SUBDIR = "calib"
REPORT_INPUTS = "report_inputs.json"  # in the experiment's directory
EXPERIMENTS = "experiments"  # <storage_root>/experiments/<experiment>: scripts, specs, logs, state, report
# In the experiment's directory: its jobs' WANDB_DIR (launcher.scripts.stage_env), where jobs.wandb_log writes
# offline runs and `python -m launcher sync` finds them.
WANDB_SUBDIR = "wandb"

# jobs.report's exit code when the report was written but some configuration did not finish: jobs.run_stage then
# does not publish it, and `python -m launcher report` passes it on. The launcher's own exit code for a pipeline
# that did not finish is the same number (launcher.exit_codes.PIPELINE_FAILED is this).
REPORT_INCOMPLETE = 3

# Benchmarks sharing a node must not share ports, and nothing may land on a port a daemon holds (slurmd's 6818
# is 6000 + 818): each benchmark starts looking at its base port + SLURM_JOB_ID % PORT_SPREAD and takes the first
# free one. The batch script does the same for the sandbox it starts and passes its choice in SANDBOX_PORT_ENV.
PORT_SPREAD = 1000
PORT_SEARCH = 100  # ports tried after the starting one
# The ports the benchmark's job chooses (jobs.ports, jobs.triton_serving) are handed to its tools as these
# environment variables; the commands the launcher writes name them as placeholders (`placeholder`), which
# the job expands (jobs.ports.expand).
SERVER_PORT_ENV = "LAUNCHER_SERVER_PORT"  # the LLM server's (Triton's HTTP port)
SANDBOX_PORT_ENV = "LAUNCHER_SANDBOX_PORT"
# Where the sandbox writes the port it listens on: a file the job reads (jobs.sandbox_guard --port-file).
SANDBOX_PORT_FILE_ENV = "LAUNCHER_SANDBOX_PORT_FILE"
GRPC_PORT_ENV = "LAUNCHER_TRITON_GRPC_PORT"  # Triton's gRPC port
METRICS_PORT_ENV = "LAUNCHER_TRITON_METRICS_PORT"  # Triton's metrics port
# A server whose nodes join each other themselves (vLLM, SGLang: launcher.serving_commands.node_args): each task of
# its step (jobs.server_launch) fills in its node's rank (SLURM_NODEID), and the head's host and rendezvous port,
# which the benchmark job on the first node, the head's, writes into the launch file with the command.
NODE_RANK_ENV = "LAUNCHER_NODE_RANK"
SERVER_HEAD_ENV = "LAUNCHER_SERVER_HEAD"
SERVER_DIST_PORT_ENV = "LAUNCHER_SERVER_DIST_PORT"
# Where the job starts looking for the rendezvous port (+ SLURM_JOB_ID % PORT_SPREAD, as for the others):
# torch.distributed's customary MASTER_PORT, away from the servers' HTTP ports.
SERVER_DIST_BASE_PORT = 29500
PLACEHOLDERS = (SERVER_PORT_ENV, SANDBOX_PORT_ENV, SANDBOX_PORT_FILE_ENV, GRPC_PORT_ENV, METRICS_PORT_ENV,
                NODE_RANK_ENV, SERVER_HEAD_ENV, SERVER_DIST_PORT_ENV)
# The file where the batch script writes the sandbox step's exit code when it ends: a sandbox that cannot
# start (a wrong image, a port taken meanwhile) fails the benchmark at once instead of after the health timeout.
SANDBOX_EXIT_ENV = "LAUNCHER_SANDBOX_EXIT"
# A server that spans nodes (launcher.serving_commands.spans_nodes) runs as a step of the batch script over all
# of the job's nodes, its tasks waiting (jobs.server_launch) for the argv the benchmark job on the first node
# writes into the launch file once it has chosen the server's port; the step's exit code goes to the exit file
# (read like SANDBOX_EXIT_ENV's), its output to the log file. All three live on the shared storage.
SERVER_LAUNCH_FILE_ENV = "LAUNCHER_SERVER_LAUNCH_FILE"
SERVER_EXIT_ENV = "LAUNCHER_SERVER_EXIT"
SERVER_LOG_ENV = "LAUNCHER_SERVER_LOG"


def placeholder(name: str) -> str:
    """How a command names the value of one of PLACEHOLDERS, for the job to fill in: `${NAME}`."""
    if name not in PLACEHOLDERS:
        raise ValueError(f"{name} is not one of the job's placeholders ({', '.join(PLACEHOLDERS)})")
    return f"${{{name}}}"


def experiment_dir(storage_root, experiment: str) -> Path:
    """Where an experiment keeps its scripts, stage specs, logs, code snapshot pointer, state and report."""
    return Path(storage_root) / EXPERIMENTS / experiment


# --------------------------------------------------------------------------------------------------
# Strict JSON <-> dataclass
# --------------------------------------------------------------------------------------------------
class ContractError(ValueError):
    """A file of the contract that this version cannot read: names the file, the key and what was wrong."""


SKEW = "written by another version of the launcher? launch again, so that the launch and its jobs run the same code"


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _at(key_path: str, message: str) -> ContractError:
    return ContractError(f"{key_path}: {message}" if key_path else message)


def _parse(hint, value, key_path: str):
    """`value` (parsed JSON) as `hint` says, checked all the way down; `key_path` names it (`variants.bf16[0]`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _parse_object(hint, value, key_path)
    if origin is typing.Union:  # Optional[X]: the key is there, its value may be null
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(inner, value, key_path)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _at(key_path, f"expected a JSON object, got {value!r}")
        if not args:
            return value
        return {k: _parse(args[1], v, f"{key_path}.{k}" if key_path else k) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise _at(key_path, f"expected a JSON list, got {value!r}")
        return [_parse(args[0], v, f"{key_path}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    raise _at(key_path, f"expected {_type_name(hint)}, got {value!r}")


def _parse_object(cls, data, key_path: str):
    if not isinstance(data, dict):
        raise _at(key_path, f"expected a JSON object, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    where = f"{key_path}: " if key_path else ""
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ContractError(f"{where}unknown key {unknown[0]!r} (a {cls.__name__} has {', '.join(known)}); {SKEW}")
    missing = [k for k in known if k not in data]
    if missing:
        raise ContractError(f"{where}missing key {missing[0]!r} (a {cls.__name__} has {', '.join(known)}); {SKEW}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _parse(hints[k], data[k], f"{key_path}.{k}" if key_path else k) for k in known})


def _parse_document(cls, data, where: str):
    """`data` as the dataclass `cls`; an error starts with `where`, the document (`stage spec /path/x.json`)."""
    try:
        return _parse_object(cls, data, "")
    except ContractError as error:
        raise ContractError(f"{where}: {error}") from None


# Values dataclasses.asdict copies with copy.deepcopy only to get the same object back: a sweep writes thousands
# of specs, and asdict's per-value deepcopy was most of the time spent writing each.
_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _as_plain(value):
    """dataclasses.asdict's copy of `value` (Python 3.11's _asdict_inner, dict_factory=dict), the atomic values
    kept as they are."""
    if type(value) in _ATOMIC:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*[_as_plain(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_as_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_as_plain(k), _as_plain(v)) for k, v in value.items())
    return copy.deepcopy(value)


def _json_float(value: float) -> str:
    """A float as the json module writes it (allow_nan)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_key(key) -> str:
    """A dict key as the json module turns it into a string (skipkeys=False)."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _json_float(key)
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _indented_into(value, parts: List[str], newline: str) -> None:
    if isinstance(value, str):
        parts.append(encode_basestring_ascii(value))
    elif value is None or value is True or value is False:
        parts.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_json_float(value))
    elif isinstance(value, (list, tuple, dict)):
        if not value:
            parts.append("{}" if isinstance(value, dict) else "[]")
            return
        inner, separator = newline + "  ", "{" if isinstance(value, dict) else "["
        for item in (value.items() if isinstance(value, dict) else value):
            parts.append(separator + inner)
            separator = ","
            if isinstance(value, dict):
                parts.append(encode_basestring_ascii(_json_key(item[0])) + ": ")
                item = item[1]
            _indented_into(item, parts, inner)
        parts.append(newline + ("}" if isinstance(value, dict) else "]"))
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def indented_json(data) -> str:
    """json.dumps(data, indent=2), the same text: with an indent the json module uses its pure-Python encoder, a
    generator per value; this appends the same pieces, strings escaped by the same C function."""
    parts: List[str] = []
    _indented_into(data, parts, "\n")
    return "".join(parts)


class Document:
    """A dataclass that crosses the boundary as a JSON file."""

    WHAT: ClassVar[str]  # how an error names it

    def to_json(self) -> dict:
        return _as_plain(self)

    @classmethod
    def from_json(cls, data, where: Optional[str] = None):
        return _parse_document(cls, data, where or cls.WHAT)

    def write(self, path) -> None:
        Path(path).write_text(indented_json(self.to_json()))

    @classmethod
    def read(cls, path):
        """Parsed from the file at `path`; FileNotFoundError when there is none, ContractError when it is bad."""
        text = Path(path).read_text()
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ContractError(f"{cls.WHAT} {path}: not valid JSON ({len(text.encode())} bytes): {error}") from None
        return cls.from_json(data, f"{cls.WHAT} {path}")


# --------------------------------------------------------------------------------------------------
# The stage spec: everything a stage job needs, written beside its batch script
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageResources:
    gpus_per_node: int
    nodes: int
    cpus_per_task: int
    mem_gb: int
    time_min: int


@dataclass(frozen=True)
class GpuRequirement:
    """What the job checks of its GPUs before running its tools (jobs.gpu_check), from the config's promises."""
    count: int
    min_compute_capability: Optional[float]  # None: any
    why: str  # the config key that sets the minimum (`quantization.qformat=fp8`)
    gpu_type: str  # cluster.gpu_type
    expected_compute_capability: Optional[float]  # what cluster.gpu_type promises
    engine_manifest: Optional[str]  # a benchmark's engine: it runs only on the architecture it was built on


@dataclass(frozen=True)
class BenchmarkSettings:
    server_url: str
    sandbox_url: str
    health_timeout_s: float
    start_sandbox: bool  # locally the job starts the sandbox; on Slurm the batch script does, as its own step


@dataclass(frozen=True)
class DrafterGate:
    """The drafter quality gate: measured by train_drafter, decided by convert_drafter (never fingerprinted)."""
    min_top1: float
    on_low_quality: str  # fail | warn
    gate_window: int
    predict_n_tokens: int


def gate_settings(drafter) -> DrafterGate:
    """The gate of a drafter config (DictConfig or dict)."""
    return DrafterGate(min_top1=float(drafter["min_top1"]), on_low_quality=str(drafter["on_low_quality"]),
                       gate_window=int(drafter["gate_window"]), predict_n_tokens=int(drafter["predict_n_tokens"]))


@dataclass(frozen=True)
class StageSpec(Document):
    WHAT: ClassVar[str] = "stage spec"

    experiment: str
    name: str
    kind: str
    fingerprint: str
    artifact: str
    staging_dir: str
    commands: Dict[str, List[str]]  # named argv lists, run in order
    config: Dict[str, Any]  # the fingerprinted config values
    inputs: Dict[str, str]  # input stage name: its artifact
    resources: StageResources
    secret_env_vars: List[str]  # by name only
    drafter: Optional[DrafterGate]  # train_drafter, convert_drafter
    benchmark: Optional[BenchmarkSettings]  # benchmark
    gpu_check: Optional[GpuRequirement]  # GPU stages


# --------------------------------------------------------------------------------------------------
# The manifest of a published artifact
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest(Document):
    """Written last into a stage's staging directory, which is then renamed into its artifact.

    On disk its `outputs` (what the stage kind measured: gpus, drafter_metrics, engine_size_bytes, ...) sit beside
    the fixed keys, as every published artifact has them; a key of `outputs` may not shadow a fixed one."""
    WHAT: ClassVar[str] = "manifest"
    FIXED: ClassVar[tuple] = ("stage", "name", "experiment", "fingerprint", "config", "inputs", "job_id",
                              "restart_count", "started", "ended", "size_bytes", "versions", "files")

    stage: str  # the stage kind
    name: str
    experiment: str  # the experiment whose job published it
    fingerprint: str
    config: Dict[str, Any]
    inputs: Dict[str, str]
    job_id: Optional[str]  # None: not a Slurm job
    restart_count: int
    started: float
    ended: float
    size_bytes: int
    versions: Dict[str, str]
    # {path relative to the artifact: size in bytes}; None only in artifacts published before manifests listed
    # their files (their identity is all there is to check: rebuilding them would cost GPU-hours)
    files: Optional[Dict[str, int]]
    outputs: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        shadowing = sorted(set(self.outputs) & set(self.FIXED))
        if shadowing:
            raise ContractError(f"manifest outputs {shadowing} would overwrite its own keys")

    def to_json(self) -> dict:
        fixed = {k: v for k, v in dataclasses.asdict(self).items() if k != "outputs"}
        return {**fixed, **self.outputs}

    @classmethod
    def from_json(cls, data, where: Optional[str] = None):
        where = where or cls.WHAT
        if not isinstance(data, dict):
            raise ContractError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fixed = {k: data[k] for k in cls.FIXED if k in data}
        fixed.setdefault("files", None)  # see `files`
        parsed = _parse_document(_ManifestFixed, fixed, where)
        return cls(**dataclasses.asdict(parsed), outputs={k: v for k, v in data.items() if k not in cls.FIXED})


# The fixed keys alone: what Manifest.from_json checks strictly (its outputs are the stage kind's own).
_ManifestFixed = dataclasses.make_dataclass(
    "Manifest", [(f.name, f.type) for f in dataclasses.fields(Manifest) if f.name != "outputs"],
    namespace={"__module__": __name__})


# --------------------------------------------------------------------------------------------------
# The report's inputs: each configuration's chain of stages
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportStage:
    kind: str
    name: str
    artifact: str


@dataclass(frozen=True)
class ReportInputs(Document):
    WHAT: ClassVar[str] = "report inputs"

    experiment: str
    baseline: Optional[str]  # the configuration the speed-ups are relative to
    variants: Dict[str, List[ReportStage]]  # configuration, in display order: its stages in dependency order


# --------------------------------------------------------------------------------------------------
# The experiment's state: what its last launch did, read by status, logs, cancel and report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageRecord:
    kind: str
    fingerprint: str
    artifact: str
    action: str  # complete | submitted | reused from <experiment>
    job_id: Optional[str]  # None: nothing runs for it
    log: Optional[str]
    damaged_moved_to: Optional[str] = None  # where a damaged artifact was moved aside, before rebuilding it


@dataclass(frozen=True)
class ExperimentState(Document):
    WHAT: ClassVar[str] = "experiment state"

    experiment: str
    executor: str  # slurm | local
    storage_root: str
    code: str  # the code snapshot its jobs run
    submitted_at: float
    stages: Dict[str, StageRecord]
    umask: str  # cluster.umask: what `report` regenerates follows it too
