"""Time to plan, and to plan and submit, a 32-point and a 256-point drafter sweep (`python -m launcher -m`).

Planning: the whole `-m ... launcher.dry_run=true` process (Hydra, composition of every point, one plan,
every batch script written). Submitting: the same sweep on the project's Slurm test cluster, counting
sbatch calls through a counting shim; its jobs are cancelled right after. Each time is printed beside that of a
bare interpreter doing a fixed amount of work (benchmarks.plan_scale.bare_interpreter), run right after, and their
ratio: a busy machine slows both alike. Usage (as root):
    python benchmarks/sweep_submit_time.py [--points 32 256] [--no-submit]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.plan_scale import bare_interpreter  # noqa: E402
from benchmarks.submit_time import COUNTING_SBATCH  # noqa: E402
from tests.test_e2e_slurm import cluster_overrides  # noqa: E402

SWEEPS = {  # drafter sweeps over the keys the drafter config names
    32: ["drafter.num_layers=1,2,3,4", "drafter.learning_rate=0.001,0.002,0.003,0.004", "drafter.draft_len_per_beam=2,3"],
    256: ["drafter.num_layers=1,2,3,4,5,6,7,8", "drafter.learning_rate=0.001,0.002,0.003,0.004,0.005,0.006,0.007,0.008",
          "drafter.draft_len_per_beam=2,3", "drafter.num_beams=1,2"],
}


def run(points: int, root: Path, extra: list, env: dict) -> tuple[float, str]:
    command = [sys.executable, "-m", "launcher", "-m", "+experiment=fp8_redrafter", *SWEEPS[points], *extra]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[32, 256], choices=sorted(SWEEPS))
    parser.add_argument("--no-submit", action="store_true")
    args = parser.parse_args()
    if not args.no_submit:
        subprocess.run(["bash", str(REPO / "tests/cluster/slurm_cluster.sh"), "start"], check=True, capture_output=True)
        real_sbatch = subprocess.run(["which", "sbatch"], capture_output=True, text=True, check=True).stdout.strip()
    for points in args.points:
        with tempfile.TemporaryDirectory() as root:
            elapsed, out = run(points, Path(root), ["launcher.dry_run=true"], dict(os.environ))
            stages = next(line for line in out.splitlines() if "planned in" in line)
            bare = bare_interpreter()
            print(f"{points:4d} points, plan + {stages.split(': ')[-1]} written (dry run): {elapsed:.2f} s  [{stages}]; "
                  f"bare interpreter {bare:.2f} s, ratio {elapsed / bare:.1f}x", flush=True)
        if args.no_submit:
            continue
        with tempfile.TemporaryDirectory() as root:
            shim, counter = Path(root) / "shim", Path(root) / "sbatch_calls"
            shim.mkdir()
            (shim / "sbatch").write_text(COUNTING_SBATCH.format(counter=counter, real=real_sbatch))
            (shim / "sbatch").chmod(0o755)
            env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
            elapsed, out = run(points, Path(root), cluster_overrides(root), env)
            calls = len(counter.read_text().splitlines())
            name = next((Path(root) / "sweeps").iterdir()).joinpath("experiment.txt").read_text().split()[0]
            state = json.loads((Path(root) / "experiments" / name / "state.json").read_text())
            subprocess.run(["scancel", *{str(r["job_id"]) for r in state["stages"].values()}], check=False)
            bare = bare_interpreter()
            print(f"{points:4d} points, plan + submit on Slurm: {elapsed:.2f} s, {calls} sbatch calls; "
                  f"bare interpreter {bare:.2f} s, ratio {elapsed / bare:.1f}x", flush=True)


if __name__ == "__main__":
    main()
