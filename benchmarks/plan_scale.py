"""Planning cost per point as a sweep grows: the dry run of a 64-, 256-, 1024- and 4096-point drafter sweep
(`python -m launcher -m ... launcher.dry_run=true`), each a whole process: Hydra, composition of every point,
validation, one plan, every batch script written. Prints each size's time, CPU time (user + system, which other
processes on a busy machine slow less), peak RSS and cost per point; beside it the time of a bare interpreter
doing a fixed amount of work, run right after, and the ratio of the two (a busy machine slows both alike); and
the ratio of the per-point cost at the largest size to that at the smallest (flat planning: close to 1).

Every point has the same shape (its own drafter training, conversion, engine and benchmark; the model, the
quantization and the downloads are shared), so only the number of points changes. Usage:
    python benchmarks/plan_scale.py [--points 64 256 1024 4096]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

SHAPE = ["drafter.num_layers=1,2,3,4", "drafter.draft_len_per_beam=2,3", "drafter.num_beams=1,2"]  # 16 points
POINTS_PER_RATE = 16


def sweep(points: int) -> list:
    """The overrides of a `points`-point sweep: SHAPE times points/16 learning rates."""
    if points % POINTS_PER_RATE:
        raise SystemExit(f"--points: {points} is not a multiple of {POINTS_PER_RATE}")
    rates = ",".join(f"{0.0001 * (i + 1):.4f}" for i in range(points // POINTS_PER_RATE))
    return [*SHAPE, f"drafter.learning_rate={rates}"]


# A bare interpreter's fixed work: about a second of one core, the same in every run.
BARE_WORK = "sum(i * i for i in range(20_000_000))"


def bare_interpreter() -> float:
    """Seconds a bare interpreter takes for BARE_WORK, as a whole process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE_WORK], check=True)
    return time.perf_counter() - start


def dry_run(points: int, cwd: str) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak RSS in MB) of the whole dry-run process."""
    command = [sys.executable, "-m", "launcher", "-m", "+experiment=fp8_redrafter", *sweep(points),
               "launcher.dry_run=true"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(output.decode(errors="replace"))
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[64, 256, 1024, 4096])
    args = parser.parse_args()
    per_point = {}
    for points in args.points:
        with tempfile.TemporaryDirectory() as cwd:
            elapsed, cpu, rss = dry_run(points, cwd)
        bare = bare_interpreter()
        per_point[points] = elapsed / points
        print(f"{points:5d} points: dry run {elapsed:6.2f} s (CPU {cpu:6.2f} s), peak RSS {rss:6.0f} MB, "
              f"{1000 * per_point[points]:6.1f} ms per point; bare interpreter {bare:.2f} s, ratio {elapsed / bare:5.1f}x",
              flush=True)
    smallest, largest = min(per_point), max(per_point)
    print(f"per-point cost, {largest} vs {smallest} points: ratio {per_point[largest] / per_point[smallest]:.2f}")


if __name__ == "__main__":
    main()
