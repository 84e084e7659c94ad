"""`cluster=local`: the same plan run on this machine in dependency order, with the same artifacts and state,
the GPU tools replaced by the test stand-ins (tests/standins)."""
import json
import os
import subprocess
import sys
from pathlib import Path

STANDINS = Path(__file__).resolve().parents[1] / "standins"


def run_local(root, *overrides, env=None):
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "launcher", "+experiment=fp8", "cluster=local", f"cluster.storage_root={root}",
         f"cluster.python={sys.executable}", f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}",
         "quantization.calib_size=16", *overrides],
        cwd=root, env=environment, capture_output=True, text=True, timeout=300)


def test_local_runs_every_stage_in_order_then_reuses_them(tmp_path):
    first = run_local(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "GPU-hours requested:" in first.stdout and "7 job(s) submitted" in first.stdout
    order = [line.split(":")[0] for line in first.stdout.splitlines() if line.endswith(": COMPLETED")]
    assert order == ["download_model", "download_dataset", "calibration_data", "quantize", "build_engine",
                     "benchmark", "report"]
    state = json.loads((tmp_path / "experiments" / "fp8" / "state.json").read_text())
    for record in state["stages"].values():
        assert (Path(record["artifact"]) / "manifest.json").is_file()
    results = json.loads((Path(state["stages"]["benchmark"]["artifact"]) / "results.json").read_text())
    assert results["summary"]["num_finished"] >= 10
    assert "batch throughput" in (tmp_path / "experiments" / "fp8" / "report.md").read_text()
    again = run_local(tmp_path)
    assert "0 job(s) submitted" in again.stdout
    report = tmp_path / "experiments" / "fp8" / "report.md"
    report.unlink()
    regenerated = subprocess.run([sys.executable, "-m", "launcher", "report", "fp8", f"cluster.storage_root={tmp_path}"],
                                 capture_output=True, text=True, timeout=120)
    assert regenerated.returncode == 0, regenerated.stdout + regenerated.stderr
    assert "batch throughput" in report.read_text()


def test_a_local_failure_cancels_what_depends_on_it(tmp_path):
    result = run_local(tmp_path, env={"STANDIN_FAIL": "trtllm-build"})
    states = dict(line.rsplit(": ", 1) for line in result.stdout.splitlines()
                  if line.rsplit(": ", 1)[-1] in ("COMPLETED", "FAILED", "CANCELLED"))
    assert states["build_engine"] == "FAILED" and states["benchmark"] == "CANCELLED"
    assert states["quantize"] == "COMPLETED"
    status = subprocess.run([sys.executable, "-m", "launcher", "status", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120).stdout
    assert "build_engine FAILED" in status and "simulated failure" in status


def test_a_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path):
    """A published artifact truncated on the storage: a dry run reports it and leaves it; a launch moves it aside
    (kept, for the user) and rebuilds it, where it used to call it complete and submit nothing."""
    from jobs import artifacts

    assert run_local(tmp_path).returncode == 0
    state_file = tmp_path / "experiments" / "fp8" / "state.json"
    quantize = Path(json.loads(state_file.read_text())["stages"]["quantize"]["artifact"])
    shard = sorted(quantize.glob("*.safetensors"))[0]
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size // 2)
    problem = f"{shard.name} is {size // 2} bytes, manifest.json says {size}"

    dry = run_local(tmp_path, "launcher.dry_run=true")
    assert f"quantize: artifact {quantize} is damaged: {problem}; a launch moves it aside and rebuilds it" in dry.stdout
    assert "damaged: to rebuild" in dry.stdout  # the plan's table too
    assert sorted(p.name for p in quantize.parent.iterdir()) == [quantize.name, quantize.name + ".job"]

    again = run_local(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    aside = [p for p in quantize.parent.iterdir() if p.name.startswith(quantize.name + ".damaged-")]
    assert len(aside) == 1 and (aside[0] / shard.name).stat().st_size == size // 2  # kept as it was found
    assert f"quantize: artifact {quantize} is damaged: {problem}; moved aside to {aside[0]}" in again.stdout
    records = json.loads(state_file.read_text())["stages"]
    assert records["quantize"]["action"] == "submitted" and records["quantize"]["damaged_moved_to"] == str(aside[0])
    assert {r["action"] for n, r in records.items() if n != "quantize"} == {"complete"}
    assert [line for line in again.stdout.splitlines() if line.endswith(": COMPLETED")] == ["quantize: COMPLETED"]
    assert artifacts.problem(quantize) is None and shard.stat().st_size == size


def test_a_cluster_python_that_is_not_there_fails_the_stage_saying_so(tmp_path):
    """cluster.python names the interpreter where the job runs (an image with only `python3` has no
    `python`): the job checks it first, and `status` shows that line as the cause."""
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-m", "launcher", "+experiment=bf16", "cluster=local", f"cluster.storage_root={tmp_path}",
         "cluster.python=python-not-installed-here"], cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=300)
    assert "download_model: FAILED" in result.stdout, result.stdout + result.stderr
    message = ("launcher: error: cluster.python=python-not-installed-here is not on the PATH where the job runs; "
               "set cluster.python to its interpreter (e.g. python3)")
    assert message in (tmp_path / "experiments" / "bf16" / "logs" / "download_model.log").read_text()
    status = subprocess.run([sys.executable, "-m", "launcher", "status", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120).stdout
    assert message in status
