"""`launcher.serve_only=true`: the configuration's artifacts are built as usual, then its benchmark job brings up
the server (and the code sandbox), says where they listen (its log, `status`), keeps them for
launcher.serve_minutes and stops them, or sooner on `cancel`. Here on cluster=local with the stand-in
trtllm-serve and the real sandbox guard, reached with httpx while they are up (Slurm: tests/test_e2e_slurm.py)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from jobs import run_stage, serve
from launcher.contract import StageSpec
from launcher.stages import KINDS
from launcher.status import serving_lines
from tests.helpers import compose_config, plan_for

REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "standins"
URL = re.compile(r"^launcher: serving (the LLM server|the code sandbox) \(.*?\) at (http://\S+) \(on this machine\)$")


def launcher_env() -> dict:
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
            "WANDB_MODE": "disabled"}


def local_overrides(root) -> list:
    return ["+experiment=bf16", "cluster=local", f"cluster.storage_root={root}", f"cluster.python={sys.executable}",
            f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}", "launcher.serve_only=true"]


def launcher(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher", *args, f"cluster.storage_root={root}"], cwd=root,
                          env=launcher_env(), capture_output=True, text=True, timeout=180)


def wait_for_addresses(root, launch: subprocess.Popen, timeout_s: float = 300) -> dict:
    """{what: url} from `status` once the benchmark job says where it serves (the stages before it run first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launch.poll() is None, launch.communicate()
        if (Path(root) / "experiments" / "bf16" / "state.json").is_file():
            status = launcher(root, "status").stdout
            found = {m[1]: m[2] for line in status.splitlines() for m in [URL.match(line.strip())] if m}
            if "the LLM server" in found:
                return found
        time.sleep(2)
    launch.kill()
    raise AssertionError(f"no serving address within {timeout_s} s: {launch.communicate()}")


def listening(url: str) -> bool:
    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def benchmark_record(root) -> dict:
    return json.loads((Path(root) / "experiments" / "bf16" / "state.json").read_text())["stages"]["benchmark"]


def test_the_served_configuration_is_reached_then_torn_down_on_cancel(tmp_path):
    launch = subprocess.Popen([sys.executable, "-m", "launcher", *local_overrides(tmp_path),
                               "launcher.serve_minutes=30"], cwd=tmp_path, env=launcher_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        urls = wait_for_addresses(tmp_path, launch)
        server, sandbox = urls["the LLM server"], urls["the code sandbox"]
        models = httpx.get(f"{server}/v1/models", timeout=30).json()["data"]
        assert [m["id"] for m in models] == [str(Path(benchmark_record(tmp_path)["artifact"]).parent.parent
                                                 / "build_engine" / Path(models[0]["id"]).name)]
        answer = httpx.post(f"{server}/v1/completions", json={"model": models[0]["id"], "prompt": "1+1=",
                                                               "max_tokens": 8}, timeout=30)
        assert answer.status_code == 200 and answer.json()["choices"][0]["text"], answer.text
        assert httpx.get(f"{sandbox}/health", timeout=30).status_code == 200
        # cluster=local: the launch is running the job in the foreground; cancel stops it, and it its servers.
        cancel = launcher(tmp_path, "cancel")
        assert cancel.returncode == 0 and re.search(r"cancelled \d+ job\(s\) of bf16: benchmark \(local-[\d-]+, "
                                                    r"RUNNING\)", cancel.stdout), cancel.stdout
        out, _ = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert "benchmark: CANCELLED" in out, out
    assert not listening(server) and not listening(sandbox)
    record = benchmark_record(tmp_path)
    assert not Path(record["artifact"]).exists()  # nothing published: a launch serves it again
    assert serving_lines(record["log"]), Path(record["log"]).read_text()
    assert "serving (launcher.serve_only)" not in launcher(tmp_path, "status").stdout  # shown while running only


def test_serving_ends_by_itself_after_serve_minutes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "launcher", *local_overrides(tmp_path),
                             "launcher.serve_minutes=0.02"], cwd=tmp_path, env=launcher_env(), capture_output=True,
                            text=True, timeout=600)
    assert "benchmark: COMPLETED" in result.stdout, result.stdout + result.stderr
    log = Path(benchmark_record(tmp_path)["log"]).read_text()
    (server,) = [m[2] for line in serving_lines(benchmark_record(tmp_path)["log"]) for m in [URL.match(line)]
                 if m and m[1] == "the LLM server"]
    assert "launcher: serving ended: launcher.serve_minutes=0.02 passed; stopping the servers" in log
    assert not listening(server)
    assert not Path(benchmark_record(tmp_path)["artifact"]).exists()


