"""STAND-IN for the NVIDIA driver's ``nvidia-smi`` query mode (what jobs.gpu_check calls); tests only.

Answers ``--query-gpu=FIELDS --format=csv[,noheader][,nounits]`` and ``-L`` the way driver 580's nvidia-smi
does (rows seen on a real H200: ``0, GPU-ddf1675b-..., NVIDIA H200, 9.0, 143771``). Like the real tool it
ignores CUDA_VISIBLE_DEVICES and lists every GPU of the node.

Knobs: ``STANDIN_GPUS`` -- ``NAME:COMPUTE_CAP:MEMORY_MIB`` of the node's GPUs (default an H100 80GB),
``STANDIN_GPU_COUNT`` -- how many (default 8, the test cluster's fake GPUs).
"""
from __future__ import annotations

import os
import sys

from .common import run_main

TOOL = "nvidia-smi"
DEFAULT_GPU = "NVIDIA H100 80GB HBM3:9.0:81559"
# Fields of `nvidia-smi --help-query-gpu` this stand-in answers, with their CSV header and unit.
FIELDS = {
    "index": ("index", None), "uuid": ("uuid", None), "name": ("name", None),
    "compute_cap": ("compute_cap", None), "memory.total": ("memory.total [MiB]", "MiB"),
    "driver_version": ("driver_version", None), "count": ("count", None),
}
FORMATS = {"csv", "noheader", "nounits"}


def gpus() -> list[dict]:
    name, cc, memory = os.environ.get("STANDIN_GPUS", DEFAULT_GPU).rsplit(":", 2)
    count = int(os.environ.get("STANDIN_GPU_COUNT", "8"))
    return [{"index": str(i), "uuid": f"GPU-{i:08x}-0000-0000-0000-5374616e6469", "name": name,
             "compute_cap": cc, "memory.total": memory, "driver_version": "580.159.04", "count": str(count)}
            for i in range(count)]


def main() -> int:
    args = sys.argv[1:]
    if args == ["-L"]:
        for gpu in gpus():
            print(f"GPU {gpu['index']}: {gpu['name']} (UUID: {gpu['uuid']})")
        return 0
    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    if len(options) != len(args) or set(options) != {"--query-gpu", "--format"}:
        print(f"Invalid combination of input arguments: {' '.join(args)}\n(STAND-IN {TOOL} answers only "
              "--query-gpu=... --format=csv[,noheader][,nounits] and -L)", file=sys.stderr)
        return 2
    fields, formats = options["--query-gpu"].split(","), set(options["--format"].split(","))
    for field in fields:
        if field not in FIELDS:
            print(f'Field "{field}" is not a valid field to query.', file=sys.stdout)
            return 2
    if "csv" not in formats or not formats <= FORMATS:
        print(f'"{options["--format"]}" is not a valid format.', file=sys.stdout)
        return 2
    if "noheader" not in formats:
        print(", ".join(FIELDS[f][0] for f in fields))
    units = {f: f" {unit}" if unit and "nounits" not in formats else "" for f, (_, unit) in FIELDS.items()}
    for gpu in gpus():
        print(", ".join(gpu[f] + units[f] for f in fields))
    return 0


def entry() -> None:
    run_main(TOOL, main)
