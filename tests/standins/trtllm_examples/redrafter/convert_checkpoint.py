#!/usr/bin/env python3
"""STAND-IN for TensorRT-LLM examples/redrafter/convert_checkpoint.py (tests only).

Same flags as the real script; checks the base TensorRT-LLM checkpoint (its
mapping.tp_size must equal --tp_size, rank files present) and the drafter dir
(config.json + model.safetensors); writes a checkpoint whose config.json carries the
redrafter_* fields the real script adds ("standin": true). See tests/standins/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))

from standin_tools.trtllm_ckpt import redrafter_main  # noqa: E402

if __name__ == "__main__":
    redrafter_main()
