"""Smoke tests of the real test Slurm cluster, driven through submitit."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import submitit

pytestmark = pytest.mark.slurm


def _executor(folder: Path, cluster, **params) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=0)
    executor.update_parameters(
        partition=cluster.partition, time=5, nodes=1, ntasks_per_node=1, cpus_per_task=1, **params
    )
    return executor


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def test_gpu_job_result_and_accounting(slurm_cluster, tmp_path):
    # Nested functions are pickled by value: the job does not need to import this module.
    def job():
        import os

        return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "job_id": os.environ.get("SLURM_JOB_ID")}

    executor = _executor(tmp_path, slurm_cluster, gpus_per_node=2)
    j = executor.submit(job)
    out = j.result()
    assert out["job_id"] == j.job_id
    assert out["cuda"], "CUDA_VISIBLE_DEVICES not set in the job"
    assert len(out["cuda"].split(",")) == 2, out
    rows = slurm_cluster.wait_all_done([j.job_id], timeout=30)
    assert [r["JobID"] for r in rows] == [j.job_id]
    assert rows[0]["State"] == "COMPLETED", rows
    assert "gres/gpu=2" in rows[0]["AllocTRES"], rows
    assert rows[0]["ExitCode"] == "0:0"


def test_afterok_child_of_failed_parent_is_cancelled(slurm_cluster, tmp_path):
    def fail():
        raise RuntimeError("parent fails on purpose")

    def child():
        return "child ran"

    # Parent held until the child is queued: the dependency is then always evaluated live.
    parent = _executor(tmp_path, slurm_cluster, additional_parameters={"hold": True}).submit(fail)
    child_exec = _executor(
        tmp_path,
        slurm_cluster,
        additional_parameters={"dependency": f"afterok:{parent.job_id}", "kill-on-invalid-dep": "yes"},
    )
    kid = child_exec.submit(child)
    subprocess.run(["scontrol", "release", parent.job_id], check=True, capture_output=True)

    rows = slurm_cluster.wait_all_done([parent.job_id, kid.job_id], timeout=40)
    states = slurm_cluster.states([parent.job_id, kid.job_id])
    assert states[parent.job_id] == "FAILED", rows
    assert states[kid.job_id] == "CANCELLED", rows
    with pytest.raises(Exception, match="parent fails on purpose"):
        parent.result()


def test_scontrol_requeue_runs_the_job_again(slurm_cluster, tmp_path):
    runs = tmp_path / "runs.txt"

    def job(path):
        import os
        import signal
        import time

        # submitit ignores SIGTERM; restore the default so that the requeue kill is immediate
        # instead of waiting KillWait (30 s) for the SIGKILL.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with open(path, "a") as f:
            f.write(os.environ.get("SLURM_RESTART_COUNT", "0") + "\n")
        lines = open(path).read().split()
        if len(lines) == 1:
            time.sleep(300)  # first run: wait to be requeued
        return lines

    j = _executor(tmp_path, slurm_cluster).submit(job, str(runs))
    deadline = time.monotonic() + 30
    while not (runs.exists() and runs.read_text().strip()):
        assert time.monotonic() < deadline, f"job {j.job_id} never started: {j.state}"
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", j.job_id], check=True, capture_output=True, text=True)
    # Slurm makes a requeued batch job eligible only 120 s later (hard-coded). Once it is back to
    # PENDING (no longer COMPLETING) we move that to `now`, but only in a later second than the
    # kill: slurmd revokes the old run's credential with a 1-second resolution, and a relaunch
    # within that same second is killed ("Job credential revoked") and ends FAILED. (`now+2`
    # would be safe too but waits for the next backfill cycle, up to 30 s, to be scheduled.)
    deadline = time.monotonic() + 20
    while _squeue_state(j.job_id) != "PENDING":
        assert time.monotonic() < deadline, f"job {j.job_id} not requeued: {_squeue_state(j.job_id)}"
        time.sleep(0.2)
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"JobId={j.job_id}", "StartTime=now"], check=True, capture_output=True)

    assert j.result() == ["0", "1"]  # second run saw SLURM_RESTART_COUNT=1
    rows = slurm_cluster.wait_all_done([j.job_id], timeout=30)
    assert rows[0]["State"] == "COMPLETED", rows


def test_a_wait_that_times_out_shows_the_live_jobs_output(slurm_cluster, tmp_path):
    def job():
        import time

        print("stuck waiting for something", flush=True)
        time.sleep(120)

    j = _executor(tmp_path, slurm_cluster).submit(job)
    try:
        deadline = time.monotonic() + 30
        while "stuck waiting" not in (Path(j.paths.stdout).read_text() if Path(j.paths.stdout).exists() else ""):
            assert time.monotonic() < deadline, f"job {j.job_id} never printed: {j.state}"
            time.sleep(0.2)
        with pytest.raises(TimeoutError) as timed_out:
            slurm_cluster.wait_all_done([j.job_id], timeout=1)
        assert f"--- job {j.job_id}, last lines of" in str(timed_out.value)
        assert "stuck waiting for something" in str(timed_out.value)
    finally:
        j.cancel(check=False)
