"""The commands of the serving stacks that load a checkpoint directly (serving.stack trtllm_pytorch, vllm, sglang).

Pure functions from the config and the stage's paths to argv lists, like launcher.commands (which keeps the
pinned engine path). Every flag and every key of the TensorRT-LLM options file is one the pinned release's parser
or schema declares: tests/standins/README.md ("Serving stacks") says where each was read.

* trtllm_pytorch: `trtllm-serve serve CHECKPOINT --backend pytorch ... --extra_llm_api_options FILE`, the file
  (JSON, which YAML reads) written by the job from `server_options` (jobs.server_options) with the LLM API's
  `speculative_config`; across nodes `trtllm-llmapi-launch trtllm-serve ...` on every rank of a step of its own
  (`srun --mpi=pmix`, launcher.scripts), started by the job through a launch file (jobs.server_launch).
* vllm: `vllm serve CHECKPOINT ... --speculative-config JSON`; across nodes one task per node (`node_args`),
  `--nnodes N --node-rank R --master-addr HEAD --master-port P`, and `--headless` on the nodes after the first.
* sglang: `python -m sglang.launch_server --model-path CHECKPOINT ... --speculative-algorithm ...`; across nodes
  one task per node, `--nnodes N --node-rank R --dist-init-addr HEAD:P`.

FP8 is the ModelOpt export of stage quantize_modelopt (NVIDIA Model-Optimizer's hf_ptq.py on our calibration
data), which every stack reads from its config.json `quantization_config`; vLLM and SGLang can instead quantize
the BF16 weights while loading (`--quantization fp8`, serving.fp8_weights=online).
"""
from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Dict, List, Optional

from omegaconf import DictConfig

from launcher.commands import config_values
from launcher.contract import NODE_RANK_ENV, SERVER_DIST_PORT_ENV, SERVER_HEAD_ENV, SERVER_PORT_ENV, placeholder

TRTLLM = "trtllm"  # the pinned engine path: launcher.commands.serve_command
CHECKPOINT_STACKS = ("trtllm_pytorch", "vllm", "sglang")
# The file the benchmark job writes from commands["server_options"] before it starts trtllm-serve.
SERVER_OPTIONS_FILE = "extra_llm_api_options.yaml"
# TensorRT-LLM LLM API (llmapi/llm_args.py) `decoding_type` of each drafter.method.
TRTLLM_DECODING_TYPE = {"ngram": "NGram", "draft_target": "Draft_Target", "eagle3": "Eagle3", "mtp": "MTP"}
# vLLM SpeculativeConfig.method (vllm/config/speculative.py SpeculativeMethod).
VLLM_METHOD = {"ngram": "ngram", "draft_target": "draft_model", "eagle3": "eagle3", "mtp": "mtp"}
# SGLang --speculative-algorithm (python/sglang/srt/arg_groups/fields/spec.py builtins).
SGLANG_ALGORITHM = {"ngram": "NGRAM", "draft_target": "STANDALONE", "eagle3": "EAGLE3", "mtp": "NEXTN"}
# Which drafter.method and FP8 source each stack serves (README "Serving stacks"; validation refuses the rest).
SUPPORTED_METHODS = {
    "trtllm_pytorch": ("ngram", "draft_target", "eagle3", "mtp"),
    "vllm": ("ngram", "draft_target", "eagle3", "mtp"),
    "sglang": ("ngram", "draft_target", "eagle3", "mtp"),
}
SUPPORTED_FP8_WEIGHTS = {"trtllm_pytorch": ("modelopt",), "vllm": ("modelopt", "online"),
                         "sglang": ("modelopt", "online")}
# Model-Optimizer hf_ptq.py --kv_cache_qformat of quantization.kv_cache_dtype (none: the KV cache stays BF16).
MODELOPT_KV_QFORMAT = {None: "none", "fp8": "fp8"}


def stack(cfg: DictConfig) -> str:
    return str(getattr(cfg.serving, "stack", TRTLLM))


def loads_checkpoint(cfg: DictConfig) -> bool:
    """Served from the HF checkpoint (or its ModelOpt export): no TensorRT engine is built."""
    return stack(cfg) in CHECKPOINT_STACKS


def quantizes_with_modelopt(cfg: DictConfig) -> bool:
    return loads_checkpoint(cfg) and cfg.quantization.qformat == "fp8" and cfg.serving.fp8_weights == "modelopt"


