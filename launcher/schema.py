"""Structured configs: every key the launcher reads, with its type and default.

Each dataclass backs one Hydra config group (``conf/<group>/``); registering them in Hydra's
ConfigStore makes an unknown key or a wrong type fail at compose time, naming the key. What a key may hold
lives here too: a Choice (an Enum: other values fail at compose time), a Range for every number and a Form
for paths and mounts (field metadata, enforced by launcher.schema_check), and UsedWhen: the setting under
which a key is used at all (an override of it otherwise changes nothing, and is refused).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from launcher.contract import PORT_SEARCH, PORT_SPREAD
from launcher.stages import STAGE_KINDS

# The Hydra config tree beside the package, defined where --help reads it without importing Hydra.
from launcher.user_config import CONF_DIR


class Choice(str, Enum):
    """A key with a fixed set of values: OmegaConf refuses any other at compose time, naming the key, the value
    and the choices. Member names equal their values, and a member is its string wherever it goes (argv, f-strings,
    JSON fingerprints, YAML), so code compares it with plain strings."""
    __str__ = str.__str__
    __format__ = str.__format__

    def __repr__(self) -> str:
        return repr(self.value)


# Configs are written as YAML (a sweep point's config.yaml, the launch's saved config): a choice is its string.
yaml.SafeDumper.add_multi_representer(Choice, lambda dumper, value: dumper.represent_str(str(value)))
if hasattr(yaml, "CSafeDumper"):
    yaml.CSafeDumper.add_multi_representer(Choice, lambda dumper, value: dumper.represent_str(str(value)))


@dataclass(frozen=True)
class Range:
    """The values a numeric key may take, enforced by launcher.schema_check for every int and float key (and the
    values of a Dict[str, int]): finite, low..high, or low excluded (`above`) for what must be positive."""
    low: float
    high: float
    above: bool = False
    unit: str = ""
    why: str = ""  # what the bounds come from, said with the error

    def __contains__(self, value: Any) -> bool:
        return (self.low < value if self.above else self.low <= value) and value <= self.high

    def allowed(self, name: str) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return (f"{self.low} < {name} <= {self.high}" if self.above else f"{self.low}..{self.high}") + unit


@dataclass(frozen=True)
class Form:
    """The shape a string key (or each entry of a list of strings) must have, as a regular expression."""
    pattern: str
    allowed: str
    what: str = "of its form"  # said of a value that does not match: "not {what}"

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


_NO_CONTROL = r"[^\x00-\x1f\x7f]"
PATH = Form(f"{_NO_CONTROL}+", "a path", "a path")
ABSOLUTE_PATH = Form(f"/{_NO_CONTROL}*", "an absolute path", "an absolute path")
# Under another directory (TensorRT-LLM's examples/): relative, and never out of it through `..`.
RELATIVE_PATH = Form(rf"(?!/)(?!(?:.*/)?\.\.(?:/|$)){_NO_CONTROL}+", "a relative path without `..`", "a relative path")
# pyxis' --container-mounts entries: commas separate entries, colons the parts, `+` the flags (ro+rprivate).
MOUNT = Form(r"/[^:,\x00-\x1f\x7f]*:/[^:,\x00-\x1f\x7f]*(?::[a-z]+(?:\+[a-z]+)*)?",
             "SRC:DST or SRC:DST:FLAGS (ro, rw, ro+rprivate, ...), both absolute paths", "a mount")
# huggingface_hub's validate_repo_id: `name` or `namespace/name`, no `--` or `..`, at most 96 characters.
HF_REPO = Form(r"(?!.*(?:--|\.\.))(?=.{1,96}$)[\w.-]+(?:/[\w.-]+)?", "a Hugging Face repo id (namespace/name)",
               "a Hugging Face repo id")


def ranged(default: Any, low: float, high: float, *, above: bool = False, unit: str = "", why: str = "") -> Any:
    """A numeric field and its Range."""
    return field(default=default, metadata={"range": Range(low, high, above, unit, why)})


def formed(default: Any, form: Form) -> Any:
    """A string field (a list of strings: each entry) and its Form."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"form": form})
    return field(default=default, metadata={"form": form})


