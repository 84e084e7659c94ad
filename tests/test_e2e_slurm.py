"""End to end on the real Slurm test cluster: `fp8_redrafter` through submitit, with the GPU tools replaced
by stand-ins (tests/standins) and no container. Everything is read back from Slurm's own accounting."""
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "standins"
GPU_STAGES = {"quantize": 1, "train_drafter": 2, "convert_drafter": 1, "build_drafter_engine": 1, "benchmark": 2,
              "smoke_run": 2}

pytestmark = pytest.mark.slurm


def cluster_overrides(root):
    return [
        "cluster=example_slurm", "cluster.account=null", "cluster.qos=null", "cluster.partition=debug",
        "cluster.cpu_partition=null", "cluster.container_runtime=none", "cluster.mounts=[]",
        "cluster.cpus_per_gpu=2", "cluster.mem_per_gpu_gb=1", "cluster.required_env_vars=[]",
        f"cluster.storage_root={root}", f"cluster.python={sys.executable}",
        f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}", "cluster.compute_has_internet=true",
        "quantization.calib_size=16",
    ]


def launcher(root, *args, env=None, check=True):
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled", **(env or {})}
    subcommand = [a for a in args if a in ("status", "logs", "cancel")]
    overrides = [f"cluster.storage_root={root}"] if subcommand else cluster_overrides(root)
    if "+experiment=bf16" in args:  # BF16 calibrates nothing: the launcher refuses an override that changes nothing
        overrides.remove("quantization.calib_size=16")
    result = subprocess.run([sys.executable, "-m", "launcher", *args, *overrides], cwd=root, env=environment,
                            capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def state(root, experiment="fp8_redrafter"):
    return json.loads((Path(root) / "experiments" / experiment / "state.json").read_text())


def job_ids(st, actions=("submitted",)):
    return {name: str(r["job_id"]) for name, r in st["stages"].items() if r["action"] in actions}


def when(value):
    return datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def happy(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("happy")
    result = launcher(root, "+experiment=fp8_redrafter")
    st = state(root)
    ids = job_ids(st)
    at_return = slurm_cluster.states(ids.values())  # what Slurm said when the launch had returned
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=300)}
    return root, st, ids, rows, at_return, result


def test_every_stage_ran_in_dependency_order_with_its_gpus(happy):
    root, st, ids, rows, _, _ = happy
    assert set(ids) == {"download_model", "download_dataset", "calibration_data", "quantize", "train_drafter",
                        "convert_drafter", "build_drafter_engine", "benchmark", "smoke_run", "report"}
    for name, job in ids.items():
        assert rows[job]["State"] == "COMPLETED", (name, rows[job])
        gpus = GPU_STAGES.get(name, 0)
        assert (f"gres/gpu={gpus}" in rows[job]["AllocTRES"]) == bool(gpus), (name, rows[job]["AllocTRES"])
    deps = {n: s for n, s in json.loads(Path(root, "experiments/fp8_redrafter/stages/benchmark.json").read_text())
            ["inputs"].items()}
    assert "build_drafter_engine" in deps
    plan_deps = {"calibration_data": ["download_model", "download_dataset"], "quantize": ["calibration_data"],
                 "train_drafter": ["download_model", "download_dataset"],
                 "convert_drafter": ["quantize", "train_drafter"], "build_drafter_engine": ["convert_drafter"],
                 "benchmark": ["build_drafter_engine"], "smoke_run": ["build_drafter_engine"],
                 "report": ["benchmark", "smoke_run"]}
    for name, parents in plan_deps.items():
        for parent in parents:
            assert when(rows[ids[name]]["Start"]) >= when(rows[ids[parent]]["End"]), (name, parent)


