"""A server that spans nodes: the rendezvous between the benchmark job and the tasks of the server's step.

The batch script starts the server as a step of its own over all of the job's nodes (launcher.scripts), before
the benchmark job has chosen the server's port: each task runs `python -m jobs.server_launch --timeout S`, which
waits for the launch file ($LAUNCHER_SERVER_LAUNCH_FILE, on the shared storage) and then execs the argv written
there, so that the step's tasks become the server's ranks (under srun --mpi=pmix, trtllm-llmapi-launch reads its
rank from SLURM_PROCID). The benchmark job on the first node writes that file (`write`) once the port is known.

Standard library only (with launcher.contract): it runs inside the serving image.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from launcher.contract import SERVER_LAUNCH_FILE_ENV

POLL_S = 0.5


def write(path: Path, argv: List[str]) -> None:
    """Publish the server's argv at once: readers on other nodes never see a half-written file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"argv": argv}))
    os.replace(partial, path)


def wait_for_argv(path: Path, timeout_s: float) -> Optional[List[str]]:
    """The argv of the launch file, or None when it did not appear within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)
    return json.loads(path.read_text())["argv"]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.server_launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, required=True,
                        help="seconds to wait for the launch file (serving.health_timeout_s)")
    args = parser.parse_args(argv)
    launch_file = os.environ.get(SERVER_LAUNCH_FILE_ENV)
    if not launch_file:
        sys.exit(f"jobs.server_launch: {SERVER_LAUNCH_FILE_ENV} is not set: the batch script that starts the "
                 "server's step sets it")
    rank = os.environ.get("SLURM_PROCID", "?")
    server_argv = wait_for_argv(Path(launch_file), args.timeout)
    if server_argv is None:
        sys.exit(f"jobs.server_launch: task {rank}: the benchmark job wrote no server command to {launch_file} "
                 f"within {args.timeout:g} s")
    print(f"jobs.server_launch: task {rank} on {os.environ.get('SLURMD_NODENAME', '?')} runs the server",
          file=sys.stderr, flush=True)
    os.execvp(server_argv[0], server_argv)


if __name__ == "__main__":
    main()