@dataclass(frozen=True)
class UsedWhen:
    """Keys of a node that only matter while its key `gate` has one of `values`: overriding one of them otherwise
    changes nothing, a silent mistake that validation refuses (launcher.schema_check.unused_override_errors).
    `keys` empty: every key of the node but the gate and `unless`."""
    gate: str
    values: Tuple[Any, ...]
    keys: Tuple[str, ...] = ()
    unless: Tuple[str, ...] = ()
    why: str = ""
    remedy: str = ""  # how to choose a setting that uses them; `gate=values[0]` when empty

    def governs(self, key: str) -> bool:
        return key in self.keys if self.keys else key != self.gate and key not in self.unless


# Largest sizes: token counts, batch sizes, GPU counts. A typo of a few digits more fails here, not in a job.
MAX_TOKENS = 1 << 20
MAX_BATCH = 1 << 16
MAX_GPUS = 1024
MAX_BASE_PORT = 65535 - PORT_SPREAD - PORT_SEARCH
PORT_WHY = f"a job looks for a free port from here up to {PORT_SPREAD + PORT_SEARCH} above it"
# Slurm warns a stage (USR2) up to 90 s + 60 s before its limit: shorter limits are refused by validation with why.
MIN_TIME_LIMIT_MIN = 5


class CheckpointTool(Choice):
    nemo_skills = "nemo_skills"
    trtllm_examples = "trtllm_examples"


class CheckpointDtype(Choice):  # --dtype of quantize.py and the convert_checkpoint.py scripts
    auto = "auto"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"


class DrafterDtype(Choice):  # examples/redrafter/convert_checkpoint.py --dtype
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"


class GemmPlugin(Choice):  # trtllm-build --gemm_plugin
    auto = "auto"
    disable = "disable"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"
    fp8 = "fp8"


class KVCacheType(Choice):  # trtllm-build --kv_cache_type
    paged = "paged"
    continuous = "continuous"
    disabled = "disabled"


class QFormat(Choice):  # TensorRT-LLM quantize.py --qformat
    full_prec = "full_prec"
    fp8 = "fp8"
    int8_wo = "int8_wo"

    @property
    def needs_calibration(self) -> bool:
        """FP8 scales activations by ranges measured on calibration data; INT8 weight-only and full precision
        read the weights alone."""
        return self is QFormat.fp8


class KVCacheDtype(Choice):
    fp8 = "fp8"
    int8 = "int8"


class SaveStrategy(Choice):  # the HF Trainer's
    no = "no"
    steps = "steps"
    epoch = "epoch"


class LRScheduler(Choice):  # transformers' SchedulerType (transformers<5)
    linear = "linear"
    cosine = "cosine"
    cosine_with_restarts = "cosine_with_restarts"
    polynomial = "polynomial"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    inverse_sqrt = "inverse_sqrt"
    reduce_lr_on_plateau = "reduce_lr_on_plateau"
    cosine_with_min_lr = "cosine_with_min_lr"
    warmup_stable_decay = "warmup_stable_decay"


class OnLowQuality(Choice):
    fail = "fail"
    warn = "warn"


class Backend(Choice):  # trtllm-serve --backend: the engines built here are TRT engines
    trt = "trt"


class Executor(Choice):
    local = "local"
    slurm = "slurm"


class ContainerRuntime(Choice):
    pyxis = "pyxis"
    none = "none"


@dataclass
class ModelConfig:
    # Only for checkpoint_tool=trtllm_examples (its unquantized converter).
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("checkpoint_tool", (CheckpointTool.trtllm_examples,), keys=("convert_script",)),)

    name: str = MISSING  # short name used in stage labels
    hf_id: str = formed(MISSING, HF_REPO)
    revision: Optional[str] = None
    num_layers: int = ranged(MISSING, 1, 1024)
    num_attention_heads: int = ranged(MISSING, 1, 1024)
    num_kv_heads: int = ranged(MISSING, 1, 1024)
    trust_remote_code: bool = False
    # --dtype of the checkpoint tools: the seeds use `auto` (the weights' own dtype) for OpenMath.
    dtype: CheckpointDtype = CheckpointDtype.auto
    tensor_parallel: int = ranged(1, 1, MAX_GPUS)
    pipeline_parallel: int = ranged(1, 1, MAX_GPUS)
    # How the TensorRT-LLM checkpoint is made: `nemo_skills` runs NeMo-Skills' copy of quantize.py for
    # every qformat (seeds 001/002); `trtllm_examples` runs TensorRT-LLM's examples (seeds 003/004).
    checkpoint_tool: CheckpointTool = CheckpointTool.nemo_skills
    # Path under TensorRT-LLM's examples/ of the model's unquantized converter (checkpoint_tool=trtllm_examples).
    convert_script: Optional[str] = formed(None, RELATIVE_PATH)
    # Engine build limits (trtllm-build) of the plain engine.
    max_input_len: int = ranged(MISSING, 1, MAX_TOKENS, unit="tokens")
    max_seq_len: int = ranged(MISSING, 1, MAX_TOKENS, unit="tokens")
    max_batch_size: int = ranged(512, 1, MAX_BATCH)
    max_num_tokens: int = ranged(8192, 1, MAX_TOKENS, unit="tokens")
    gemm_plugin: GemmPlugin = GemmPlugin.auto
    kv_cache_type: Optional[KVCacheType] = None  # `paged` is trtllm-build's default; seed 003 passes it explicitly
    use_paged_context_fmha: bool = True