def test_every_artifact_is_published_with_its_manifest(happy):
    root, st, _, _, _, _ = happy
    for name, record in st["stages"].items():
        manifest = json.loads(Path(record["artifact"], "manifest.json").read_text())
        assert manifest["fingerprint"] == record["fingerprint"] and manifest["job_id"] == str(record["job_id"])
        assert not Path(record["artifact"] + ".partial").exists()
        # GPU stages checked and recorded the GPUs Slurm gave them (nvidia-smi's stand-in lists 8 of the node).
        assert [g["index"] for g in manifest.get("gpus", [])] == sorted(g["index"] for g in manifest.get("gpus", []))
        assert len(manifest.get("gpus", [])) == GPU_STAGES.get(record["kind"], 0), (name, manifest.get("gpus"))
    drafter = json.loads(Path(st["stages"]["train_drafter"]["artifact"], "manifest.json").read_text())
    assert drafter["drafter_metrics"]["redrafter2_top1"] == pytest.approx(0.65, abs=0.03)  # + micro-batch noise
    assert drafter["drafter_dir"] == "redrafter_output_redrafter_OpenMath-Nemotron-14B-kaggle_n_3_lr_0.001_layers_2"
    bench = json.loads(Path(st["stages"]["benchmark"]["artifact"], "results.json").read_text())
    assert bench["summary"]["num_finished"] >= 10  # the stand-in is fast: some may finish before the cancel
    assert "batch throughput" in (Path(root) / "experiments" / "fp8_redrafter" / "report.md").read_text()


def test_the_launch_returns_at_once_and_a_second_launch_submits_nothing(happy):
    root, _, ids, _, at_return, first = happy
    assert "10 job(s) submitted" in first.stdout
    assert at_return.get(ids["report"]) != "COMPLETED", at_return  # it did not wait for the jobs it submitted
    again = launcher(root, "+experiment=fp8_redrafter")
    assert "0 job(s) submitted" in again.stdout
    assert set(r["action"] for r in state(root)["stages"].values()) == {"complete"}


def test_status_and_logs(happy):
    root, _, ids, _, _, _ = happy
    status = launcher(root, "status").stdout
    assert status.count("COMPLETED") == 10 and ids["train_drafter"] in status
    logs = launcher(root, "logs", "fp8_redrafter", "train_drafter").stdout
    assert "redrafter2_top1" in logs and "published" in logs


def test_status_watch_returns_once_every_stage_has_ended(happy):
    root, _, _, _, _, _ = happy
    watched = launcher(root, "status", "--watch", "--interval", "0.5")
    assert watched.stdout.count("COMPLETED") >= 10


def test_status_without_accounting_falls_back_to_the_controller_and_the_artifacts(happy, tmp_path):
    root, _, ids, _, _, _ = happy
    shim = tmp_path / "no_accounting"
    shim.mkdir()
    (shim / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Problem talking to the database' >&2\nexit 1\n")
    (shim / "sacct").chmod(0o755)
    status = launcher(root, "status", env={"PATH": f"{shim}:{os.environ['PATH']}"}).stdout
    assert status.count("COMPLETED") == 10 and ids["benchmark"] in status


def test_a_failed_stage_cancels_its_dependents_and_a_rerun_runs_only_them(slurm_cluster, tmp_path):
    launcher(tmp_path, "+experiment=fp8_redrafter", env={"STANDIN_FAIL": "train_redrafter"})
    ids = job_ids(state(tmp_path))
    rows = {r["JobID"]: r["State"].split()[0] for r in slurm_cluster.wait_all_done(ids.values(), timeout=300)}
    by_stage = {name: rows[job] for name, job in ids.items()}
    assert by_stage["train_drafter"] == "FAILED"
    for name in ("convert_drafter", "build_drafter_engine", "benchmark", "smoke_run"):
        assert by_stage[name] == "CANCELLED", by_stage
    for name in ("download_model", "download_dataset", "calibration_data", "quantize", "report"):
        assert by_stage[name] == "COMPLETED", by_stage
    answered = launcher(tmp_path, "status", check=False)
    assert answered.returncode == 3, answered.stdout + answered.stderr  # PIPELINE_FAILED
    status = answered.stdout
    assert "train_drafter" in status and "FAILED" in status and "simulated failure" in status
    rerun = launcher(tmp_path, "+experiment=fp8_redrafter")
    again = job_ids(state(tmp_path))
    assert set(again) == {"train_drafter", "convert_drafter", "build_drafter_engine", "benchmark", "smoke_run",
                          "report"}, rerun.stdout
    rows = slurm_cluster.wait_all_done(again.values(), timeout=300)
    assert {r["State"] for r in rows} == {"COMPLETED"}


def test_a_sandbox_that_cannot_start_fails_the_benchmark_at_once(slurm_cluster, tmp_path):
    """The sandbox is a second srun step of the benchmark job: when it ends (here the stand-in exits at start, as
    with a wrong image), the job fails with that instead of waiting out the 300 s health wait."""
    launcher(tmp_path, "+experiment=fp8", "+serving.sandbox.env.STANDIN_FAIL=sandbox")
    ids = job_ids(state(tmp_path, "fp8"))
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=200)}
    benchmark = rows[ids["benchmark"]]
    assert benchmark["State"] == "FAILED", rows
    answered = launcher(tmp_path, "status", check=False)
    assert answered.returncode == 3, answered.stdout + answered.stderr  # PIPELINE_FAILED
    status = answered.stdout
    assert "exited with code 1 before it was healthy" in status, status  # not the health wait's timeout
    log = launcher(tmp_path, "logs", "fp8", "benchmark").stdout  # the sandbox step wrote its own reason there
    assert "[STAND-IN] sandbox: simulated failure (STANDIN_FAIL) at start" in log, log


