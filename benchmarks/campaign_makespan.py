"""Makespan and GPU-hours of `aimo2_campaign` through the launcher on the project's Slurm test cluster,
against the same stages run one after another (the tutorial's way: one 2-GPU machine, one step at a time).

The GPU tools are the test stand-ins, sleeping durations scaled from a cost model of the real pipeline on
2x H100 (hours below, SCALE seconds per hour). The launcher's run: makespan from first start to last end
in Slurm's accounting, GPU-hours = allocated GPUs x elapsed per job. The sequential run: the same campaign on
`cluster=local` (its 2 GPUs: drafter training as the seed runs it, 2 GPUs x accumulation 4), one stage at a
time; its GPU-hours hold the tutorial's 2 GPUs for the whole wall time. Both are scaled back to hours.

Three ratios, launcher / one after another, against issue 10's goals:
- measured: the two runs as they ran;
- start-up removed: each job's work is its manifest's started..ended (the job-side tools, after the batch
  script, the container, Python's imports and the input checks); what a job spends outside that, and the
  scheduler's wait between the end of the job it waited on and its own start, is start-up, which takes seconds
  whatever the stage while the real tools take hours (at --scale 30 a 15 s start-up is half a modelled hour).
  The launcher's makespan keeps the chain that ends last: from the last job back, each job's predecessor is
  its input that ended last, or a GPU job that ended after that input and before it started (it freed the
  GPUs it waited for). The stand-ins' own job-side work stays in (a benchmark's server and client, the smoke
  runs, the calibration data: seconds here, nothing in the cost model);
- cost model: the modelled hours alone, the launcher's jobs scheduled in plan order on the partition's GPUs
  (each job as soon as its inputs are done and its GPUs are free).
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

from launcher.contract import EXPERIMENTS, MANIFEST, ExperimentState, Manifest  # noqa: E402
from tests.helpers import plan_for  # noqa: E402
from tests.test_e2e_slurm import STANDINS, cluster_overrides  # noqa: E402

EXPERIMENT = "aimo2_campaign"
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
# over drafter.num_gpus, the global batch kept (drafter.global_batch_size).
TRAIN_DRAFTER_GPU_HOURS = 8.0
BENCHMARK_HOURS = 0.1  # 12 streamed generations per configuration, as the seeds' table
KIND_TOOLS = {"download_model": "hf", "download_dataset": "hf", "quantize": "hf_to_trtllm_quantize",
              "build_engine": "trtllm-build", "build_drafter_engine": "trtllm-build",
              "convert_drafter": "redrafter_convert_checkpoint"}
TUTORIAL_GPUS = 2
GLOBAL_BATCH = 8  # the seed's: 2 GPUs x 1 x accumulation 4
GOALS = {"makespan": 0.5, "GPU-hours": 0.7}  # issue 10: launcher / one after another, at most


def modelled_hours(kind: str, gpus: int) -> float:
    if kind == "train_drafter":
        return TRAIN_DRAFTER_GPU_HOURS / gpus
    if kind == "benchmark":
        return BENCHMARK_HOURS
    return COST_MODEL_HOURS.get(KIND_TOOLS.get(kind), 0.0)


def environment(root: Path, drafter_gpus: int) -> dict:
    script = root / "serve_script.json"
    tokens = 40
    script.write_text(json.dumps({"default": {"text": "x " * (tokens - 1) + "\\boxed{70}",
                                              "delay": BENCHMARK_HOURS * SCALE / tokens}}))
    hours = {**COST_MODEL_HOURS, "train_redrafter": modelled_hours("train_drafter", drafter_gpus)}
    sleeps = ",".join(f"{tool}={h * SCALE}" for tool, h in hours.items())
    # This checkout's launcher, not whichever one is installed.
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
            "PYTHONPATH": f"{REPO}:{STANDINS / 'python'}",
            "STANDIN_SLEEP_S": sleeps, "STANDIN_SERVE_SCRIPT": str(script), "WANDB_MODE": "disabled"}


def launch(root: Path, overrides: list, drafter_gpus: int) -> ExperimentState:
    result = subprocess.run([sys.executable, "-m", "launcher", f"+experiment={EXPERIMENT}", *overrides],
                            cwd=root, env=environment(root, drafter_gpus), capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the launcher failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return ExperimentState.read(root / EXPERIMENTS / EXPERIMENT / "state.json")


def work_seconds(state: ExperimentState) -> dict:
    """Each stage's job-side work: its manifest's ended - started."""
    manifests = {name: Manifest.read(Path(r.artifact) / MANIFEST) for name, r in state.stages.items()}
    return {name: m.ended - m.started for name, m in manifests.items()}


def launcher_on_slurm(root: Path, overrides: list, drafter_gpus: int) -> dict:
    """Slurm's accounting of every stage job: {name: (start, end, elapsed s, GPUs)}."""
    state = launch(root, overrides, drafter_gpus)
    names = {str(r.job_id): name for name, r in state.stages.items()}
    while True:
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-j", ",".join(names),
                              "--format=JobIDRaw,State,Start,End,ElapsedRaw,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split("|") for line in out.splitlines()]
        if len(rows) == len(names) and all(r[1] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for r in rows):
            break
        time.sleep(2)
    assert all(r[1] == "COMPLETED" for r in rows), rows
    jobs = {names[r[0]]: (datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3]), int(r[4]), _gpus(r[5]))
            for r in rows}
    return {"jobs": jobs, "work": work_seconds(state)}


