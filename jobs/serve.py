"""launcher.serve_only: the configuration's servers kept up for a set time, and how to reach them.

The benchmark job (jobs.services) runs this in place of a benchmark client once the LLM server (and the code
sandbox) answer: it writes where they listen into the job's log, lines that `python -m launcher status` shows
while the job runs, then waits launcher.serve_minutes; the job then stops the servers, as after a benchmark.
`python -m launcher cancel` (scancel; the local launch's SIGTERM) ends it sooner, the same way.

The servers listen where serving.host says, loopback by default: from the login node an ssh tunnel to the
node reaches them (`ssh -N -L PORT:127.0.0.1:PORT NODE`), nothing else on the cluster's network does.

    python -m jobs.serve --server-url http://127.0.0.1:5123 [--sandbox-url URL] --minutes 60
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import time
import urllib.parse
from typing import List, Optional, Sequence

from jobs.services import SERVING  # every line this writes starts so: launcher.status shows them


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reach(what: str, url: str, node: Optional[str]) -> List[str]:
    """How to reach `url` (as the job sees it) from the login node: through an ssh tunnel to `node` where it
    listens on loopback, else at the node's name; on this machine (`node` None: no Slurm) as it is."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port
    if node is None:
        return [f"{SERVING} {what} at {url} (on this machine)"]
    if _loopback(parts.hostname or ""):
        return [f"{SERVING} {what} at {url} on node {node} (loopback only)",
                f"{SERVING} {what} from the login node: ssh -N -L {port}:{parts.hostname}:{port} {node}   then "
                f"http://127.0.0.1:{port}"]
    return [f"{SERVING} {what} at http://{node}:{port} (listening on {parts.hostname})"]


def address_lines(server_url: str, sandbox_url: Optional[str], node: Optional[str], minutes: float,
                  until: float) -> List[str]:
    lines = reach("the LLM server (OpenAI API: /v1/models, /v1/completions)", server_url, node)
    if sandbox_url:
        lines += reach("the code sandbox (POST /execute)", sandbox_url, node)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
    return lines + [f"{SERVING} until {stamp} (launcher.serve_minutes={minutes:g}); stop sooner with: "
                    "python -m launcher cancel"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--server-url", required=True, help="the LLM server, at the port the job chose")
    p.add_argument("--sandbox-url", help="the code sandbox, at the port it chose")
    p.add_argument("--minutes", type=float, required=True, help="how long to keep serving")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error(f"--minutes {args.minutes:g}: must be positive")
    # On Slurm the node's name; without Slurm (cluster=local) the servers are on the launching machine.
    node = os.environ.get("SLURMD_NODENAME") or (socket.gethostname() if os.environ.get("SLURM_JOB_ID") else None)
    until = time.time() + args.minutes * 60
    for line in address_lines(args.server_url, args.sandbox_url, node, args.minutes, until):
        print(line, flush=True)
    while time.time() < until:  # a SIGTERM (cancel, the time limit) ends this at once: the job stops the servers
        time.sleep(min(30.0, max(0.0, until - time.time())))
    print(f"{SERVING} ended: launcher.serve_minutes={args.minutes:g} passed; stopping the servers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