@dataclass
class QuantizationConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("calibrate", (True,), keys=("calib_dataset", "calib_split", "calib_size", "calib_batch_size",
                                             "calib_max_seq_length", "calib_prompt"),
                 why="without calibration no calibration data is made"),)

    name: str = MISSING
    qformat: QFormat = MISSING
    kv_cache_dtype: Optional[KVCacheDtype] = None
    calibrate: bool = False
    calib_dataset: str = formed("nvidia/OpenMathReasoning", HF_REPO)
    calib_split: str = "tir"
    calib_size: int = ranged(4096, 1, 1_000_000, unit="samples")
    calib_batch_size: int = ranged(4, 1, 4096)
    calib_max_seq_length: int = ranged(512, 1, MAX_TOKENS, unit="tokens")
    calib_prompt: str = "generic/math"


@dataclass
class DrafterConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("enabled", (True,), unless=("name",), why="no drafter is trained or used (drafter=none)",
                 remedy="drafter=redrafter (or +experiment=fp8_redrafter)"),
        UsedWhen("save_strategy", (SaveStrategy.steps,), keys=("save_steps",), why="no checkpoint every N steps"),
        UsedWhen("save_strategy", (SaveStrategy.steps, SaveStrategy.epoch), keys=("save_total_limit",),
                 why="the trainer saves no checkpoints"),
    )

    name: str = "none"
    enabled: bool = False
    # Training (NeMo-Skills train_redrafter: the seed's flags, one key each).
    dataset: str = formed("nvidia/OpenMathReasoning", HF_REPO)
    dataset_split: str = "tir"
    dataset_nrows: int = ranged(50000, 1, 1_000_000_000, unit="rows")
    num_gpus: int = ranged(2, 1, MAX_GPUS)
    num_train_epochs: int = ranged(1, 1, 1000)
    per_device_train_batch_size: int = ranged(1, 1, 4096)
    gradient_accumulation_steps: int = ranged(4, 1, 4096)
    # `steps` makes training resumable after a requeue (checkpoint-* every save_steps)
    save_strategy: SaveStrategy = SaveStrategy.no
    save_steps: int = ranged(500, 1, 1_000_000_000, unit="steps")
    # Checkpoints kept (the trainer's --save_total_limit, when it saves any): each holds the whole frozen base
    # model and the optimizer state (tens of GB for a 14B model); only the newest is needed to resume.
    save_total_limit: int = ranged(2, 1, 1000)
    learning_rate: float = ranged(0.001, 0, 10, above=True)
    weight_decay: float = ranged(0.0, 0, 1)
    warmup_ratio: float = ranged(0.1, 0, 1, why="a fraction of the training steps")
    lr_scheduler_type: LRScheduler = LRScheduler.cosine
    logging_steps: int = ranged(20, 1, 1_000_000_000, unit="steps")
    bf16: bool = True
    tf32: bool = True
    model_max_length: int = ranged(2048, 1, MAX_TOKENS, unit="tokens")
    predict_n_tokens: int = ranged(3, 1, 32, unit="tokens")
    num_layers: int = ranged(2, 1, 64)
    rnn: bool = True
    report_to: str = "wandb"
    # Conversion (TensorRT-LLM examples/redrafter/convert_checkpoint.py).
    dtype: DrafterDtype = DrafterDtype.bfloat16
    tensor_parallel: int = ranged(1, 1, MAX_GPUS)  # must equal the base checkpoint's (model.tensor_parallel)
    num_beams: int = ranged(1, 1, 64)
    draft_len_per_beam: int = ranged(3, 1, 32, unit="tokens")
    greedy_search: bool = True
    # Quality gate: the mean of the last gate_window logged redrafter{predict_n_tokens-1}_top1 (each logged value
    # is one micro-batch's) >= min_top1. A decision taken where the drafter is used (convert_drafter, and the
    # launcher when the drafter is published): these three keys never retrain it.
    min_top1: float = ranged(0.6, 0, 1, why="an accuracy")
    on_low_quality: OnLowQuality = OnLowQuality.fail
    gate_window: int = ranged(5, 1, 1_000_000, unit="logged values")
    # Speculative engine build (trtllm-build --speculative_decoding_mode explicit_draft_tokens).
    engine_max_batch_size: int = ranged(32, 1, MAX_BATCH)
    engine_max_input_len: int = ranged(32000, 1, MAX_TOKENS, unit="tokens")
    engine_max_seq_len: int = ranged(32000, 1, MAX_TOKENS, unit="tokens")
    engine_max_num_tokens: int = ranged(32000, 1, MAX_TOKENS, unit="tokens")
    engine_gemm_plugin: Optional[GemmPlugin] = None  # None: fp8 on an FP8 checkpoint, auto otherwise
    engine_kv_cache_type: KVCacheType = KVCacheType.paged


