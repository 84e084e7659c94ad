"""STAND-IN for SGLang 0.5.23's `python -m sglang.launch_server ...` (tests only, loads no weights).

See tests/standins/README.md ("Serving stacks") and tests/standins/python/standin_tools/checkpoint_servers.py.
"""
import os
import sys

sys.path.append(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "..", ".."))

from standin_tools.checkpoint_servers import sglang_main  # noqa: E402

if __name__ == "__main__":
    sglang_main(sys.argv[1:])
