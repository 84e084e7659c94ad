"""The pipeline as one table: every stage kind, what it reads, which config values it hashes, how it runs.

launcher.plan builds a plan by walking this table from the report down: for one experiment, each input of a kind
resolves to the first of the input's kinds that the config needs (`needed`), that stage's own inputs are added
first, and a stage is added once per fingerprint, so experiments share what they have in common. A kind's
functions see one stage through its StageContext: the composed config, its subject (which dataset a
download_dataset fetches), the paths its inputs give it (by role), the user's files it reads (stored by
content). A stage's fingerprint hashes `values`, the commands with their paths blanked, its inputs'
fingerprints and its container images (launcher.plan). Adding a stage kind or a serving backend is one entry
here and one small command builder in launcher.commands.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from omegaconf import DictConfig

from launcher import commands, serving_commands
from launcher.contract import ACCOUNTING, CALIBRATION_SUBDIR, REPORT_INPUTS, RESULTS


@dataclass(frozen=True)
class StoredFile:
    """A file of the user's that a stage reads: copied onto shared storage at submission, named and
    fingerprinted by its content, not by where the user keeps it."""
    digest: str
    path: str  # <storage root>/inputs/<role>/<digest><suffix>
    text: str


@dataclass(frozen=True)
class StageContext:
    """What a stage kind's functions know of one stage."""
    cfg: DictConfig
    subject: Optional[str] = None
    inputs: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # role -> what its input stages give
    input_fingerprints: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # role -> their fingerprints
    files: Mapping[str, StoredFile] = field(default_factory=dict)  # role -> the stored file
    experiment_dir: str = ""  # <storage root>/experiments/<experiment>

    def input(self, role: str) -> Optional[str]:
        """The path the input of `role` gives, None where the config needs none (no calibration)."""
        paths = self.inputs.get(role, ())
        return paths[0] if paths else None


Values = Callable[[StageContext], dict]
Commands = Callable[[StageContext, str], Dict[str, List[str]]]  # (stage, where it writes) -> named argv lists
Output = Callable[[StageContext, str], str]  # (stage, its artifact directory) -> the path its dependents read


@dataclass(frozen=True)
class Input:
    """A stage's input, by the role its commands know it by: the first of `kinds` the config needs; absent when
    it needs none of them."""
    role: str
    kinds: Tuple[str, ...]
    subject: Optional[Callable[[DictConfig], str]] = None  # which stage of the kind (the dataset repo)
    # False: only its path is read; another input already waits on it (no job dependency, not hashed twice).
    dependency: bool = True
    # The report's inputs: this input of every experiment of the plan (the kind runs once per plan).
    every_experiment: bool = False


@dataclass(frozen=True)
class InputFile:
    """A file of the user's machine a stage reads (the benchmark's problems), stored by launcher.plan."""
    role: str
    path: Callable[[DictConfig], str]
    suffix: str
    needed: Callable[[DictConfig], bool] = lambda cfg: True  # launcher.plan stores it only where needed


def _always(cfg: DictConfig) -> bool:
    return True


def _no_gpus(cfg: DictConfig) -> int:
    return 0


def _one_gpu(cfg: DictConfig) -> int:
    return 1


def _model_gpus(cfg: DictConfig) -> int:
    return cfg.model.tensor_parallel * cfg.model.pipeline_parallel


# Memory of one GPU per cluster.gpu_type, the smaller size where a type comes in several (A100 40/80 GB);
# cluster.gpu_memory_gb overrides it.
GPU_MEMORY_GB = {
    "v100": 16, "t4": 16, "a100": 40, "a30": 24, "a10": 24, "a10g": 24, "a40": 48, "a6000": 48,
    "l4": 24, "l40": 48, "l40s": 48, "rtx4090": 24, "rtx6000ada": 48,
    "h100": 80, "h200": 141, "gh200": 96, "b200": 180, "gb200": 186,
}
# The quantizers load the whole model in one process with device_map="auto" (TensorRT-LLM 1.1.0rc0
# quantize_by_modelopt.get_model; the BF16 `full_prec` export too), filling the visible GPUs one after another.
# The weights may take this share of each GPU; the rest holds the calibration batches' activations, the CUDA
# context and the export's buffers.
WEIGHTS_SHARE_OF_GPU = 0.7


def gpu_memory_gb(cfg: DictConfig) -> Optional[int]:
    c = cfg.cluster
    return c.gpu_memory_gb if c.gpu_memory_gb is not None else GPU_MEMORY_GB.get(str(c.gpu_type).lower())


