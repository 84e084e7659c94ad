"""STAND-IN for NVIDIA Model-Optimizer's examples/hf_ptq/hf_ptq.py (tag 0.46.0; tests only, quantizes nothing).

Parses the real script's flags that the launcher passes (names, types, choices and defaults of its parse_args at
0.46.0), refuses what the real script refuses before it loads a model (a model directory without config.json, a
--calib_size that is not comma-separated ints, a --qformat that is no preset of modelopt/recipe/presets.py, a
--dataset that is neither a registered name nor a local directory whose data has a column the auto-detection
reads), then writes the unified HF export of an FP8 PTQ in the shapes the real one wrote on an H200
(tests/standins/README.md, "Serving stacks": config.json's quantization_config, hf_quant_config.json, the
safetensors names and dtypes, the tokenizer and sidecar files). Tensor shapes are scaled down; names and dtypes
are the real ones.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .common import StandinError, check_hf_model_dir, log, read_json, run_main, simulate_work, write_json, \
    write_safetensors

TOOL = "hf_ptq.py"
MODELOPT_VERSION = "0.46.0"
# modelopt_recipes/configs/ptq/presets/model/*.yaml basenames plus presets.QFORMAT_ALIASES: QUANT_CFG_CHOICES.
QFORMATS = (
    "fp8", "fp8_2d_blockwise_weight_only", "fp8_per_channel_per_token", "int4_awq", "int4_blockwise_weight_only",
    "int8", "int8_smoothquant", "int8_weight_only", "mamba_moe_fp8_aggressive", "mamba_moe_fp8_conservative",
    "mamba_moe_nvfp4_aggressive", "mamba_moe_nvfp4_conservative", "mxfp4", "mxfp4_mlp_weight_only", "mxfp6",
    "mxfp8", "mxint8", "nvfp4", "nvfp4_awq_clip", "nvfp4_awq_full", "nvfp4_awq_lite", "nvfp4_experts_only",
    "nvfp4_four_over_six", "nvfp4_fp8_mha", "nvfp4_mlp_only", "nvfp4_mlp_weight_only", "nvfp4_omlp_only",
    "nvfp4_svdquant", "nvfp4_w4a4_weight_local_hessian", "nvfp4_w4a4_weight_mse_fp8_sweep", "w4a16_nvfp4",
    "w4a8_awq_beta", "w4a8_mxfp4_fp8", "w4a8_nvfp4_fp8",
    "int8_sq", "int8_wo", "w4a8_awq", "nvfp4_awq", "nvfp4_mse", "nvfp4_local_hessian", "fp8_pb_wo", "fp8_pc_pt")
# --kv_cache_qformat choices: presets.KV_CACHE_NONE and modelopt_recipes/configs/ptq/presets/kv/*.yaml.
KV_QFORMATS = ("none", "fp8", "fp8_affine", "fp8_cast", "nvfp4", "nvfp4_affine", "nvfp4_cast", "nvfp4_rotate")
# dataset_utils._auto_preprocess_sample: the columns an unregistered dataset is read by, first match wins.
AUTO_COLUMNS = ("messages", "conversations", "prompt", "text", "input")
# What the FP8 export quantizes (every nn.Linear of the decoder) and leaves BF16.
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
EXCLUDED = ["lm_head", "model.embed_tokens"]
FP8_SCHEME = {"dynamic": False, "num_bits": 8, "type": "float"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=TOOL)
    p.add_argument("--pyt_ckpt_path", "--model", required=True)
    p.add_argument("--recipe", default=None)
    p.add_argument("--device", default="cuda")
    p.add_argument("--qformat", default="fp8")
    p.add_argument("--batch_size", type=int, default=0)
    p.add_argument("--calib_size", type=str, default="1024")
    p.add_argument("--calib_seq", type=int, default=512)
    p.add_argument("--export_path", default="exported_model")
    p.add_argument("--dataset", type=str, default=None)
    p.add_argument("--inference_tensor_parallel", type=int, default=1)
    p.add_argument("--inference_pipeline_parallel", type=int, default=1)
    p.add_argument("--kv_cache_qformat", required=False, default="fp8_cast", choices=KV_QFORMATS)
    p.add_argument("--export_fmt", required=False, default="hf", choices=["tensorrt_llm", "hf"])
    p.add_argument("--trust_remote_code", default=False, action="store_true")
    return p


def check_dataset(dataset: str) -> None:
    """A local directory as get_dataset_samples reads it: load_dataset(path, split="train"), columns auto-detected."""
    import pyarrow.parquet as pq

    path = Path(dataset)
    if not path.exists():
        raise StandinError(f"--dataset {dataset}: not a local path (stand-in has no Hub access)")
    files = sorted(path.glob("**/*.parquet")) if path.is_dir() else []
    if not files:
        raise StandinError(f"--dataset {dataset}: load_dataset finds no data files (stand-in reads parquet)")
    columns = pq.read_schema(files[0]).names
    if not any(c in columns for c in AUTO_COLUMNS):
        raise StandinError(f"ValueError: dataset '{path.name}': no recognized column among {columns}; "
                           f"expected one of {', '.join(AUTO_COLUMNS)}")


def fp8_tensors(config: dict, kv_fp8: bool) -> dict:
    """The export's safetensors names and dtypes for a Llama-shaped decoder (shapes scaled down)."""
    tensors = {"lm_head.weight": ("BF16", (2, 2)), "model.embed_tokens.weight": ("BF16", (2, 2)),
               "model.norm.weight": ("BF16", (2,))}
    for i in range(int(config.get("num_hidden_layers", 1))):
        layer = f"model.layers.{i}"
        tensors[f"{layer}.input_layernorm.weight"] = ("BF16", (2,))
        tensors[f"{layer}.post_attention_layernorm.weight"] = ("BF16", (2,))
        for linear in LINEARS:
            tensors[f"{layer}.{linear}.weight"] = ("F8_E4M3", (2, 2))
            tensors[f"{layer}.{linear}.weight_scale"] = ("F32", ())
            tensors[f"{layer}.{linear}.input_scale"] = ("F32", ())
        if kv_fp8:
            tensors[f"{layer}.self_attn.k_proj.k_scale"] = ("F32", ())
            tensors[f"{layer}.self_attn.v_proj.v_scale"] = ("F32", ())
    return tensors


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    model = Path(args.pyt_ckpt_path)
    config = check_hf_model_dir(args.pyt_ckpt_path, TOOL)
    try:
        calib_size = [int(n) for n in args.calib_size.split(",")]
    except ValueError as e:
        raise StandinError(f"ValueError: --calib_size {args.calib_size!r}: {e}")
    if args.qformat not in QFORMATS:
        raise StandinError(f"KeyError: '{args.qformat}' (QUANT_CFG_CHOICES: {', '.join(QFORMATS)})")
    if args.qformat != "fp8" or args.kv_cache_qformat not in ("none", "fp8", "fp8_cast"):
        raise StandinError(f"[STAND-IN] only the FP8 export (kv none/fp8/fp8_cast) is modelled, not "
                           f"--qformat {args.qformat} --kv_cache_qformat {args.kv_cache_qformat}")
    for dataset in (args.dataset or "").split(","):
        if dataset:
            check_dataset(dataset)
    simulate_work(TOOL)
    out = Path(args.export_path)
    out.mkdir(parents=True, exist_ok=True)
    # copy_custom_model_files / copy_non_safetensor_files_from_ckpt: the source's sidecar files (tokenizer, chat
    # template, remote code) verbatim; the export writes its own config.json and generation_config.json.
    for f in sorted(model.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in (
                "model.safetensors.index.json", "config.json", "generation_config.json"):
            shutil.copy2(f, out / f.name)
    kv_fp8 = args.kv_cache_qformat != "none"
    producer = {"name": "modelopt", "version": MODELOPT_VERSION}
    quantization_config = {"config_groups": {"group_0": {
        "input_activations": FP8_SCHEME, "weights": FP8_SCHEME, "targets": ["Linear"]}},
        "ignore": EXCLUDED, "quant_algo": "FP8", **({"kv_cache_scheme": FP8_SCHEME} if kv_fp8 else {}),
        "producer": producer, "quant_method": "modelopt"}
    write_json(out / "config.json", {**config, "quantization_config": quantization_config}, mark=False)
    generation = model / "generation_config.json"
    if generation.is_file():
        write_json(out / "generation_config.json", read_json(generation), mark=False)
    write_json(out / "hf_quant_config.json", {"producer": producer, "quantization": {
        "quant_algo": "FP8", "kv_cache_quant_algo": "FP8" if kv_fp8 else None, "exclude_modules": EXCLUDED}},
        mark=False)
    write_safetensors(out / "model.safetensors", fp8_tensors(config, kv_fp8))
    (out / ".quant_summary.txt").write_text("[STAND-IN] no quantizers: nothing was calibrated\n")
    log(TOOL, f"calibrated on {sum(calib_size)} samples (not really); exported fp8 checkpoint to {out}")


def cli() -> None:
    run_main(TOOL, main)
