"""Each stage's command, built by a small pure function from the config and the stage's paths.

The functions return argv lists (no shell). For `+experiment=fp8_redrafter` they reproduce the seeds'
commands flag for flag (see tests/test_commands.py); the paths are the launcher's artifact directories.
"""
from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any, Dict, List, Tuple

from omegaconf import DictConfig, OmegaConf

from launcher import triton_commands
from launcher.contract import (GRPC_PORT_ENV, METRICS_PORT_ENV, SANDBOX_PORT_ENV, SANDBOX_PORT_FILE_ENV,
                               SERVER_PORT_ENV, placeholder)

# quantize.py's default --calib_max_seq_length: the seeds never pass it, so neither do we unless changed.
QUANTIZE_DEFAULT_CALIB_MAX_SEQ_LENGTH = 512


def config_values(node: Any) -> dict:
    """A config section's values as plain containers, resolved: the same for the typed config the plan reads
    (launcher.plan.typed_config: the schema's dataclasses) as for a DictConfig, so that fingerprints hash the
    same JSON whichever the section is."""
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return OmegaConf.to_container(node, resolve=True)


def model_dir_name(hf_id: str) -> str:
    """The basename the HF download gets; ReDrafter names its output after it."""
    return hf_id.rstrip("/").split("/")[-1]


def download_command(repo_id: str, local_dir: str, repo_type: str = "model", revision: str | None = None) -> List[str]:
    argv = ["hf", "download", repo_id]
    if repo_type != "model":
        argv += ["--repo-type", repo_type]
    if revision:
        argv += ["--revision", revision]
    return argv + ["--local-dir", local_dir]


def check_download_command(cfg: DictConfig, repo_type: str, local_dir: str) -> List[str]:
    """Fail the download stage, not a later one, when files a later stage needs are missing or partial.
    (A dataset's splits are checked by the stages that read them: one download serves several.)"""
    return [cfg.cluster.python, "-m", "jobs.check_download", repo_type, local_dir]


def calibration_data_command(cfg: DictConfig, model_dir: str, dataset_dir: str, out_dir: str) -> List[str]:
    q = cfg.quantization
    return [
        cfg.cluster.python, "-m", "jobs.calibration_data",
        "--model_dir", model_dir,
        "--dataset_dir", dataset_dir,
        "--split", q.calib_split,
        "--size", str(q.calib_size),
        "--prompt", q.calib_prompt,
        "--max_seq_length", str(q.calib_max_seq_length),
        "--output_dir", out_dir,
    ]


def _calibration_flags(cfg: DictConfig, calib_dir: str | None) -> List[str]:
    q = cfg.quantization
    if not q.calibrate:
        return []
    flags = ["--calib_size", str(q.calib_size), "--calib_dataset", calib_dir, "--batch_size", str(q.calib_batch_size)]
    if q.calib_max_seq_length != QUANTIZE_DEFAULT_CALIB_MAX_SEQ_LENGTH:
        flags += ["--calib_max_seq_length", str(q.calib_max_seq_length)]
    return flags


def quantize_command(cfg: DictConfig, model_dir: str, calib_dir: str | None, out_dir: str) -> List[str]:
    """HF weights -> TensorRT-LLM checkpoint, quantized per `quantization` (full_prec for BF16)."""
    m, q = cfg.model, cfg.quantization
    parallel = ["--tp_size", str(m.tensor_parallel), "--pp_size", str(m.pipeline_parallel)]
    kv = ["--kv_cache_dtype", q.kv_cache_dtype] if q.kv_cache_dtype else []
    if m.checkpoint_tool == "nemo_skills":
        return [
            cfg.cluster.python, "-m", "nemo_skills.conversion.hf_to_trtllm_quantize",
            "--model_dir", model_dir, "--dtype", m.dtype, "--qformat", q.qformat, *kv,
            "--output_dir", out_dir, *_calibration_flags(cfg, calib_dir), *parallel,
        ]
    examples = PurePosixPath(cfg.cluster.trtllm_examples_dir)
    if q.qformat == "full_prec" and not q.kv_cache_dtype:
        trust = ["--trust_remote_code"] if m.trust_remote_code else []
        return [
            cfg.cluster.python, str(examples / m.convert_script),
            "--model_dir", model_dir, "--output_dir", out_dir, "--dtype", m.dtype, *parallel, *trust,
        ]
    return [
        cfg.cluster.python, str(examples / "quantization" / "quantize.py"),
        "--model_dir", model_dir, "--output_dir", out_dir, "--dtype", m.dtype, *kv, "--qformat", q.qformat,
        *_calibration_flags(cfg, calib_dir), *parallel,
    ]


