"""STAND-IN for ``torchrun`` (torch.distributed.run; flags from get_args_parser()).

Runs ONE worker process (rank 0) with the environment a torchrun worker gets
(RANK, LOCAL_RANK, WORLD_SIZE = nnodes*nproc_per_node, LOCAL_WORLD_SIZE, GROUP_RANK,
ROLE_RANK, ROLE_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID, ...).
``-m MODULE`` runs ``python -m MODULE args``; otherwise ``python SCRIPT args``
(``--no-python``: the program itself). A failing worker makes torchrun exit 1 with a
ChildFailedError summary, like the real launcher.

Knob (tests only): ``STANDIN_TORCHRUN_ENV_FILE=PATH`` writes the environment the worker is
started with to PATH, as JSON, so that tests can see what the trainer process receives.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from argparse import REMAINDER

from .common import StandinError, log, maybe_fail, run_main

TOOL = "torchrun"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun", description=(
        "[STAND-IN] Torch Distributed Elastic Training Launcher: runs a single rank-0 worker "
        "with torchrun's environment variables."))
    p.add_argument("--nnodes", type=str, default="1:1")
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=str, default="1")
    p.add_argument("--rdzv-backend", "--rdzv_backend", type=str, default="static")
    p.add_argument("--rdzv-endpoint", "--rdzv_endpoint", type=str, default="")
    p.add_argument("--rdzv-id", "--rdzv_id", type=str, default="none")
    p.add_argument("--rdzv-conf", "--rdzv_conf", type=str, default="")
    p.add_argument("--standalone", action="store_true")
    p.add_argument("--max-restarts", "--max_restarts", type=int, default=0)
    p.add_argument("--monitor-interval", "--monitor_interval", type=float, default=0.1)
    p.add_argument("--start-method", "--start_method", type=str, default="spawn",
                   choices=["spawn", "fork", "forkserver"])
    p.add_argument("--event-log-handler", "--event_log_handler", type=str, default="null")
    p.add_argument("--role", type=str, default="default")
    p.add_argument("-m", "--module", action="store_true")
    p.add_argument("--no-python", "--no_python", action="store_true")
    p.add_argument("--run-path", "--run_path", action="store_true")
    p.add_argument("--log-dir", "--log_dir", type=str, default=None)
    p.add_argument("-r", "--redirects", type=str, default="0")
    p.add_argument("-t", "--tee", type=str, default="0")
    p.add_argument("--local-ranks-filter", "--local_ranks_filter", type=str, default="")
    p.add_argument("--node-rank", "--node_rank", type=int, default=0)
    p.add_argument("--master-addr", "--master_addr", default="127.0.0.1", type=str)
    p.add_argument("--master-port", "--master_port", default=29500, type=int)
    p.add_argument("--local-addr", "--local_addr", default=None, type=str)
    p.add_argument("--logs-specs", "--logs_specs", default=None, type=str)
    p.add_argument("--numa-binding", "--numa_binding", type=str, default=None,
                   choices=["node", "socket", "exclusive", "core-complex"])
    p.add_argument("--signals-to-handle", "--signals_to_handle", type=str,
                   default="SIGTERM,SIGINT,SIGHUP,SIGQUIT")
    p.add_argument("training_script", type=str)
    p.add_argument("training_script_args", nargs=REMAINDER)
    return p


def _nnodes(s: str) -> tuple[int, int]:
    parts = s.split(":")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise StandinError(f'RuntimeError: nnodes={s} is not in "MIN:MAX" format')


def _nproc(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        if s in ("cpu", "auto"):
            return os.cpu_count() or 1
        if s == "gpu":
            raise StandinError("ValueError: Cuda is not available.")
        raise StandinError(f"ValueError: Unsupported nproc_per_node value: {s}")


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    run_main(TOOL, lambda: _run(args))


def _run(args) -> int:
    min_nodes, max_nodes = _nnodes(args.nnodes)
    if not 0 < min_nodes <= max_nodes or args.max_restarts < 0:
        raise StandinError("AssertionError")
    nproc = _nproc(args.nproc_per_node)
    world = nproc * max_nodes
    if args.module and args.no_python:
        raise StandinError("ValueError: Don't use both the '--no-python' flag and the '--module' flag "
                           "at the same time.")
    if args.no_python:
        cmd = [args.training_script]
    elif args.module:
        cmd = [sys.executable, "-u", "-m", args.training_script]
    else:
        cmd = [sys.executable, "-u", args.training_script]
    cmd += args.training_script_args

    env = dict(os.environ)
    run_id = args.rdzv_id if args.rdzv_id != "none" else str(uuid.uuid4())
    env.update({
        "RANK": str(args.node_rank * nproc), "LOCAL_RANK": "0", "GROUP_RANK": str(args.node_rank),
        "ROLE_RANK": str(args.node_rank * nproc), "ROLE_NAME": args.role,
        "LOCAL_WORLD_SIZE": str(nproc), "WORLD_SIZE": str(world), "GROUP_WORLD_SIZE": str(max_nodes),
        "ROLE_WORLD_SIZE": str(world), "MASTER_ADDR": args.master_addr, "MASTER_PORT": str(args.master_port),
        "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": str(args.max_restarts),
        "TORCHELASTIC_RUN_ID": run_id, "TORCHELASTIC_USE_AGENT_STORE": "False",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": env.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"),
        "STANDIN_TORCHRUN": "1",
    })
    if "OMP_NUM_THREADS" not in env and nproc > 1:
        env["OMP_NUM_THREADS"] = "1"
    if os.environ.get("STANDIN_TORCHRUN_ENV_FILE"):
        with open(os.environ["STANDIN_TORCHRUN_ENV_FILE"], "w") as f:
            json.dump(env, f, indent=2, sort_keys=True)
    maybe_fail(TOOL)  # no STANDIN_SLEEP_S here: the worker (a stand-in too) does the sleeping
    log(TOOL, f"world_size {world} (nnodes {max_nodes} x nproc_per_node {nproc}); running rank 0 only: "
              f"{' '.join(cmd)}")
    try:
        rc = subprocess.call(cmd, env=env)
    except OSError as e:
        raise StandinError(f"could not start {cmd[0]}: {e}")
    if rc != 0:
        print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
              "============================================================\n"
              f"{args.training_script} FAILED\n"
              "------------------------------------------------------------\n"
              "Root Cause (first observed failure):\n"
              f"[0]:\n  rank      : 0 (local_rank: 0)\n  exitcode  : {rc}\n"
              "============================================================", file=sys.stderr, flush=True)
        return 1
    return 0