@dataclass
class SandboxConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("enabled", (True,), why="no sandbox is started: the benchmark runs no code"),)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = ranged(6000, 1024, MAX_BASE_PORT, why=PORT_WHY)
    # Wall-time cap of one tool call, enforced by the sandbox (jobs.sandbox_guard): a cell still running after
    # it is killed with its session's process (the session's state is lost) and answered "Timed out". The
    # benchmark client also sends it as each call's `timeout`.
    timeout_s: float = ranged(10.0, 0, 600, above=True, unit="seconds",
                              why="the wall-time cap of one tool call, enforced by the sandbox (a cell past it is "
                              "killed); a tool call holds its generation, longer work is no tool call")
    max_output_characters: int = ranged(1000, 1, 1_000_000)
    # Address space (RLIMIT_AS) of each session's process, in MiB: a cell allocating more gets a MemoryError.
    # A worker needs ~0.4 GiB after importing IPython, numpy, scipy and sympy.
    memory_limit_mb: int = ranged(4096, 1024, 65536, unit="MiB", why="the address space of each sandbox session's "
                                  "process; below 1024 MiB importing IPython, numpy, scipy and sympy may already fail")
    # Plain (non-secret) variables for the sandbox's processes, by value (OMP_NUM_THREADS, ...).
    env: Dict[str, str] = field(default_factory=dict)
    # Extra mounts of the sandbox step's container, SRC:DST[:FLAGS] (pyxis); besides them it sees only the
    # launch's code snapshot, read-only.
    mounts: List[str] = formed([], MOUNT)


@dataclass
class ServingConfig:
    name: str = "trtllm"
    backend: Backend = Backend.trt
    host: str = "127.0.0.1"
    port: int = ranged(5000, 1024, MAX_BASE_PORT, why=PORT_WHY)
    kv_cache_free_gpu_memory_fraction: float = ranged(0.92, 0, 1, above=True, why="a fraction of the GPU memory "
                                                      "left free after the weights, given to the KV cache")
    max_batch_size: int = ranged(12, 1, MAX_BATCH)
    health_timeout_s: int = ranged(1800, 1, 86400, unit="seconds")
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


@dataclass
class BenchmarkConfig:
    name: str = "aimo_notebook"
    problems_file: str = formed(MISSING, PATH)  # JSONL: {"problem": ..., optional "expected_answer", "id"}
    num_generations: int = ranged(12, 1, 1024)
    cancel_after: int = ranged(10, 1, 1024)
    temperature: float = ranged(0.7, 0, 10, why="a sampling temperature; 0 is greedy")
    max_new_tokens: int = ranged(20000, 1, MAX_TOKENS, unit="tokens")
    max_code_executions: int = ranged(2, 0, 1000)
    prompt: str = "generic/math"