def _engine_flags(max_batch_size, max_input_len, max_seq_len, max_num_tokens) -> List[str]:
    return [
        "--max_batch_size", str(max_batch_size),
        "--max_input_len", str(max_input_len),
        "--max_seq_len", str(max_seq_len),
        "--max_num_tokens", str(max_num_tokens),
    ]


def build_engine_command(cfg: DictConfig, checkpoint_dir: str, out_dir: str) -> List[str]:
    m = cfg.model
    argv = ["trtllm-build", "--checkpoint_dir", checkpoint_dir, "--output_dir", out_dir, "--gemm_plugin", m.gemm_plugin]
    if m.use_paged_context_fmha:
        argv += ["--use_paged_context_fmha", "enable"]
    argv += _engine_flags(m.max_batch_size, m.max_input_len, m.max_seq_len, m.max_num_tokens)
    if m.kv_cache_type:
        argv += ["--kv_cache_type", m.kv_cache_type]
    return argv


def copy_tokenizer_command(cfg: DictConfig, model_dir: str, engine_dir: str) -> List[str]:
    """trtllm-serve reads the tokenizer beside the engine (the tutorial copies `tokenizer*`)."""
    return [cfg.cluster.python, "-m", "jobs.copy_tokenizer", model_dir, engine_dir]


def drafter_output_dir(cfg: DictConfig, output_dir: str, model_dir: str) -> str:
    """Where NeMo-Skills' train_redrafter really writes: a sibling of --output_dir, not inside it."""
    d = cfg.drafter
    name = PurePosixPath(model_dir).name
    return f"{output_dir}_redrafter_{name}_n_{d.predict_n_tokens}_lr_{d.learning_rate}_layers_{d.num_layers}"


def drafter_data_parallel(cfg: DictConfig) -> Tuple[int, int]:
    """Drafter training's (GPUs, gradient accumulation steps): drafter.num_gpus and its accumulation, or with
    drafter.scale_out_gpus the most GPUs of one node, up to it, that divide the global batch's per-device
    batches, and the accumulation that keeps drafter.global_batch_size (HF Trainer: GPUs x per-device batch x
    accumulation)."""
    d = cfg.drafter
    if d.scale_out_gpus is None:
        return d.num_gpus, d.gradient_accumulation_steps
    batches = d.global_batch_size // d.per_device_train_batch_size  # validation: it divides
    gpus = max(n for n in range(1, min(d.scale_out_gpus, cfg.cluster.gpus_per_node) + 1) if batches % n == 0)
    return gpus, batches // gpus


def train_drafter_command(cfg: DictConfig, model_dir: str, dataset_dir: str, output_dir: str) -> List[str]:
    d = cfg.drafter
    gpus, accumulation = drafter_data_parallel(cfg)
    return [
        "torchrun", f"--nproc_per_node={gpus}", "-m", "nemo_skills.training.train_redrafter",
        "--llm_name_or_path", model_dir,
        "--dataset", dataset_dir,
        "--dataset_split", d.dataset_split,
        "--bf16", str(d.bf16),
        "--output_dir", output_dir,
        "--num_train_epochs", str(d.num_train_epochs),
        "--per_device_train_batch_size", str(d.per_device_train_batch_size),
        "--gradient_accumulation_steps", str(accumulation),
        "--save_strategy", d.save_strategy,
        "--learning_rate", str(d.learning_rate),
        "--weight_decay", str(d.weight_decay),
        "--warmup_ratio", str(d.warmup_ratio),
        "--lr_scheduler_type", d.lr_scheduler_type,
        "--logging_steps", str(d.logging_steps),
        "--tf32", str(d.tf32),
        "--model_max_length", str(d.model_max_length),
        "--dataset_nrows", str(d.dataset_nrows),
        "--drafter_predict_n_tokens", str(d.predict_n_tokens),
        "--drafter_num_layers", str(d.num_layers),
        "--rnn", str(d.rnn),
        "--phase", "train",
        "--report_to", d.report_to,
        # Else TrainingArguments' default <output_dir>/runs/<time>_<host name>, which WandbCallback puts in the
        # trainer's W&B run config (args.to_dict()): the host name, whatever jobs.wandb_log.TRAINER_ENV turns off.
        "--logging_dir", f"{output_dir}/runs",
        *(["--save_steps", str(d.save_steps)] if d.save_strategy == "steps" else []),
        # Checkpoints (steps or epoch) each hold the frozen base model + optimizer state: keep the newest few.
        *(["--save_total_limit", str(d.save_total_limit)] if d.save_strategy != "no" else []),
    ]


