"""STAND-INs that write TensorRT-LLM *checkpoints* (config.json + rank{i}.safetensors):

* quantize (TensorRT-LLM examples/quantization/quantize.py, and NeMo-Skills'
  nemo_skills.conversion.hf_to_trtllm_quantize, a copy of an older version of it)
* examples/models/core/llama/convert_checkpoint.py
* examples/models/core/nemotron_nas/convert_checkpoint.py
* examples/redrafter/convert_checkpoint.py

Flags are declared like the real scripts (see README.md for the source files).
The outputs have the real file names and the config.json keys that trtllm-build and
the redrafter converter read; tensors are tiny zero-filled placeholders.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from pathlib import Path

from .common import (StandinError, check_hf_model_dir, hf_architecture, infer_dtype, log,
                     read_json, read_safetensors_header, run_main, simulate_work, write_json,
                     write_safetensors)

_ST_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}

QFORMATS = ["nvfp4", "fp8", "int8_sq", "int4_awq", "w4a8_awq", "int8_wo", "int4_wo", "full_prec"]
NO_CALIB_QFORMATS = ("full_prec", "int8_wo", "int4_wo")
QUANT_ALGO = {  # as quantize_by_modelopt.py writes them into config.json
    "fp8": "FP8", "int8_sq": "W8A8_SQ_PER_CHANNEL", "int4_awq": "W4A16_AWQ",
    "w4a8_awq": "W4A8_AWQ", "nvfp4": "NVFP4", "int8_wo": "W8A16", "int4_wo": "W4A16",
    "full_prec": None,
}
KV_ALGO = {None: None, "fp8": "FP8", "int8": "INT8"}
MODEL_TYPE = {"Qwen2ForCausalLM": "qwen", "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
              "DeciLMForCausalLM": "deci"}


# ====================================================================== checkpoint writer


def _default_quant(quant_algo=None, kv=None, exclude=None) -> dict:
    return {"quant_algo": quant_algo, "kv_cache_quant_algo": kv, "group_size": 128,
            "smoothquant_val": 0.5, "clamp_val": None, "use_meta_recipe": False,
            "has_zero_point": False, "pre_quant_scale": False, "exclude_modules": exclude}


def _mapping(tp: int, pp: int, cp: int = 1, moe_tp: int | None = None, moe_ep: int = 1) -> dict:
    return {"world_size": tp * pp * cp, "gpus_per_node": 8, "cp_size": cp, "tp_size": tp,
            "pp_size": pp, "moe_tp_size": tp if moe_tp is None else moe_tp, "moe_ep_size": moe_ep,
            "auto_parallel": False}


def _deci_block_configs(hf_cfg: dict) -> list:
    heads = hf_cfg["num_attention_heads"]
    hidden = hf_cfg["hidden_size"]
    out = []
    for b in hf_cfg.get("block_configs") or []:
        a, f = b.get("attention", {}), b.get("ffn", {})
        if a.get("no_op"):
            attn = {"impl": "no_op", "num_key_value_heads": None}
        elif a.get("replace_with_linear"):
            attn = {"impl": "linear", "num_key_value_heads": None}
        else:
            attn = {"impl": "attention", "num_key_value_heads": heads // int(a.get("n_heads_in_group") or 1)}
        if f.get("no_op"):
            ffn = {"impl": "no_op", "intermediate_size": None}
        elif f.get("replace_with_linear"):
            ffn = {"impl": "linear", "intermediate_size": None}
        else:
            inter = int(2 * float(f.get("ffn_mult", 4.0)) * hidden / 3)
            inter = 256 * math.ceil(inter / 256)
            ffn = {"impl": "mlp", "intermediate_size": inter}
        out.append({"attention": attn, "ffn": ffn, "parallel_residual": False})
    return out


def checkpoint_config(hf_cfg: dict, *, dtype: str, tp: int, pp: int, cp: int = 1,
                      quant: dict | None = None, producer: dict | None = None,
                      use_parallel_embedding: bool = False, embedding_sharding_dim: int = 0,
                      moe_tp: int | None = None, moe_ep: int = 1) -> dict:
    """A TensorRT-LLM PretrainedConfig.to_dict()-shaped dict built from an HF config.json."""
    arch = hf_architecture(hf_cfg)
    heads = int(hf_cfg["num_attention_heads"])
    hidden = int(hf_cfg["hidden_size"])
    if heads % tp:
        raise StandinError(f"num_attention_heads ({heads}) is not divisible by tp_size ({tp})")
    cfg = {
        "architecture": arch,
        "dtype": dtype,
        "vocab_size": hf_cfg["vocab_size"],
        "hidden_size": hidden,
        "num_hidden_layers": hf_cfg["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": hf_cfg.get("num_key_value_heads") or heads,
        "head_size": hidden // heads,
        "intermediate_size": hf_cfg.get("intermediate_size"),
        "hidden_act": hf_cfg.get("hidden_act", "silu"),
        "norm_epsilon": hf_cfg.get("rms_norm_eps", 1e-5),
        "position_embedding_type": "rope_gpt_neox",
        "max_position_embeddings": hf_cfg.get("max_position_embeddings"),
        "rotary_base": hf_cfg.get("rope_theta", 10000.0),
        "rotary_scaling": hf_cfg.get("rope_scaling"),
        "logits_dtype": "float32",
        "use_parallel_embedding": use_parallel_embedding,
        "embedding_sharding_dim": embedding_sharding_dim,
        "share_embedding_table": False,
        "mapping": _mapping(tp, pp, cp, moe_tp, moe_ep),
        "quantization": quant or _default_quant(),
    }
    if producer:
        cfg = {"producer": producer, **cfg}
    if arch == "Qwen2ForCausalLM":
        cfg["qwen_type"] = hf_cfg.get("model_type", "qwen2")
        cfg["attn_bias"] = True
    if arch == "DeciLMForCausalLM":
        cfg["num_key_value_heads"] = None
        cfg["block_configs"] = _deci_block_configs(hf_cfg)
    return cfg


def rank_tensors(cfg: dict, rank: int) -> dict:
    dt = _ST_DTYPE.get(cfg.get("dtype"), "BF16")
    t = {
        "transformer.vocab_embedding.weight": (dt, [16, 8]),
        "transformer.layers.0.input_layernorm.weight": (dt, [8]),
        "transformer.ln_f.weight": (dt, [8]),
        "lm_head.weight": (dt, [16, 8]),
    }
    q = (cfg.get("quantization") or {}).get("quant_algo")
    if q == "FP8":
        t["transformer.layers.0.attention.qkv.weight"] = ("F8_E4M3", [8, 8])
        t["transformer.layers.0.attention.qkv.weights_scaling_factor"] = ("F32", [1])
        t["transformer.layers.0.attention.qkv.activation_scaling_factor"] = ("F32", [1])
    elif q in ("W8A16", "W4A16", "W8A8_SQ_PER_CHANNEL", "W4A16_AWQ", "W4A8_AWQ", "NVFP4"):
        t["transformer.layers.0.attention.qkv.weight"] = ("I8", [8, 8])
        t["transformer.layers.0.attention.qkv.per_channel_scale"] = (dt, [8])
    else:
        t["transformer.layers.0.attention.qkv.weight"] = (dt, [8, 8])
    return t


def write_checkpoint(output_dir: str, cfg: dict, *, config_only: bool = False) -> None:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg)
    if config_only:
        return
    world = int(cfg["mapping"]["world_size"])
    for rank in range(world):
        write_safetensors(out / f"rank{rank}.safetensors", rank_tensors(cfg, rank),
                          {"rank": rank, "world_size": world})


# ====================================================================== calibration data


def load_calibration(name: str, calib_size: int, column: str = "text") -> list:
    """Mirror get_calib_dataloader's dataset choice; local dirs load with `datasets`."""
    lname = name.lower()
    is_dir = os.path.isdir(name)
    if name == "pileval" or (("scienceqa" in lname or "science_qa" in lname) and not is_dir) or \
            ("cnn_dailymail" in name and not is_dir):
        raise StandinError(f"calibration dataset {name!r} must be downloaded from the Hub; the stand-in "
                           "has no network (pass a local directory with a train split and a text column)")
    if not is_dir:
        raise StandinError(f"NotImplementedError: Unsupported dataset name or local repo directory: {name}.")
    if "cnn_dailymail" in name:
        column = "article"
    try:
        import datasets
    except ImportError:
        raise StandinError("the quantize stand-in needs the `datasets` package to load calibration data")
    try:
        ds = datasets.load_dataset(name, split="train")
        texts = ds[column][:calib_size]
    except Exception as e:  # noqa: BLE001 - surface the loader's error like the real script
        raise StandinError(f"could not load calibration data from {name}: {type(e).__name__}: {e}")
    if not texts:
        raise StandinError(f"calibration dataset {name} has no rows")
    return texts


