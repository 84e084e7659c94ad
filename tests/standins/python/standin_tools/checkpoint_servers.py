"""STAND-INS for the servers that load a checkpoint directly: `vllm serve` (vLLM 0.33.0), `python -m
sglang.launch_server` (SGLang 0.5.23) and trtllm-serve's PyTorch backend (TensorRT-LLM 1.2.1 options file).

Each parses the flags the real parser declares (the subset tests/test_command_parsers.py transcribes: any other
flag is refused as the real argparse refuses an unknown one), checks what the real server checks before it loads
weights (a model directory without config.json, a speculative configuration the real schema refuses, an FP8
request on a checkpoint quantized otherwise), then serves the scripted OpenAI-compatible TEST STAND-IN server
(tests/standins/servers/openai_server.py) on --host/--port, named after the model path as the real ones are,
drafting as many tokens per step as the speculative configuration says and answering GET /metrics as the real
server does (vLLM always, SGLang with --enable-metrics, trtllm-serve with iteration stats: README, "Acceptance").
Where each fact comes from: tests/standins/README.md, "Serving stacks".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[4]

# vllm/config/speculative.py (0.33.0): SpeculativeMethod, and the SpeculativeConfig fields (extra="forbid").
VLLM_METHODS = ("ngram", "draft_model", "suffix", "custom_class", "eagle", "eagle3", "extract_hidden_states", "mtp",
                "dflash", "ngram_gpu", "dspark")
VLLM_SPEC_FIELDS = ("enforce_eager", "num_speculative_tokens", "model", "method", "draft_tensor_parallel_size",
                    "tensor_parallel_size", "quantization", "moe_backend", "max_model_len", "revision",
                    "code_revision", "disable_padded_drafter_batch", "draft_lm_head_quantization",
                    "prompt_lookup_max", "prompt_lookup_min", "speculative_token_tree", "parallel_drafting",
                    "rejection_sample_method", "draft_sample_method", "attention_backend", "kv_cache_dtype")
# vllm/model_executor/layers/quantization/__init__.py QuantizationMethods (the ones a checkpoint here can carry).
VLLM_QUANTIZATION = ("fp8", "modelopt", "modelopt_fp4", "modelopt_mxfp8", "modelopt_mixed", "awq", "gptq",
                     "compressed-tensors", "bitsandbytes", "gguf", "mxfp4")
# SGLang python/sglang/srt/arg_groups/fields/spec.py: the builtin --speculative-algorithm names.
SGLANG_ALGORITHMS = ("EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM", "DFLASH", "DSPARK", "UNO")
SGLANG_QUANTIZATION = ("fp8", "modelopt", "modelopt_fp8", "modelopt_fp4", "awq", "gptq", "compressed-tensors")
SGLANG_KV_CACHE_DTYPES = ("auto", "fp8_e5m2", "fp8_e4m3", "mxfp8", "bf16", "bfloat16", "nvfp4", "fp4_mx_block16")
# TensorRT-LLM llmapi/llm_args.py: decoding_type -> the keys its config class takes (StrictBaseModel: no others).
TRTLLM_BASE_KEYS = ("decoding_type", "max_draft_len", "max_total_draft_tokens", "speculative_model",
                    "speculative_model_dir", "max_concurrency", "draft_len_schedule", "load_format",
                    "acceptance_window", "acceptance_length_threshold", "use_rejection_sampling")
TRTLLM_SPEC_KEYS = {
    "NGram": ("max_matching_ngram_size", "is_keep_all", "is_use_oldest", "is_public_pool"),
    "Draft_Target": (),
    "Eagle3": ("eagle_choices", "greedy_sampling", "posterior_threshold", "use_dynamic_tree", "dynamic_tree_max_topK",
               "max_non_leaves_per_layer", "eagle3_one_model", "eagle3_layers_to_capture", "eagle3_model_arch",
               "sa_config"),
    "MTP": ("num_nextn_predict_layers", "use_relaxed_acceptance_for_thinking", "relaxed_topk", "relaxed_delta",
            "use_mtp_vanilla", "mtp_eagle_one_model", "sa_config", "begin_thinking_phase_token",
            "end_thinking_phase_token"),
}


def refuse(tool: str, message: str) -> "NoReturn":  # noqa: F821
    sys.exit(f"[STAND-IN] {tool}: {message}")


def model_config(tool: str, model: str) -> dict:
    """The checkpoint's config.json: every real server reads it first (transformers AutoConfig)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        refuse(tool, f"OSError: {model} does not appear to have a file named config.json")
    return json.loads(path.read_text())