def test_a_stage_on_gpus_below_what_the_config_promised_fails_at_once(slurm_cluster, tmp_path):
    """The config says H100s; the partition's nodes have A100s (here nvidia-smi's stand-in says so)."""
    launcher(tmp_path, "+experiment=fp8", env={"STANDIN_GPUS": "NVIDIA A100-SXM4-80GB:8.0:81920"})
    ids = job_ids(state(tmp_path, "fp8"))
    rows = {r["JobID"]: r["State"].split()[0] for r in slurm_cluster.wait_all_done(ids.values(), timeout=200)}
    by_stage = {name: rows[job] for name, job in ids.items()}
    assert by_stage["quantize"] == "FAILED" and by_stage["build_engine"] == "CANCELLED", by_stage
    answered = launcher(tmp_path, "status", check=False)
    assert answered.returncode == 3, answered.stdout + answered.stderr  # PIPELINE_FAILED
    status = answered.stdout
    failure = next(line for line in status.splitlines() if line.startswith("jobs.process.StageFailed"))
    assert failure == ("jobs.process.StageFailed: wrong GPUs for this stage: quantization.qformat=fp8 needs compute "
                       "capability 8.9+, this node has 1 x NVIDIA A100-SXM4-80GB (8.0); cluster.gpu_type=h100 "
                       "promised 9.0: check cluster.partition")  # one line, not wrapped: the job's 1 GPU of 8
    assert "[STAND-IN]" not in launcher(tmp_path, "logs", "fp8", "quantize").stdout  # no tool ran


def _wait_for(job_id, wanted, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        if out.strip() == wanted:
            return
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} never reached {wanted}")


def test_a_stage_requeued_while_running_finishes_with_nothing_lost(slurm_cluster, tmp_path):
    launcher(tmp_path, "+experiment=bf16", env={"STANDIN_SLEEP_S": "3"})
    ids = job_ids(state(tmp_path, "bf16"))
    _wait_for(ids["download_model"], "RUNNING")
    subprocess.run(["scontrol", "requeue", ids["download_model"]], check=True)
    # Slurm holds a requeued batch job back for 120 s (hard-coded); once it is pending again, let it start.
    _wait_for(ids["download_model"], "PENDING")
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"JobId={ids['download_model']}", "StartTime=now"], check=True)
    rows = slurm_cluster.wait_all_done(ids.values(), timeout=300)
    assert {r["State"] for r in rows} == {"COMPLETED"}, rows
    manifest = json.loads(Path(state(tmp_path, "bf16")["stages"]["download_model"]["artifact"], "manifest.json")
                          .read_text())
    assert manifest["restart_count"] >= 1


def test_cancel_cancels_every_job(slurm_cluster, tmp_path):
    # Every tool sleeps long: no job ends before the cancel, which counts only jobs that have not ended.
    launcher(tmp_path, "+experiment=fp8", env={"STANDIN_SLEEP_S": "120"})
    ids = job_ids(state(tmp_path, "fp8"))
    out = launcher(tmp_path, "cancel").stdout
    assert f"cancelled {len(ids)} job(s)" in out
    rows = slurm_cluster.wait_all_done(ids.values(), timeout=120)
    assert {r["State"].split()[0] for r in rows} == {"CANCELLED"}


