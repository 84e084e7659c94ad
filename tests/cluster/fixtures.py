"""Session fixture giving tests a real single-node Slurm cluster (see slurm_cluster.sh).

    def test_x(slurm_cluster):
        job_id = ...  # submit with sbatch / submitit in partition slurm_cluster.partition
        rows = slurm_cluster.wait_all_done([job_id], timeout=60)
        assert rows[0]["State"] == "COMPLETED"

The cluster uses the default /etc/slurm/slurm.conf, so plain `sbatch`, `squeue`, `sacct`,
`scontrol` (and submitit) work in tests and in the jobs without any environment variable.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

SCRIPT = Path(__file__).resolve().with_name("slurm_cluster.sh")
DEFAULT_STATE_DIR = "/tmp/launcher-test-slurm"
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "AllocTRES", "Start", "End", "Elapsed")
# sacct states after which a job will not run again by itself.
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)
# Present in the state dir while the cluster was started by a pytest session (not by hand).
STARTED_BY_PYTEST = "started-by-pytest"
START_TIMEOUT_S = 1200  # apt-get update + install on a fresh machine included


def run_script(action: str, state_dir: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``slurm_cluster.sh ACTION STATE_DIR``; stdout and stderr merged in ``.stdout``."""
    return subprocess.run(
        ["bash", str(SCRIPT), action, state_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
    )


def base_state(state: str) -> str:
    """``'CANCELLED by 0'`` -> ``'CANCELLED'``."""
    return state.split(" ", 1)[0]


def _belongs_to(row_id: str, job_id: str) -> bool:
    """True if sacct's JobID ``row_id`` is job ``job_id`` or one of its array elements / steps."""
    return (
        row_id == job_id
        or row_id.startswith(job_id + "_")
        or row_id.startswith(job_id + ".")
    )


@dataclass
class SlurmCluster:
    state_dir: str
    partition: str = "debug"
    gpus: int = 8
    started_here: bool = False
    cluster_name: str = "lab"
    script: Path = field(default=SCRIPT)

    def sacct(self, job_ids: Iterable[str | int], steps: bool = False) -> list[dict]:
        """Accounting rows for ``job_ids`` (array jobs expand to their elements).

        One dict per row with keys JobID, JobName, State, ExitCode, AllocTRES, Start, End, Elapsed.
        Step rows (``123.batch``, ``123.extern``, ``123.0``) are dropped unless ``steps=True``.
        sacct can lag a couple of seconds behind the controller: poll (see wait_all_done).
        """
        ids = [str(j) for j in job_ids]
        if not ids:
            return []
        proc = subprocess.run(
            [
                "sacct",
                "-j",
                ",".join(ids),
                "--parsable2",
                "--noheader",
                "--format=" + ",".join(SACCT_FIELDS),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sacct failed (rc={proc.returncode}): {proc.stderr.strip()}")
        rows = []
        for line in proc.stdout.splitlines():
            if not line.strip():
                continue
            values = line.split("|")
            if len(values) != len(SACCT_FIELDS):  # a '|' in a job name: keep the known columns
                values = [values[0], "|".join(values[1 : len(values) - 6])] + values[-6:]
            row = dict(zip(SACCT_FIELDS, values))
            if not steps and "." in row["JobID"]:
                continue
            rows.append(row)
        return rows

    def states(self, job_ids: Iterable[str | int]) -> dict[str, str]:
        """``{JobID: base state}`` for the jobs' own rows (``'CANCELLED by 0'`` -> ``'CANCELLED'``)."""
        return {r["JobID"]: base_state(r["State"]) for r in self.sacct(job_ids)}

    def wait_all_done(self, job_ids: Iterable[str | int], timeout: float = 60, poll: float = 0.5) -> list[dict]:
        """Poll sacct until every job (every element of an array job) is in a terminal state.

        Returns the final rows (as ``sacct``); raises ``TimeoutError`` with the last rows seen.
        """
        ids = [str(j) for j in job_ids]
        deadline = time.monotonic() + timeout
        rows: list[dict] = []
        while True:
            try:
                rows = self.sacct(ids)
            except (RuntimeError, subprocess.TimeoutExpired):
                rows = []  # slurmdbd briefly busy: try again
            done = bool(ids)
            for job_id in ids:
                mine = [r for r in rows if _belongs_to(r["JobID"], job_id)]
                if not mine or any(base_state(r["State"]) not in TERMINAL_STATES for r in mine):
                    done = False
                    break
            if done:
                return rows
            if time.monotonic() >= deadline:
                live = [r["JobID"] for r in rows if base_state(r["State"]) not in TERMINAL_STATES]
                raise TimeoutError(f"jobs {ids} not all done after {timeout}s; last sacct rows: {rows}"
                                   + "".join(self._log_tail(job) for job in live))
            time.sleep(poll)


    @staticmethod
    def _log_tail(job_id: str, lines: int = 30) -> str:
        """The end of a live job's output file (scontrol knows it; sacct 22.05 does not), for the failure message."""
        shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
        match = re.search(r"\bStdOut=(\S+)", shown.stdout)
        if not match or not Path(match.group(1)).is_file():
            return f"\n--- job {job_id}: no output file ({shown.stderr.strip()})"
        tail = Path(match.group(1)).read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- job {job_id}, last lines of {match.group(1)}:\n" + "\n".join(tail)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (it installs packages and runs the daemons)"
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return "the Slurm test cluster needs a Debian/apt machine (it installs Debian's slurm packages)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node Slurm cluster ('lab', partition 'debug', 8 fake GPUs, slurmdbd).

    Started by ``slurm_cluster.sh start`` (installs packages when missing) unless one is already
    up; stopped at the end of the session only if a pytest session started it (this one, or one
    that ran alongside and has ended) and no other pytest session still uses it. A cluster that
    was already up before any test session is left running.

    Several pytest sessions on one machine share the cluster: each holds a shared flock on
    ``<state_dir>.users.lock`` for its whole life; the last one out (exclusive lock granted) stops it.
    """
    state_dir = os.environ.get("LAUNCHER_TEST_SLURM_STATE_DIR", DEFAULT_STATE_DIR).rstrip("/")
    marker = Path(state_dir) / STARTED_BY_PYTEST
    users = None
    try:
        users = open(state_dir + ".users.lock", "a+")
        fcntl.flock(users, fcntl.LOCK_SH)  # waits while a finishing session is stopping the cluster
    except OSError:
        users = None  # e.g. not root and /tmp file owned by root: no sharing protocol, no stop either
    try:
        try:
            already_up = run_script("status", state_dir, timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            already_up = False
        if not already_up:
            reason = _skip_reason()
            if reason:
                pytest.skip(reason)
        # Even when it is up, `start` is idempotent (about 1 s) and repairs a missing piece (slurmdbd...).
        if not already_up or os.geteuid() == 0:
            if not already_up:  # ours to stop, even if `start` fails half-way
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"{os.getpid()}\n")
            t0 = time.monotonic()
            try:
                proc = run_script("start", state_dir)
            except subprocess.TimeoutExpired as exc:
                pytest.fail(
                    f"slurm_cluster.sh start timed out after {exc.timeout}s:\n{exc.output or ''}",
                    pytrace=False,
                )
            if proc.returncode != 0:
                pytest.fail(
                    f"slurm_cluster.sh start failed (rc={proc.returncode}, {time.monotonic() - t0:.1f}s):\n"
                    f"{proc.stdout}",
                    pytrace=False,
                )
        cluster = SlurmCluster(state_dir=state_dir, started_here=not already_up)
        yield cluster
    finally:
        if users is not None:
            _release_and_maybe_stop(users, state_dir, marker)


def _release_and_maybe_stop(users, state_dir: str, marker: Path) -> None:
    try:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another pytest session still uses the cluster: it will stop it
        if marker.exists():
            marker.unlink()
            proc = run_script("stop", state_dir, timeout=180)
            if proc.returncode != 0:
                raise RuntimeError(f"slurm_cluster.sh stop failed (rc={proc.returncode}):\n{proc.stdout}")
    finally:
        users.close()