# ====================================================================== quantize


# torch 2.x's message, as a real out-of-memory allocation printed it on an H200 (the sizes here are made up).
CUDA_OOM_MESSAGE = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {need:.2f} GiB. GPU 0 has a total capacity of "
    "79.11 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.07 GiB memory in use. "
    "Of the allocated memory 76.50 GiB is allocated by PyTorch, and 1.05 GiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory "
    "Management  (https://docs.pytorch.org/docs/stable/notes/cuda.html#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)")


def simulate_calibration_memory(batch_size: int, calib_max_seq_length: int) -> None:
    """STANDIN_CALIB_MAX_TOKENS: calibration batches above that many tokens (batch x max length) run out of
    GPU memory, as a real calibration forward pass does, and the quantizer dies with torch's error."""
    limit = os.environ.get("STANDIN_CALIB_MAX_TOKENS")
    if limit and batch_size * calib_max_seq_length > int(limit):
        print("Traceback (most recent call last):\n  (stand-in calibration forward pass)\n"
              + CUDA_OOM_MESSAGE.format(need=batch_size * calib_max_seq_length / 2048), file=sys.stderr, flush=True)
        sys.exit(1)


def quantize_parser(variant: str) -> argparse.ArgumentParser:
    """variant: 'trtllm' (examples/quantization/quantize.py @ v1.1.0rc0) or 'nemo_skills'."""
    p = argparse.ArgumentParser(description=(
        "[STAND-IN] quantize.py: writes a tiny TensorRT-LLM checkpoint (config.json + "
        "rank{i}.safetensors); loads local calibration data; no GPU, no model."))
    p.add_argument("--model_dir", help="Specify where the HuggingFace model is", default=None)
    p.add_argument("--nemo_ckpt_path", help="Specify where the NeMo checkpoint is", default=None)
    p.add_argument("--decoder_type", type=str, default="gptnext", choices=["gptnext", "llama"],
                   help="Decoder type; effective for NeMo checkpoint only.")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="The device to run calibration; effective for HuggingFace model only.")
    p.add_argument("--device_map", default="auto", choices=["auto", "sequential", "cpu", "gpu"],
                   help="How to map the model on the devices")
    p.add_argument("--calib_dataset", type=str, default="cnn_dailymail",
                   help="The huggingface dataset name or the local directory of the dataset for calibration.")
    p.add_argument("--calib_tp_size", type=int, default=1)
    p.add_argument("--calib_pp_size", type=int, default=1)
    p.add_argument("--dtype", type=str, default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--qformat", help="Quantization format.", default="full_prec", choices=QFORMATS)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--tokenizer_max_seq_length", type=int, default=2048)
    p.add_argument("--batch_size", help="Batch size for calibration.", type=int, default=1)
    p.add_argument("--calib_size", help="Number of samples for calibration.", type=int, default=512)
    p.add_argument("--calib_max_seq_length", help="Max sequence length for calibration", type=int, default=512)
    p.add_argument("--output_dir", default="exported_model")
    p.add_argument("--tp_size", type=int, default=1)
    p.add_argument("--pp_size", type=int, default=1)
    p.add_argument("--cp_size", type=int, default=1)
    p.add_argument("--awq_block_size", type=int, default=128)
    p.add_argument("--kv_cache_dtype", help="KV Cache dtype.", default=None, choices=["int8", "fp8", None])
    if variant == "trtllm":
        p.add_argument("--quantize_lm_head", action="store_true", default=False)
    p.add_argument("--num_medusa_heads", type=int, default=4)
    p.add_argument("--num_medusa_layers", type=int, default=1)
    p.add_argument("--max_draft_len", type=int, default=63)
    p.add_argument("--medusa_hidden_act", type=str, default="silu")
    p.add_argument("--medusa_model_dir", type=str, default=None)
    p.add_argument("--quant_medusa_head", default=False, action="store_true")
    p.add_argument("--autoq_format", default=None, type=str)
    p.add_argument("--auto_quantize_bits", type=float, default=None)
    return p


