"""STAND-IN for ``python -m nemo_skills.conversion.hf_to_trtllm_quantize`` (tests only).

The real module (NeMo-Skills @ a4c0a188, 2025-08-29) is a copy of an older TensorRT-LLM
examples/quantization/quantize.py (no --quantize_lm_head). This stand-in declares the
same flags, checks the HF model dir, loads a local calibration dataset when the
qformat needs calibration, and writes a tiny TensorRT-LLM checkpoint
(config.json with "standin": true + rank{i}.safetensors). No GPU, no model.
"""

from standin_tools.trtllm_ckpt import quantize_main

if __name__ == "__main__":
    quantize_main("nemo_skills", "hf_to_trtllm_quantize")
