"""Time `python -m launcher +experiment=fp8_redrafter launcher.dry_run=true` as a whole process.

Prints each run and the median: what a user waits for between pressing Enter and seeing the plan
(interpreter start, imports, Hydra composition, planning, writing nine scripts). Usage:
    python benchmarks/dry_run_time.py [--runs 7] [--experiment fp8_redrafter]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--experiment", default="fp8_redrafter")
    args = parser.parse_args()
    command = [sys.executable, "-m", "launcher", f"+experiment={args.experiment}", "launcher.dry_run=true"]
    times = []
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(args.runs):
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            print(f"run {i + 1}: {times[-1]:.3f} s")
    baseline = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"dry run of {args.experiment}: median {median:.3f} s over {args.runs} runs "
          f"(bare interpreter start {statistics.median(baseline):.3f} s; ratio {median / statistics.median(baseline):.1f}x)")


if __name__ == "__main__":
    main()