def test_cancel_cancels_and_counts_only_the_jobs_that_have_not_ended(slurm_cluster, tmp_path):
    """It asks Slurm first: with four stages done and the engine build running, it cancels that and the three
    pending after it, and says so; a repeat cancels nothing. It used to say "cancelled 7 job(s)" both times."""
    launcher(tmp_path, "+experiment=fp8", env={"STANDIN_SLEEP_S": "trtllm-build=120"})
    ids = job_ids(state(tmp_path, "fp8"))
    done = [ids[n] for n in ("download_model", "download_dataset", "calibration_data", "quantize")]
    assert {r["State"] for r in slurm_cluster.wait_all_done(done, timeout=300)} == {"COMPLETED"}
    _wait_for(ids["build_engine"], "RUNNING")
    out = launcher(tmp_path, "cancel").stdout
    assert (f"cancelled 4 job(s) of fp8: build_engine ({ids['build_engine']}, RUNNING), benchmark "
            f"({ids['benchmark']}, PENDING), smoke_run ({ids['smoke_run']}, PENDING), report ({ids['report']}, "
            "PENDING); 4 had already ended" in out), out
    rows = {r["JobID"]: r["State"].split()[0] for r in slurm_cluster.wait_all_done(ids.values(), timeout=120)}
    assert [rows[ids[n]] for n in ("build_engine", "benchmark", "smoke_run", "report")] == ["CANCELLED"] * 4, rows
    again = launcher(tmp_path, "cancel").stdout
    assert f"nothing to cancel: all {len(ids)} job(s) of fp8 already ended" in again, again


def test_a_launch_of_another_plan_keeps_only_the_specs_earlier_jobs_still_read(slurm_cluster, tmp_path):
    """After a change of `drafter=`, the scripts are the new plan's; the specs of the earlier plan's stages whose
    jobs are still pending or running stay (a job reads its spec when it starts), and the user is told."""
    launcher(tmp_path, "+experiment=fp8_redrafter", env={"STANDIN_SLEEP_S": "120"})
    first = job_ids(state(tmp_path))
    try:
        out = launcher(tmp_path, "+experiment=fp8_redrafter", "drafter=none").stdout
        exp = Path(tmp_path) / "experiments" / "fp8_redrafter"
        plan = sorted(state(tmp_path)["stages"])
        drafter_stages = ["build_drafter_engine", "convert_drafter", "train_drafter"]
        assert sorted(p.stem for p in (exp / "scripts").glob("*.sbatch")) == plan and len(plan) == 8
        assert sorted(p.stem for p in (exp / "stages").glob("*.json")) == sorted(plan + drafter_stages)
        assert f"removed the scripts of stages no longer in the plan: {', '.join(drafter_stages)}" in out, out
        assert (f"train_drafter (job {first['train_drafter']}), of the plan launched before, is not in this one and "
                f"has not ended; it is no longer followed: cancel it if it is not wanted (scancel "
                f"{first['train_drafter']})" in out), out
    finally:
        subprocess.run(["scancel", *first.values(), *job_ids(state(tmp_path)).values()], check=False)


def test_concurrent_launches_submit_each_artifact_once(slurm_cluster, tmp_path):
    env = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
           "STANDIN_SLEEP_S": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "launcher", f"+experiment={e}", *cluster_overrides(tmp_path)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for e in ("fp8", "fp8_redrafter")]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stdout.read()
    fp8, redrafter = state(tmp_path, "fp8"), state(tmp_path, "fp8_redrafter")
    for name in ("download_model", "download_dataset", "calibration_data", "quantize"):
        assert fp8["stages"][name]["job_id"] == redrafter["stages"][name]["job_id"], name
        assert {fp8["stages"][name]["action"], redrafter["stages"][name]["action"]} == \
            {"submitted", f"reused from {fp8['stages'][name]['action'] == 'submitted' and 'fp8' or 'fp8_redrafter'}"}
    every = set(job_ids(fp8).values()) | set(job_ids(redrafter).values())
    rows = slurm_cluster.wait_all_done(every, timeout=300)
    assert {r["State"] for r in rows} == {"COMPLETED"}


