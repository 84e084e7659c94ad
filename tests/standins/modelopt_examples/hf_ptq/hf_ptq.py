"""STAND-IN for NVIDIA Model-Optimizer's examples/hf_ptq/hf_ptq.py (tag 0.46.0; tests only).

See tests/standins/python/standin_tools/modelopt_ptq.py and tests/standins/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))

from standin_tools.modelopt_ptq import cli  # noqa: E402

if __name__ == "__main__":
    cli()
