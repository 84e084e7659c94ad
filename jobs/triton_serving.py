"""The seed-004 benchmark on Triton: tritonserver at three ports this job chooses, its health, the client, teardown.

As jobs.services does for trtllm-serve: the job chooses the ports (jobs.ports.free_port, from the configured bases
+ SLURM_JOB_ID % PORT_SPREAD, each distinct) just before it starts the server, fills them into the commands'
placeholders, waits until Triton's HTTP `/v2/health/ready` answers 200 (every model loaded), runs the client
(jobs.triton_benchmark over gRPC), and stops the server's process group however the benchmark ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Dict

from jobs import ports
from jobs.process import StageFailed, process_group, run_command
from jobs.services import wait_for_health
from launcher.contract import GRPC_PORT_ENV, METRICS_PORT_ENV, RESULTS, SERVER_PORT_ENV, StageSpec

READY_PATH = "/v2/health/ready"  # 200 once the server is live and every model it loads is ready


def choose_ports(host: str, serving: dict) -> Dict[str, str]:
    """HTTP (jobs.ports' server port), gRPC and metrics: the first free port of each base's range, all different."""
    chosen: Dict[str, str] = {}
    for name, base in ((SERVER_PORT_ENV, serving["port"]), (GRPC_PORT_ENV, serving["grpc_port"]),
                       (METRICS_PORT_ENV, serving["metrics_port"])):
        chosen[name] = str(ports.free_port(host, base, taken={int(p) for p in chosen.values()}))
    return chosen


def run_benchmark(spec: StageSpec, staging: Path) -> dict:
    bench, commands = spec.benchmark, spec.commands
    host = urllib.parse.urlsplit(bench.server_url).hostname
    try:
        chosen = choose_ports(host, spec.config["serving"])
        server_argv, client_argv = ports.expand(commands["server"], chosen), ports.expand(commands["client"], chosen)
    except ports.PortError as error:
        raise StageFailed(str(error)) from None
    env = {**os.environ, **chosen}
    log_file = staging / "server.log"
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        server = stack.enter_context(process_group(server_argv, log_file, echo=False, env=env))
        startup = wait_for_health(f"http://{host}:{chosen[SERVER_PORT_ENV]}{READY_PATH}",
                                  bench.health_timeout_s, server, log_file, "tritonserver", since=started)
        run_command(client_argv, env=env)
    results_file = staging / RESULTS
    if not results_file.is_file():
        raise StageFailed(f"the benchmark client exited without writing {results_file}")
    results = json.loads(results_file.read_text())
    return {"benchmark_summary": results.get("summary"), "server_startup_s": startup,
            "ports": {"http": int(chosen[SERVER_PORT_ENV]), "grpc": int(chosen[GRPC_PORT_ENV]),
                      "metrics": int(chosen[METRICS_PORT_ENV])}}