def quantize_main(variant: str, tool: str, argv=None) -> None:
    args = quantize_parser(variant).parse_args(argv)
    run_main(tool, lambda: _quantize(args, tool))


def _quantize(args, tool: str) -> int:
    if args.autoq_format:
        lower = 4 if "4" in args.autoq_format else 8
        if args.auto_quantize_bits is None or not lower <= args.auto_quantize_bits <= 16:
            print(f"invalid auto_quantize_bits value, will be set to {lower}")
            args.auto_quantize_bits = lower
    if args.model_dir is None:
        if args.nemo_ckpt_path is not None:
            raise StandinError("NeMo checkpoints (--nemo_ckpt_path) are not supported by the stand-in")
        raise StandinError("ValueError: One of source checkpoint (model_dir, nemo_ckpt_path) must be specified")
    qformat = args.qformat if args.auto_quantize_bits is None else args.autoq_format
    if not args.auto_quantize_bits and len(qformat.split(",")) != 1:
        raise StandinError("AssertionError: Quantization supports only one quantization format.")

    hf_cfg = check_hf_model_dir(args.model_dir, tool)  # get_model + get_tokenizer load both
    dtype = infer_dtype(args.dtype, hf_cfg)
    arch = hf_architecture(hf_cfg)

    calib = None
    if not (qformat in NO_CALIB_QFORMATS and args.kv_cache_dtype is None):
        calib_size = args.calib_size
        if "awq" in qformat and calib_size > 32:
            print(f"AWQ calibration could take longer with calib_size = {calib_size}, Using calib_size=32 instead")
            calib_size = 32
        texts = load_calibration(args.calib_dataset, calib_size)
        calib = {"dataset": os.path.abspath(args.calib_dataset), "requested_calib_size": args.calib_size,
                 "num_samples": len(texts), "batch_size": args.batch_size,
                 "num_batches": math.ceil(len(texts) / args.batch_size),
                 "calib_max_seq_length": args.calib_max_seq_length}
        log(tool, f"calibrating with {len(texts)} sample(s) from {args.calib_dataset}")
        simulate_calibration_memory(args.batch_size, args.calib_max_seq_length)
    else:
        log(tool, f"No quantization applied, export {dtype} model")

    first = qformat.split(",")[0]
    kv = KV_ALGO[args.kv_cache_dtype]
    exclude = ["lm_head"] if first in ("fp8", "nvfp4", "int8_sq", "int4_awq", "w4a8_awq") else None
    if first == "fp8" and getattr(args, "quantize_lm_head", False):
        exclude = None
    cfg = checkpoint_config(hf_cfg, dtype=dtype, tp=args.tp_size, pp=args.pp_size, cp=args.cp_size,
                            quant=_default_quant(QUANT_ALGO[first], kv, exclude),
                            producer={"name": "modelopt", "version": "0.33.0"},
                            use_parallel_embedding=True)
    cfg["model_type"] = MODEL_TYPE.get(arch, f"unknown:{arch}")
    if calib:
        cfg["standin_calibration"] = calib

    simulate_work(tool)
    write_checkpoint(args.output_dir, cfg)
    log(tool, f"Quantized model exported to {args.output_dir} (qformat={qformat}, "
              f"world_size={cfg['mapping']['world_size']})")
    return 0


