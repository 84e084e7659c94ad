"""Makespan and GPU-hours of `aimo2_campaign` through the launcher on the project's Slurm test cluster,
against the same stages run one after another (the tutorial's way: one 2-GPU machine, one step at a time).

The GPU tools are the test stand-ins, sleeping durations scaled from a cost model of the real pipeline on
2x H100 (hours below, SCALE seconds per hour). The launcher's run: makespan from first start to last end
in Slurm's accounting, GPU-hours = allocated GPUs x elapsed per job. The sequential run: the same plan on
`cluster=local` (dependency order, one stage at a time); its GPU-hours hold the tutorial's 2 GPUs for the
whole wall time. Both are scaled back to hours. Usage (as root): python benchmarks/campaign_makespan.py
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_e2e_slurm import STANDINS, cluster_overrides  # noqa: E402

SCALE = 4.0  # seconds of stand-in sleep per hour of real work (--scale)
COST_MODEL_HOURS = {  # OpenMath-Nemotron-14B on 2x H100 80GB
    "hf": 0.4,  # each download (30 GB model; the dataset's tir split)
    "hf_to_trtllm_quantize": 0.5,  # FP8 calibration on 4096 samples (BF16 full_prec export: same tool)
    "trtllm-build": 0.3,
    "train_redrafter": 4.0,  # one epoch over 50k rows on 2 GPUs
    "redrafter_convert_checkpoint": 0.1,
}
BENCHMARK_HOURS = 0.1  # 12 streamed generations per configuration, as the seeds' table
TUTORIAL_GPUS = 2


def environment(root: Path) -> dict:
    script = root / "serve_script.json"
    tokens = 40
    script.write_text(json.dumps({"default": {"text": "x " * (tokens - 1) + "\\boxed{70}",
                                              "delay": BENCHMARK_HOURS * SCALE / tokens}}))
    sleeps = ",".join(f"{tool}={hours * SCALE}" for tool, hours in COST_MODEL_HOURS.items())
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
            "STANDIN_SLEEP_S": sleeps, "STANDIN_SERVE_SCRIPT": str(script), "WANDB_MODE": "disabled"}


def launcher_on_slurm(root: Path) -> tuple[float, float, int]:
    subprocess.run([sys.executable, "-m", "launcher", "+experiment=aimo2_campaign", *cluster_overrides(root)],
                   cwd=root, env=environment(root), check=True, capture_output=True)
    state = json.loads((root / "experiments" / "aimo2_campaign" / "state.json").read_text())
    ids = [str(r["job_id"]) for r in state["stages"].values()]
    while True:
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(ids),
                              "--format=JobIDRaw,State,Start,End,ElapsedRaw,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split("|") for line in out.splitlines()]
        if len(rows) == len(ids) and all(r[1] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for r in rows):
            break
        time.sleep(2)
    assert all(r[1] == "COMPLETED" for r in rows), rows
    start = min(datetime.fromisoformat(r[2]) for r in rows)
    end = max(datetime.fromisoformat(r[3]) for r in rows)
    gpu_seconds = sum(int(r[4]) * _gpus(r[5]) for r in rows)
    return (end - start).total_seconds(), gpu_seconds, len(rows)


def _gpus(tres: str) -> int:
    fields = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
    return int(fields.get("gres/gpu", 0))


def one_after_another(root: Path) -> float:
    overrides = [o for o in cluster_overrides(root) if not o.startswith("cluster")] + [
        f"cluster.storage_root={root}", f"cluster.python={sys.executable}",
        f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}"]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "launcher", "+experiment=aimo2_campaign", "cluster=local", *overrides],
                   cwd=root, env=environment(root), check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=SCALE, help="seconds of sleep per hour of the cost model: "
                        "larger values make per-job start-up (about 2 s) matter less")
    SCALE = parser.parse_args().scale
    subprocess.run(["bash", str(REPO / "tests/cluster/slurm_cluster.sh"), "start"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        makespan, gpu_seconds, jobs = launcher_on_slurm(Path(a))
        sequential = one_after_another(Path(b))
    hours = lambda seconds: seconds / SCALE  # noqa: E731
    print(f"aimo2_campaign, {jobs} stage jobs, stand-ins sleeping {SCALE:g} s per hour of the cost model:")
    print(f"  launcher on Slurm : makespan {hours(makespan):5.2f} h, GPU-hours {hours(gpu_seconds):6.2f}")
    print(f"  one after another : makespan {hours(sequential):5.2f} h, GPU-hours "
          f"{hours(sequential) * TUTORIAL_GPUS:6.2f} (the tutorial's {TUTORIAL_GPUS} GPUs held throughout)")
    print(f"  ratios (sequential / launcher): makespan {sequential / makespan:.2f}x, "
          f"GPU-hours {sequential * TUTORIAL_GPUS / gpu_seconds:.2f}x")


if __name__ == "__main__":
    main()
