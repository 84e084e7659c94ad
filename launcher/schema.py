"""Structured configs: every key the launcher reads, with its type and default.

Each dataclass backs one Hydra config group (``conf/<group>/``); registering them in Hydra's
ConfigStore makes an unknown key or a wrong type fail at compose time, naming the key.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# The Hydra config tree beside the package (kept with the code in snapshots, so jobs see the same).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class ModelConfig:
    name: str = MISSING  # short name used in stage labels
    hf_id: str = MISSING
    revision: Optional[str] = None
    family: str = MISSING  # qwen2 | llama | nemotron_nas
    num_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_kv_heads: int = MISSING
    trust_remote_code: bool = False
    # --dtype of the checkpoint tools: the seeds use `auto` (the weights' own dtype) for OpenMath.
    dtype: str = "auto"
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    # How the TensorRT-LLM checkpoint is made: `nemo_skills` runs NeMo-Skills' copy of quantize.py for
    # every qformat (seeds 001/002); `trtllm_examples` runs TensorRT-LLM's examples (seeds 003/004).
    checkpoint_tool: str = "nemo_skills"
    # Path under TensorRT-LLM's examples/ of the model's unquantized converter (checkpoint_tool=trtllm_examples).
    convert_script: Optional[str] = None
    # Engine build limits (trtllm-build) of the plain engine.
    max_input_len: int = MISSING
    max_seq_len: int = MISSING
    max_batch_size: int = 512
    max_num_tokens: int = 8192
    gemm_plugin: str = "auto"
    kv_cache_type: Optional[str] = None  # `paged` is trtllm-build's default; seed 003 passes it explicitly
    use_paged_context_fmha: bool = True


@dataclass
class QuantizationConfig:
    name: str = MISSING
    qformat: str = MISSING  # full_prec | fp8 | int8_wo (TensorRT-LLM quantize.py --qformat)
    kv_cache_dtype: Optional[str] = None  # fp8 | int8
    calibrate: bool = False
    calib_dataset: str = "nvidia/OpenMathReasoning"
    calib_split: str = "tir"
    calib_size: int = 4096
    calib_batch_size: int = 4
    calib_max_seq_length: int = 512
    calib_prompt: str = "generic/math"


@dataclass
class DrafterConfig:
    name: str = "none"
    enabled: bool = False
    # Training (NeMo-Skills train_redrafter: the seed's flags, one key each).
    dataset: str = "nvidia/OpenMathReasoning"
    dataset_split: str = "tir"
    dataset_nrows: int = 50000
    num_gpus: int = 2
    num_train_epochs: int = 1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 4
    save_strategy: str = "no"  # `steps` makes training resumable after a requeue (checkpoint-* every save_steps)
    save_steps: int = 500
    # Checkpoints kept (the trainer's --save_total_limit, when it saves any): each holds the whole frozen base
    # model and the optimizer state (tens of GB for a 14B model); only the newest is needed to resume.
    save_total_limit: int = 2
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    logging_steps: int = 20
    bf16: bool = True
    tf32: bool = True
    model_max_length: int = 2048
    predict_n_tokens: int = 3
    num_layers: int = 2
    rnn: bool = True
    report_to: str = "wandb"
    # Conversion (TensorRT-LLM examples/redrafter/convert_checkpoint.py).
    dtype: str = "bfloat16"
    tensor_parallel: int = 1  # must equal the base checkpoint's (model.tensor_parallel)
    num_beams: int = 1
    draft_len_per_beam: int = 3
    greedy_search: bool = True
    # Quality gate: the mean of the last gate_window logged redrafter{predict_n_tokens-1}_top1 (each logged value
    # is one micro-batch's) >= min_top1. A decision taken where the drafter is used (convert_drafter, and the
    # launcher when the drafter is published): these three keys never retrain it.
    min_top1: float = 0.6
    on_low_quality: str = "fail"  # fail | warn
    gate_window: int = 5
    # Speculative engine build (trtllm-build --speculative_decoding_mode explicit_draft_tokens).
    engine_max_batch_size: int = 32
    engine_max_input_len: int = 32000
    engine_max_seq_len: int = 32000
    engine_max_num_tokens: int = 32000
    engine_gemm_plugin: Optional[str] = None  # None: fp8 on an FP8 checkpoint, auto otherwise
    engine_kv_cache_type: str = "paged"


@dataclass
class SandboxConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 6000
    # Wall-time cap of one tool call, enforced by the sandbox (jobs.sandbox_guard): a cell still running after
    # it is killed with its session's process (the session's state is lost) and answered "Timed out". The
    # benchmark client also sends it as each call's `timeout`.
    timeout_s: float = 10.0
    max_output_characters: int = 1000
    # Address space (RLIMIT_AS) of each session's process, in MiB: a cell allocating more gets a MemoryError.
    # A worker needs ~0.4 GiB after importing IPython, numpy, scipy and sympy.
    memory_limit_mb: int = 4096
    # Plain (non-secret) variables for the sandbox's processes, by value (OMP_NUM_THREADS, ...).
    env: Dict[str, str] = field(default_factory=dict)
    # Extra mounts of the sandbox step's container, SRC:DST[:FLAGS] (pyxis); besides them it sees only the
    # launch's code snapshot, read-only.
    mounts: List[str] = field(default_factory=list)


@dataclass
class ServingConfig:
    name: str = "trtllm"
    backend: str = "trt"
    host: str = "127.0.0.1"
    port: int = 5000
    kv_cache_free_gpu_memory_fraction: float = 0.92
    max_batch_size: int = 12
    health_timeout_s: int = 1800
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


@dataclass
class BenchmarkConfig:
    name: str = "aimo_notebook"
    problems_file: str = MISSING  # JSONL: {"problem": ..., optional "expected_answer", "id"}
    num_generations: int = 12
    cancel_after: int = 10
    temperature: float = 0.7
    max_new_tokens: int = 20000
    max_code_executions: int = 2
    prompt: str = "generic/math"


@dataclass
class ClusterConfig:
    name: str = MISSING
    executor: str = "local"  # local | slurm
    account: Optional[str] = None
    partition: Optional[str] = None
    cpu_partition: Optional[str] = None  # for stages that need no GPU; defaults to `partition`
    qos: Optional[str] = None
    gpus_per_node: int = 8
    gpu_type: str = "h100"
    gpu_compute_capability: Optional[float] = None  # overrides the table for gpu_type
    max_nodes: int = 1
    cpus_per_gpu: int = 16
    mem_per_gpu_gb: int = 200
    # Time limits per stage kind, in minutes; `default` for the rest.
    time_limits: Dict[str, int] = field(default_factory=dict)
    container_runtime: str = "pyxis"  # pyxis | none
    containers: Dict[str, str] = field(default_factory=dict)  # container key -> image or .sqsh
    mounts: List[str] = field(default_factory=list)  # SRC:DST[:ro], besides storage and code
    python: str = "python"  # the python that runs jobs (inside the container when there is one)
    trtllm_examples_dir: str = "/opt/TensorRT-LLM/examples"
    env_vars: List[str] = field(default_factory=list)  # names passed to jobs; values never stored
    # Plain (non-secret) variables for every stage job, by value: exported by the batch script and named in
    # --container-env, so the image's own ENV cannot override them (NCCL_DEBUG, TOKENIZERS_PARALLELISM, ...).
    env: Dict[str, str] = field(default_factory=dict)
    required_env_vars: List[str] = field(default_factory=list)
    storage_root: str = MISSING
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