def speculates(cfg: DictConfig) -> bool:
    return loads_checkpoint(cfg) and cfg.drafter.method is not None


def trains_eagle3(cfg: DictConfig) -> bool:
    """The EAGLE-3 head is trained here (stages eagle3_conversations, train_eagle3), not downloaded."""
    return speculates(cfg) and cfg.drafter.method == "eagle3" and cfg.drafter.train_eagle3


def downloads_draft_model(cfg: DictConfig) -> bool:
    return speculates(cfg) and cfg.drafter.method in ("draft_target", "eagle3") and not trains_eagle3(cfg)


def nodes(cfg: DictConfig) -> int:
    """Nodes the server spans: tensor x pipeline parallel over cluster.gpus_per_node."""
    gpus = cfg.model.tensor_parallel * cfg.model.pipeline_parallel
    return -(-gpus // cfg.cluster.gpus_per_node)


def serving_values(cfg: DictConfig) -> dict:
    """serving as the benchmark's fingerprint hashes it: without the keys only another stack reads (launcher.schema
    ServingConfig.USED_WHEN on `stack`), and with `stack` only off the pinned engine path, whose fingerprints
    predate it."""
    from launcher.schema import ServingConfig  # the schema imports the stage table, which imports this module

    values = config_values(cfg.serving)
    for rule in ServingConfig.USED_WHEN:
        if rule.gate == "stack" and values["stack"] not in rule.values:
            values = {k: v for k, v in values.items() if not rule.governs(k) or k == rule.gate}
    if values.get("stack") == TRTLLM:
        values.pop("stack")
    return values


def speculative_values(cfg: DictConfig) -> dict:
    """The drafter keys speculative decoding reads (hashed into the benchmark's fingerprint)."""
    from launcher.schema import SPECULATIVE_KEYS

    return {k: getattr(cfg.drafter, k) for k in SPECULATIVE_KEYS} if speculates(cfg) else {}


# ----------------------------------------------------------------------------------------------- quantize_modelopt
def quantize_modelopt_command(cfg: DictConfig, model_dir: str, calib_dir: str, out_dir: str) -> List[str]:
    """Model-Optimizer's examples/hf_ptq/hf_ptq.py (tag 0.46.0): FP8 PTQ calibrated on our calibration data (a local
    directory whose parquet has a `text` column: dataset_utils.get_dataset_samples reads it as an unregistered
    dataset), exported as a unified HF checkpoint that TensorRT-LLM's PyTorch backend, vLLM and SGLang load."""
    m, q = cfg.model, cfg.quantization
    trust = ["--trust_remote_code"] if m.trust_remote_code else []
    return [
        cfg.cluster.python, str(PurePosixPath(cfg.cluster.modelopt_examples_dir) / "hf_ptq" / "hf_ptq.py"),
        "--pyt_ckpt_path", model_dir, "--qformat", q.qformat,
        "--kv_cache_qformat", MODELOPT_KV_QFORMAT[q.kv_cache_dtype],
        "--dataset", calib_dir, "--calib_size", str(q.calib_size), "--batch_size", str(q.calib_batch_size),
        "--calib_seq", str(q.calib_max_seq_length),
        "--inference_tensor_parallel", str(m.tensor_parallel),
        "--inference_pipeline_parallel", str(m.pipeline_parallel),
        "--export_path", out_dir, *trust,
    ]


# ----------------------------------------------------------------------------------------------- train_eagle3
# Model-Optimizer 0.46.0's EAGLE-3 recipe, built into the nvidia-modelopt wheel (modelopt_recipes/general/
# speculative_decoding/eagle3.yaml): main.py's load_recipe finds a relative --config there before the file system.
MODELOPT_EAGLE3_RECIPE = "general/speculative_decoding/eagle3"
EAGLE3_CHECKPOINT_DIR = "modelopt_checkpoint"  # main.py's training.output_dir: checkpoint-N, then the final model
EAGLE3_HEAD_DIR = "eagle3_head"  # export_hf_checkpoint.py's export: config.json + model.safetensors of the head


def eagle3_conversations_command(cfg: DictConfig, dataset_dir: str, out_file: str) -> List[str]:
    """The recipe's online data: a jsonl of {"messages": [user, assistant]} from the drafter's dataset."""
    d = cfg.drafter
    return [cfg.cluster.python, "-m", "jobs.eagle3_conversations", "--dataset_dir", dataset_dir,
            "--split", d.eagle3_dataset_split, "--nrows", str(d.eagle3_dataset_nrows), "--output", out_file]


def _speculative_decoding_script(cfg: DictConfig, *parts: str) -> str:
    return str(PurePosixPath(cfg.cluster.modelopt_examples_dir, "speculative_decoding", *parts))


def train_eagle3_command(cfg: DictConfig, model_dir: str, conversations: str, out_dir: str) -> List[str]:
    """examples/speculative_decoding/main.py as launch_train.sh starts it on one node (`accelerate launch
    --mixed_precision bf16`), the recipe's fields as OmegaConf dotlist overrides (yaml-typed by load_recipe).
    Online training: the frozen base model runs beside the head on every GPU. main.py resumes by itself from the
    newest checkpoint-N of training.output_dir."""
    d, trust = cfg.drafter, "true" if cfg.model.trust_remote_code else "false"
    n = d.eagle3_num_gpus
    return [
        "accelerate", "launch", "--mixed_precision", "bf16", "--num_processes", str(n),
        *(["--multi_gpu"] if n > 1 else []),
        _speculative_decoding_script(cfg, "main.py"), "--config", MODELOPT_EAGLE3_RECIPE,
        f"model.model_name_or_path={model_dir}", f"model.trust_remote_code={trust}",
        f"data.data_path={conversations}", f"training.output_dir={out_dir}",
        f"training.num_train_epochs={d.eagle3_num_train_epochs}",
        f"training.per_device_train_batch_size={d.eagle3_per_device_train_batch_size}",
        f"training.learning_rate={d.eagle3_learning_rate}", f"training.warmup_steps={d.eagle3_warmup_steps}",
        f"training.training_seq_len={d.eagle3_training_seq_len}", f"training.logging_steps={d.eagle3_logging_steps}",
        f"training.save_steps={d.eagle3_save_steps}", f"training.save_total_limit={d.eagle3_save_total_limit}",
        f"eagle.eagle_ttt_steps={d.eagle3_ttt_steps}",
        f"eagle.eagle_architecture_config.num_hidden_layers={d.eagle3_num_layers}",
        f"eagle.eagle_export_rope_scaling.original_max_position_embeddings={d.eagle3_training_seq_len}",
    ]


def export_eagle3_command(cfg: DictConfig, checkpoint_dir: str, out_dir: str) -> List[str]:
    """scripts/export_hf_checkpoint.py: the trained head alone, as TensorRT-LLM (speculative_model_dir), vLLM and
    SGLang load an EAGLE-3 draft model (config.json architectures LlamaForCausalLMEagle3, model.safetensors)."""
    return [cfg.cluster.python, _speculative_decoding_script(cfg, "scripts", "export_hf_checkpoint.py"),
            "--model_path", checkpoint_dir, "--export_path", out_dir,
            *(["--trust_remote_code"] if cfg.model.trust_remote_code else [])]


# ----------------------------------------------------------------------------------------------- trtllm_pytorch
def trtllm_llm_api_options(cfg: DictConfig, draft_dir: Optional[str]) -> dict:
    """The --extra_llm_api_options file: the LLM API's `speculative_config` (llmapi/llm_args.py DecodingBaseConfig
    subclasses; `speculative_model_dir` is the name every 1.x release accepts), or nothing."""
    if not speculates(cfg):
        return {}
    d = cfg.drafter
    spec: Dict[str, object] = {"decoding_type": TRTLLM_DECODING_TYPE[d.method]}
    if d.method == "mtp":  # MTPDecodingConfig: the checkpoint's MTP layers draft one token each
        spec["num_nextn_predict_layers"] = cfg.model.mtp_layers
    else:
        spec["max_draft_len"] = d.max_draft_len
    if d.method == "ngram":
        spec["max_matching_ngram_size"] = d.max_matching_ngram_size
    if draft_dir:
        spec["speculative_model_dir"] = draft_dir
    # enable_iter_perf_stats (TorchLlmArgs): without it the PyTorch backend queues no iteration stats, and GET
    # /metrics, whose specDecodingStats give the load sweep its acceptance (jobs.load_sweep), stays empty.
    return {"speculative_config": spec, "enable_iter_perf_stats": True}


def server_options_command(cfg: DictConfig, options: dict, out_dir: str) -> List[str]:
    """Writes the options file into the benchmark's staging directory (JSON is YAML)."""
    return [cfg.cluster.python, "-m", "jobs.server_options", "--output", f"{out_dir}/{SERVER_OPTIONS_FILE}",
            "--json", json.dumps(options, sort_keys=True)]


def _multi_node(cfg: DictConfig, argv: List[str]) -> List[str]:
    """More GPUs than a node has: every rank runs `trtllm-llmapi-launch trtllm-serve ...` (pipeline.md), which
    runs trtllm-serve (its HTTP front end) on rank 0 and an MPI worker on the others. The ranks are the tasks
    of the server's own step (server_step_srun), which the batch script starts over the job's nodes."""
    return ["trtllm-llmapi-launch", *argv] if spans_nodes(cfg) else argv


def spans_nodes(cfg: DictConfig) -> bool:
    """The server runs as a step of its own over several nodes."""
    return loads_checkpoint(cfg) and nodes(cfg) > 1


def tasks_per_node(cfg: DictConfig) -> int:
    """Tasks of the server's step on each node: trtllm-llmapi-launch's MPI ranks are one per GPU; vLLM and SGLang
    start one process per node that starts its node's GPU workers itself."""
    return cfg.cluster.gpus_per_node if stack(cfg) == "trtllm_pytorch" else 1


def server_step_srun(cfg: DictConfig) -> List[str]:
    """The srun of a server that spans nodes, --overlap beside the stage's own step on the first node.
    trtllm_pytorch: one MPI rank (PMIx, which trtllm-llmapi-launch's ranks use) per GPU, at most gpus_per_node on
    a node; vLLM, SGLang: one task per node, no MPI (they meet over TCP at the head: node_args). A task that
    fails ends the step (--kill-on-bad-exit): the others would wait for it until the job's time limit, and the
    job sees the step end at once."""
    n, mpi = nodes(cfg), stack(cfg) == "trtllm_pytorch"
    tasks = cfg.model.tensor_parallel * cfg.model.pipeline_parallel if mpi else n
    return ["srun", "--overlap", *(["--mpi=pmix"] if mpi else []), "--kill-on-bad-exit=1", f"--nodes={n}",
            f"--ntasks={tasks}", f"--ntasks-per-node={tasks_per_node(cfg)}"]


def node_args(cfg: DictConfig) -> Dict[str, List[str]]:
    """What each task of the server's step adds to the server's command (jobs.server_launch), its placeholders
    filled in there: `all` on every node, `workers` on the nodes after the first. Empty for trtllm_pytorch, whose
    MPI ranks know their places. vLLM 0.33.0 (engine/arg_utils.py, entrypoints/cli/serve.py): every node names
    the head's torch.distributed address, the others run `--headless` (no API server: serve.py run_headless);
    SGLang 0.5.23 (server_args.py, entrypoints/engine.py): every node names the head's --dist-init-addr, the
    others run their schedulers only. tests/standins/README.md ("Across nodes") says where each was read."""
    head, port, rank = placeholder(SERVER_HEAD_ENV), placeholder(SERVER_DIST_PORT_ENV), placeholder(NODE_RANK_ENV)
    name, n = stack(cfg), str(nodes(cfg))
    if name == "vllm":
        return {"all": ["--nnodes", n, "--node-rank", rank, "--master-addr", head, "--master-port", port],
                "workers": ["--headless"]}
    if name == "sglang":
        return {"all": ["--nnodes", n, "--node-rank", rank, "--dist-init-addr", f"{head}:{port}"], "workers": []}
    return {"all": [], "workers": []}


def trtllm_pytorch_serve_command(cfg: DictConfig, checkpoint: str, tokenizer: str, out_dir: str) -> List[str]:
    m, s = cfg.model, cfg.serving
    argv = ["trtllm-serve", "serve", checkpoint, "--tokenizer", tokenizer, "--backend", "pytorch",
            "--tp_size", str(m.tensor_parallel)]
    if m.pipeline_parallel > 1:
        argv += ["--pp_size", str(m.pipeline_parallel)]
    argv += ["--kv_cache_free_gpu_memory_fraction", str(s.kv_cache_free_gpu_memory_fraction),
             "--max_batch_size", str(s.max_batch_size), "--max_seq_len", str(m.max_seq_len)]
    if m.trust_remote_code:
        argv.append("--trust_remote_code")
    if nodes(cfg) > 1:
        argv += ["--gpus_per_node", str(cfg.cluster.gpus_per_node)]
    if speculates(cfg):
        argv += ["--extra_llm_api_options", f"{out_dir}/{SERVER_OPTIONS_FILE}"]
    return _multi_node(cfg, argv + ["--host", s.host, "--port", placeholder(SERVER_PORT_ENV)])


# ----------------------------------------------------------------------------------------------- vllm
def vllm_speculative_config(cfg: DictConfig, draft_dir: Optional[str]) -> dict:
    """vLLM SpeculativeConfig (a pydantic dataclass that forbids unknown keys)."""
    d = cfg.drafter
    spec: Dict[str, object] = {"method": VLLM_METHOD[d.method], "num_speculative_tokens": d.max_draft_len}
    if d.method == "ngram":
        spec["prompt_lookup_max"] = d.max_matching_ngram_size
    if draft_dir:
        spec["model"] = draft_dir
    return spec


def _online_fp8(cfg: DictConfig) -> bool:
    return cfg.quantization.qformat == "fp8" and cfg.serving.fp8_weights == "online"


def vllm_serve_command(cfg: DictConfig, checkpoint: str, draft_dir: Optional[str]) -> List[str]:
    m, s, q = cfg.model, cfg.serving, cfg.quantization
    argv = ["vllm", "serve", checkpoint, "--host", s.host, "--port", placeholder(SERVER_PORT_ENV),
            "--tensor-parallel-size", str(m.tensor_parallel), "--pipeline-parallel-size", str(m.pipeline_parallel),
            "--gpu-memory-utilization", str(s.gpu_memory_utilization), "--max-num-seqs", str(s.max_batch_size),
            "--max-model-len", str(m.max_seq_len)]
    if _online_fp8(cfg):
        argv += ["--quantization", "fp8"]
    if q.kv_cache_dtype == "fp8":
        argv += ["--kv-cache-dtype", "fp8"]
    if m.trust_remote_code:
        argv.append("--trust-remote-code")
    if speculates(cfg):
        argv += ["--speculative-config", json.dumps(vllm_speculative_config(cfg, draft_dir), sort_keys=True)]
    return argv


# ----------------------------------------------------------------------------------------------- sglang
def sglang_serve_command(cfg: DictConfig, checkpoint: str, draft_dir: Optional[str]) -> List[str]:
    m, s, q, d = cfg.model, cfg.serving, cfg.quantization, cfg.drafter
    argv = [cfg.cluster.python, "-m", "sglang.launch_server", "--model-path", checkpoint,
            "--host", s.host, "--port", placeholder(SERVER_PORT_ENV),
            "--tp-size", str(m.tensor_parallel), "--pp-size", str(m.pipeline_parallel),
            "--mem-fraction-static", str(s.gpu_memory_utilization), "--max-running-requests", str(s.max_batch_size),
            "--context-length", str(m.max_seq_len)]
    if _online_fp8(cfg):
        argv += ["--quantization", "fp8"]
    if q.kv_cache_dtype == "fp8":
        argv += ["--kv-cache-dtype", "fp8_e4m3"]
    if m.trust_remote_code:
        argv.append("--trust-remote-code")
    if speculates(cfg):
        argv += ["--speculative-algorithm", SGLANG_ALGORITHM[d.method],
                 "--speculative-num-draft-tokens", str(d.max_draft_len + 1),
                 "--enable-metrics"]  # /metrics: its spec_verify_calls counter gives the load sweep's acceptance
        if d.method != "ngram":  # a chain of max_draft_len steps, one token each
            argv += ["--speculative-num-steps", str(d.max_draft_len), "--speculative-eagle-topk", "1"]
        if draft_dir:
            argv += ["--speculative-draft-model-path", draft_dir]
    return argv


def serve_commands(cfg: DictConfig, checkpoint: str, tokenizer: str, draft_dir: Optional[str],
                   out_dir: str) -> Dict[str, List[str]]:
    """The benchmark's server (and what it reads, written first) for a checkpoint-loading stack."""
    name = stack(cfg)
    if name == "trtllm_pytorch":
        cmds = {"server": trtllm_pytorch_serve_command(cfg, checkpoint, tokenizer, out_dir)}
        if speculates(cfg):
            cmds = {"server_options": server_options_command(cfg, trtllm_llm_api_options(cfg, draft_dir), out_dir),
                    **cmds}
        return cmds
    if name == "vllm":
        return {"server": vllm_serve_command(cfg, checkpoint, draft_dir)}
    return {"server": sglang_serve_command(cfg, checkpoint, draft_dir)}