def convert_drafter_command(cfg: DictConfig, base_checkpoint_dir: str, drafter_dir: str, out_dir: str) -> List[str]:
    d = cfg.drafter
    argv = [
        cfg.cluster.python, str(PurePosixPath(cfg.cluster.trtllm_examples_dir) / "redrafter" / "convert_checkpoint.py"),
        "--base_model_checkpoint_dir", base_checkpoint_dir,
        "--drafter_model_dir", drafter_dir,
        "--output_dir", out_dir,
        "--dtype", d.dtype,
        "--tp_size", str(d.tensor_parallel),
        "--redrafter_num_beams", str(d.num_beams),
        "--redrafter_draft_len_per_beam", str(d.draft_len_per_beam),
    ]
    if not d.greedy_search:
        argv.append("--redrafter_no_greedy_search")
    return argv


def drafter_gemm_plugin(cfg: DictConfig) -> str:
    if cfg.drafter.engine_gemm_plugin:
        return cfg.drafter.engine_gemm_plugin
    return "fp8" if cfg.quantization.qformat == "fp8" else "auto"


def build_drafter_engine_command(cfg: DictConfig, checkpoint_dir: str, out_dir: str) -> List[str]:
    d = cfg.drafter
    return [
        "trtllm-build", "--checkpoint_dir", checkpoint_dir, "--output_dir", out_dir,
        "--gemm_plugin", drafter_gemm_plugin(cfg),
        "--use_paged_context_fmha", "enable",
        *_engine_flags(d.engine_max_batch_size, d.engine_max_input_len, d.engine_max_seq_len, d.engine_max_num_tokens),
        "--speculative_decoding_mode", "explicit_draft_tokens",
        "--max_beam_width", str(d.num_beams),
        "--kv_cache_type", d.engine_kv_cache_type,
    ]


def serve_command(cfg: DictConfig, engine_dir: str, tokenizer_dir: str) -> List[str]:
    m, s = cfg.model, cfg.serving
    argv = [
        "trtllm-serve", "serve", engine_dir, "--tokenizer", tokenizer_dir, "--backend", s.backend,
        "--tp_size", str(m.tensor_parallel),
    ]
    if m.pipeline_parallel > 1:
        argv += ["--pp_size", str(m.pipeline_parallel)]
    return argv + [
        "--kv_cache_free_gpu_memory_fraction", str(s.kv_cache_free_gpu_memory_fraction),
        "--max_batch_size", str(s.max_batch_size),
        # The first free port from serving.port, chosen by the job just before it starts the server (jobs.ports).
        "--host", s.host, "--port", placeholder(SERVER_PORT_ENV),
    ]


def sandbox_command(cfg: DictConfig, pythonpath: str | None = None,
                    port_file: str = placeholder(SANDBOX_PORT_FILE_ENV)) -> List[str]:
    """The code sandbox: jobs.sandbox_guard serves NeMo-Skills' sandbox API on loopback and runs each session in
    a process of its own, with serving.sandbox's memory limit and wall-time cap (NeMo-Skills' own server runs
    every session in one process, without either). It runs model-written code, so `env` starts it without the
    secrets, and with serving.sandbox.env; the guard passes its sessions only an allowlist of its environment and
    the serving.sandbox.env names (`--pass-env`); `pythonpath` is set explicitly where it runs in a container whose
    image's ENV would win. It listens on the first free port from serving.sandbox.port and writes that port to
    `port_file` (default: the file the job names; `-`: its stdout, which the batch script redirects)."""
    sb = cfg.serving.sandbox
    unset = [word for name in cfg.cluster.env_vars for word in ("-u", name)]
    assignments = [f"{name}={value}" for name, value in sb.env.items()]
    if pythonpath:
        assignments.append(f"PYTHONPATH={pythonpath}")
    return ["env", *unset, *assignments, cfg.cluster.python, "-m", "jobs.sandbox_guard", "--host", sb.host,
            "--memory-limit-mb", str(sb.memory_limit_mb), "--timeout-s", str(sb.timeout_s),
            *(word for name in sb.env for word in ("--pass-env", name)),
            "--base-port", str(sb.port), "--port-file", port_file]


