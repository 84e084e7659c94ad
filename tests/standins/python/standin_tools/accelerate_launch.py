"""STAND-IN for ``accelerate launch`` (accelerate 1.15.0, accelerate/commands/launch.py launch_command_parser and
_validate_launch_command): the flags a one-node launch uses, the same choices, and its refusals (`--multi_gpu`
with fewer than 2 processes; more than one of --cpu/--multi_gpu). Runs ONE process (rank 0) with the
environment accelerate gives its workers (WORLD_SIZE, RANK, LOCAL_RANK, ACCELERATE_MIXED_PRECISION, ...).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .common import StandinError, log, run_main

TOOL = "accelerate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accelerate", description="[STAND-IN] accelerate: `launch` only")
    sub = p.add_subparsers(dest="command", required=True)
    launch = sub.add_parser("launch")
    launch.add_argument("--config_file", default=None)
    launch.add_argument("--cpu", action="store_true")
    launch.add_argument("--multi_gpu", action="store_true")
    launch.add_argument("--mixed_precision", type=str, choices=["no", "fp16", "bf16", "fp8"])
    launch.add_argument("--num_processes", type=int, default=None)
    launch.add_argument("--num_machines", type=int, default=None)
    launch.add_argument("--machine_rank", type=int, default=None)
    launch.add_argument("--main_process_ip", type=str, default=None)
    launch.add_argument("--main_process_port", type=int, default=None)
    launch.add_argument("-m", "--module", action="store_true")
    launch.add_argument("--no_python", action="store_true")
    launch.add_argument("training_script", type=str)
    launch.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return p


def _launch(args) -> int:
    if args.cpu and args.multi_gpu:
        raise StandinError("ValueError: You can only use one of `--cpu`, `--multi_gpu`, `--tpu`, `--use_deepspeed`, "
                           "`--use_fsdp` at a time.")
    if args.multi_gpu and args.num_processes is not None and args.num_processes < 2:
        raise StandinError("ValueError: You need to use at least 2 processes to use `--multi_gpu`.")
    world = args.num_processes or 1
    cmd = ([args.training_script] if args.no_python else
           [sys.executable, "-u", *(["-m"] if args.module else []), args.training_script])
    env = {**os.environ, "WORLD_SIZE": str(world), "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": str(world),
           "ACCELERATE_MIXED_PRECISION": args.mixed_precision or "no", "STANDIN_ACCELERATE": "1"}
    log(TOOL, f"{world} processes; running rank 0 only: {' '.join(cmd + args.training_script_args)}")
    rc = subprocess.call(cmd + args.training_script_args, env=env)
    if rc:
        print(f"subprocess.CalledProcessError: Command '{cmd + args.training_script_args}' returned non-zero exit "
              f"status {rc}.", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    run_main(TOOL, lambda: _launch(args))
