"""STAND-IN for the `sglang` package: only `python -m sglang.launch_server` (tests/standins/README.md)."""