def weights_gb(cfg: DictConfig) -> Optional[float]:
    """The model's weights as the quantizers load them: model.params_b parameters in the checkpoint's dtype (2
    bytes; 4 for float32), None where the model's size is not given."""
    params_b = getattr(cfg.model, "params_b", None)
    return None if params_b is None else params_b * (4 if cfg.model.dtype == "float32" else 2)


def _weights_gpus(cfg: DictConfig) -> int:
    """A stage that loads the model once with device_map="auto": as many GPUs as its weights fit on. One process
    writes every tensor-parallel rank's file (export_tensorrt_llm_checkpoint(inference_tensor_parallel=tp)), so
    --tp_size needs no GPU of its own. At most a node's GPUs: accelerate keeps what does not fit in CPU memory.
    The serving GPUs where the model's size or the GPU's memory is unknown."""
    weights, memory = weights_gb(cfg), gpu_memory_gb(cfg)
    if weights is None or memory is None:
        return _model_gpus(cfg)
    return min(cfg.cluster.gpus_per_node, max(1, math.ceil(weights / (memory * WEIGHTS_SHARE_OF_GPU))))


# train_drafter: the tutorial's run (OpenMath-Nemotron-14B, 50k rows, one epoch, 2 H100s) takes about 4 hours
# (benchmarks/campaign_makespan.py's cost model): 8 GPU-hours per 50k rows and epoch, split over drafter.num_gpus
# by the data-parallel trainer. Its time limit is that times TRAIN_DRAFTER_MARGIN; larger models set
# cluster.time_limits.train_drafter (conf/cluster/example_slurm.yaml: 720 for the 51B).
TRAIN_DRAFTER_GPU_MIN_PER_ROW_EPOCH = 8 * 60 / 50_000
TRAIN_DRAFTER_MARGIN = 1.5
TRAIN_DRAFTER_MIN_LIMIT_MIN = 60


def _drafter_gpus(cfg: DictConfig) -> int:
    """The data-parallel trainer's processes (torchrun --nproc_per_node): drafter.num_gpus, or sized to the node
    by drafter.scale_out_gpus."""
    return commands.drafter_data_parallel(cfg)[0]


def train_drafter_time_limit_min(cfg: DictConfig, gpus: Optional[int] = None) -> int:
    """Its time limit on its GPUs, or on `gpus` (what another choice would give: launcher.preview)."""
    d = cfg.drafter
    return _training_time_limit_min(d.dataset_nrows, d.num_train_epochs, gpus or _drafter_gpus(cfg))


def _training_time_limit_min(rows: int, epochs: int, gpus: int) -> int:
    """A drafter's training over `rows` x `epochs` samples split over `gpus` data-parallel processes, at
    train_drafter's rate, with its margin and floor."""
    work = TRAIN_DRAFTER_GPU_MIN_PER_ROW_EPOCH * rows * epochs / gpus
    return max(TRAIN_DRAFTER_MIN_LIMIT_MIN, math.ceil(work * TRAIN_DRAFTER_MARGIN))


def _eagle3_gpus(cfg: DictConfig) -> int:
    """accelerate launch --num_processes: the user's choice, one node."""
    return cfg.drafter.eagle3_num_gpus


def train_eagle3_time_limit_min(cfg: DictConfig, gpus: Optional[int] = None) -> int:
    """Its time limit: train_drafter's rate, which also trains a small head beside a frozen base model that runs
    forward on every sample (online, data parallel), over eagle3_dataset_nrows x epochs; the export adds little."""
    d = cfg.drafter
    return _training_time_limit_min(d.eagle3_dataset_nrows, d.eagle3_num_train_epochs, gpus or _eagle3_gpus(cfg))


def _trtllm(cfg: DictConfig) -> Tuple[str, ...]:
    return ("trtllm",)


def _artifact(ctx: StageContext, root: str) -> str:
    return root


