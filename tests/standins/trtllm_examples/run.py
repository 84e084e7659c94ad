#!/usr/bin/env python3
"""STAND-IN for TensorRT-LLM examples/run.py (tests only): the real flags, the real
`Input [Text i]: "..."` / `Output [Text i Beam b]: "..."` lines, no model. See tests/standins/README.md
("Triton") and tests/standins/python/standin_tools/trtllm_run.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "python"))

from standin_tools.trtllm_run import main  # noqa: E402

if __name__ == "__main__":
    main()
