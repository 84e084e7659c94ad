"""Job states read from Slurm's own words: tests/fixtures/slurm/ holds what sacct, squeue and scontrol printed on
the test cluster (Slurm 22.05, tests/cluster/) for the commands the launcher runs, for these jobs:

    226 `true` (COMPLETED)             227 `exit 3` (FAILED)               228 scancel'ed while running (CANCELLED)
    229 `sleep 300` with -t 1 (TIMEOUT) 230 `sleep 600` (RUNNING)          231 afterok:230 (PENDING)
    232 array 0-2, element 1 fails     233 `scontrol requeue`d while running (PENDING again, Restarts=1)
    236 array 0-2, afterok:230 (its elements pending: sacct has no row for them, squeue and scontrol do)
"""
import os
from pathlib import Path

import pytest

from launcher.dispatch.slurm import job_states
from launcher.dispatch.slurm_states import parse_sacct, parse_scontrol, parse_squeue

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"


def fixture(name):
    return (FIXTURES / name).read_text()


SACCT = {
    "226": ("COMPLETED", "00:00:00"), "227": ("FAILED", "00:00:00"), "228": ("CANCELLED", "00:00:02"),
    "229": ("TIMEOUT", "00:01:12"), "230": ("RUNNING", "00:01:25"), "231": ("PENDING", "00:00:00"),
    "232_0": ("COMPLETED", "00:00:00"), "232_1": ("FAILED", "00:00:00"), "232_2": ("COMPLETED", "00:00:00"),
    "233": ("PENDING", "00:00:00"),
}


def test_sacct_every_ended_and_live_state():
    assert parse_sacct(fixture("sacct.txt")) == SACCT


def test_squeue_knows_the_elements_of_a_pending_array():
    assert parse_squeue(fixture("squeue.txt")) == {
        "231": ("PENDING", "0:00"), "233": ("PENDING", "0:00"), "236_0": ("PENDING", "0:00"),
        "236_1": ("PENDING", "0:00"), "236_2": ("PENDING", "0:00"), "230": ("RUNNING", "1:25")}


@pytest.mark.parametrize("name, expected", [
    ("scontrol_requeued.txt", {"233": ("PENDING", "00:00:00")}),
    ("scontrol_running.txt", {"230": ("RUNNING", "00:01:25")}),
    ("scontrol_cancelled.txt", {"228": ("CANCELLED", "00:00:02")}),
    # An element's own JobId (235) is not the id the launcher keeps: ArrayJobId_ArrayTaskId is.
    ("scontrol_array_element_failed.txt", {"232_1": ("FAILED", "00:00:00")}),
    ("scontrol_array_element_pending.txt", {"236_2": ("PENDING", "00:00:00")}),
])
def test_scontrol(name, expected):
    assert parse_scontrol(fixture(name)) == expected


def test_nothing_said_is_no_state():
    assert parse_sacct("") == parse_squeue("") == parse_scontrol("") == {}


@pytest.fixture
def slurm_tools(tmp_path, monkeypatch):
    """sacct, squeue and scontrol on PATH replaying the fixtures; each call's argv is logged."""
    calls = tmp_path / "calls"
    for tool, body in {
        "sacct": f'[ -z "$SACCT_DOWN" ] || exit 1; cat {FIXTURES}/sacct.txt',
        "squeue": f'cat {FIXTURES}/squeue.txt',
        "scontrol": f'case "$3" in 232_1) cat {FIXTURES}/scontrol_array_element_failed.txt;; '
                    f'*) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;; esac',
    }.items():
        script = tmp_path / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n{body}\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_job_states_asks_squeue_then_scontrol_only_for_what_sacct_did_not_know(slurm_tools):
    states = job_states(["226", "229", "236_0", "236_2", "232_1", "999"])
    assert states == {"226": ("COMPLETED", "00:00:00"), "229": ("TIMEOUT", "00:01:12"),
                      "236_0": ("PENDING", "0:00"), "236_2": ("PENDING", "0:00"), "232_1": ("FAILED", "00:00:00")}
    assert slurm_tools.read_text().splitlines() == [
        "sacct -X -n -P -j 226,229,236_0,236_2,232_1,999 --format=JobID,State,Elapsed",
        "squeue -h -r -j 236_0,236_2,999 -o %i|%T|%M",
        "scontrol show job 999 -o",
    ]


def test_without_accounting_squeue_then_scontrol_answer(slurm_tools, monkeypatch):
    monkeypatch.setenv("SACCT_DOWN", "1")
    assert job_states(["230", "232_1", "999"]) == {"230": ("RUNNING", "1:25"), "232_1": ("FAILED", "00:00:00")}
    assert slurm_tools.read_text().splitlines()[1:] == [
        "squeue -h -r -j 230,232_1,999 -o %i|%T|%M", "scontrol show job 232_1 -o", "scontrol show job 999 -o"]