@dataclass(frozen=True)
class StageKind:
    name: str  # its artifacts live in <storage root>/artifacts/<name>/<fingerprint>
    time_limit_min: int  # unless the cluster sets its own (cluster.time_limits.<name>)
    values: Values  # the config values its output depends on: hashed into its fingerprint
    commands: Commands
    inputs: Tuple[Input, ...] = ()
    needed: Callable[[DictConfig], bool] = _always
    gpus: Callable[[DictConfig], int] = _no_gpus
    containers: Callable[[DictConfig], Tuple[str, ...]] = _trtllm  # the stage's own first, then helpers
    output: Output = _artifact
    files: Tuple[InputFile, ...] = ()
    # Its GPUs run FP8 kernels when the config quantizes to FP8, or the drafter when there is one: the job checks
    # their compute capability first (launcher.scripts.gpu_requirement).
    gpus_run_fp8: bool = False
    gpus_run_drafter: bool = False
    # What its spec carries beyond its commands (launcher.scripts.stage_spec): the drafter quality gate, measured
    # by train_drafter and decided by convert_drafter; the servers' URLs and health timeout of a stage that serves
    # the model (its first input is what it serves: the job checks the GPUs an engine was built for).
    drafter_gate: bool = False
    serves: bool = False
    after_any: bool = False  # runs once its inputs ended, well or not: the report shows failed points as failed
    # Minutes from the config, where the stage's length depends on it (a load sweep's points); else time_limit_min.
    derived_time_limit: Optional[Callable[[DictConfig], int]] = None
    # What a one-size setting asks for this kind, to say what its own sizing saves (launcher.preview): the
    # tutorial's machine, every step on the serving GPUs; and, where the time limit is derived, a fixed one.
    naive_gpus: Callable[[DictConfig], int] = _model_gpus
    naive_time_limit_min: Optional[int] = None

    def time_limit(self, cfg: DictConfig) -> int:
        """Its time limit for this config: cluster.time_limits.<name> where the cluster sets one."""
        own = self.derived_time_limit(cfg) if self.derived_time_limit else self.time_limit_min
        return int(cfg.cluster.time_limits.get(self.name, own))


def _tool_values(cfg: DictConfig) -> dict:
    return {"python": cfg.cluster.python, "examples": cfg.cluster.trtllm_examples_dir}


def _keys(node, keys: Tuple[str, ...]) -> dict:
    return {k: getattr(node, k) for k in keys}


def _calibrates(cfg: DictConfig) -> bool:
    return cfg.quantization.calibrate


def _drafts(cfg: DictConfig) -> bool:
    return cfg.drafter.enabled


def _model_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{commands.model_dir_name(ctx.cfg.model.hf_id)}"


def _dataset_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{commands.model_dir_name(ctx.subject)}"


