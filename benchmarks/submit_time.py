"""Time from `python -m launcher +experiment=fp8_redrafter cluster=...` to all jobs submitted, and the
number of `sbatch` calls, on the project's own Slurm test cluster (tests/cluster/slurm_cluster.sh).

Each run uses fresh storage (so every stage is submitted), counts sbatch calls through a counting shim
first on PATH, and cancels the jobs right after. Prints each run and the median. Usage (as root):
    python benchmarks/submit_time.py [--runs 5] [--experiment fp8_redrafter]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_e2e_slurm import cluster_overrides  # noqa: E402  (the test cluster's overrides)

COUNTING_SBATCH = """#!/bin/sh
echo call >> {counter}
exec {real} "$@"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--experiment", default="fp8_redrafter")
    args = parser.parse_args()
    subprocess.run(["bash", str(REPO / "tests/cluster/slurm_cluster.sh"), "start"], check=True, capture_output=True)
    real_sbatch = subprocess.run(["which", "sbatch"], capture_output=True, text=True, check=True).stdout.strip()
    times, calls = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as root:
            shim = Path(root) / "shim"
            shim.mkdir()
            counter = Path(root) / "sbatch_calls"
            (shim / "sbatch").write_text(COUNTING_SBATCH.format(counter=counter, real=real_sbatch))
            (shim / "sbatch").chmod(0o755)
            env = {**os.environ, "PATH": f"{shim}:{REPO / 'tests/standins/bin'}:{os.environ['PATH']}"}
            command = [sys.executable, "-m", "launcher", f"+experiment={args.experiment}", *cluster_overrides(root)]
            start = time.perf_counter()
            subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            calls.append(len(counter.read_text().splitlines()))
            state = json.loads((Path(root) / "experiments" / args.experiment / "state.json").read_text())
            subprocess.run(["scancel", *[str(r["job_id"]) for r in state["stages"].values()]], check=False)
            print(f"run {i + 1}: {times[-1]:.2f} s, {calls[-1]} sbatch calls")
    print(f"{args.experiment}: command to all jobs submitted, median {statistics.median(times):.2f} s over "
          f"{args.runs} runs; {statistics.median(calls):.0f} sbatch calls (one per stage)")


if __name__ == "__main__":
    main()