def test_the_plan_serves_instead_of_benchmarking():
    sweep = plan_for("+experiment=bf16", "launcher.serve_only=true", "launcher.serve_minutes=45")
    bench = sweep.stages["benchmark"]
    assert set(bench.commands) == {"server", "serve", "sandbox"}
    assert bench.commands["serve"][-2:] == ["--minutes", "45"]
    assert bench.fingerprint != plan_for("+experiment=bf16").stages["benchmark"].fingerprint
    # Its time limit: the server's start-up (serving.health_timeout_s=1800 s), the 45 minutes and 5 to stop.
    assert KINDS["benchmark"].time_limit(compose_config("+experiment=bf16", "launcher.serve_only=true",
                                                        "launcher.serve_minutes=45")) == 30 + 45 + 5
    no_sandbox = plan_for("+experiment=bf16", "launcher.serve_only=true", "serving.sandbox.enabled=false")
    assert set(no_sandbox.stages["benchmark"].commands) == {"server", "serve"}
    assert "--sandbox-url" not in no_sandbox.stages["benchmark"].commands["serve"]


def test_serve_minutes_without_serve_only_and_a_short_time_limit_are_refused():
    from launcher.validation import InvalidConfig

    with pytest.raises(InvalidConfig, match=r"launcher.serve_minutes='5': this override changes nothing"):
        plan_for("+experiment=bf16", "launcher.serve_minutes=5")
    with pytest.raises(InvalidConfig) as refused:
        plan_for("+experiment=bf16", "launcher.serve_only=true", "launcher.serve_minutes=120",
                 "+cluster.time_limits.benchmark=60")
    assert "serving needs 155 minutes, but cluster.time_limits.benchmark=60" in str(refused.value)


def test_the_address_lines_say_how_to_reach_a_node():
    lines = serve.address_lines("http://127.0.0.1:5123", "http://127.0.0.1:6123", "gpu-node-7", 60, 0)
    assert lines[1] == ("launcher: serving the LLM server (OpenAI API: /v1/models, /v1/completions) from the login "
                        "node: ssh -N -L 5123:127.0.0.1:5123 gpu-node-7   then http://127.0.0.1:5123")
    assert "ssh -N -L 6123:127.0.0.1:6123 gpu-node-7" in lines[3]
    assert serve.address_lines("http://0.0.0.0:5123", None, "gpu-node-7", 1, 0)[0] == \
        "launcher: serving the LLM server (OpenAI API: /v1/models, /v1/completions) at http://gpu-node-7:5123 " \
        "(listening on 0.0.0.0)"


def test_a_served_job_is_not_requeued():
    spec = StageSpec.from_json(json.loads(json.dumps({
        "experiment": "x", "name": "benchmark", "kind": "benchmark", "fingerprint": "f", "artifact": "/a",
        "staging_dir": "/a.partial", "commands": {"server": ["s"], "serve": ["python", "-m", "jobs.serve"]},
        "config": {}, "inputs": {}, "resources": {"gpus_per_node": 1, "nodes": 1, "cpus_per_task": 4, "mem_gb": 32,
                                                  "time_min": 90},
        "secret_env_vars": [], "drafter": None, "benchmark": None, "gpu_check": None})))
    assert "not requeued: it would come back on another node and port" in run_stage.requeue_refusal(spec, 0)
    assert run_stage.requeue_refusal(StageSpec(**{**spec.__dict__, "commands": {"client": ["c"]}}), 0) is None