def _model_download(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    m, local_dir = ctx.cfg.model, _model_dir(ctx, out)
    return {"download": commands.download_command(m.hf_id, local_dir, revision=m.revision),
            "check": commands.check_download_command(ctx.cfg, "model", local_dir)}


def _dataset_download(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    local_dir = _dataset_dir(ctx, out)
    return {"download": commands.download_command(ctx.subject, local_dir, "dataset"),
            "check": commands.check_download_command(ctx.cfg, "dataset", local_dir)}


CALIBRATION_KEYS = ("calib_split", "calib_size", "calib_prompt", "calib_max_seq_length")
QUANTIZE_CALIBRATION_KEYS = ("calib_size", "calib_batch_size", "calib_max_seq_length")
TRAIN_DRAFTER_KEYS = ("dataset_split", "dataset_nrows", "num_gpus", "num_train_epochs", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "save_strategy", "learning_rate", "weight_decay", "warmup_ratio",
                      "lr_scheduler_type", "bf16", "tf32", "model_max_length", "predict_n_tokens", "num_layers", "rnn")


def _train_drafter_values(ctx: StageContext) -> dict:
    """Its keys as it trains: the GPUs and accumulation drafter.scale_out_gpus derives hash as if set by hand
    (same training, same artifact)."""
    gpus, accumulation = commands.drafter_data_parallel(ctx.cfg)
    return {**_keys(ctx.cfg.drafter, TRAIN_DRAFTER_KEYS), "num_gpus": gpus, "gradient_accumulation_steps": accumulation}


CONVERT_DRAFTER_KEYS = ("dtype", "tensor_parallel", "num_beams", "draft_len_per_beam", "greedy_search")
DRAFTER_ENGINE_KEYS = ("engine_max_batch_size", "engine_max_input_len", "engine_max_seq_len", "engine_max_num_tokens",
                       "engine_kv_cache_type", "num_beams")
# A benchmark kind's own keys (launcher.schema.BenchmarkConfig): only they are hashed into its stage's fingerprint.
NOTEBOOK_KEYS = ("num_generations", "cancel_after", "temperature", "max_new_tokens", "max_code_executions")
LOAD_SWEEP_KEYS = ("concurrency", "requests_per_user", "min_requests", "warmup_requests", "prompt_set", "endpoint",
                   "output_tokens", "goodput", "repeats", "streaming", "request_timeout_s")
ENGINE_KEYS = ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "gemm_plugin", "kv_cache_type",
               "use_paged_context_fmha")
# benchmark=cnn_dailymail's own keys (seed 004), and serving=triton's: hashed only where they are used, so that
# the other benchmarks keep their fingerprints.
CNN_DAILYMAIL_KEYS = ("dataset", "dataset_config", "dataset_split", "sample_size", "sample_seed", "max_input_len",
                      "op_tokens_per_word", "overlong", "max_in_flight")
PROMPT_SET_KEYS = tuple(k for k in CNN_DAILYMAIL_KEYS if k != "max_in_flight")
TRITON_SERVING_KEYS = ("grpc_port", "metrics_port", "max_queue_delay_us", "max_queue_size", "decoupled",
                       "instance_count", "entry_model")
TRITON_REPO_KEYS = ("max_batch_size", "max_queue_delay_us", "max_queue_size", "decoupled", "instance_count",
                    "kv_cache_free_gpu_memory_fraction")


def _calibration_output(ctx: StageContext, root: str) -> str:
    return f"{root}/{CALIBRATION_SUBDIR}"


def _quantize_values(ctx: StageContext) -> dict:
    m, q = ctx.cfg.model, ctx.cfg.quantization
    return {"qformat": q.qformat, "kv_cache_dtype": q.kv_cache_dtype, "dtype": m.dtype,
            "tp": m.tensor_parallel, "pp": m.pipeline_parallel, "tool": m.checkpoint_tool,
            "convert_script": m.convert_script, "trust_remote_code": m.trust_remote_code, **_tool_values(ctx.cfg),
            **(_keys(q, QUANTIZE_CALIBRATION_KEYS) if q.calibrate else {})}


def _drafter_output(ctx: StageContext, root: str) -> str:
    """Where NeMo-Skills' trainer really writes (commands.drafter_output_dir), given --output_dir."""
    return commands.drafter_output_dir(ctx.cfg, f"{root}/redrafter_output", ctx.input("model"))


def _drafter_engine_values(ctx: StageContext) -> dict:
    return {**_keys(ctx.cfg.drafter, DRAFTER_ENGINE_KEYS), "gemm_plugin": commands.drafter_gemm_plugin(ctx.cfg)}


def _engine_commands(build: Callable[[DictConfig, str, str], List[str]]) -> Commands:
    """An engine build and the tokenizer trtllm-serve reads beside it."""
    return lambda ctx, out: {"build": build(ctx.cfg, ctx.input("checkpoint"), out),
                             "copy_tokenizer": commands.copy_tokenizer_command(ctx.cfg, ctx.input("model"), out)}


def _load_sweep(cfg: DictConfig) -> bool:
    return cfg.benchmark.kind == "load_sweep"


def _seed_protocol(cfg: DictConfig) -> bool:
    """benchmark=cnn_dailymail: seed 004's prompt set and table (jobs.prompt_set, jobs.triton_benchmark)."""
    return cfg.benchmark.kind == "cnn_dailymail"


def _triton(cfg: DictConfig) -> bool:
    return cfg.serving.name == "triton"


def _serving_values(cfg: DictConfig) -> dict:
    serving = serving_commands.serving_values(cfg)
    return serving if _triton(cfg) else {k: v for k, v in serving.items() if k not in TRITON_SERVING_KEYS}


def _seed_benchmark_values(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    return {"serving": _serving_values(cfg), "benchmark": {"kind": cfg.benchmark.kind,
                                                           **_keys(cfg.benchmark, CNN_DAILYMAIL_KEYS)},
            "tp": cfg.model.tensor_parallel, "pp": cfg.model.pipeline_parallel, "python": cfg.cluster.python}


def _seed_benchmark_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    """tritonserver on the filled model repository, or trtllm-serve on the engine; the seed's client."""
    cfg, engine = ctx.cfg, ctx.input("engine")
    server = (commands.tritonserver_command(cfg, ctx.input("repository")) if _triton(cfg)
              else commands.serve_command(cfg, engine, ctx.input("model")))
    return {"server": server,
            "client": commands.seed_benchmark_client_command(cfg, engine, ctx.input("prompts"), f"{out}/{RESULTS}")}


def _uses_sandbox(cfg: DictConfig) -> bool:
    """The notebook protocol's tool calls need the code sandbox, a load sweep none; serving only brings the
    configuration up as it is configured, its sandbox included."""
    return cfg.serving.sandbox.enabled and (cfg.launcher.serve_only or cfg.benchmark.kind == "notebook")


# benchmark=load_sweep: the slowest decoding a point is given time for (tokens/s of one request), and what each
# AIPerf process takes besides its requests (start-up, tokenizer, warm-up), in minutes.
LOAD_SWEEP_MIN_TOKENS_PER_S = 10
LOAD_SWEEP_POINT_OVERHEAD_MIN = 2
SERVE_MARGIN_MIN = 5  # a served configuration's job: time to stop its servers after serve_minutes


def benchmark_time_limit_min(cfg: DictConfig) -> int:
    """The benchmark stage's time limit: the notebook protocol's 90 minutes; a load sweep's derived from its
    points (the server's start-up, serving.health_timeout_s, then for every repeat and concurrency C its
    requests in rounds of C at LOAD_SWEEP_MIN_TOKENS_PER_S each, plus LOAD_SWEEP_POINT_OVERHEAD_MIN); a served
    configuration's from launcher.serve_minutes."""
    startup = -(-cfg.serving.health_timeout_s // 60)
    if cfg.launcher.serve_only:
        return int(startup + math.ceil(cfg.launcher.serve_minutes) + SERVE_MARGIN_MIN)
    if not _load_sweep(cfg):
        return KINDS["benchmark"].time_limit_min
    b = cfg.benchmark
    rounds = [-(-(max(b.min_requests, b.requests_per_user * c) + b.warmup_requests) // c) for c in b.concurrency]
    point_min = [math.ceil(n * b.output_tokens / LOAD_SWEEP_MIN_TOKENS_PER_S / 60) + LOAD_SWEEP_POINT_OVERHEAD_MIN
                 for n in rounds]
    return int(startup + b.repeats * sum(point_min))


def _benchmark_values(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    if _seed_protocol(cfg):
        return _seed_benchmark_values(ctx)
    # Each benchmark kind hashes its own keys: a notebook benchmark keeps the fingerprint it had before load sweeps.
    unused = NOTEBOOK_KEYS if _load_sweep(cfg) else (*LOAD_SWEEP_KEYS, "kind")
    unused += CNN_DAILYMAIL_KEYS
    benchmark = {k: v for k, v in commands.config_values(cfg.benchmark).items() if k not in unused}
    # A checkpoint-loading stack's server reads the model's max_seq_len and the speculative drafter keys too.
    checkpoint_stack = ({"max_seq_len": cfg.model.max_seq_len, "drafter": serving_commands.speculative_values(cfg)}
                        if serving_commands.loads_checkpoint(cfg) else {})
    return {"serving": _serving_values(cfg), **checkpoint_stack,
            "benchmark": {**benchmark, "problems_file": ctx.files["problems"].digest},
            "tp": cfg.model.tensor_parallel, "pp": cfg.model.pipeline_parallel, "python": cfg.cluster.python}


def _benchmark_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    cfg, engine, tokenizer = ctx.cfg, ctx.input("engine"), ctx.input("model")
    if _seed_protocol(cfg) and not cfg.launcher.serve_only:
        return _seed_benchmark_commands(ctx, out)
    if serving_commands.loads_checkpoint(cfg):  # `engine` is the checkpoint served (launcher.serving_commands)
        cmds = serving_commands.serve_commands(cfg, engine, tokenizer, ctx.input("draft"), out)
    else:
        cmds = {"server": commands.serve_command(cfg, engine, tokenizer)}
    if cfg.launcher.serve_only:  # instead of a client: keeps the servers up, saying where (jobs.serve)
        cmds["serve"] = commands.serve_hold_command(cfg)
    elif _load_sweep(cfg):  # asks the server its model's name: the same client for every serving stack
        cmds["client"] = commands.load_sweep_command(cfg, tokenizer, ctx.files["problems"].path, out)
    else:
        cmds["client"] = commands.benchmark_client_command(cfg, engine, tokenizer, ctx.files["problems"].path,
                                                           f"{out}/{RESULTS}",
                                                           serving_commands.loads_checkpoint(cfg))
    if _uses_sandbox(cfg):
        cmds["sandbox"] = commands.sandbox_command(cfg)
    return cmds


def _server_container(cfg: DictConfig) -> Tuple[str, ...]:
    # A checkpoint-loading stack's image is the containers key of its name (trtllm_pytorch, vllm, sglang).
    return ("triton",) if _triton(cfg) else (serving_commands.stack(cfg),)


def _engine_path(cfg: DictConfig) -> bool:
    """The pinned recipe: a TensorRT engine built here and served by trtllm-serve 1.1.0rc0."""
    return not serving_commands.loads_checkpoint(cfg)


def _draft_model_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{commands.model_dir_name(ctx.cfg.drafter.draft_model)}"


def _draft_model_download(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    d, local_dir = ctx.cfg.drafter, _draft_model_dir(ctx, out)
    return {"download": commands.download_command(d.draft_model, local_dir, revision=d.draft_model_revision),
            "check": commands.check_download_command(ctx.cfg, "model", local_dir)}


def _modelopt_values(ctx: StageContext) -> dict:
    m, q = ctx.cfg.model, ctx.cfg.quantization
    return {"qformat": q.qformat, "kv_cache_dtype": q.kv_cache_dtype, "tp": m.tensor_parallel,
            "pp": m.pipeline_parallel, "trust_remote_code": m.trust_remote_code,
            "examples": ctx.cfg.cluster.modelopt_examples_dir, **_keys(q, QUANTIZE_CALIBRATION_KEYS)}


def _modelopt(cfg: DictConfig) -> Tuple[str, ...]:
    """Model-Optimizer 0.46.0's image (containers/modelopt.Dockerfile): its examples need transformers 5, which
    the TensorRT-LLM serving image's own modelopt 0.37 and transformers 4.57 are not."""
    return ("modelopt",)


EAGLE3_CONVERSATIONS_FILE = "train.jsonl"  # in an eagle3_conversations artifact
EAGLE3_DATA_KEYS = ("eagle3_dataset_split", "eagle3_dataset_nrows")
TRAIN_EAGLE3_KEYS = ("eagle3_num_gpus", "eagle3_num_train_epochs", "eagle3_per_device_train_batch_size",
                     "eagle3_learning_rate", "eagle3_warmup_steps", "eagle3_training_seq_len", "eagle3_logging_steps",
                     "eagle3_save_steps", "eagle3_save_total_limit", "eagle3_num_layers", "eagle3_ttt_steps")


def _conversations_file(ctx: StageContext, root: str) -> str:
    return f"{root}/{EAGLE3_CONVERSATIONS_FILE}"


def _eagle3_head_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{serving_commands.EAGLE3_HEAD_DIR}"


def _train_eagle3_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    """The recipe's training, then the export of the head that the benchmark's server drafts with."""
    cfg, checkpoint = ctx.cfg, f"{out}/{serving_commands.EAGLE3_CHECKPOINT_DIR}"
    return {"train": serving_commands.train_eagle3_command(cfg, ctx.input("model"), ctx.input("conversations"),
                                                           checkpoint),
            "export": serving_commands.export_eagle3_command(cfg, checkpoint, _eagle3_head_dir(ctx, out))}


def _benchmark_containers(cfg: DictConfig) -> Tuple[str, ...]:
    return (*_server_container(cfg), "sandbox") if _uses_sandbox(cfg) else _server_container(cfg)


def _prompts_file(ctx: StageContext, root: str) -> str:
    return f"{root}/{PROMPTS_FILE}"


def _repository_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{TRITON_REPOSITORY}"


def _triton_repo_values(ctx: StageContext) -> dict:
    return {**_keys(ctx.cfg.serving, TRITON_REPO_KEYS), "backend_dir": ctx.cfg.cluster.triton_backend_dir,
            "python": ctx.cfg.cluster.python}


def _smoke_values(ctx: StageContext) -> dict:
    m = ctx.cfg.model
    return {"prompt": m.smoke_prompt, "max_output_len": m.smoke_max_output_len,
            "world_size": m.tensor_parallel * m.pipeline_parallel, **_tool_values(ctx.cfg)}


def _report_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    d = ctx.experiment_dir
    return {"report": commands.report_command(ctx.cfg, os.path.join(d, REPORT_INPUTS), out, d,
                                              os.path.join(d, ACCOUNTING))}


MODEL = Input("model", ("download_model",))
ENGINE = Input("engine", ("build_drafter_engine", "build_engine"))
# The tokenizer is the downloaded model's, which the engine already waits on.
TOKENIZER = Input("model", ("download_model",), dependency=False)
PROMPTS_FILE = "prompts.jsonl"  # in a prompt_set artifact
TRITON_REPOSITORY = "model_repository"  # in a triton_model_repo artifact (Triton reads each directory as a model)
KINDS: Dict[str, StageKind] = {kind.name: kind for kind in (
    StageKind("download_model", 120, output=_model_dir, commands=_model_download,
              values=lambda ctx: {"hf_id": ctx.cfg.model.hf_id, "revision": ctx.cfg.model.revision}),
    StageKind("download_dataset", 120, output=_dataset_dir, commands=_dataset_download,
              values=lambda ctx: {"repo_id": ctx.subject}),
    StageKind("calibration_data", 60, needed=_calibrates, output=_calibration_output,
              inputs=(MODEL, Input("dataset", ("download_dataset",), lambda cfg: cfg.quantization.calib_dataset)),
              values=lambda ctx: {**_keys(ctx.cfg.quantization, CALIBRATION_KEYS), **_tool_values(ctx.cfg)},
              commands=lambda ctx, out: {"calibration_data": commands.calibration_data_command(
                  ctx.cfg, ctx.input("model"), ctx.input("dataset"), _calibration_output(ctx, out))}),
    StageKind("prompt_set", 30, needed=_seed_protocol, output=_prompts_file,
              inputs=(MODEL, Input("dataset", ("download_dataset",), lambda cfg: cfg.benchmark.dataset)),
              values=lambda ctx: {**_keys(ctx.cfg.benchmark, PROMPT_SET_KEYS), "max_seq_len": ctx.cfg.model.max_seq_len,
                                  "python": ctx.cfg.cluster.python},
              commands=lambda ctx, out: {"prompt_set": commands.prompt_set_command(
                  ctx.cfg, ctx.input("model"), ctx.input("dataset"), _prompts_file(ctx, out))}),
    StageKind("quantize", 120, gpus=_weights_gpus, gpus_run_fp8=True,
              inputs=(MODEL, Input("calibration", ("calibration_data",))), values=_quantize_values,
              commands=lambda ctx, out: {"quantize": commands.quantize_command(
                  ctx.cfg, ctx.input("model"), ctx.input("calibration"), out)}),
    # Checkpoint-loading stacks (launcher.serving_commands): a ModelOpt FP8 export, a draft model or EAGLE-3 head.
    StageKind("quantize_modelopt", 120, needed=serving_commands.quantizes_with_modelopt, gpus=_weights_gpus,
              gpus_run_fp8=True, containers=_modelopt,
              inputs=(MODEL, Input("calibration", ("calibration_data",))), values=_modelopt_values,
              commands=lambda ctx, out: {"quantize": serving_commands.quantize_modelopt_command(
                  ctx.cfg, ctx.input("model"), ctx.input("calibration"), out)}),
    StageKind("download_draft_model", 120, needed=serving_commands.downloads_draft_model, output=_draft_model_dir,
              commands=_draft_model_download, values=lambda ctx: {"hf_id": ctx.cfg.drafter.draft_model,
                                                                  "revision": ctx.cfg.drafter.draft_model_revision}),
    # drafter.train_eagle3: the head trained with NVIDIA Model-Optimizer's EAGLE-3 recipe instead of downloaded.
    StageKind("eagle3_conversations", 30, needed=serving_commands.trains_eagle3, containers=_modelopt,
              output=_conversations_file,
              inputs=(Input("dataset", ("download_dataset",), lambda cfg: cfg.drafter.eagle3_dataset),),
              values=lambda ctx: {**_keys(ctx.cfg.drafter, EAGLE3_DATA_KEYS), "python": ctx.cfg.cluster.python},
              commands=lambda ctx, out: {"conversations": serving_commands.eagle3_conversations_command(
                  ctx.cfg, ctx.input("dataset"), _conversations_file(ctx, out))}),
    StageKind("train_eagle3", 480, needed=serving_commands.trains_eagle3, gpus=_eagle3_gpus,
              containers=_modelopt, naive_gpus=_eagle3_gpus, derived_time_limit=train_eagle3_time_limit_min,
              naive_time_limit_min=480, output=_eagle3_head_dir,
              inputs=(MODEL, Input("conversations", ("eagle3_conversations",))),
              values=lambda ctx: {**_keys(ctx.cfg.drafter, TRAIN_EAGLE3_KEYS),
                                  "trust_remote_code": ctx.cfg.model.trust_remote_code,
                                  "examples": ctx.cfg.cluster.modelopt_examples_dir,
                                  "python": ctx.cfg.cluster.python},
              commands=_train_eagle3_commands),
    StageKind("build_engine", 90, needed=lambda cfg: _engine_path(cfg) and not _drafts(cfg), gpus=_one_gpu,
              gpus_run_fp8=True,
              inputs=(Input("checkpoint", ("quantize",)), MODEL),
              values=lambda ctx: _keys(ctx.cfg.model, ENGINE_KEYS),
              commands=_engine_commands(commands.build_engine_command)),
    StageKind("train_drafter", 480, needed=_drafts, gpus=_drafter_gpus, gpus_run_drafter=True, drafter_gate=True,
              naive_gpus=_drafter_gpus, derived_time_limit=train_drafter_time_limit_min, naive_time_limit_min=480,
              inputs=(MODEL, Input("dataset", ("download_dataset",), lambda cfg: cfg.drafter.dataset)),
              output=_drafter_output, values=_train_drafter_values,
              commands=lambda ctx, out: {"train": commands.train_drafter_command(
                  ctx.cfg, ctx.input("model"), ctx.input("dataset"), f"{out}/redrafter_output")}),
    StageKind("convert_drafter", 30, needed=_drafts, gpus=_one_gpu, gpus_run_drafter=True, drafter_gate=True,
              inputs=(Input("checkpoint", ("quantize",)), Input("drafter", ("train_drafter",))),
              values=lambda ctx: {**_keys(ctx.cfg.drafter, CONVERT_DRAFTER_KEYS), **_tool_values(ctx.cfg)},
              commands=lambda ctx, out: {"convert": commands.convert_drafter_command(
                  ctx.cfg, ctx.input("checkpoint"), ctx.input("drafter"), out)}),
    StageKind("build_drafter_engine", 90, needed=_drafts, gpus=_one_gpu, gpus_run_fp8=True, gpus_run_drafter=True,
              inputs=(Input("checkpoint", ("convert_drafter",)), MODEL), values=_drafter_engine_values,
              commands=_engine_commands(commands.build_drafter_engine_command)),
    # Every engine answers the seed's prompt once (examples/run.py, mpirun -n tp*pp); the report shows the answers.
    StageKind("smoke_run", 15, needed=_engine_path, gpus=_model_gpus, gpus_run_fp8=True, gpus_run_drafter=True,
              inputs=(ENGINE, TOKENIZER),
              values=_smoke_values, commands=lambda ctx, out: {"smoke": commands.smoke_run_command(
                  ctx.cfg, ctx.input("engine"), ctx.input("model"))}),
    StageKind("triton_model_repo", 15, needed=_triton, containers=_server_container, output=_repository_dir,
              inputs=(ENGINE, TOKENIZER), values=_triton_repo_values,
              commands=lambda ctx, out: commands.triton_model_repo_commands(
                  ctx.cfg, ctx.input("engine"), ctx.input("model"), _repository_dir(ctx, out))),
    StageKind("benchmark", 90, gpus=_model_gpus, containers=_benchmark_containers, gpus_run_fp8=True,
              gpus_run_drafter=True, serves=True, files=(InputFile("problems", lambda cfg: cfg.benchmark.problems_file, ".jsonl",
                                                      needed=lambda cfg: not _seed_protocol(cfg)),),
              # The engine first: the job checks the GPUs it was built on (launcher.scripts.gpu_requirement).
              # A checkpoint-loading stack serves the ModelOpt export or the downloaded model as its `engine`.
              inputs=(Input("engine", (*ENGINE.kinds, "quantize_modelopt", "download_model")), TOKENIZER,
                      Input("repository", ("triton_model_repo",)), Input("prompts", ("prompt_set",)),
                      Input("draft", ("train_eagle3", "download_draft_model"))),
              values=_benchmark_values, commands=_benchmark_commands, derived_time_limit=benchmark_time_limit_min),
    StageKind("report", 15, after_any=True, inputs=(Input("benchmarks", ("benchmark",), every_experiment=True),
                                                    Input("smoke_runs", ("smoke_run",), every_experiment=True)),
              values=lambda ctx: {"benchmarks": list(ctx.input_fingerprints["benchmarks"])},
              commands=_report_commands),
)}
STAGE_KINDS = tuple(KINDS)  # in dependency order: a kind's inputs come before it
REPORT = KINDS["report"]  # once per plan: the root of the walk
FP8_KINDS = tuple(k.name for k in KINDS.values() if k.gpus_run_fp8)
DRAFTER_KINDS = tuple(k.name for k in KINDS.values() if k.gpus_run_drafter)


def input_kind(spec: Input, cfg: DictConfig) -> Optional[StageKind]:
    """The kind an input is for this config: the first of its kinds the config needs, or None."""
    return next((KINDS[name] for name in spec.kinds if KINDS[name].needed(cfg)), None)


def needed_containers(cfg: DictConfig) -> Tuple[str, ...]:
    """Every container key the stages this config needs run in, in table order."""
    keys: Dict[str, None] = {}
    for kind in KINDS.values():
        if kind.needed(cfg):
            keys.update(dict.fromkeys(kind.containers(cfg)))
    return tuple(keys)