# ====================================================================== llama convert_checkpoint


def llama_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="[STAND-IN] examples/models/core/llama/convert_checkpoint.py")
    p.add_argument("--model_dir", type=str, default=None)
    p.add_argument("--meta_ckpt_dir", type=str, default=None)
    p.add_argument("--tp_size", type=int, default=1, help="N-way tensor parallelism size")
    p.add_argument("--pp_size", type=int, default=1, help="N-way pipeline parallelism size")
    p.add_argument("--moe_tp_size", type=int, default=-1)
    p.add_argument("--cp_size", type=int, default=1)
    p.add_argument("--moe_ep_size", type=int, default=-1)
    p.add_argument("--dtype", type=str, default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--vocab_size", type=int, default=32000)
    p.add_argument("--n_positions", type=int, default=2048)
    p.add_argument("--n_layer", type=int, default=32)
    p.add_argument("--n_head", type=int, default=32)
    p.add_argument("--n_kv_head", type=int, default=None)
    p.add_argument("--n_embd", type=int, default=4096)
    p.add_argument("--inter_size", type=int, default=11008)
    p.add_argument("--multiple_of", type=int, default=None)
    p.add_argument("--ffn_dim_multiplier", type=float, default=None)
    p.add_argument("--rms_norm_eps", type=float, default=1e-06)
    p.add_argument("--use_weight_only", default=False, action="store_true")
    p.add_argument("--disable_weight_only_quant_plugin", default=False, action="store_true")
    p.add_argument("--weight_only_precision", const="int8", type=str, nargs="?", default="int8",
                   choices=["int8", "int4", "int8_gptq", "int4_gptq", "int4_awq"])
    p.add_argument("--calib_dataset", type=str, default="ccdv/cnn_dailymail")
    p.add_argument("--calib_size", type=int, default=512)
    p.add_argument("--calib_max_seq_length", type=int, default=512)
    p.add_argument("--smoothquant", "-sq", type=float, default=None)
    p.add_argument("--use_qserve", default=False, action="store_true")
    p.add_argument("--per_channel", action="store_true", default=False)
    p.add_argument("--per_token", action="store_true", default=False)
    p.add_argument("--int8_kv_cache", default=False, action="store_true")
    p.add_argument("--fp8_kv_cache", default=False, action="store_true")
    p.add_argument("--quant_ckpt_path", type=str, default=None)
    p.add_argument("--use_fp8", action="store_true", default=False)
    p.add_argument("--use_nvfp4", action="store_true", default=False)
    p.add_argument("--use_fp8_rowwise", action="store_true", default=False)
    p.add_argument("--use_meta_fp8_rowwise_recipe", action="store_true", default=False)
    p.add_argument("--per_group", default=False, action="store_true")
    p.add_argument("--load_by_shard", action="store_true")
    p.add_argument("--hidden_act", type=str, default="silu")
    p.add_argument("--rotary_base", type=float, default=10000.0)
    p.add_argument("--group_size", type=int, default=128)
    p.add_argument("--load_model_on_cpu", action="store_true")
    p.add_argument("--use_parallel_embedding", action="store_true", default=False)
    p.add_argument("--embedding_sharding_dim", type=int, default=0, choices=[0, 1])
    p.add_argument("--output_dir", type=str, default="tllm_checkpoint")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--moe_num_experts", default=0, type=int)
    p.add_argument("--moe_top_k", default=0, type=int)
    p.add_argument("--moe_renorm_mode", default=1, type=int)
    p.add_argument("--save_config_only", action="store_true", default=False)
    p.add_argument("--remove_duplicated_kv_heads", action="store_true", default=False)
    p.add_argument("--log_level", type=str, default="info")
    return p


def _llama_quant(args) -> dict:
    q = _default_quant()
    if args.use_weight_only:
        q["quant_algo"] = {"int8": "W8A16", "int4": "W4A16", "int8_gptq": "W8A16_GPTQ",
                           "int4_gptq": "W4A16_GPTQ", "int4_awq": "W4A16_AWQ"}[args.weight_only_precision]
    elif args.use_fp8:
        q["quant_algo"] = "FP8"
    elif args.use_nvfp4:
        q["quant_algo"] = "NVFP4"
    elif args.smoothquant:
        q["smoothquant_val"] = args.smoothquant
        q["quant_algo"] = "W8A8_SQ_PER_{}_{}PLUGIN".format(
            "CHANNEL" if args.per_channel else "TENSOR", "PER_TOKEN_" if args.per_token else "")
    elif args.use_fp8_rowwise:
        q["quant_algo"] = "FP8_PER_CHANNEL_PER_TOKEN"
        q["clamp_val"] = [-1200.0, 1200.0]
    elif args.use_qserve:
        q["quant_algo"] = "W4A8_QSERVE_PER_GROUP" if args.per_group else "W4A8_QSERVE_PER_CHANNEL"
    q["use_meta_recipe"] = args.use_meta_fp8_rowwise_recipe
    if args.int8_kv_cache:
        q["kv_cache_quant_algo"] = "INT8"
    if args.fp8_kv_cache:
        q["kv_cache_quant_algo"] = "FP8"
    return q


def llama_main(argv=None) -> None:
    args = llama_parser().parse_args(argv)
    if args.moe_num_experts and args.moe_top_k == 0:
        args.moe_top_k = 1
    run_main("llama_convert_checkpoint", lambda: _llama(args))


def _llama(args) -> int:
    tool = "llama_convert_checkpoint"
    if args.moe_tp_size == -1 and args.moe_ep_size == -1:
        args.moe_tp_size, args.moe_ep_size = args.tp_size, 1
    elif args.moe_tp_size == -1:
        args.moe_tp_size = args.tp_size // args.moe_ep_size
    elif args.moe_ep_size == -1:
        args.moe_ep_size = args.tp_size // args.moe_tp_size
    if args.moe_tp_size * args.moe_ep_size != args.tp_size:
        raise StandinError("AssertionError: moe_tp_size * moe_ep_size must equal to tp_size")
    quant = _llama_quant(args)
    if args.model_dir is None and args.meta_ckpt_dir is None:
        n_kv = args.n_kv_head if args.n_kv_head is not None else args.n_head
        hf_like = {"architectures": ["LlamaForCausalLM"], "vocab_size": args.vocab_size,
                   "hidden_size": args.n_embd, "num_hidden_layers": args.n_layer,
                   "num_attention_heads": args.n_head, "num_key_value_heads": n_kv,
                   "intermediate_size": args.inter_size, "hidden_act": args.hidden_act,
                   "rms_norm_eps": args.rms_norm_eps, "max_position_embeddings": args.n_positions,
                   "rope_theta": args.rotary_base, "torch_dtype": "float16"}
        cfg = checkpoint_config(hf_like, dtype=infer_dtype(args.dtype, hf_like), tp=args.tp_size,
                                pp=args.pp_size, cp=args.cp_size, quant=quant,
                                moe_tp=args.moe_tp_size, moe_ep=args.moe_ep_size)
        simulate_work(tool)
        write_checkpoint(args.output_dir, cfg, config_only=True)  # "generate fake config.json"
        return 0
    if args.meta_ckpt_dir is not None:
        if args.model_dir is not None:
            raise StandinError("AssertionError: Shall not specify both meta checkpoint dir and hugging face dir")
        raise StandinError("Meta checkpoints (--meta_ckpt_dir) are not supported by the stand-in")
    if args.quant_ckpt_path is not None and not (
            args.weight_only_precision in ("int4_gptq", "int8_gptq") or args.use_qserve):
        raise StandinError("AssertionError: only gptq weights or qserve need this option")
    hf_cfg = check_hf_model_dir(args.model_dir, tool, need_tokenizer=False)
    if args.smoothquant is not None or args.int8_kv_cache:
        if args.load_by_shard:
            raise StandinError("AssertionError: When using quantization, TRT-LLM needs to load the whole "
                               "HF model, thus load by shard not supported")
        load_calibration(args.calib_dataset, args.calib_size)
    cfg = checkpoint_config(hf_cfg, dtype=infer_dtype(args.dtype, hf_cfg), tp=args.tp_size,
                            pp=args.pp_size, cp=args.cp_size, quant=quant,
                            use_parallel_embedding=args.use_parallel_embedding,
                            embedding_sharding_dim=args.embedding_sharding_dim,
                            moe_tp=args.moe_tp_size, moe_ep=args.moe_ep_size)
    simulate_work(tool)
    write_checkpoint(args.output_dir, cfg, config_only=args.save_config_only)
    print("Total time of converting checkpoints: 00:00:00")
    return 0


# ====================================================================== nemotron_nas convert_checkpoint


def nemotron_nas_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="[STAND-IN] examples/models/core/nemotron_nas/convert_checkpoint.py")
    p.add_argument("--model_dir", type=str, required=True)
    p.add_argument("--tp_size", type=int, default=1, help="N-way tensor parallelism size")
    p.add_argument("--pp_size", type=int, default=1, help="N-way pipeline parallelism size")
    p.add_argument("--dtype", type=str, default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--load_by_shard", action="store_true")
    p.add_argument("--load_model_on_cpu", action="store_true")
    p.add_argument("--use_parallel_embedding", action="store_true", default=False)
    p.add_argument("--embedding_sharding_dim", type=int, default=0, choices=[0, 1])
    p.add_argument("--output_dir", type=str, default="tllm_checkpoint")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--save_config_only", action="store_true", default=False)
    p.add_argument("--trust_remote_code", action="store_true",
                   help="Pass trust_remote_code=True to HF loading functions as needed")
    return p


def nemotron_nas_main(argv=None) -> None:
    args = nemotron_nas_parser().parse_args(argv)
    run_main("nemotron_nas_convert_checkpoint", lambda: _nemotron_nas(args))


def _nemotron_nas(args) -> int:
    tool = "nemotron_nas_convert_checkpoint"
    if not args.trust_remote_code:
        raise StandinError("AssertionError: Nemotron NAS checkpoint require --trust_remote_code")
    hf_cfg = check_hf_model_dir(args.model_dir, tool, need_tokenizer=False)
    if hf_architecture(hf_cfg) != "DeciLMForCausalLM":
        raise StandinError(f"{args.model_dir} is not a DeciLM/Nemotron-NAS checkpoint "
                           f"(architectures={hf_cfg.get('architectures')})")
    cfg = checkpoint_config(hf_cfg, dtype=infer_dtype(args.dtype, hf_cfg), tp=args.tp_size,
                            pp=args.pp_size, use_parallel_embedding=args.use_parallel_embedding,
                            embedding_sharding_dim=args.embedding_sharding_dim)
    simulate_work(tool)
    write_checkpoint(args.output_dir, cfg, config_only=args.save_config_only)
    print("Total time of converting checkpoints: 00:00:00")
    return 0


# ====================================================================== redrafter convert_checkpoint

REDRAFTER_MAP = {"QWenForCausalLM": "ReDrafterForQWenLM", "Qwen2ForCausalLM": "ReDrafterForQWenLM",
                 "LlamaForCausalLM": "ReDrafterForLLaMALM"}


def redrafter_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="[STAND-IN] examples/redrafter/convert_checkpoint.py")
    p.add_argument("--base_model_checkpoint_dir", type=str, default=None, required=True)
    p.add_argument("--drafter_model_dir", type=str, default=None, required=True)
    p.add_argument("--tp_size", type=int, default=1, help="N-way tensor parallelism size")
    p.add_argument("--dtype", type=str, default="float16", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--storage-type", "-t", type=str, default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--load_model_on_cpu", action="store_true")
    p.add_argument("--use_parallel_embedding", action="store_true", default=False)
    p.add_argument("--embedding_sharding_dim", type=int, default=0, choices=[0, 1])
    p.add_argument("--output_dir", type=str, default="tllm_checkpoint")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dense_context_fmha", default=False, action="store_true")
    p.add_argument("--redrafter_draft_len_per_beam", type=int, default=5)
    p.add_argument("--redrafter_num_beams", type=int, default=5)
    p.add_argument("--redrafter_no_greedy_search", action="store_false", default=True,
                   dest="redrafter_greedy_search")
    return p


