#!/usr/bin/env python3
"""STAND-IN for TensorRT-LLM examples/quantization/quantize.py @ v1.1.0rc0 (tests only).

Same flags as the real script; checks the HF model dir, loads a local calibration
dataset (datasets.load_dataset(dir, split="train")["text"][:calib_size]) when the
qformat needs calibration, writes a tiny TensorRT-LLM checkpoint (config.json with
"standin": true + rank{i}.safetensors). No GPU, no model. See tests/standins/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))

from standin_tools.trtllm_ckpt import quantize_main  # noqa: E402

if __name__ == "__main__":
    quantize_main("trtllm", "quantize")
