#!/usr/bin/env python3
"""STAND-IN for TensorRT-LLM examples/models/core/llama/convert_checkpoint.py (tests only).

Same flags as the real script; checks the HF model dir; writes a tiny TensorRT-LLM
checkpoint (config.json with "standin": true + rank{i}.safetensors). See
tests/standins/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "..", "..", "python"))

from standin_tools.trtllm_ckpt import llama_main  # noqa: E402

if __name__ == "__main__":
    llama_main()