def test_a_drafter_sweep_runs_shared_stages_once_and_reports_every_point(slurm_cluster, tmp_path):
    failing_point = r"layers_2 .*--redrafter_draft_len_per_beam 3"  # convert_drafter of one point fails
    launcher(tmp_path, "-m", "+experiment=fp8_redrafter", "drafter.num_layers=1,2", "drafter.draft_len_per_beam=2,3",
             env={"STANDIN_FAIL_MATCH": failing_point})
    sweep_dir = next((Path(tmp_path) / "sweeps").iterdir())
    name = (sweep_dir / "experiment.txt").read_text().split()[0]
    st = state(tmp_path, name)
    ids = job_ids(st)
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=400)}
    names = [r["JobName"].split(":", 2)[2] for r in rows.values()]
    assert names.count("quantize[qformat=fp8]") == 1 and names.count("calibration_data") == 1
    assert sum(n.startswith("benchmark[") for n in names) == 6  # 4 points + the bf16 and fp8 baselines
    quantize_end = when(rows[ids["quantize[qformat=fp8]"]]["End"])
    for stage, job in ids.items():
        if stage.startswith("convert_drafter["):
            assert when(rows[job]["Start"]) >= quantize_end
    failed = "convert_drafter[fp8_redrafter.num_layers=2.draft_len_per_beam=3]"
    assert rows[ids[failed]]["State"] == "FAILED"
    report = (Path(tmp_path) / "experiments" / name / "report.md").read_text()
    for point in ("num_layers=1.draft_len_per_beam=2", "num_layers=1.draft_len_per_beam=3",
                  "num_layers=2.draft_len_per_beam=2", "num_layers=2.draft_len_per_beam=3", "bf16", "fp8"):
        assert point in report
    assert "failed at convert_drafter" in report
    assert "quantize[qformat=fp8]" in report  # GPU-hours per stage, from Slurm's accounting


@pytest.mark.parametrize("fifth_call", ["fails", "interrupted"])
def test_a_submission_failing_midway_leaves_nothing_submitted(slurm_cluster, tmp_path, fifth_call):
    """The fifth sbatch call fails, or the user presses Ctrl-C during it (SIGINT to the launcher; that job is
    submitted): every job already submitted is cancelled, no claim or state is left."""
    shim, counter = tmp_path / "shim", tmp_path / "sbatch_calls"
    shim.mkdir()
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True, check=True).stdout.strip()
    fifth = {"fails": 'echo "sbatch: error: Batch job submission failed" >&2; exit 1',
             "interrupted": "kill -INT $PPID"}[fifth_call]
    (shim / "sbatch").write_text(f"""#!/bin/sh
echo call >> {counter}
[ "$(wc -l < {counter})" -eq 5 ] && {{ {fifth}; }}
exec {real} "$@"
""")
    (shim / "sbatch").chmod(0o755)
    result = launcher(tmp_path, "+experiment=fp8_redrafter", env={"PATH": f"{shim}:{STANDINS / 'bin'}:{os.environ['PATH']}"},
                      check=False)
    expected = "cancelled the 4 job(s)" if fifth_call == "fails" else "cancelled the "
    assert result.returncode != 0 and expected in result.stdout, result.stdout + result.stderr
    assert not (Path(tmp_path) / "experiments" / "fp8_redrafter" / "state.json").exists()
    assert not list(Path(tmp_path).glob("artifacts/*/*.job"))
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%j"], capture_output=True, text=True).stdout
    assert "launcher:fp8_redrafter:" not in out


def test_similar_benchmark_points_go_out_as_one_array(slurm_cluster, tmp_path):
    launcher(tmp_path, "-m", "+experiment=fp8", "serving.max_batch_size=8,12,16")
    sweep_dir = next((Path(tmp_path) / "sweeps").iterdir())
    name = (sweep_dir / "experiment.txt").read_text().split()[0]
    ids = job_ids(state(tmp_path, name))
    benchmarks = sorted(job for stage, job in ids.items() if stage.startswith("benchmark["))
    assert len(benchmarks) == 3 and len({job.split("_")[0] for job in benchmarks}) == 1  # one array: <id>_<i>
    assert sorted(job.split("_")[1] for job in benchmarks) == ["0", "1", "2"]
    rows = slurm_cluster.wait_all_done(ids.values(), timeout=300)
    assert {r["State"] for r in rows} == {"COMPLETED"}, rows
    report = (Path(tmp_path) / "experiments" / name / "report.md").read_text()
    assert report.count("max_batch_size=") >= 3 and "failed at" not in report