def _gpus(tres: str) -> int:
    fields = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
    return int(fields.get("gres/gpu", 0))


def partition_gpus(partition: str) -> int:
    """The GPUs of the partition's nodes (sinfo's GRES, `gpu:8` or `gpu:h100:8`, one line per node)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%G"], capture_output=True, text=True,
                         check=True).stdout
    return sum(int(gres.split(":")[-1].split("(")[0]) for gres in out.split() if gres.startswith("gpu:"))


def one_after_another(root: Path, overrides: list) -> dict:
    """The tutorial's way: cluster=local on its 2 GPUs."""
    local = [o for o in cluster_overrides(root) if not o.startswith("cluster")] + [
        "cluster=local", f"cluster.storage_root={root}", f"cluster.python={sys.executable}",
        f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}"]
    start = time.perf_counter()
    state = launch(root, [*local, *overrides], TUTORIAL_GPUS)
    return {"wall": time.perf_counter() - start, "work": work_seconds(state)}


def critical_chain(jobs: dict, stages: dict) -> list:
    """From the job that ended last back to one without inputs: each job's predecessor is its input that ended
    last or, for a job holding GPUs, a GPU job that ended after that input and before it started (it waited for
    the GPUs that job freed)."""
    end = lambda n: jobs[n][1]  # noqa: E731
    chain = [max(jobs, key=end)]
    while stages[chain[-1]].deps:
        name = chain[-1]
        start, gpus = jobs[name][0], jobs[name][3]
        waited_on = max(stages[name].deps, key=end)
        freed = [n for n in jobs if gpus and jobs[n][3] and end(waited_on) < end(n) <= start]
        chain.append(max(freed, key=end) if freed else waited_on)
    return chain[::-1]


def scheduled_makespan(stages: dict, hours: dict, capacity: int) -> float:
    """Every job started as soon as its inputs are done and its GPUs are free, in plan order: the makespan."""
    ends, running, clock = {}, {}, 0.0
    while len(ends) < len(stages):
        free = capacity - sum(stages[n].resources.gpus for n in running)
        for name, stage in stages.items():
            if name not in ends and name not in running and all(d in ends and ends[d] <= clock for d in stage.deps) \
                    and stage.resources.gpus <= free:
                running[name] = clock + hours[name]
                free -= stage.resources.gpus
        clock = min(running.values())
        for name in [n for n, end in running.items() if end <= clock]:
            ends[name] = running.pop(name)
    return max(ends.values())


