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
from launcher.stages import CNN_DAILYMAIL_KEYS, LOAD_SWEEP_KEYS, NOTEBOOK_KEYS, STAGE_KINDS

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


class ServingStack(Choice):
    """What serves the model (launcher.serving_commands): `trtllm` is the pinned recipe (TensorRT-LLM 1.1.0rc0,
    a TensorRT engine built here); the others load the HF checkpoint (or a ModelOpt FP8 export of it) directly,
    each in its own pinned image (cluster.containers.<stack>)."""
    trtllm = "trtllm"
    trtllm_pytorch = "trtllm_pytorch"
    vllm = "vllm"
    sglang = "sglang"


class Fp8Weights(Choice):
    """Where the FP8 weights of quantization=fp8 come from on the stacks that load checkpoints: a ModelOpt export
    calibrated on our calibration data (stage quantize_modelopt), or the server quantizing the BF16 weights as it
    loads them (vLLM and SGLang `--quantization fp8`: per-tensor dynamic scales, no calibration)."""
    modelopt = "modelopt"
    online = "online"


class SpeculativeMethod(Choice):
    """Speculative decoding on the stacks that load checkpoints (drafter.method); ReDrafter is drafter=redrafter,
    on the pinned engine path only."""
    ngram = "ngram"  # prompt lookup: drafts copied from the prompt and output so far, nothing trained
    draft_target = "draft_target"  # a smaller model of the same family and tokenizer (drafter.draft_model)
    eagle3 = "eagle3"  # an EAGLE-3 head trained for the model (drafter.draft_model)
    mtp = "mtp"  # the model's own multi-token-prediction layers (model.mtp_layers)


class BenchmarkKind(Choice):  # what the benchmark stage runs against the server it starts
    notebook = "notebook"  # jobs.benchmark_client: the seeds' AIMO notebook protocol (with the code sandbox)
    load_sweep = "load_sweep"  # jobs.load_sweep: NVIDIA AIPerf swept over concurrencies (no sandbox)
    cnn_dailymail = "cnn_dailymail"  # jobs.triton_benchmark: seed 004's CNN/DailyMail prompts at once, its table


class PromptSet(Choice):  # the rows of benchmark.problems_file a load sweep reads (jobs.load_sweep.user_messages)
    aimo = "aimo"  # {"problem": ...}, sent in the benchmark.prompt template
    chat = "chat"  # {"prompt": ...}, sent as it is


class Endpoint(Choice):  # AIPerf --endpoint-type: /v1/completions (chat template applied by the client) or chat
    completions = "completions"
    chat = "chat"


class TritonEntryModel(Choice):  # the decoupled text models of the inflight_batcher_llm repository
    ensemble = "ensemble"
    tensorrt_llm_bls = "tensorrt_llm_bls"


class Overlong(Choice):  # jobs.prompt_set --overlong: a prompt over benchmark.max_input_len tokens
    truncate = "truncate"
    skip = "skip"


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
    # Billions of parameters: the quantizers get the GPUs its weights fit on (launcher.stages.weights_gb).
    params_b: Optional[float] = ranged(None, 0, 100_000, above=True, unit="billion parameters")
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
    # Multi-token-prediction layers of the checkpoint (config.json num_nextn_predict_layers): drafter=mtp needs them.
    mtp_layers: int = ranged(0, 0, 64)
    # The smoke run after every engine build (TensorRT-LLM examples/run.py, seed 004's check of each engine).
    smoke_prompt: str = "How do I count in French ? 1 un"
    smoke_max_output_len: int = ranged(100, 1, MAX_TOKENS, unit="tokens")


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


# The keys of DrafterConfig that speculative decoding on the checkpoint-loading stacks reads (`method` first).
SPECULATIVE_KEYS = ("method", "max_draft_len", "max_matching_ngram_size", "draft_model", "draft_model_revision",
                    "train_eagle3")