def test_drafter_training_signalled_at_its_time_limit_is_requeued_and_resumes(slurm_cluster, tmp_path):
    """Slurm signals USR2 before the time limit (`--signal=USR2@90`) and on preemption; submitit then calls
    StageJob.checkpoint, which requeues the stage instead of letting it end FAILED. The next attempt resumes
    from the trainer's last checkpoint and publishes the drafter. (The signal is sent here with scancel: a real
    time limit would make the test wait minutes.)"""
    launcher(tmp_path, "+experiment=fp8_redrafter", "drafter.save_strategy=steps", "drafter.save_steps=2",
             env={"STANDIN_SLEEP_S": "train_redrafter=24"})
    train = job_ids(state(tmp_path))["train_drafter"]
    _wait_for(train, "RUNNING", timeout=120)
    time.sleep(12)  # a few of the 8 training steps, and their checkpoints
    subprocess.run(["scancel", "--signal=USR2", train], check=True)
    _wait_for(train, "PENDING", timeout=60)  # requeued by submitit
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"JobId={train}", "StartTime=now"], check=True)
    rows = slurm_cluster.wait_all_done([train], timeout=240)
    assert rows[0]["State"] == "COMPLETED", rows
    manifest = json.loads(Path(state(tmp_path)["stages"]["train_drafter"]["artifact"], "manifest.json").read_text())
    assert manifest["restart_count"] >= 1 and manifest["resumed_from_checkpoint"]


def _wait_for_count(path: Path, text: str, count: int, timeout=120):
    """Until `text` is in the file `count` times (a log appended to by every attempt of a job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.3)
    raise TimeoutError(f"{text!r} never appeared {count} times in {path}")


def test_a_stage_that_cannot_resume_signalled_again_and_again_fails_saying_why(slurm_cluster, tmp_path):
    """What a time limit under the USR2 lead did: Slurm signalled the stage at once, submitit's checkpoint
    requeued it, and so on until submitit gave up ("timed-out too many times") minutes later. A stage that starts
    afresh (build_engine) is requeued twice, then ends FAILED naming the time limit to raise. (The signal is sent
    with scancel, as Slurm sends it before the limit: a real limit would make the test wait minutes.)"""
    launcher(tmp_path, "+experiment=bf16", env={"STANDIN_SLEEP_S": "trtllm-build=60"})
    record = state(tmp_path, "bf16")["stages"]["build_engine"]
    build, log = str(record["job_id"]), Path(record["log"])
    for attempt in range(1, 4):
        _wait_for_count(log, "[STAND-IN] trtllm-build: sleeping", attempt)  # submitit's handler is in place
        subprocess.run(["scancel", "--signal=USR2", build], check=True)
        if attempt < 3:
            _wait_for(build, "PENDING", timeout=60)  # requeued by submitit
            time.sleep(1.5)
            subprocess.run(["scontrol", "update", f"JobId={build}", "StartTime=now"], check=True)
    rows = slurm_cluster.wait_all_done([build], timeout=120)
    assert rows[0]["State"] == "FAILED", rows
    answered = launcher(tmp_path, "status", check=False)
    assert answered.returncode == 3, answered.stdout + answered.stderr  # PIPELINE_FAILED
    status = answered.stdout
    assert ("jobs.process.StageFailed: build_engine was signalled by Slurm 3 times (its time limit, or a preemption) "
            "and a build_engine stage starts afresh at every requeue: not requeued again. The time limit is too short "
            "for the stage if it ran out of time: raise cluster.time_limits.build_engine (now 90 min)") in status, status


def test_a_successful_benchmarks_log_reads_as_success(slurm_cluster, tmp_path):
    """The batch script stops the sandbox step itself when the benchmark's step has ended, saying so: left to
    Slurm at the job's end, `*** STEP ... CANCELLED ***` and `srun: error: ... Terminated` ended the log."""
    from launcher.scripts import SANDBOX_STOP

    launcher(tmp_path, "+experiment=bf16")
    ids = job_ids(state(tmp_path, "bf16"))
    rows = slurm_cluster.wait_all_done(ids.values(), timeout=300)
    assert {r["State"] for r in rows} == {"COMPLETED"}, rows
    log = launcher(tmp_path, "logs", "bf16", "benchmark").stdout
    assert log.splitlines()[-1].startswith(SANDBOX_STOP), log
    assert "CANCELLED" not in log and "srun: error" not in log and "Terminated" not in log, log
    sandbox_log = log.splitlines()[-1].rsplit("(its output: ", 1)[1].rstrip(")")
    assert Path(sandbox_log).is_file()  # what the sandbox and its stopped srun wrote