@dataclass
class ClusterConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("executor", (Executor.slurm,), keys=("account", "partition", "cpu_partition", "qos"),
                 why="stages run on this machine, without Slurm"),
        UsedWhen("container_runtime", (ContainerRuntime.pyxis,), keys=("containers", "mounts"),
                 why="stages run without containers"),
    )

    name: str = MISSING
    executor: Executor = Executor.local
    account: Optional[str] = None
    partition: Optional[str] = None
    cpu_partition: Optional[str] = None  # for stages that need no GPU; defaults to `partition`
    qos: Optional[str] = None
    gpus_per_node: int = ranged(8, 1, 64)
    gpu_type: str = "h100"
    # overrides the table for gpu_type
    gpu_compute_capability: Optional[float] = ranged(None, 3.0, 20.0, why="a CUDA compute capability such as 9.0")
    max_nodes: int = ranged(1, 1, 10000)
    cpus_per_gpu: int = ranged(16, 1, 1024)
    mem_per_gpu_gb: int = ranged(200, 1, 16384, unit="GB")
    # Time limits per stage kind (its keys), in minutes; the other kinds keep launcher.plan's defaults.
    time_limits: Dict[str, int] = field(default_factory=dict, metadata={
        "keys": STAGE_KINDS, "range": Range(MIN_TIME_LIMIT_MIN, 525600, unit="minutes")})
    container_runtime: ContainerRuntime = ContainerRuntime.pyxis
    containers: Dict[str, str] = field(default_factory=dict)  # container key -> image or .sqsh
    mounts: List[str] = formed([], MOUNT)  # besides storage and code
    # the python that runs jobs (inside the container when there is one)
    python: str = formed("python", Form(r"/[^\x00-\x20\x7f]*|[\w.+-]+", "a command on the PATH (python3) or "
                                                                        "an absolute path", "a command"))
    trtllm_examples_dir: str = formed("/opt/TensorRT-LLM/examples", ABSOLUTE_PATH)
    env_vars: List[str] = field(default_factory=list)  # names passed to jobs; values never stored
    # Plain (non-secret) variables for every stage job, by value: exported by the batch script and named in
    # --container-env, so the image's own ENV cannot override them (NCCL_DEBUG, TOKENIZERS_PARALLELISM, ...).
    env: Dict[str, str] = field(default_factory=dict)
    required_env_vars: List[str] = field(default_factory=list)
    storage_root: str = formed(MISSING, PATH)
    # The umask of everything the launcher and its jobs write (scripts, configs, logs, artifacts): the storage
    # root is shared, and logs and configs are the user's. Octal with its leading 0, a string: in YAML a bare
    # 027 is the number 23. `027`: the group may read, others nothing; `077`: private; `022`: anyone may read.
    umask: str = "027"
    compute_has_internet: bool = True


@dataclass
class LauncherConfig:
    dry_run: bool = False
    experiment_name: str = MISSING
    wandb_project: str = "launcher"
    # A campaign: each entry names an experiment composed with the same overrides; empty for one.
    campaign: List[str] = field(default_factory=list)
    # Experiments a sweep (`-m`) of this experiment is compared against in its report, run once.
    baselines: List[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = MISSING
    quantization: QuantizationConfig = MISSING
    drafter: DrafterConfig = MISSING
    serving: ServingConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    cluster: ClusterConfig = MISSING
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


GROUPS = {
    "model": ModelConfig,
    "quantization": QuantizationConfig,
    "drafter": DrafterConfig,
    "serving": ServingConfig,
    "benchmark": BenchmarkConfig,
    "cluster": ClusterConfig,
}


def register_configs() -> None:
    # `${launcher_conf:benchmark/problems/x.jsonl}` names a file shipped in conf/, wherever it is installed.
    OmegaConf.register_new_resolver("launcher_conf", lambda rel: str(CONF_DIR / rel), replace=True)
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    # Multirun plans every point together (hydra_plugins/launcher_sweep); Hydra must be able to find it.
    if str(CONF_DIR.parent) not in sys.path:
        sys.path.append(str(CONF_DIR.parent))
    store.store(group="hydra/launcher", name="plan", provider="launcher",
                node={"_target_": "hydra_plugins.launcher_sweep.plan_launcher.PlanLauncher"})
    store.store(group="hydra/sweeper", name="plan", provider="launcher",
                node={"_target_": "hydra_plugins.launcher_sweep.plan_sweeper.PlanSweeper", "max_batch_size": None,
                      "params": None})
    for group, schema in GROUPS.items():
        store.store(group=group, name=f"{group}_schema", node=schema)
