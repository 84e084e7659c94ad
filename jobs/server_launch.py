"""A server that spans nodes: the rendezvous between the benchmark job and the tasks of the server's step.

The batch script starts the server as a step of its own over all of the job's nodes (launcher.scripts), before
the benchmark job has chosen the server's port: each task runs `python -m jobs.server_launch --timeout S`, which
waits for the launch file ($LAUNCHER_SERVER_LAUNCH_FILE, on the shared storage) and then execs the argv written
there, so that the step's tasks become the server's ranks (under srun --mpi=pmix, trtllm-llmapi-launch reads its
rank from SLURM_PROCID). The benchmark job on the first node writes that file (`write`) once the port is known.

vLLM and SGLang run one task per node that joins the others itself: the batch script gives each task the words
it adds to the command (`--node-args`, and `--worker-args` on the nodes after the first:
launcher.serving_commands.node_args), whose placeholders it fills in strictly (jobs.ports.expand): its node's
rank from SLURM_NODEID, the head's host and rendezvous port from the launch file. The job writes those there: it
runs on the first node, the head's, and chooses the port as it chooses the server's.

Standard library only (with launcher.contract): it runs inside the serving image.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import List, Optional

from jobs import ports
from launcher.contract import (NODE_RANK_ENV, SERVER_DIST_BASE_PORT, SERVER_DIST_PORT_ENV, SERVER_HEAD_ENV,
                               SERVER_LAUNCH_FILE_ENV)

POLL_S = 0.5


def write(path: Path, argv: List[str]) -> None:
    """Publish the server's argv, with this host (the first node's) as the head and a free port on it for the
    nodes' rendezvous (never a number of the argv: the server's own port is not bound yet), at once: readers on
    other nodes never see a half-written file."""
    taken = {int(word) for word in argv if word.isdigit()}
    launch = {"argv": argv, "head": socket.gethostname(),
              "dist_port": ports.free_port("0.0.0.0", SERVER_DIST_BASE_PORT, taken)}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(launch))
    os.replace(partial, path)


def wait_for_launch(path: Path, timeout_s: float) -> Optional[dict]:
    """The launch file's content, or None when it did not appear within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)
    return json.loads(path.read_text())


def node_argv(launch: dict, node_args: List[str], worker_args: List[str], node_rank: str) -> List[str]:
    """The server's argv as this node runs it: the job's, then the node's words with their placeholders filled."""
    words = node_args + (worker_args if node_rank != "0" else [])
    return launch["argv"] + ports.expand(words, {NODE_RANK_ENV: node_rank, SERVER_HEAD_ENV: launch["head"],
                                                 SERVER_DIST_PORT_ENV: str(launch["dist_port"])})


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.server_launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, required=True,
                        help="seconds to wait for the launch file (serving.health_timeout_s)")
    parser.add_argument("--node-args", type=json.loads, default=[],
                        help="JSON list of words every node adds to the server's command")
    parser.add_argument("--worker-args", type=json.loads, default=[],
                        help="JSON list of words the nodes after the first add too")
    args = parser.parse_args(argv)
    launch_file = os.environ.get(SERVER_LAUNCH_FILE_ENV)
    if not launch_file:
        sys.exit(f"jobs.server_launch: {SERVER_LAUNCH_FILE_ENV} is not set: the batch script that starts the "
                 "server's step sets it")
    node_rank = os.environ.get("SLURM_NODEID")
    if (args.node_args or args.worker_args) and not (node_rank or "").isdigit():
        sys.exit(f"jobs.server_launch: SLURM_NODEID is {node_rank!r}, not a node number: --node-args needs the "
                 "node's rank, which srun sets for each task of a step")
    rank = os.environ.get("SLURM_PROCID", "?")
    launch = wait_for_launch(Path(launch_file), args.timeout)
    if launch is None:
        sys.exit(f"jobs.server_launch: task {rank}: the benchmark job wrote no server command to {launch_file} "
                 f"within {args.timeout:g} s")
    try:
        server_argv = node_argv(launch, args.node_args, args.worker_args, node_rank or "0")
    except ports.PortError as error:
        sys.exit(f"jobs.server_launch: --node-args/--worker-args: {error}")
    print(f"jobs.server_launch: task {rank} on {os.environ.get('SLURMD_NODENAME', '?')} runs the server",
          file=sys.stderr, flush=True)
    os.execvp(server_argv[0], server_argv)


if __name__ == "__main__":
    main()
