"""What dispatch keeps on shared storage: the launch lock, code snapshots, artifact claims, experiment state."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, Optional

from jobs import artifacts
from launcher.contract import MANIFEST as COMPLETE_MARKER
from launcher.contract import experiment_dir
from launcher.user_config import CONF_DIR

if TYPE_CHECKING:  # `status` reads storage too, and must not pay for the plan's imports (omegaconf, Hydra)
    from launcher.plan import Plan, Stage

CODE_PACKAGES = ("launcher", "jobs", "conf")
SOURCE_ROOT = CONF_DIR.parent

# Lines the batch script (launcher.scripts) and the local runner write into a job's log; `status` reads them back.
ATTEMPT_START = "launcher: starting job"
SANDBOX_STOP = "launcher: the stage step has ended; stopping its code sandbox step"
SANDBOX_ENDED = "launcher: the code sandbox step ended by itself"


class ExperimentDir:
    """Where an experiment keeps its scripts, stage specs, logs, code snapshot and state."""

    def __init__(self, storage_root: str, experiment: str, root: Optional[Path] = None):
        """`root`: elsewhere than under the storage root (a dry run's local preview)."""
        self.root = Path(root) if root else experiment_dir(storage_root, experiment)

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    def script(self, stage: str) -> Path:
        return self.root / "scripts" / f"{stage_file_name(stage)}.sbatch"

    def spec(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage_file_name(stage)}.json"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage_file_name(stage)}.log"


# A stage's name carries config values (`calibration_data[calib_dataset=nvidia/x]`): its files' names keep
# what is safe in one path component and in Slurm's --output (where `%` is a pattern), and spell the rest as
# ~<hex>, so that no value makes a subdirectory, leaves the experiment's directory or collides with another.
STAGE_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,:@\[\]-]+")
STAGE_FILE_MAX = 200  # NAME_MAX is 255 bytes, with room for a suffix


def stage_file_name(stage: str) -> str:
    name = STAGE_FILE_UNSAFE.sub(lambda m: "".join(f"~{b:02x}" for b in m[0].encode()), stage)
    if len(name) > STAGE_FILE_MAX:
        name = f"{name[:STAGE_FILE_MAX - 17]}~{hashlib.sha256(stage.encode()).hexdigest()[:16]}"
    return name


@contextlib.contextmanager
def storage_lock(storage_root: str) -> Iterator[None]:
    """One launch at a time decides what to submit, so two launches never both submit one artifact."""
    path = Path(storage_root) / ".launch.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _code_files() -> list[Path]:
    files = []
    for package in CODE_PACKAGES:
        for path in sorted((SOURCE_ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                files.append(path)
    return files


def code_snapshot_dir(storage_root: str) -> Path:
    """Content-addressed: the same code gives the same directory; an edit gives a new one."""
    digest = hashlib.sha256()
    for path in _code_files():
        digest.update(str(path.relative_to(SOURCE_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return Path(storage_root) / "code" / digest.hexdigest()[:16]


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def snapshot_code(storage_root: str) -> Path:
    """Copy the launcher's code onto shared storage, so later edits never change a queued or running job."""
    target = code_snapshot_dir(storage_root)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    # copy2 would copy the source tree's modes (0644): the snapshot follows the launch's umask (cluster.umask).
    mask = current_umask()
    for path in _code_files():
        dest = staging / path.relative_to(SOURCE_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        dest.chmod(stat.S_IMODE(path.stat().st_mode) & ~mask)
    staging.chmod(0o777 & ~mask)  # mkdtemp makes it 0700
    try:
        os.rename(staging, target)
    except OSError:  # another launch published the same snapshot first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def damaged_artifacts(plan: Plan) -> Dict[str, str]:
    """{stage: what is wrong} for each published artifact of the plan that is not whole (jobs.artifacts): a
    launch would otherwise skip it as complete and every consumer would fail on it at every rerun."""
    damaged = {}
    for name, stage in plan.stages.items():
        if os.path.isfile(os.path.join(stage.artifact, COMPLETE_MARKER)):
            problem = artifacts.problem(stage.artifact, stage.kind, stage.fingerprint)
            if problem:
                damaged[name] = problem
    return damaged


def move_aside(artifact: str) -> Path:
    """Rename a damaged artifact to `<artifact>.damaged-<time>`, out of the plan's way but never deleted:
    what is left of it (a 100 GB download, an engine) may be the user's to inspect or salvage. Only under
    the storage lock, so that no other launch decides on the artifact meanwhile."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = Path(f"{artifact}.damaged-{stamp}"), 1
    while target.exists():  # two in one second
        target, n = Path(f"{artifact}.damaged-{stamp}-{n}"), n + 1
    os.rename(artifact, target)
    return target


def claim_path(stage: Stage) -> Path:
    return Path(stage.artifact + ".job")


def read_claim(stage: Stage) -> Optional[dict]:
    """The job that is (or was) producing this artifact, whichever experiment submitted it."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return json.loads(claim_path(stage).read_text())
    return None


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    with contextlib.suppress(FileNotFoundError):
        # `status`/`cancel` rewrite a launch's files from a shell of another umask: the file keeps its mode.
        tmp.chmod(stat.S_IMODE(path.stat().st_mode))
    os.replace(tmp, path)


def write_claim(stage: Stage, job_id: str, experiment: str, log: str) -> None:
    write_json(claim_path(stage), {"job_id": job_id, "experiment": experiment, "log": log, "time": time.time()})


def launched_records(state_file: Path) -> Dict[str, dict]:
    """{stage: record} of the jobs the experiment's last launch submitted (its state), whatever the plan is now."""
    try:
        records = json.loads(state_file.read_text())["stages"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return {}
    return {name: record for name, record in records.items() if record.get("action") == "submitted"}


def latest_pointer(storage_root: str) -> Path:
    return Path(storage_root) / "experiments" / "LATEST"