def benchmark_client_command(cfg: DictConfig, engine_dir: str, tokenizer_dir: str, problems_file: str,
                             out_file: str, checkpoint: bool = False) -> List[str]:
    """trtllm-serve names the model after the path it serves (vLLM and SGLang too); the client asks for that name.
    The client reads the engine's max_seq_len from --engine-dir, to keep every request within it; a served
    checkpoint (`checkpoint`: launcher.serving_commands) has no engine, its server's limit is model.max_seq_len.
    The servers' ports are the ones the job chose (jobs.ports); without a sandbox there is no sandbox URL."""
    s, b = cfg.serving, cfg.benchmark
    limit = ["--max-seq-len", str(cfg.model.max_seq_len)] if checkpoint else ["--engine-dir", engine_dir]
    sandbox = ["--sandbox-url", f"http://{s.sandbox.host}:{placeholder(SANDBOX_PORT_ENV)}"] if s.sandbox.enabled else []
    return [
        cfg.cluster.python, "-m", "jobs.benchmark_client",
        "--server-url", f"http://{s.host}:{placeholder(SERVER_PORT_ENV)}",
        *sandbox,
        "--model", engine_dir,
        *limit,
        "--tokenizer", tokenizer_dir,
        "--problems", problems_file,
        "--num-generations", str(b.num_generations),
        "--cancel-after", str(b.cancel_after),
        "--temperature", str(b.temperature),
        "--max-new-tokens", str(b.max_new_tokens),
        "--max-code-executions", str(b.max_code_executions if s.sandbox.enabled else 0),
        "--sandbox-timeout", str(s.sandbox.timeout_s),
        "--max-output-characters", str(s.sandbox.max_output_characters),
        "--prompt", b.prompt,
        "--output", out_file,
    ]


def load_sweep_command(cfg: DictConfig, tokenizer_dir: str, prompts_file: str, out_dir: str) -> List[str]:
    """benchmark=load_sweep: jobs.load_sweep runs AIPerf against the server at the port the job chose. No --model:
    it asks the server's /v1/models (trtllm-serve names the model after the path it serves, vLLM and SGLang after
    theirs or --served-model-name), so the client does not depend on the serving stack."""
    s, b = cfg.serving, cfg.benchmark
    prompts = ["--problems", prompts_file, "--prompt", b.prompt] if b.prompt_set == "aimo" else \
        ["--chat-prompts", prompts_file]
    goodput = [word for tag, ms in config_values(b.goodput).items() if ms is not None
               for word in ("--goodput", f"{tag}={ms:g}")]
    return [
        cfg.cluster.python, "-m", "jobs.load_sweep",
        "--url", f"http://{s.host}:{placeholder(SERVER_PORT_ENV)}",
        "--tokenizer", tokenizer_dir,
        *prompts,
        "--endpoint-type", b.endpoint,
        "--concurrency", ",".join(str(c) for c in b.concurrency),
        "--requests-per-user", str(b.requests_per_user),
        "--min-requests", str(b.min_requests),
        "--warmup-requests", str(b.warmup_requests),
        "--repeats", str(b.repeats),
        "--output-tokens", str(b.output_tokens),
        *goodput,
        *([] if b.streaming else ["--no-streaming"]),
        "--request-timeout", str(b.request_timeout_s),
        "--out", out_dir,
    ]


def serve_hold_command(cfg: DictConfig) -> List[str]:
    """launcher.serve_only: once the servers answer, jobs.serve says where they are (the job's log, `status`) and
    keeps them up for launcher.serve_minutes; the benchmark job then stops them."""
    s = cfg.serving
    sandbox = ["--sandbox-url", f"http://{s.sandbox.host}:{placeholder(SANDBOX_PORT_ENV)}"] if s.sandbox.enabled else []
    return [cfg.cluster.python, "-m", "jobs.serve", "--server-url", f"http://{s.host}:{placeholder(SERVER_PORT_ENV)}",
            *sandbox, "--minutes", f"{cfg.launcher.serve_minutes:g}"]


