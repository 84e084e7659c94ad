"""Makespan and GPU-hours of `aimo2_campaign` through the launcher on the project's Slurm test cluster,
against the same stages run one after another (the tutorial's way: one 2-GPU machine, one step at a time).

The GPU tools are the test stand-ins, sleeping durations scaled from a cost model of the real pipeline on
2x H100 (hours below, SCALE seconds per hour). The launcher's run: makespan from first start to last end
in Slurm's accounting, GPU-hours = allocated GPUs x elapsed per job. The sequential run: the same plan on
`cluster=local` (dependency order, one stage at a time); its GPU-hours hold the tutorial's 2 GPUs for the
whole wall time. Both are scaled back to hours; the ratios are launcher / one after another, against issue
10's goals. Each job's start, end and GPU-hours are printed: the chain that ends last is what limits the makespan.
Usage (as root): python benchmarks/campaign_makespan.py [--scale S] [--drafter-gpus N] [override ...]
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
    # FP8 calibration on 4096 samples (BF16 full_prec export: same tool). The model is loaded once with
    # device_map="auto": layers run one after another whatever the GPU count, so 1 GPU takes as long as 2.
    "hf_to_trtllm_quantize": 0.5,
    "trtllm-build": 0.3,
    "redrafter_convert_checkpoint": 0.1,
}
# train_redrafter: one epoch over 50k rows takes 4 hours on 2 GPUs; the data-parallel trainer splits the work
# over drafter.num_gpus (--drafter-gpus).
TRAIN_DRAFTER_GPU_HOURS = 8.0
BENCHMARK_HOURS = 0.1  # 12 streamed generations per configuration, as the seeds' table
TUTORIAL_GPUS = 2
GOALS = {"makespan": 0.5, "GPU-hours": 0.7}  # issue 10: launcher / one after another, at most


def environment(root: Path, drafter_gpus: int) -> dict:
    script = root / "serve_script.json"
    tokens = 40
    script.write_text(json.dumps({"default": {"text": "x " * (tokens - 1) + "\\boxed{70}",
                                              "delay": BENCHMARK_HOURS * SCALE / tokens}}))
    hours = {**COST_MODEL_HOURS, "train_redrafter": TRAIN_DRAFTER_GPU_HOURS / drafter_gpus}
    sleeps = ",".join(f"{tool}={h * SCALE}" for tool, h in hours.items())
    # This checkout's launcher, not whichever one is installed.
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
            "PYTHONPATH": f"{REPO}:{STANDINS / 'python'}",
            "STANDIN_SLEEP_S": sleeps, "STANDIN_SERVE_SCRIPT": str(script), "WANDB_MODE": "disabled"}


def launch(root: Path, overrides: list, drafter_gpus: int) -> None:
    result = subprocess.run([sys.executable, "-m", "launcher", "+experiment=aimo2_campaign", *overrides],
                            cwd=root, env=environment(root, drafter_gpus), capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the launcher failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def launcher_on_slurm(root: Path, overrides: list, drafter_gpus: int) -> list:
    """Slurm's accounting of every stage job: (name, start, end, elapsed s, GPUs)."""
    launch(root, [*cluster_overrides(root), *overrides], drafter_gpus)
    state = json.loads((root / "experiments" / "aimo2_campaign" / "state.json").read_text())
    names = {str(r["job_id"]): name for name, r in state["stages"].items()}
    while True:
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(names),
                              "--format=JobIDRaw,State,Start,End,ElapsedRaw,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split("|") for line in out.splitlines()]
        if len(rows) == len(names) and all(r[1] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for r in rows):
            break
        time.sleep(2)
    assert all(r[1] == "COMPLETED" for r in rows), rows
    return sorted((names[r[0]], datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3]), int(r[4]), _gpus(r[5]))
                  for r in rows)


def _gpus(tres: str) -> int:
    fields = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
    return int(fields.get("gres/gpu", 0))


def one_after_another(root: Path, overrides: list) -> float:
    """The tutorial's way: cluster=local on its 2 GPUs, so drafter training runs on 2 whatever --drafter-gpus."""
    local = [o for o in cluster_overrides(root) if not o.startswith("cluster")] + [
        "cluster=local", f"cluster.storage_root={root}", f"cluster.python={sys.executable}",
        f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}"]
    start = time.perf_counter()
    launch(root, [*local, *overrides], TUTORIAL_GPUS)
    return time.perf_counter() - start


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=SCALE, help="seconds of sleep per hour of the cost model: "
                        "larger values make per-job start-up (seconds on a loaded machine) matter less")
    parser.add_argument("--drafter-gpus", type=int, default=TUTORIAL_GPUS,
                        help="drafter.num_gpus of the launcher's run (the recipe's 2 unless given)")
    parser.add_argument("overrides", nargs="*", help="more config overrides for both runs")
    args = parser.parse_args()
    SCALE = args.scale
    subprocess.run(["bash", str(REPO / "tests/cluster/slurm_cluster.sh"), "start"], check=True, capture_output=True)
    drafter = [f"drafter.num_gpus={args.drafter_gpus}"] if args.drafter_gpus != TUTORIAL_GPUS else []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        jobs = launcher_on_slurm(Path(a), [*args.overrides, *drafter], args.drafter_gpus)
        sequential = one_after_another(Path(b), args.overrides)
    hours = lambda seconds: seconds / SCALE  # noqa: E731
    first, last = min(j[1] for j in jobs), max(j[2] for j in jobs)
    makespan, gpu_seconds = (last - first).total_seconds(), sum(j[3] * j[4] for j in jobs)
    print(f"aimo2_campaign, {len(jobs)} stage jobs, stand-ins sleeping {SCALE:g} s per hour of the cost model:")
    print(f"  {'stage job':30} {'starts at h':>11} {'ends at h':>9} {'GPUs':>4} {'GPU-hours':>9}")
    for name, start, end, elapsed, gpus in sorted(jobs, key=lambda j: j[1]):
        print(f"  {name:30} {hours((start - first).total_seconds()):11.2f} {hours((end - first).total_seconds()):9.2f}"
              f" {gpus:4d} {hours(elapsed * gpus):9.2f}")
    print(f"  launcher on Slurm : makespan {hours(makespan):5.2f} h, GPU-hours {hours(gpu_seconds):6.2f}")
    print(f"  one after another : makespan {hours(sequential):5.2f} h, GPU-hours "
          f"{hours(sequential) * TUTORIAL_GPUS:6.2f} (the tutorial's {TUTORIAL_GPUS} GPUs held throughout)")
    ratios = {"makespan": makespan / sequential, "GPU-hours": gpu_seconds / (sequential * TUTORIAL_GPUS)}
    print("  launcher / one after another: " + ", ".join(
        f"{what} {ratio:.2f}x (goal <= {GOALS[what]}x: {'met' if ratio <= GOALS[what] else 'not met'})"
        for what, ratio in ratios.items()))


if __name__ == "__main__":
    main()
