"""STAND-IN for ``trtllm-build`` (TensorRT-LLM 1.1.0rc0, tensorrt_llm/commands/build.py).

Flags: build.py's parse_arguments() as of v1.1.0rc0 (still with the auto-parallel
group, removed in Oct 2025) plus the plugin flags add_plugin_argument() derives from
PluginConfig (tensorrt_llm/plugin/plugin.py, dataclass version). Reads the checkpoint
config.json, checks rank{i}.safetensors, applies the build-config rules of
tensorrt_llm/builder.py that change what lands in config.json (max_seq_len deduction,
input-length clipping, ReDrafter max_draft_len, spec-decoding max_seq_len/max_num_tokens
growth, fp8 context fmha), and writes config.json {version, pretrained_config,
build_config} and rank{i}.engine (tiny placeholder files).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
from pathlib import Path

from .common import StandinError, log, read_json, run_main, simulate_work, write_json

TOOL = "trtllm-build"
TRTLLM_VERSION = "1.1.0rc0"

# BuildConfig defaults (tensorrt_llm/builder.py)
DEFAULTS = dict(max_input_len=1024, max_seq_len=None, max_batch_size=2048, max_beam_width=1,
                max_num_tokens=8192, opt_num_tokens=None, max_prompt_embedding_table_size=0,
                max_encoder_input_len=1024, input_timing_cache=None, output_timing_cache="model.cache",
                profiling_verbosity="layer_names_only", use_strip_plan=False, weight_sparsity=False,
                weight_streaming=False, enable_debug_output=False, dry_run=False)

SEVERITY = ["internal_error", "error", "warning", "info", "verbose", "debug", "trace"]
LORA_MODULES = ["attn_qkv", "attn_q", "attn_k", "attn_v", "attn_dense", "mlp_h_to_4h", "mlp_4h_to_h",
                "mlp_gate", "cross_attn_qkv", "cross_attn_q", "cross_attn_k", "cross_attn_v",
                "cross_attn_dense", "moe_h_to_4h", "moe_4h_to_h", "moe_gate", "moe_router",
                "mlp_router", "mlp_gate_up"]
CLUSTER_KEYS = ["A100-SXM-80GB", "A100-SXM-40GB", "A100-PCIe-80GB", "A100-PCIe-40GB", "H100-SXM",
                "H100-PCIe", "H20", "V100-PCIe-16GB", "V100-PCIe-32GB", "V100-SXM-16GB", "V100-SXM-32GB",
                "V100S-PCIe", "A40", "A30", "A10", "A10G", "L40S", "L40", "L20", "L4", "L2"]
SPEC_MODES = ["draft_tokens_external", "lookahead_decoding", "medusa", "explicit_draft_tokens", "eagle"]
SPEC_MODE_VALUE = {None: 1, "draft_tokens_external": 2, "medusa": 4, "lookahead_decoding": 8,
                   "explicit_draft_tokens": 16, "eagle": 32}  # SpeculativeDecodingMode IntFlag
KV_CACHE_TYPES = ["continuous", "paged", "disabled"]

# PluginConfig fields exposed on the CLI (cli_plugin_args), with (kind, default, choices).
_DTYPES = ["auto", "float16", "float32", "bfloat16", "int32", None]
PLUGIN_ARGS = {
    "bert_attention_plugin": ("str", "auto", _DTYPES),
    "gpt_attention_plugin": ("str", "auto", _DTYPES),
    "gemm_plugin": ("str", None, ["auto", "float16", "float32", "bfloat16", "int32", "fp8", "nvfp4", None]),
    "gemm_swiglu_plugin": ("str", None, ["fp8", None]),
    "fp8_rowwise_gemm_plugin": ("str", None, _DTYPES),
    "lora_plugin": ("str", None, _DTYPES),
    "dora_plugin": ("bool", False, None),
    "moe_plugin": ("str", "auto", _DTYPES),
    "mamba_conv1d_plugin": ("str", "auto", _DTYPES),
    "nccl_plugin": ("str", "auto", _DTYPES),
    "low_latency_gemm_plugin": ("str", None, ["fp8", None]),
    "low_latency_gemm_swiglu_plugin": ("str", None, ["fp8", None]),
    "gemm_allreduce_plugin": ("str", None, ["float16", "bfloat16", None]),
    "context_fmha": ("bool", True, None),
    "bert_context_fmha_fp32_acc": ("bool", False, None),
    "remove_input_padding": ("bool", True, None),
    "tokens_per_block": ("int", 32, None),
    "use_paged_context_fmha": ("bool", True, None),
    "use_fp8_context_fmha": ("bool", True, None),
    "fuse_fp4_quant": ("bool", False, None),
    "multiple_profiles": ("bool", False, None),
    "paged_state": ("bool", True, None),
    "streamingllm": ("bool", False, None),
    "norm_quant_fusion": ("bool", False, None),
    "reduce_fusion": ("bool", False, None),
    "user_buffer": ("bool", False, None),
    "use_fused_mlp": ("bool", True, None),
    "pp_reduce_scatter": ("bool", False, None),
}
# PluginConfig fields not on the CLI but present in the saved plugin_config.
PLUGIN_HIDDEN = {"dtype": "float16", "qserve_gemm_plugin": None, "identity_plugin": None,
                 "weight_only_groupwise_quant_matmul_plugin": None, "weight_only_quant_matmul_plugin": None,
                 "smooth_quant_plugins": True, "smooth_quant_gemm_plugin": None,
                 "layernorm_quantization_plugin": None, "rmsnorm_quantization_plugin": None,
                 "quantize_per_token_plugin": False, "quantize_tensor_plugin": False,
                 "paged_kv_cache": None, "manage_weights": False}

SUPPORTED_ARCHS = {
    "Qwen2ForCausalLM", "QWenForCausalLM", "Qwen2ForSequenceClassification", "LlamaForCausalLM",
    "MistralForCausalLM", "MixtralForCausalLM", "DeciLMForCausalLM", "ReDrafterForQWenLM",
    "ReDrafterForLLaMALM", "MedusaForCausalLm", "EagleForCausalLM", "GPTForCausalLM",
    "GemmaForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM", "NemotronForCausalLM",
}


def _kv_cache_type(value: str) -> str:
    if value.lower() not in KV_CACHE_TYPES:
        raise argparse.ArgumentTypeError(f"Invalid value '{value}'. Expected one of {KV_CACHE_TYPES}")
    return value.upper()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trtllm-build", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="[STAND-IN] trtllm-build (TensorRT-LLM 1.1.0rc0 flags): writes config.json and tiny "
                    "placeholder rank{i}.engine files; builds nothing.")
    p.add_argument("--checkpoint_dir", type=str, default=None)
    p.add_argument("--model_config", type=str, default=None)
    p.add_argument("--build_config", type=str, default=None)
    p.add_argument("--model_cls_file", type=str, default=None)
    p.add_argument("--model_cls_name", type=str, default=None)
    p.add_argument("--output_dir", type=str, default="engine_outputs")
    p.add_argument("--max_batch_size", type=int, default=DEFAULTS["max_batch_size"])
    p.add_argument("--max_input_len", type=int, default=DEFAULTS["max_input_len"])
    p.add_argument("--max_seq_len", "--max_decoder_seq_len", dest="max_seq_len", type=int,
                   default=DEFAULTS["max_seq_len"])
    p.add_argument("--max_beam_width", type=int, default=DEFAULTS["max_beam_width"])
    p.add_argument("--max_num_tokens", type=int, default=DEFAULTS["max_num_tokens"])
    p.add_argument("--opt_num_tokens", type=int, default=DEFAULTS["opt_num_tokens"])
    p.add_argument("--max_encoder_input_len", type=int, default=DEFAULTS["max_encoder_input_len"])
    p.add_argument("--max_prompt_embedding_table_size", "--max_multimodal_len", type=int,
                   default=DEFAULTS["max_prompt_embedding_table_size"])
    p.add_argument("--kv_cache_type", default=argparse.SUPPRESS, type=_kv_cache_type)
    p.add_argument("--paged_kv_cache", type=str, default=argparse.SUPPRESS)
    p.add_argument("--input_timing_cache", type=str, default=DEFAULTS["input_timing_cache"])
    p.add_argument("--output_timing_cache", type=str, default=DEFAULTS["output_timing_cache"])
    p.add_argument("--profiling_verbosity", type=str, default=DEFAULTS["profiling_verbosity"],
                   choices=["layer_names_only", "detailed", "none"])
    p.add_argument("--strip_plan", default=False, action="store_true")
    p.add_argument("--weight_sparsity", default=False, action="store_true")
    p.add_argument("--weight_streaming", default=False, action="store_true")
    p.add_argument("--fast_build", default=False, action="store_true")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log_level", type=str, default="info", choices=SEVERITY)
    p.add_argument("--enable_debug_output", default=False, action="store_true")
    p.add_argument("--visualize_network", type=str, default=None)
    p.add_argument("--dry_run", default=False, action="store_true")
    p.add_argument("--monitor_memory", default=False, action="store_true")

    g = p.add_argument_group("Logits arguments")
    g.add_argument("--logits_dtype", type=str, default=None, choices=["float16", "float32"])
    g.add_argument("--gather_context_logits", action="store_true", default=False)
    g.add_argument("--gather_generation_logits", action="store_true", default=False)
    g.add_argument("--gather_all_token_logits", action="store_true", default=False)

    g = p.add_argument_group("LoRA arguments")
    g.add_argument("--lora_dir", type=str, default=None, nargs="+")
    g.add_argument("--lora_ckpt_source", type=str, default="hf", choices=["hf", "nemo"])
    g.add_argument("--lora_target_modules", nargs="+", default=None, choices=LORA_MODULES)
    g.add_argument("--max_lora_rank", type=int, default=64)

    g = p.add_argument_group("Speculative decoding arguments")
    g.add_argument("--speculative_decoding_mode", default=None, choices=SPEC_MODES)
    g.add_argument("--max_draft_len", type=int, default=0)

    g = p.add_argument_group("Auto parallel arguments")
    g.add_argument("--auto_parallel", type=int, default=1)
    g.add_argument("--gpus_per_node", type=int, default=8)
    g.add_argument("--cluster_key", type=str, default=None, choices=CLUSTER_KEYS)

    g = p.add_argument_group("Plugin config arguments")
    for name, (kind, default, choices) in PLUGIN_ARGS.items():
        if kind == "str":
            d = default if name == "gemm_plugin" else (default if default else "disable")
            g.add_argument("--" + name, type=str, default=d, choices=[c if c else "disable" for c in choices])
        elif kind == "bool":
            g.add_argument("--" + name, type=str, default="enable" if default else "disable",
                           choices=["enable", "disable"])
        else:
            g.add_argument("--" + name, type=int, default=default)
    return p


def _plugin_config(args, dtype: str) -> dict:
    pc = dict(PLUGIN_HIDDEN)
    for name, (kind, default, _) in PLUGIN_ARGS.items():
        v = getattr(args, name)
        if kind == "bool":
            v = v == "enable"
        elif kind == "str" and v == "disable":
            v = None
        pc[name] = v
    pc["dtype"] = dtype
    if getattr(args, "paged_kv_cache", None) is not None:
        pc["paged_kv_cache"] = args.paged_kv_cache == "enable"
    return pc


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    run_main(TOOL, lambda: _build(args))


def _build(args) -> int:
    if args.gather_all_token_logits:
        args.gather_context_logits = args.gather_generation_logits = True
    if args.gather_context_logits and args.max_draft_len > 0:
        raise StandinError("RuntimeError: Gather context logits is not support with draft len > 0.")
    if args.model_cls_file is not None and args.model_cls_name is None:
        raise StandinError("AssertionError: --model_cls_name is required with --model_cls_file")
    src = args.checkpoint_dir if args.checkpoint_dir is not None else args.model_config
    if src is None:
        raise StandinError("AttributeError: 'NoneType' object has no attribute 'lower' "
                           "(give --checkpoint_dir or --model_config)")
    if src.lower().endswith(".json"):
        config_path, ckpt_dir = Path(src), None
    else:
        config_path, ckpt_dir = Path(src) / "config.json", Path(src)
    model_cfg = read_json(config_path, "TensorRT-LLM checkpoint config.json")
    for key in ("architecture", "dtype"):
        if key not in model_cfg:
            raise StandinError(f"checkpoint config.json has no '{key}': {config_path}")
    arch = model_cfg["architecture"]
    if args.model_cls_file is None and arch not in SUPPORTED_ARCHS:
        raise StandinError(f"AssertionError: Unsupported model architecture: {arch}")
    mapping = dict(model_cfg.get("mapping") or {})
    tp, pp, cp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1)), int(mapping.get("cp_size", 1))
    world = int(mapping.get("world_size", tp * pp * cp))
    if ckpt_dir is not None:
        missing = [f"rank{r}.safetensors" for r in range(world) if not (ckpt_dir / f"rank{r}.safetensors").is_file()]
        if missing:
            raise StandinError(f"checkpoint {ckpt_dir} lacks {', '.join(missing)} (world_size {world})")
    quant = model_cfg.get("quantization") or {}
    qa, kv = quant.get("quant_algo"), quant.get("kv_cache_quant_algo")
    if args.multiple_profiles == "enable" and args.opt_num_tokens is not None:
        raise StandinError("RuntimeError: multiple_profiles is enabled, while opt_num_tokens is set.")

    if args.build_config is not None:
        bc = read_json(args.build_config, "--build_config file")
        bc.pop("standin", None)
    else:
        bc = {
            "max_input_len": args.max_input_len, "max_seq_len": args.max_seq_len,
            "opt_batch_size": 8, "max_batch_size": args.max_batch_size,
            "max_beam_width": args.max_beam_width, "max_num_tokens": args.max_num_tokens,
            "opt_num_tokens": args.opt_num_tokens,
            "max_prompt_embedding_table_size": args.max_prompt_embedding_table_size,
            "kv_cache_type": getattr(args, "kv_cache_type", None),
            "gather_context_logits": args.gather_context_logits,
            "gather_generation_logits": args.gather_generation_logits, "strongly_typed": True,
            "force_num_profiles": os.environ.get("BUILDER_FORCE_NUM_PROFILES"),
            "profiling_verbosity": args.profiling_verbosity,
            "enable_debug_output": args.enable_debug_output, "max_draft_len": args.max_draft_len,
            "speculative_decoding_mode": SPEC_MODE_VALUE[args.speculative_decoding_mode],
            "use_refit": False, "input_timing_cache": args.input_timing_cache,
            "output_timing_cache": args.output_timing_cache,
            "lora_config": {"lora_dir": args.lora_dir or [], "lora_ckpt_source": args.lora_ckpt_source,
                            "max_lora_rank": args.max_lora_rank,
                            "lora_target_modules": args.lora_target_modules or []},
            "auto_parallel_config": {"world_size": args.auto_parallel, "gpus_per_node": args.gpus_per_node,
                                     "cluster_key": args.cluster_key or "H100-SXM"},
            "weight_sparsity": args.weight_sparsity, "weight_streaming": args.weight_streaming,
            "use_strip_plan": args.strip_plan, "max_encoder_input_len": args.max_encoder_input_len,
            "dry_run": args.dry_run, "visualize_network": args.visualize_network,
            "monitor_memory": args.monitor_memory, "use_mrope": False,
        }
    bc["plugin_config"] = _plugin_config(args, model_cfg["dtype"])
    if args.fast_build:
        bc["plugin_config"]["manage_weights"] = True
    if args.auto_parallel > 1 and world > 1:
        raise StandinError("RuntimeError: manually TP and PP are not supported in auto parallel mode.")
    pc = bc["plugin_config"]

    # -- builder.build(): rules that change the saved build_config
    if bc.get("kv_cache_type") is None:
        bc["kv_cache_type"] = "PAGED"
    rs = model_cfg.get("rotary_scaling") or None
    factor = 1
    if rs:
        rtype = rs.get("type", rs.get("rope_type"))
        factor = rs.get("factor", 1.0) if rtype not in ("su", "longrope", "llama3") else 1
    if bc["max_seq_len"] is None:
        bc["max_seq_len"] = int(math.ceil((model_cfg.get("max_position_embeddings") or 2048) * factor))
        log(TOOL, f"max_seq_len is not specified, using deduced value {bc['max_seq_len']}")
    if bc["max_input_len"] > bc["max_seq_len"]:
        log(TOOL, f"max_input_len is {bc['max_input_len']} is larger than max_seq_len {bc['max_seq_len']}, "
                  "clipping it to max_seq_len")
        bc["max_input_len"] = bc["max_seq_len"]
    if bc["max_num_tokens"] > bc["max_batch_size"] * bc["max_seq_len"]:
        bc["max_num_tokens"] = bc["max_batch_size"] * bc["max_seq_len"]
    if bc.get("opt_num_tokens") is None:
        bc["opt_num_tokens"] = min(bc["max_batch_size"] * bc["max_beam_width"], bc["max_num_tokens"])
    if qa == "FP8" or kv == "FP8":
        bc["strongly_typed"] = True
    if "redrafter_num_beams" in model_cfg and "redrafter_draft_len_per_beam" in model_cfg:
        bc["max_draft_len"] = int(model_cfg["redrafter_num_beams"]) * int(model_cfg["redrafter_draft_len_per_beam"])
        if bc["speculative_decoding_mode"] != SPEC_MODE_VALUE["explicit_draft_tokens"]:
            log(TOOL, "speculative_decoding_mode is not EXPLICIT_DRAFT_TOKENS for ReDrafter model. "
                      "Overwriting speculative_decoding_mode")
        bc["speculative_decoding_mode"] = SPEC_MODE_VALUE["explicit_draft_tokens"]
    elif bc["speculative_decoding_mode"] == SPEC_MODE_VALUE["explicit_draft_tokens"]:
        raise StandinError(f"--speculative_decoding_mode explicit_draft_tokens needs a ReDrafter checkpoint "
                           f"(examples/redrafter/convert_checkpoint.py); got architecture {arch}")
    if bc["speculative_decoding_mode"] != SPEC_MODE_VALUE[None]:
        bc["max_seq_len"] += bc["max_draft_len"]
        bc["max_num_tokens"] = max(bc["max_num_tokens"], bc["max_batch_size"] * (bc["max_draft_len"] + 1))
    if not pc["context_fmha"]:
        pc["use_fp8_context_fmha"] = pc["use_paged_context_fmha"] = False
    elif qa not in ("FP8", "W4A8_AWQ", "NVFP4"):
        pc["use_fp8_context_fmha"] = False
        if kv == "FP8":
            pc["use_paged_context_fmha"] = False
    elif pc["use_paged_context_fmha"]:
        pc["use_fp8_context_fmha"] = kv == "FP8"
    if pc["use_paged_context_fmha"] and kv == "INT8":
        pc["use_paged_context_fmha"] = False

    simulate_work(TOOL)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pretrained = copy.deepcopy(model_cfg)
    pretrained.pop("standin", None)
    pretrained["mapping"] = dict(mapping, world_size=world, rank=0)
    if args.logits_dtype:
        pretrained["logits_dtype"] = args.logits_dtype
    pretrained["standin"] = True
    write_json(out / "config.json", {"version": TRTLLM_VERSION, "pretrained_config": pretrained,
                                     "build_config": bc})
    if not args.dry_run:
        for r in range(world):
            (out / f"rank{r}.engine").write_bytes(
                b"STANDIN-TRTLLM-ENGINE\n" + json.dumps({"rank": r, "world_size": world,
                                                          "architecture": arch}).encode() + b"\n")
    if bc.get("output_timing_cache"):
        Path(bc["output_timing_cache"]).write_bytes(b"STANDIN-TIMING-CACHE\n")
    log(TOOL, f"Total time of building all engines: 00:00:00 ({world} engine(s) in {out})")
    return 0
