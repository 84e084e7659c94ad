"""Time `python -m launcher status` against a bare `squeue` of the same jobs, in one run, as whole processes.

Needs Slurm (the test cluster: bash tests/cluster/slurm_cluster.sh start /tmp/launcher-test-slurm). Submits
--jobs held jobs (`sbatch --hold`, cancelled at the end), writes an experiment state naming them as its stages,
and times: `status cluster=NAME` (the storage root read from the cluster's file), the same with
`cluster.storage_root=` given (which composes the whole config, as every `status` did before), a bare `squeue`
and a bare interpreter. Runs alternate between the commands, so that a busy machine slows them alike; prints
each median and the ratios. Usage:
    python benchmarks/status_time.py [--jobs 157] [--runs 5] [--partition debug]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launcher.contract import ExperimentState, StageRecord
from launcher.dispatch.storage import ExperimentDir

CONF = Path(__file__).resolve().parent.parent / "conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=157)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--partition", default="debug")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, conf = Path(tmp) / "storage", Path(tmp) / "conf"
        (conf / "cluster").mkdir(parents=True)
        example = (CONF / "cluster" / "example_slurm.yaml").read_text()
        (conf / "cluster" / "bench.yaml").write_text(example.replace("/lustre/fsw/my_account/launcher", str(root)))
        ids = [subprocess.run(["sbatch", "--parsable", "--hold", "-p", args.partition, "-o", "/dev/null",
                               "--wrap=true"], check=True, capture_output=True, text=True).stdout.strip()
               for _ in range(args.jobs)]
        try:
            exp = ExperimentDir(str(root), "bench")
            exp.state.parent.mkdir(parents=True)
            stages = {f"stage{i}": StageRecord(kind="benchmark", fingerprint=f"{i:016x}", job_id=job, action="submitted",
                                               log=None, artifact=str(root / "artifacts" / f"stage{i}"))
                      for i, job in enumerate(ids)}
            state = ExperimentState(experiment="bench", executor="slurm", storage_root=str(root),
                                    code=str(root / "code"), submitted_at=time.time(), stages=stages, umask="0002")
            exp.state.write_text(json.dumps(state.to_json()))
            (root / "experiments" / "LATEST").write_text("bench")
            status = [sys.executable, "-m", "launcher", "status", "--config-dir", str(conf), "cluster=bench"]
            commands = {
                "status cluster=bench": status,
                "status, composing the config": [*status, f"cluster.storage_root={root}"],
                "bare squeue": ["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%M"],
                "bare interpreter": [sys.executable, "-c", "pass"],
            }
            times = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, command in commands.items():
                    start = time.perf_counter()
                    subprocess.run(command, check=True, capture_output=True)
                    times[name].append(time.perf_counter() - start)
        finally:
            subprocess.run(["scancel", *ids], check=False)
    median = {name: statistics.median(t) for name, t in times.items()}
    squeue = median["bare squeue"]
    for name, value in median.items():
        print(f"{name:32s} median {value:.3f} s over {args.runs} runs ({value / squeue:.1f}x a bare squeue)")
    print(f"{args.jobs} jobs queued; status is {median['status, composing the config'] / median['status cluster=bench']:.2f}x "
          "faster than composing")


if __name__ == "__main__":
    main()