def ratio_line(label: str, makespan: float, sequential: float, gpu_hours: float, sequential_gpu_hours: float) -> str:
    ratios = {"makespan": makespan / sequential, "GPU-hours": gpu_hours / sequential_gpu_hours}
    return (f"  {label:17}: makespan {makespan:5.2f} h vs {sequential:5.2f} h, GPU-hours {gpu_hours:5.2f} vs "
            f"{sequential_gpu_hours:5.2f}; " + ", ".join(
                f"{what} {ratio:.2f}x (goal <= {GOALS[what]}x: {'met' if ratio <= GOALS[what] else 'not met'})"
                for what, ratio in ratios.items()))


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=SCALE, help="seconds of sleep per hour of the cost model: "
                        "larger values make per-job start-up (seconds on a loaded machine) matter less")
    parser.add_argument("--drafter-gpus", type=int, choices=[n for n in range(1, 9) if GLOBAL_BATCH % n == 0],
                        help="the launcher's drafter training on this many GPUs (drafter.scale_out_gpus: the "
                             "accumulation keeps the seed's global batch); the campaign's own choice unless given")
    parser.add_argument("overrides", nargs="*", help="more config overrides for both runs")
    args = parser.parse_args()
    SCALE = args.scale
    subprocess.run(["bash", str(REPO / "tests/cluster/slurm_cluster.sh"), "start"], check=True, capture_output=True)
    drafter = [f"drafter.scale_out_gpus={args.drafter_gpus}"] if args.drafter_gpus else []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        overrides = [*args.overrides, *drafter]
        plan = plan_for(*cluster_overrides(Path(a)), f"+experiment={EXPERIMENT}", *overrides)
        stages, gpus = plan.stages, {n: s.resources.gpus for n, s in plan.stages.items()}
        slurm = launcher_on_slurm(Path(a), [*cluster_overrides(Path(a)), *overrides], gpus["train_drafter"])
        sequential = one_after_another(Path(b), args.overrides)
    hours = lambda seconds: seconds / SCALE  # noqa: E731
    jobs, work = slurm["jobs"], slurm["work"]
    first, last = min(j[0] for j in jobs.values()), max(j[1] for j in jobs.values())
    print(f"{EXPERIMENT}, {len(jobs)} stage jobs, stand-ins sleeping {SCALE:g} s per hour of the cost model:")
    print(f"  {'stage job':30} {'starts at h':>11} {'ends at h':>9} {'GPUs':>4} {'GPU-hours':>9} {'start-up s':>10}")
    for name, (start, end, elapsed, n) in sorted(jobs.items(), key=lambda j: j[1][0]):
        print(f"  {name:30} {hours((start - first).total_seconds()):11.2f} {hours((end - first).total_seconds()):9.2f}"
              f" {n:4d} {hours(elapsed * n):9.2f} {elapsed - work[name]:10.1f}")
    chain = critical_chain(jobs, stages)
    chain_work = sum(work[n] for n in chain)
    makespan = (last - first).total_seconds()
    print(f"  the chain that ends last: {' -> '.join(chain)}; its start-up and waits "
          f"{makespan - chain_work:.0f} s of the {makespan:.0f} s makespan")
    startups = sorted(jobs[n][2] - work[n] for n in jobs)
    print(f"  per-job start-up (Slurm elapsed - job-side work): median {startups[len(startups) // 2]:.1f} s, "
          f"max {startups[-1]:.1f} s; one after another: {sequential['wall'] - sum(sequential['work'].values()):.0f}"
          f" s of {sequential['wall']:.0f} s outside the stages' work")
    print("launcher / one after another (the tutorial's 2 GPUs held throughout):")
    print(ratio_line("measured", hours(makespan), hours(sequential["wall"]),
                     hours(sum(j[2] * j[3] for j in jobs.values())), hours(sequential["wall"]) * TUTORIAL_GPUS))
    sequential_work = sum(sequential["work"].values())
    print(ratio_line("start-up removed", hours(chain_work), hours(sequential_work),
                     hours(sum(work[n] * jobs[n][3] for n in jobs)), hours(sequential_work) * TUTORIAL_GPUS))
    modelled = {n: modelled_hours(s.kind, gpus[n]) for n, s in stages.items()}
    tutorial = sum(modelled_hours(s.kind, TUTORIAL_GPUS) for s in stages.values())
    partition = next(o.split("=", 1)[1] for o in cluster_overrides(REPO) if o.startswith("cluster.partition="))
    print(ratio_line("cost model", scheduled_makespan(stages, modelled, partition_gpus(partition)), tutorial,
                     sum(modelled[n] * gpus[n] for n in stages), tutorial * TUTORIAL_GPUS))


if __name__ == "__main__":
    main()