def report_command(cfg: DictConfig, inputs_file: str, out_dir: str, experiment_dir: str,
                   accounting_file: str) -> List[str]:
    """The experiment's report, from every configuration's results and the Slurm accounting of its jobs."""
    return [cfg.cluster.python, "-m", "jobs.report", "--inputs", inputs_file, "--output_dir", out_dir,
            "--experiment_dir", experiment_dir, "--accounting", accounting_file]


# ------------------------------------------------------------------ seed 004: prompt set, Triton, smoke runs
def prompt_set_command(cfg: DictConfig, model_dir: str, dataset_dir: str, out_file: str) -> List[str]:
    """benchmark=cnn_dailymail's prompts: a fixed sample of the downloaded dataset, counted with the model's
    tokenizer, cut to benchmark.max_input_len, and each request's max_tokens kept within the engine's
    max_seq_len (trtllm-serve refuses a request past it; Triton would lower it: the same requests on both)."""
    b = cfg.benchmark
    return [cfg.cluster.python, "-m", "jobs.prompt_set", "--tokenizer", model_dir, "--dataset", dataset_dir,
            "--config", b.dataset_config, "--split", b.dataset_split, "--num-prompts", str(b.sample_size),
            "--seed", str(b.sample_seed), "--max-input-len", str(b.max_input_len),
            "--max-seq-len", str(cfg.model.max_seq_len), "--overlong", b.overlong,
            "--op-tokens-per-word", str(b.op_tokens_per_word), "--output", out_file]


def triton_model_repo_commands(cfg: DictConfig, engine_dir: str, tokenizer_dir: str, repo_dir: str
                               ) -> Dict[str, List[str]]:
    """The backend's inflight_batcher_llm template repository, copied from the triton image and filled for one
    engine (launcher.triton_commands)."""
    s = cfg.serving
    return triton_commands.model_repository_commands(
        repo_dir=repo_dir, engine_dir=engine_dir, tokenizer_dir=tokenizer_dir, max_batch_size=s.max_batch_size,
        max_queue_delay_us=s.max_queue_delay_us, decoupled=s.decoupled, instance_count=s.instance_count,
        max_queue_size=s.max_queue_size, kv_cache_free_gpu_mem_fraction=s.kv_cache_free_gpu_memory_fraction,
        backend_dir=cfg.cluster.triton_backend_dir, python=cfg.cluster.python)


def tritonserver_command(cfg: DictConfig, repo_dir: str) -> List[str]:
    """tritonserver on the model repository, one rank per GPU of the engine (tp*pp), at the ports the job chooses:
    HTTP from serving.port (jobs.ports' server port), gRPC and metrics from serving.grpc_port/metrics_port."""
    m = cfg.model
    return triton_commands.tritonserver_argv(
        repo_dir=repo_dir, http_port=placeholder(SERVER_PORT_ENV),
        grpc_port=placeholder(GRPC_PORT_ENV), metrics_port=placeholder(METRICS_PORT_ENV),
        world_size=m.tensor_parallel * m.pipeline_parallel)


def seed_benchmark_client_command(cfg: DictConfig, engine_dir: str, prompts_file: str, out_file: str) -> List[str]:
    """benchmark=cnn_dailymail's client (jobs.triton_benchmark): Triton's gRPC stream to serving.entry_model, or
    trtllm-serve's OpenAI API (the model named after the engine path it serves)."""
    s = cfg.serving
    if s.name == "triton":
        target = ["--protocol", "triton", "--url", f"{s.host}:{placeholder(GRPC_PORT_ENV)}",
                  "--model", s.entry_model]
    else:
        target = ["--protocol", "openai", "--url", f"http://{s.host}:{placeholder(SERVER_PORT_ENV)}",
                  "--model", engine_dir]
    return [cfg.cluster.python, "-m", "jobs.triton_benchmark", *target, "--prompts", prompts_file,
            "--concurrency", str(cfg.benchmark.max_in_flight), "--output", out_file]


def smoke_run_command(cfg: DictConfig, engine_dir: str, tokenizer_dir: str) -> List[str]:
    """The engine answers the seed's prompt (examples/run.py), under mpirun for a tp*pp engine."""
    m = cfg.model
    return triton_commands.smoke_run_argv(
        examples_dir=cfg.cluster.trtllm_examples_dir, engine_dir=engine_dir, tokenizer_dir=tokenizer_dir,
        input_text=m.smoke_prompt, max_output_len=m.smoke_max_output_len,
        world_size=m.tensor_parallel * m.pipeline_parallel, python=cfg.cluster.python)