# The keys of DrafterConfig that training an EAGLE-3 head reads (drafter.train_eagle3: stages eagle3_conversations
# and train_eagle3, Model-Optimizer's recipe). Their own keys, not ReDrafter's: each is used by one trainer only.
EAGLE3_TRAIN_KEYS = ("eagle3_dataset", "eagle3_dataset_split", "eagle3_dataset_nrows", "eagle3_num_gpus",
                     "eagle3_num_train_epochs", "eagle3_per_device_train_batch_size", "eagle3_learning_rate",
                     "eagle3_warmup_steps", "eagle3_training_seq_len", "eagle3_logging_steps", "eagle3_save_steps",
                     "eagle3_save_total_limit", "eagle3_num_layers", "eagle3_ttt_steps")


@dataclass
class DrafterConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("enabled", (True,), unless=("name", *SPECULATIVE_KEYS, *EAGLE3_TRAIN_KEYS),
                 why="no drafter is trained or used here (ReDrafter: drafter=redrafter)",
                 remedy="drafter=redrafter (or +experiment=fp8_redrafter)"),
        UsedWhen("method", tuple(SpeculativeMethod), keys=SPECULATIVE_KEYS[1:],
                 why="no speculative method of the checkpoint-loading stacks is chosen",
                 remedy="drafter=ngram, draft_target, eagle3 or mtp"),
        UsedWhen("method", (SpeculativeMethod.draft_target, SpeculativeMethod.eagle3),
                 keys=("draft_model", "draft_model_revision"),
                 why="only a draft model or an EAGLE-3 head is downloaded",
                 remedy="drafter=draft_target or drafter=eagle3"),
        UsedWhen("train_eagle3", (True,), keys=EAGLE3_TRAIN_KEYS,
                 why="the EAGLE-3 head is downloaded (drafter.draft_model), not trained here",
                 remedy="drafter=eagle3 drafter.train_eagle3=true"),
        UsedWhen("method", (SpeculativeMethod.ngram,), keys=("max_matching_ngram_size",),
                 why="only n-gram (prompt lookup) drafting matches n-grams", remedy="drafter=ngram"),
        UsedWhen("save_strategy", (SaveStrategy.steps,), keys=("save_steps",), why="no checkpoint every N steps"),
        UsedWhen("scale_out_gpus", (None,), keys=("num_gpus", "gradient_accumulation_steps"),
                 why="drafter.scale_out_gpus sizes training to the node, keeping drafter.global_batch_size",
                 remedy="drafter.scale_out_gpus=null"),
        UsedWhen("save_strategy", (SaveStrategy.steps, SaveStrategy.epoch), keys=("save_total_limit",),
                 why="the trainer saves no checkpoints"),
    )

    name: str = "none"
    enabled: bool = False  # ReDrafter (the pinned engine path): trained, converted and built here
    # Speculative decoding of serving.stack=trtllm_pytorch, vllm or sglang (launcher.serving_commands); None: none.
    method: Optional[SpeculativeMethod] = None
    max_draft_len: int = ranged(3, 1, 32, unit="tokens", why="draft tokens proposed per step")
    max_matching_ngram_size: int = ranged(2, 1, 64, unit="tokens")  # ngram: the longest prompt n-gram matched
    # draft_target: a smaller model of the same family and tokenizer; eagle3: an EAGLE-3 head trained for the model.
    draft_model: Optional[str] = formed(None, HF_REPO)
    draft_model_revision: Optional[str] = None
    # eagle3 only: train the head here (NVIDIA Model-Optimizer's EAGLE-3 recipe) instead of downloading one.
    train_eagle3: bool = False
    # Training the EAGLE-3 head (Model-Optimizer 0.46.0 examples/speculative_decoding/main.py with its built-in
    # recipe general/speculative_decoding/eagle3; each key one dotlist override, the recipe's default where it has one).
    # Conversations: the first eagle3_dataset_nrows rows of the split, problem as user turn, solution as answer.
    eagle3_dataset: str = formed("nvidia/OpenMathReasoning", HF_REPO)
    eagle3_dataset_split: str = "tir"
    eagle3_dataset_nrows: int = ranged(50000, 1, 1_000_000_000, unit="rows")
    eagle3_num_gpus: int = ranged(1, 1, MAX_GPUS)  # accelerate launch --num_processes: data parallel, one node
    eagle3_num_train_epochs: int = ranged(1, 1, 1000)
    eagle3_per_device_train_batch_size: int = ranged(1, 1, 4096)
    eagle3_learning_rate: float = ranged(0.0001, 0, 10, above=True)
    eagle3_warmup_steps: int = ranged(1000, 0, 1_000_000_000, unit="steps")
    # Tokens per training sample (training.training_seq_len); also the exported head's YaRN
    # original_max_position_embeddings, which the recipe warns about when they differ.
    eagle3_training_seq_len: int = ranged(2048, 1, MAX_TOKENS, unit="tokens")
    eagle3_logging_steps: int = ranged(100, 1, 1_000_000_000, unit="steps")
    # checkpoint-N every save_steps (the recipe's save_strategy=steps): a requeued job resumes from the newest.
    eagle3_save_steps: int = ranged(8192, 1, 1_000_000_000, unit="steps")
    # Checkpoints kept: each holds the whole base model with the head (ModelOpt HF checkpoint) and optimizer state.
    eagle3_save_total_limit: int = ranged(2, 1, 1000)
    eagle3_num_layers: int = ranged(1, 1, 64)  # eagle_architecture_config.num_hidden_layers of the head
    eagle3_ttt_steps: int = ranged(3, 1, 32, unit="steps")  # eagle.eagle_ttt_steps: training-time-test unrolls
    # Training (NeMo-Skills train_redrafter: the seed's flags, one key each).
    dataset: str = formed("nvidia/OpenMathReasoning", HF_REPO)
    dataset_split: str = "tir"
    dataset_nrows: int = ranged(50000, 1, 1_000_000_000, unit="rows")
    num_gpus: int = ranged(2, 1, MAX_GPUS)
    num_train_epochs: int = ranged(1, 1, 1000)
    per_device_train_batch_size: int = ranged(1, 1, 4096)
    gradient_accumulation_steps: int = ranged(4, 1, 4096)
    # Samples per optimizer step, which the learning rate, warm-up and cosine schedule are tuned to (the seed's:
    # 2 GPUs x 1 x accumulation 4). The trainer's is num_gpus x per_device_train_batch_size x
    # gradient_accumulation_steps (HF Trainer); validation refuses any other product, so that more GPUs
    # (shorter training, same GPU-hours) never change the optimisation unnoticed. Hashed through those three.
    global_batch_size: int = ranged(8, 1, 1_000_000, unit="samples")
    # Set: train on up to this many GPUs of one node (never more than cluster.gpus_per_node), the most that divide
    # global_batch_size / per_device_train_batch_size, with the accumulation that keeps global_batch_size
    # (launcher.commands.drafter_data_parallel): the same steps and schedule in less time for the same GPU-hours,
    # on any cluster (the seed's 2 GPUs x accumulation 4 on a 2-GPU node). num_gpus and the accumulation unused.
    scale_out_gpus: Optional[int] = ranged(None, 1, MAX_GPUS)
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
    # serving=triton: Triton's TensorRT-LLM backend; `port` is its HTTP port (health checks).
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("name", ("triton",), keys=("grpc_port", "metrics_port", "max_queue_delay_us", "max_queue_size",
                                            "decoupled", "instance_count", "entry_model"),
                 why="only Triton's model repository and server have them", remedy="serving=triton"),
        UsedWhen("stack", (ServingStack.trtllm,), keys=("backend",), why="only the pinned engine path serves a "
                 "TensorRT engine (the PyTorch backend is serving=trtllm_pytorch)", remedy="serving=trtllm"),
        UsedWhen("stack", (ServingStack.trtllm, ServingStack.trtllm_pytorch),
                 keys=("kv_cache_free_gpu_memory_fraction",),
                 why="vLLM and SGLang size their memory with serving.gpu_memory_utilization", remedy="serving=trtllm"),
        UsedWhen("stack", (ServingStack.vllm, ServingStack.sglang), keys=("gpu_memory_utilization", "fp8_weights"),
                 why="TensorRT-LLM sizes its KV cache with serving.kv_cache_free_gpu_memory_fraction and serves FP8 "
                 "from a ModelOpt checkpoint only", remedy="serving=vllm or serving=sglang"),
    )

    name: str = "trtllm"
    stack: ServingStack = ServingStack.trtllm  # what serves the model (the pinned engine path, or a checkpoint stack)
    backend: Backend = Backend.trt
    host: str = "127.0.0.1"
    port: int = ranged(5000, 1024, MAX_BASE_PORT, why=PORT_WHY)
    kv_cache_free_gpu_memory_fraction: float = ranged(0.92, 0, 1, above=True, why="a fraction of the GPU memory "
                                                      "left free after the weights, given to the KV cache")
    max_batch_size: int = ranged(12, 1, MAX_BATCH)
    # vLLM --gpu-memory-utilization, SGLang --mem-fraction-static: the share of each GPU for weights + KV cache.
    gpu_memory_utilization: float = ranged(0.9, 0, 1, above=True, why="a fraction of each GPU's memory")
    fp8_weights: Fp8Weights = Fp8Weights.modelopt
    health_timeout_s: int = ranged(1800, 1, 86400, unit="seconds")
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    # serving=triton (launcher/triton_commands.py): the server's other two ports, and what fill_template.py fills.
    grpc_port: int = ranged(8001, 1024, MAX_BASE_PORT, why=PORT_WHY)
    metrics_port: int = ranged(8002, 1024, MAX_BASE_PORT, why=PORT_WHY)
    max_queue_delay_us: int = ranged(0, 0, 60_000_000, unit="microseconds")
    max_queue_size: int = ranged(0, 0, 1_000_000, why="0: no limit")
    decoupled: bool = True  # streaming: one response per token (the seed-004 benchmark streams)
    instance_count: int = ranged(1, 1, 64, why="instances of the pre/postprocessing and BLS python models")
    entry_model: TritonEntryModel = TritonEntryModel.ensemble  # the model the benchmark sends text to


