"""STAND-IN for NVIDIA Model-Optimizer's examples/hf_ptq/hf_ptq.py (tag 0.46.0; tests only, quantizes nothing).

Parses the real script's flags that the launcher passes (names, types, choices and defaults of its parse_args at
0.46.0), refuses a model directory without config.json and a --dataset that is neither a registered name nor a
local path holding data (the launcher passes our calibration directory: parquet files with a `text` column,
which dataset_utils.get_dataset_samples reads as an unregistered dataset), and writes what the unified HF export
(export_hf_checkpoint) writes for FP8: config.json with `quantization_config.quant_method: modelopt`,
hf_quant_config.json, the tokenizer and a weights file, so that the servers' stand-ins read it as the real ones do.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

QFORMATS = ("fp8", "fp8_pb_wo", "int8_sq", "int4_awq", "w4a8_awq", "nvfp4", "nvfp4_awq", "mxfp8")
KV_QFORMATS = ("none", "fp8", "fp8_cast", "nvfp4", "nvfp4_cast", "nvfp4_affine")


def parse(argv):
    p = argparse.ArgumentParser(prog="hf_ptq.py")
    p.add_argument("--pyt_ckpt_path", "--model", required=True)
    p.add_argument("--qformat", default="fp8", choices=QFORMATS)
    p.add_argument("--batch_size", type=int, default=0)
    p.add_argument("--calib_size", type=str, default="1024")
    p.add_argument("--calib_seq", type=int, default=512)
    p.add_argument("--export_path", default="exported_model")
    p.add_argument("--dataset", type=str, default=None)
    p.add_argument("--inference_tensor_parallel", type=int, default=1)
    p.add_argument("--inference_pipeline_parallel", type=int, default=1)
    p.add_argument("--kv_cache_qformat", default="fp8_cast", choices=KV_QFORMATS)
    p.add_argument("--trust_remote_code", default=False, action="store_true")
    return p.parse_args(argv)


def main(argv):
    args = parse(argv)
    model = Path(args.pyt_ckpt_path)
    if not (model / "config.json").is_file():
        sys.exit(f"[STAND-IN] hf_ptq.py: OSError: {model} does not appear to have a file named config.json")
    if args.dataset and not any(Path(args.dataset).glob("**/*.parquet")):
        sys.exit(f"[STAND-IN] hf_ptq.py: no calibration data (parquet with a `text` column) in {args.dataset}")
    out = Path(args.export_path)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((model / "config.json").read_text())
    kv = None if args.kv_cache_qformat == "none" else "FP8"
    config["quantization_config"] = {"quant_method": "modelopt", "quant_algo": args.qformat.upper(),
                                     "kv_cache_quant_algo": kv, "producer": {"name": "modelopt"}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "hf_quant_config.json").write_text(json.dumps({"quantization": {
        "quant_algo": args.qformat.upper(), "kv_cache_quant_algo": kv}}, indent=2))
    for f in model.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "generation_config", "vocab", "merges")):
            shutil.copy(f, out / f.name)
    (out / "model.safetensors").write_bytes(b"STAND-IN")
    print(f"[STAND-IN] hf_ptq.py: exported {args.qformat} checkpoint to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