def checkpoint_quantization(config: dict) -> Optional[str]:
    """quant_method of the checkpoint's quantization_config (a ModelOpt export says `modelopt`)."""
    return (config.get("quantization_config") or {}).get("quant_method")


def serve(tool: str, host: str, port: int, model: str, max_seq_len: Optional[int], draft_tokens: Optional[int],
          metrics: Optional[str]) -> None:
    from standin_tools import common
    from tests.standins.servers import openai_server

    if common.fail_requested(tool):
        sys.exit(common.fail_code())
    argv = ["--host", host, "--port", str(port), "--model", model, "--tokenizer", model]
    if max_seq_len is not None:
        argv += ["--max-seq-len", str(max_seq_len)]
    if draft_tokens is not None:
        argv += ["--draft-tokens", str(draft_tokens)]
    if metrics is not None:
        argv += ["--metrics", metrics]
    if os.environ.get("STANDIN_SERVE_SCRIPT"):
        argv += ["--script", os.environ["STANDIN_SERVE_SCRIPT"]]
    openai_server.main(argv)


# ------------------------------------------------------------------------------------------------ vllm
def vllm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm serve", allow_abbrev=False)
    p.add_argument("model_tag")
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--quantization", "-q", choices=VLLM_QUANTIZATION)
    p.add_argument("--kv-cache-dtype", choices=("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc",
                                                "fp8_ds_mla"), default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--speculative-config", "-sc", type=json.loads)
    p.add_argument("--nnodes", "-n", type=int, default=1)
    p.add_argument("--node-rank", "-r", type=int, default=0)
    p.add_argument("--master-addr", default="127.0.0.1")  # ParallelConfig.master_addr
    p.add_argument("--master-port", type=int, default=29501)  # ParallelConfig.master_port
    p.add_argument("--headless", action="store_true")
    return p


def vllm_main(argv: List[str]) -> None:
    tool = "vllm"
    if not argv or argv[0] != "serve":
        refuse(tool, f"only `vllm serve` is stood in for, not {argv[:1]}")
    args = vllm_parser().parse_args(argv[1:])
    config = model_config(tool, args.model_tag)
    method = checkpoint_quantization(config)
    # vllm/config/model.py _verify_quantization: the checkpoint's method (modelopt for a ModelOpt FP8 export)
    # must be the one --quantization names.
    if method and args.quantization and method != args.quantization:
        refuse(tool, f"ValueError: Quantization method specified in the model config ({method}) does not match the "
                     f"quantization method specified in the `quantization` argument ({args.quantization}).")
    spec = args.speculative_config
    if spec is not None:
        unknown = sorted(set(spec) - set(VLLM_SPEC_FIELDS))
        if unknown:
            refuse(tool, f"pydantic ValidationError: SpeculativeConfig {unknown[0]}: Extra inputs are not permitted")
        if spec.get("method") not in (None, *VLLM_METHODS):
            refuse(tool, f"pydantic ValidationError: SpeculativeConfig method: Input should be one of {VLLM_METHODS}")
        if not isinstance(spec.get("num_speculative_tokens"), int) or spec["num_speculative_tokens"] < 1:
            refuse(tool, "SpeculativeConfig num_speculative_tokens: must be a positive integer")
        if spec.get("method") in ("eagle3", "draft_model") and not spec.get("model"):
            refuse(tool, f"ValueError: method {spec['method']} needs the draft model (`model`)")
        if spec.get("model"):
            model_config(tool, spec["model"])
    if vllm_joins_nodes(args):
        return
    # vLLM serves Prometheus /metrics always; its spec_decode counters exist when it speculates.
    serve(tool, args.host or "0.0.0.0", args.port, args.model_tag, args.max_model_len,
          spec["num_speculative_tokens"] if spec else None, "vllm")


def vllm_joins_nodes(args: argparse.Namespace) -> bool:
    """Across nodes (engine/arg_utils.py create_engine_config, entrypoints/cli/serve.py run_headless): True when
    this process served as a node after the first (it returns only when that ends); the head goes on to serve
    once every node has joined."""
    from standin_tools import node_rendezvous

    tool, world = "vllm", args.tensor_parallel_size * args.pipeline_parallel_size
    if args.nnodes > 1:
        if world % args.nnodes:
            refuse(tool, f"AssertionError: world_size={world} must be divisible by nnodes={args.nnodes}.")
        if args.node_rank >= args.nnodes:
            refuse(tool, f"AssertionError: node_rank={args.node_rank} must be less than nnodes={args.nnodes}.")
    if args.node_rank > 0 and not args.headless:  # an API server's engine core on a follower node
        refuse(tool, "AssertionError: collective_rpc should not be called on follower node")
    if args.headless and args.node_rank == 0:  # engines without an API server, waiting for one's handshake
        node_rendezvous.say(tool, "Launching 1 data parallel engine(s) in headless mode: no API server here")
        node_rendezvous.wait_until_killed()
    if args.nnodes == 1:
        return False
    if args.node_rank == 0:
        HEAD_CONNECTIONS.extend(node_rendezvous.head_waits_for_nodes(tool, args.master_port, args.nnodes))
        return False
    node_rendezvous.say(tool, "Launching vLLM (v0.33.0) headless multiproc executor, with head node address "
                              f"{args.master_addr}:{args.master_port} for torch.distributed process group.")
    conn = node_rendezvous.node_joins_head(tool, args.master_addr, args.master_port, args.node_rank)
    node_rendezvous.serve_until_head_ends(tool, conn)
    return True


# The head's connections to the other nodes, open while it serves: they end when it does.
HEAD_CONNECTIONS: list = []


# ------------------------------------------------------------------------------------------------ sglang
def sglang_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sglang.launch_server", allow_abbrev=False)
    p.add_argument("--model-path", "--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--tp-size", "--tensor-parallel-size", type=int, default=1)
    p.add_argument("--pp-size", "--pipeline-parallel-size", type=int, default=1)
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--max-running-requests", type=int)
    p.add_argument("--context-length", type=int)
    p.add_argument("--quantization", choices=SGLANG_QUANTIZATION)
    p.add_argument("--kv-cache-dtype", choices=SGLANG_KV_CACHE_DTYPES, default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--enable-metrics", action="store_true")  # arg_groups/fields/observability.py enable_metrics
    p.add_argument("--served-model-name")
    p.add_argument("--speculative-algorithm")
    p.add_argument("--speculative-draft-model-path", "--speculative-draft-model")
    p.add_argument("--speculative-num-steps", type=int)
    p.add_argument("--speculative-eagle-topk", type=int)
    p.add_argument("--speculative-num-draft-tokens", type=int)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr", "--nccl-init-addr")
    return p


def sglang_main(argv: List[str]) -> None:
    tool = "sglang.launch_server"
    args = sglang_parser().parse_args(argv)
    config = model_config(tool, args.model_path)
    method = checkpoint_quantization(config)
    if method and args.quantization == "fp8" and method != "fp8":
        refuse(tool, f"ValueError: Quantization method specified in the model config ({method}) does not match the "
                     f"quantization method specified in the `quantization` argument ({args.quantization}).")
    algorithm = args.speculative_algorithm
    if algorithm is not None:
        if algorithm not in SGLANG_ALGORITHMS:
            refuse(tool, f"ValueError: unknown speculative algorithm {algorithm!r} (builtins: {SGLANG_ALGORITHMS})")
        if algorithm in ("EAGLE3", "STANDALONE") and not args.speculative_draft_model_path:
            refuse(tool, f"ValueError: --speculative-algorithm {algorithm} needs --speculative-draft-model-path")
        if args.speculative_draft_model_path:
            model_config(tool, args.speculative_draft_model_path)
    if sglang_joins_nodes(args):
        return
    draft_tokens = None
    if algorithm is not None:  # what its scheduler counts as drafted per verify step (metrics_reporter.py)
        draft_tokens = (args.speculative_num_draft_tokens - 1 if args.speculative_num_draft_tokens
                        else args.speculative_num_steps or 1)
    serve(tool, args.host, args.port, args.model_path, args.context_length, draft_tokens,
          "sglang" if args.enable_metrics else None)


def sglang_joins_nodes(args: argparse.Namespace) -> bool:
    """Across nodes (entrypoints/engine.py _calculate_rank_ranges, _launch_subprocesses): True when this process
    served as a node of rank >= 1 (schedulers and a dummy health check server only; it returns only when that
    ends); the head goes on to serve once every node has joined."""
    from standin_tools import node_rendezvous

    tool, n = "sglang.launch_server", args.nnodes
    if n == 1:
        return False
    if args.node_rank >= n:
        refuse(tool, f"node_rank={args.node_rank} is not below nnodes={n} (UNVERIFIED wording: the real one waits)")
    if not args.dist_init_addr:
        refuse(tool, "nnodes > 1 without --dist-init-addr: each node would wait at its own 127.0.0.1 (UNVERIFIED "
                     "wording: the real one waits)")
    per_node = max(args.pp_size // n, 1) * (args.tp_size // max(n // args.pp_size, 1))
    if per_node * n != args.tp_size * args.pp_size:
        refuse(tool, f"{n} nodes of {per_node} ranks do not make up tp_size x pp_size = {args.tp_size * args.pp_size}"
                     " (UNVERIFIED wording: the real world never completes)")
    host, _, port = args.dist_init_addr.rpartition(":")
    if args.node_rank == 0:
        HEAD_CONNECTIONS.extend(node_rendezvous.head_waits_for_nodes(tool, int(port), n))
        return False
    conn = node_rendezvous.node_joins_head(tool, host, int(port), args.node_rank)
    node_rendezvous.dummy_health_server(tool, args.host, args.port, host)
    node_rendezvous.serve_until_head_ends(tool, conn)
    return True


# ------------------------------------------------------------------------------------------------ trtllm-serve
def trtllm_pytorch_check(model: str, options_file: Optional[str]) -> Optional[int]:
    """trtllm-serve --backend pytorch: an HF (or ModelOpt) checkpoint, and an options file whose speculative_config
    the LLM API's pydantic models accept (StrictBaseModel: an unknown key is refused). Returns the tokens it drafts
    per step (None: no speculative decoding)."""
    tool = "trtllm-serve"
    model_config(tool, model)
    if not options_file:
        return None
    import yaml

    options = yaml.safe_load(Path(options_file).read_text()) or {}
    spec = options.get("speculative_config")
    if spec is None:
        return None
    kind = spec.get("decoding_type")
    if kind not in TRTLLM_SPEC_KEYS:
        refuse(tool, f"ValueError: Invalid decoding type: {kind}")
    unknown = sorted(set(spec) - set(TRTLLM_BASE_KEYS) - set(TRTLLM_SPEC_KEYS[kind]))
    if unknown:
        refuse(tool, f"pydantic ValidationError: {unknown[0]}: Extra inputs are not permitted")
    if kind != "MTP" and not (isinstance(spec.get("max_draft_len"), int) and spec["max_draft_len"] > 0):
        refuse(tool, f"ValueError: max_draft_len must be > 0 for {kind}")
    draft = spec.get("speculative_model_dir") or spec.get("speculative_model")
    if kind in ("Eagle3", "Draft_Target"):
        if not draft:
            refuse(tool, f"ValueError: speculative_model must be specified for {kind}")
        model_config(tool, draft)
    return spec.get("max_draft_len") or spec.get("num_nextn_predict_layers") or 1
