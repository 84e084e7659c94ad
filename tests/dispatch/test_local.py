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