def _wait_for_text(path, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return path.read_text(errors="replace")
        time.sleep(0.3)
    raise TimeoutError(f"{text!r} never appeared in {path}")


def test_a_requeued_stage_logs_that_it_was_stopped_not_that_it_failed(slurm_cluster, tmp_path):
    """A requeue sends SIGTERM to the stage's tools too: the log said `StageFailed: ... exited with code -15`."""
    launcher(tmp_path, "+experiment=bf16", env={"STANDIN_SLEEP_S": "60"})
    ids = job_ids(state(tmp_path, "bf16"))
    job = ids["download_model"]
    log = Path(state(tmp_path, "bf16")["stages"]["download_model"]["log"])
    try:
        _wait_for_text(log, "sleeping 60")  # the download's tool is running
        subprocess.run(["scontrol", "requeue", job], check=True)
        text = _wait_for_text(log, "stopped by signal 15 (time limit/preemption/requeue)")
        assert "FAILED" not in text and "exited with code -15" not in text, text
    finally:
        subprocess.run(["scancel", *ids.values()], check=False)


TRITON_STAGES = {"download_model", "download_dataset[cnn_dailymail]", "download_dataset[OpenMathReasoning]",
                 "quantize[kv_cache_dtype=None,qformat=full_prec]", "quantize[kv_cache_dtype=fp8,qformat=fp8]",
                 "calibration_data", "prompt_set", "build_engine[llama2_fp16_on_triton]",
                 "build_engine[llama2_fp8_on_triton]", "triton_model_repo[llama2_fp16_on_triton]",
                 "triton_model_repo[llama2_fp8_on_triton]", "smoke_run[llama2_fp16_on_triton]",
                 "smoke_run[llama2_fp8_on_triton]", "benchmark[llama2_fp16_on_triton]",
                 "benchmark[llama2_fp8_on_triton]", "benchmark[llama2_fp16_on_trtllm]",
                 "benchmark[llama2_fp8_on_trtllm]", "report"}


def test_seed_004_on_triton_and_trtllm_serve_end_to_end(slurm_cluster, tmp_path):
    """+experiment=llama2_fp8_triton: FP16 and FP8 engines built once each, smoke-run, served by tritonserver
    (stand-in: real gRPC, the filled model repository parsed) and by trtllm-serve, all measured with the seed's
    protocol on a prompt set drawn from the (stand-in) cnn_dailymail download; every stage COMPLETED."""
    launcher(tmp_path, "+experiment=llama2_fp8_triton", "benchmark.sample_size=12",
             f"cluster.triton_backend_dir={STANDINS / 'triton_backend'}")
    st = state(tmp_path, "llama2_fp8_triton")
    ids = job_ids(st)
    assert set(ids) == TRITON_STAGES
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=600)}
    assert {name: rows[job]["State"] for name, job in ids.items()} == {name: "COMPLETED" for name in ids}

    def artifact(name, file="manifest.json"):
        return json.loads(Path(st["stages"][name]["artifact"], file).read_text())

    for variant in ("llama2_fp16_on_triton", "llama2_fp8_on_triton", "llama2_fp16_on_trtllm", "llama2_fp8_on_trtllm"):
        results = artifact(f"benchmark[{variant}]", "results.json")
        assert results["protocol"] == ("triton" if variant.endswith("triton") else "openai")
        assert results["errors"] == 0 and results["table"]["Total requests"] == 12.0
        assert results["summary"] == results["table"] and len(results["requests"]) == 12
        assert all(r["output_tokens"] >= 1 for r in results["requests"]), variant
    for engine in ("fp16", "fp8"):
        smoke = artifact(f"smoke_run[llama2_{engine}_on_triton]")
        assert smoke["prompt"] == "How do I count in French ? 1 un" and smoke["output_text"]
        assert smoke["world_size"] == 1
        assert smoke["engine"]["artifact"] == st["stages"][f"build_engine[llama2_{engine}_on_triton]"]["artifact"]
        built = artifact(f"build_engine[llama2_{engine}_on_triton]")
        assert built["engine_size_bytes"] > 0 and any(f.endswith(".engine") for f in built["files"])
    inputs = json.loads((tmp_path / "experiments" / "llama2_fp8_triton" / "report_inputs.json").read_text())
    assert all("smoke_run" in {s["kind"] for s in chain} for chain in inputs["variants"].values())
    repo = Path(st["stages"]["triton_model_repo[llama2_fp8_on_triton]"]["artifact"], "model_repository")
    assert st["stages"]["build_engine[llama2_fp8_on_triton]"]["artifact"] in (
        repo / "tensorrt_llm" / "config.pbtxt").read_text()
    # The report: the seed's table for all four, the engines' sizes with their ratio, the smoke answers side by side.
    report = (tmp_path / "experiments" / "llama2_fp8_triton" / "report.md").read_text()
    seed = report.split("Seed 004's table")[1].split("\n## ")[0]
    header = next(line for line in seed.splitlines() if line.startswith("| metric"))
    assert all(variant in header for variant in ("llama2_fp16_on_triton", "llama2_fp8_on_triton",
                                                 "llama2_fp16_on_trtllm", "llama2_fp8_on_trtllm")), header
    for label in ("Requests/Sec", "OP tokens/sec", "Avg. latency", "P99 latency", "P90 latency", "Avg. InFlight"):
        assert label in seed, label
    sizes = report.split("## Engine sizes")[1].split("\n## ")[0]
    assert "In brackets: the ratio to" in sizes and "x)" in sizes, sizes
    smoke = report.split("## Smoke runs")[1].split("\n## ")[0]
    assert "How do I count in French ? 1 un" in smoke and "same answer as" in smoke, smoke