def redrafter_main(argv=None) -> None:
    args = redrafter_parser().parse_args(argv)
    run_main("redrafter_convert_checkpoint", lambda: _redrafter(args))


def _redrafter(args) -> int:
    tool = "redrafter_convert_checkpoint"
    base = Path(args.base_model_checkpoint_dir)
    base_cfg = read_json(base / "config.json", "config.json of the base TensorRT-LLM checkpoint")
    mapping = base_cfg.get("mapping") or {}
    base_tp = int(mapping.get("tp_size", 1))
    if base_tp != args.tp_size:
        # The real script reads rank{r}.safetensors for r < --tp_size but keeps the base
        # mapping: a mismatch fails (missing files) or yields an inconsistent checkpoint.
        raise StandinError(f"--tp_size {args.tp_size} does not match the base checkpoint's "
                           f"mapping.tp_size {base_tp} ({base / 'config.json'})")
    base_headers = [read_safetensors_header(base / f"rank{r}.safetensors") for r in range(args.tp_size)]

    drafter = Path(args.drafter_model_dir)
    d_cfg = read_json(drafter / "config.json", "config.json of the drafter")
    ckpt = drafter / "model.safetensors"
    if not ckpt.is_file():
        ckpt = drafter / "model.pt"
    if not ckpt.is_file():
        raise StandinError(f"FileNotFoundError: no model.safetensors (or model.pt) in {drafter}")
    if ckpt.suffix == ".safetensors":
        read_safetensors_header(ckpt)
    for key in ("num_draft_layers", "hidden_size", "exit_dim", "rnn"):
        if key not in d_cfg:
            raise StandinError(f"AttributeError: drafter config.json has no '{key}'")
    print(f"Loading drafter from {ckpt}")
    n_pred = d_cfg.get("standin_drafter_predict_n_tokens")
    if n_pred is not None and args.redrafter_draft_len_per_beam > int(n_pred):
        log(tool, f"WARNING: redrafter_draft_len_per_beam ({args.redrafter_draft_len_per_beam}) > the "
                  f"drafter's trained predict_n_tokens ({n_pred}); drafts past {n_pred} are untrained")

    arch = base_cfg.get("architecture")
    if arch not in REDRAFTER_MAP:
        raise StandinError(f"KeyError: '{arch}'")
    cfg = copy.deepcopy(base_cfg)
    cfg.pop("standin", None)
    cfg["base_model_architecture"] = arch
    cfg["architecture"] = REDRAFTER_MAP[arch]
    cfg["redrafter_num_layers"] = d_cfg["num_draft_layers"]
    cfg["redrafter_hidden_size"] = d_cfg["hidden_size"]
    cfg["redrafter_exit_dim"] = d_cfg["exit_dim"]
    cfg["redrafter_is_rnn"] = d_cfg["rnn"]
    cfg["redrafter_num_beams"] = args.redrafter_num_beams
    cfg["redrafter_draft_len_per_beam"] = args.redrafter_draft_len_per_beam
    cfg["redrafter_greedy_search"] = args.redrafter_greedy_search
    q = cfg.get("quantization")
    if isinstance(q, dict) and q.get("exclude_modules") is not None:
        extra = ["drafter", "drafter.layers", "drafter.lm_head"]
        if cfg["redrafter_is_rnn"]:
            extra += ["drafter.rnn_u", "drafter.rnn_w"]
        for i in range(int(cfg["redrafter_num_layers"])):
            extra += [f"drafter.layers.{i}", f"drafter.layers.{i}.linear"]
        q["exclude_modules"] = list(q["exclude_modules"]) + extra

    simulate_work(tool)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg)
    dt = _ST_DTYPE[args.dtype]
    for r, header in enumerate(base_headers):
        tensors = {k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
        for i in range(int(d_cfg["num_draft_layers"])):
            tensors[f"drafter.layers.{i}.linear.weight"] = (dt, [8, 8])
            tensors[f"drafter.layers.{i}.linear.bias"] = (dt, [8])
        tensors["drafter.lm_head.weight"] = (dt, [16, 8])
        if d_cfg["rnn"]:
            tensors["drafter.rnn_u.weight"] = (dt, [8, 8])
            tensors["drafter.rnn_u.bias"] = (dt, [8])
            tensors["drafter.rnn_w.weight"] = (dt, [8, 8])
        write_safetensors(out / f"rank{r}.safetensors", tensors, {"rank": r})
    return 0
