"""Job states from what Slurm's tools print: pure functions of their text, tested on outputs captured from a
real cluster (tests/fixtures/slurm/). `slurm.job_states` runs the tools; the reading is here, in one place.

Each returns {job id: (state, elapsed)}, a job known by the id the launcher keeps: `<id>`, or `<array id>_<i>`
for an element of an array.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

States = Dict[str, Tuple[str, str]]

# JobID, not JobIDRaw: array elements are known as <array id>_<index>.
SACCT_FORMAT = "JobID,State,Elapsed"
SQUEUE_FORMAT = "%i|%T|%M"


def sacct_argv(job_ids: List[str]) -> List[str]:
    return ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), f"--format={SACCT_FORMAT}"]


def squeue_argv(job_ids: List[str]) -> List[str]:
    # -r: one line per array element (`236_0`), not one for the pending rest of the array (`236_[0-2]`).
    return ["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT]


def scontrol_argv(job_id: str) -> List[str]:
    return ["scontrol", "show", "job", job_id, "-o"]


def parse_sacct(text: str) -> States:
    """`sacct -X -P -n --format=JobID,State,Elapsed`. A cancelled job's state is `CANCELLED by <uid>`: its first
    word is the state. Elements of an array still pending are not there (sacct has one row for them all,
    `236_[0-2]`, and only when asked for the array's own id): squeue knows them."""
    states: States = {}
    for line in text.splitlines():
        job_id, state, elapsed = (line.split("|") + ["", ""])[:3]
        if job_id:
            states[job_id] = (state.split()[0] if state.strip() else "UNKNOWN", elapsed)
    return states


def parse_squeue(text: str) -> States:
    """`squeue -h -r -o %i|%T|%M`: the controller's jobs (pending, running, and ended a moment ago)."""
    states: States = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[0]:
            states[fields[0]] = (fields[1], fields[2])
    return states


def parse_scontrol(text: str) -> States:
    """`scontrol show job -o`: one line per job (per element of an array), `Key=Value` words; an element is
    known by `ArrayJobId_ArrayTaskId`, its own JobId being another number."""
    states: States = {}
    for line in text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if "JobId" not in fields:
            continue
        task = fields.get("ArrayTaskId")
        job_id = f"{fields['ArrayJobId']}_{task}" if task and "ArrayJobId" in fields else fields["JobId"]
        states[job_id] = (fields.get("JobState", "UNKNOWN"), fields.get("RunTime", ""))
    return states