def test_vllm_with_a_modelopt_fp8_export_and_ngram_drafting_runs_end_to_end(slurm_cluster, tmp_path):
    """serving=vllm (stand-in `vllm serve`) on the ModelOpt FP8 export (stand-in hf_ptq.py), the notebook benchmark."""
    launcher(tmp_path, "+experiment=fp8", "serving=vllm", "drafter=ngram", "benchmark=aimo_notebook",
             f"cluster.modelopt_examples_dir={STANDINS / 'modelopt_examples'}")
    st = state(tmp_path, "fp8")
    ids = job_ids(st)
    assert {"quantize_modelopt", "benchmark"} <= set(ids) and not {"build_engine", "quantize"} & set(ids)
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=400)}
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    benchmark = Path(st["stages"]["benchmark"]["artifact"])
    server = (benchmark / "server.log").read_text()
    assert "TEST STAND-IN" in server
    export = json.loads((Path(st["stages"]["quantize_modelopt"]["artifact"]) / "config.json").read_text())
    assert export["quantization_config"]["quant_method"] == "modelopt"
    assert json.loads((benchmark / "results.json").read_text())["summary"]


def test_serve_only_keeps_the_server_up_on_its_node_until_cancelled(slurm_cluster, tmp_path):
    """launcher.serve_only on Slurm: the benchmark job serves instead of benchmarking; `status` says where and how
    to reach it from the login node (an ssh tunnel to the node: it listens on loopback); the test reaches it on
    this single-node cluster; `cancel` ends the job and its servers with it."""
    import httpx

    launcher(tmp_path, "+experiment=bf16", "launcher.serve_only=true", "launcher.serve_minutes=20")
    ids = job_ids(state(tmp_path, "bf16"))
    deadline, lines = time.monotonic() + 300, []
    while time.monotonic() < deadline and not any("ssh -N -L" in line for line in lines):
        time.sleep(2)
        lines = [line.strip() for line in launcher(tmp_path, "status").stdout.splitlines()]
    tunnel = next((line for line in lines if "LLM server" in line and "ssh -N -L" in line), None)
    assert tunnel, "\n".join(lines)
    node = tunnel.split()[-3]
    port = int(tunnel.split("ssh -N -L ")[1].split(":")[0])
    assert tunnel.endswith(f"ssh -N -L {port}:127.0.0.1:{port} {node}   then http://127.0.0.1:{port}"), tunnel
    (model,) = [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()["data"]]
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"model": model, "prompt": "1+1=",
                                                                         "max_tokens": 8}, timeout=30)
    assert answer.status_code == 200 and answer.json()["choices"][0]["text"], answer.text
    assert slurm_cluster.states([ids["benchmark"]])[ids["benchmark"]] == "RUNNING"
    assert "cancelled" in launcher(tmp_path, "cancel").stdout
    rows = {r["JobID"]: r["State"].split()[0] for r in slurm_cluster.wait_all_done(ids.values(), timeout=200)}
    assert rows[ids["benchmark"]] == "CANCELLED", rows
    import socket

    with socket.socket() as probe:  # the job stopped its server on the way out
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert not Path(state(tmp_path, "bf16")["stages"]["benchmark"]["artifact"]).exists()
