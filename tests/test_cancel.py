"""`python -m launcher cancel`: it asks the jobs' states first, cancels only those that have not ended and says
which; a repeat cancels nothing. Here Slurm's commands are shims that answer from a file and record what
scancel was asked (the real cluster: tests/test_e2e_slurm.py), and a local run's launch is a process that
ended (a real local run stopped by cancel: tests/dispatch/test_local.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from launcher.contract import ExperimentState, StageRecord
from launcher.exit_codes import OK


def _experiment(root: Path, executor: str, jobs: dict) -> Path:
    """An experiment's state as a launch leaves it: {stage: job id} submitted, plus one stage reused."""
    exp = root / "experiments" / "x"
    exp.mkdir(parents=True)
    stages = {name: StageRecord(kind=name, fingerprint="f", artifact=str(root / "artifacts" / name / "f"),
                                action="submitted", job_id=job, log=str(exp / "logs" / f"{name}.log"))
              for name, job in jobs.items()}
    ExperimentState(experiment="x", executor=executor, storage_root=str(root), code="", submitted_at=0,
                    stages=stages, umask="027").write(exp / "state.json")
    (root / "experiments" / "LATEST").write_text("x")
    return exp


def _cancel(root: Path, path_dir: Path | None = None):
    env = dict(os.environ)
    if path_dir:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "launcher", "cancel", "x", f"cluster.storage_root={root}"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _slurm_shims(tmp_path: Path) -> Path:
    """sacct answers `<job>|<state>|00:00:01` rows from states.psv; scancel appends its arguments to scancel.log."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "sacct").write_text(f"#!/bin/sh\ncat {tmp_path / 'states.psv'}\n")
    (shims / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scancel.log'}\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    return shims


def test_slurm_cancel_cancels_only_jobs_that_have_not_ended_and_a_repeat_cancels_nothing(tmp_path):
    """It used to scancel every job and print "cancelled 3 job(s)", whatever their states, and again on a repeat."""
    _experiment(tmp_path, "slurm", {"download": "101", "quantize": "102", "build": "103_0"})
    shims = _slurm_shims(tmp_path)
    (tmp_path / "states.psv").write_text("101|COMPLETED|00:00:09\n102|RUNNING|00:00:03\n103_0|PENDING|00:00:00\n")
    result = _cancel(tmp_path, shims)
    assert result.returncode == OK, result.stdout + result.stderr
    assert ("cancelled 2 job(s) of x: quantize (102, RUNNING), build (103_0, PENDING); 1 had already ended"
            in result.stdout), result.stdout
    assert (tmp_path / "scancel.log").read_text().split() == ["102", "103_0"]

    (tmp_path / "states.psv").write_text("101|COMPLETED|00:00:09\n102|CANCELLED by 0|00:00:04\n103_0|CANCELLED|0\n")
    again = _cancel(tmp_path, shims)
    assert again.returncode == OK and "nothing to cancel: all 3 job(s) of x already ended" in again.stdout, again.stdout
    assert (tmp_path / "scancel.log").read_text().split() == ["102", "103_0"]  # not called again


def test_slurm_cancel_does_not_count_jobs_slurm_knows_nothing_of(tmp_path):
    """A job Slurm no longer knows (purged from accounting and the controller) is not said to be cancelled."""
    _experiment(tmp_path, "slurm", {"download": "101", "quantize": "102"})
    shims = _slurm_shims(tmp_path)
    for name in ("squeue", "scontrol"):  # the fallbacks know nothing either
        (shims / name).write_text("#!/bin/sh\nexit 1\n")
        (shims / name).chmod(0o755)
    (tmp_path / "states.psv").write_text("101|FAILED|00:00:09\n")
    result = _cancel(tmp_path, shims)
    assert result.returncode == OK
    assert ("nothing to cancel: none of the 2 job(s) of x is pending or running; 1 had already ended; the Slurm state "
            "of 1 is not known (ended long ago, or the query did not answer), not cancelled: quantize"
            in result.stdout), result.stdout
    assert not (tmp_path / "scancel.log").exists()


def test_local_cancel_of_a_run_whose_launch_is_gone_marks_its_jobs_cancelled(tmp_path):
    """A local run's launch killed (kill -9, a closed terminal) left its jobs PENDING/RUNNING for ever: cancel finds
    no process to stop (the pid is checked with its start time, so a reused pid is not taken for it) and marks
    them CANCELLED. It used to print "cancelled 3 job(s)" and change nothing."""
    exp = _experiment(tmp_path, "local", {"download": "local-7-1", "quantize": "local-7-2", "build": "local-7-3"})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    entries = {"local-7-1": {"state": "COMPLETED"}, "local-7-2": {"state": "RUNNING"}, "local-7-3": {"state": "PENDING"}}
    for entry in entries.values():
        entry.update(pid=pid, pid_start="1", started=0)
    (exp / "local_jobs.json").write_text(json.dumps(entries))
    result = _cancel(tmp_path)
    assert result.returncode == OK, result.stdout + result.stderr
    assert ("cancelled 2 job(s) of x: quantize (local-7-2, RUNNING), build (local-7-3, PENDING); the launch that ran "
            "them had ended without finishing them: marked CANCELLED; 1 had already ended" in result.stdout), result.stdout
    states = {job: entry["state"] for job, entry in json.loads((exp / "local_jobs.json").read_text()).items()}
    assert states == {"local-7-1": "COMPLETED", "local-7-2": "CANCELLED", "local-7-3": "CANCELLED"}
    status = subprocess.run([sys.executable, "-m", "launcher", "status", "x", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120).stdout
    assert status.count("CANCELLED") == 2, status
    assert "nothing to cancel: all 3 job(s) of x already ended" in _cancel(tmp_path).stdout