MAX_CONCURRENCY = 4096


@dataclass
class GoodputConfig:
    """Service-level objectives of a load sweep's goodput (AIPerf --goodput): requests/s meeting every one set,
    each in ms; null: not an objective."""
    time_to_first_token: Optional[float] = ranged(None, 0, 3_600_000, above=True, unit="ms")
    inter_token_latency: Optional[float] = ranged(None, 0, 3_600_000, above=True, unit="ms")
    request_latency: Optional[float] = ranged(None, 0, 86_400_000, above=True, unit="ms")


@dataclass
class BenchmarkConfig:
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("kind", (BenchmarkKind.notebook,), keys=NOTEBOOK_KEYS, why="a load sweep sends AIPerf's requests",
                 remedy="benchmark=aimo_notebook"),
        UsedWhen("kind", (BenchmarkKind.load_sweep,), keys=LOAD_SWEEP_KEYS, why="the notebook protocol is no sweep",
                 remedy="benchmark=load_sweep"),
        UsedWhen("kind", (BenchmarkKind.cnn_dailymail,), keys=CNN_DAILYMAIL_KEYS,
                 why="only the seed-004 protocol reads them", remedy="benchmark=cnn_dailymail"),
    )

    name: str = "aimo_notebook"
    kind: BenchmarkKind = BenchmarkKind.notebook
    # JSONL: {"problem": ..., optional "expected_answer", "id"}; kind=cnn_dailymail reads none (its prompt_set stage)
    problems_file: Optional[str] = formed(MISSING, PATH)
    num_generations: int = ranged(12, 1, 1024)
    cancel_after: int = ranged(10, 1, 1024)
    temperature: float = ranged(0.7, 0, 10, why="a sampling temperature; 0 is greedy")
    max_new_tokens: int = ranged(20000, 1, MAX_TOKENS, unit="tokens")
    max_code_executions: int = ranged(2, 0, 1000)
    prompt: str = "generic/math"
    # benchmark=cnn_dailymail (seed 004): a fixed sample of the dataset (jobs.prompt_set), streamed at once
    # (jobs.triton_benchmark), the seed's table.
    dataset: str = formed("abisee/cnn_dailymail", HF_REPO)
    dataset_config: str = "3.0.0"
    dataset_split: str = "validation"
    sample_size: int = ranged(98, 1, 1_000_000, unit="prompts")
    sample_seed: int = ranged(0, 0, 2**32 - 1)
    max_input_len: int = ranged(2048, 1, MAX_TOKENS, unit="tokens", why="the seed's client's --max_input_len")
    op_tokens_per_word: float = ranged(1.3, 0, 100, above=True, why="requested output tokens per reference word")
    overlong: Overlong = Overlong.truncate
    max_in_flight: int = ranged(0, 0, MAX_BATCH, why="0 sends every request at once, as the seed's client did")
    # benchmark=load_sweep (jobs.load_sweep): one AIPerf run per concurrency and repeat, streamed requests.
    concurrency: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256],
                                   metadata={"range": Range(1, MAX_CONCURRENCY, why="requests in flight at once")})
    requests_per_user: int = ranged(4, 1, 10_000)  # a point sends max(min_requests, requests_per_user x concurrency)
    min_requests: int = ranged(8, 1, 1_000_000)
    warmup_requests: int = ranged(0, 0, 1_000_000)  # sent before each point's measurement, not measured
    prompt_set: PromptSet = PromptSet.aimo  # how problems_file's rows are read
    endpoint: Endpoint = Endpoint.completions
    output_tokens: int = ranged(1024, 1, MAX_TOKENS, unit="tokens")  # max_tokens of every request
    goodput: GoodputConfig = field(default_factory=GoodputConfig)
    repeats: int = ranged(1, 1, 100, why="whole sweeps; 2 or more give 95% confidence intervals")
    streaming: bool = True  # without it TTFT and ITL are not measured
    request_timeout_s: float = ranged(3600.0, 0, 86400, above=True, unit="seconds")


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
    # Memory of one GPU; overrides the table for gpu_type (launcher.stages.GPU_MEMORY_GB). The stages that load
    # the model's weights with device_map (quantize) ask for the GPUs the weights fit on, not the serving GPUs.
    gpu_memory_gb: Optional[int] = ranged(None, 1, 16384, unit="GB")
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
    # NVIDIA Model-Optimizer's examples/ (tag 0.46.0) as the modelopt container sees it (containers/modelopt.Dockerfile
    # clones them there): quantize_modelopt runs hf_ptq/hf_ptq.py, train_eagle3 speculative_decoding/.
    modelopt_examples_dir: str = formed("/opt/Model-Optimizer/examples", ABSOLUTE_PATH)
    # The triton image's copy of the backend's all_models/ and tools/ (tensorrtllm_backend's Dockerfile: /app).
    triton_backend_dir: str = formed("/app", ABSOLUTE_PATH)
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
    USED_WHEN: ClassVar[Tuple[UsedWhen, ...]] = (
        UsedWhen("serve_only", (True,), keys=("serve_minutes",), why="the benchmark runs, nothing is kept serving"),)

    dry_run: bool = False
    experiment_name: str = MISSING
    wandb_project: str = "launcher"
    # A campaign: each entry names an experiment composed with the same overrides; empty for one.
    campaign: List[str] = field(default_factory=list)
    # Every entry of a campaign is composed with these before the user's overrides: the campaign's own settings
    # (its file's keys other than these reach none of its entries, each composed as `+experiment=<entry>`).
    campaign_overrides: List[str] = field(default_factory=list)
    # Experiments a sweep (`-m`) of this experiment is compared against in its report, run once.
    baselines: List[str] = field(default_factory=list)
    # Instead of its benchmark, the configuration's server (and sandbox) is brought up and kept for serve_minutes,
    # its address in the job's log and `status` (launcher.stages: the benchmark stage's `serve` command).
    serve_only: bool = False
    serve_minutes: float = ranged(60.0, 0, 7 * 24 * 60, above=True, unit="minutes")


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
