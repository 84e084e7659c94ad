"""submitit's SlurmExecutor submitting the batch script the launcher wrote, byte for byte.

submitit stays the dispatcher: it pickles the StageJob into the job's folder, runs sbatch, and in the job its
`python -m submitit.core._submit <folder>` unpickles it and requeues on USR2. Only the script differs: submitit
would write its own (submitit/slurm/slurm.py, _make_sbatch_string); this one is launcher.scripts.render_script's,
which the dry run writes too and which names submitit's command and log itself. The script runs that command
only when its sbatch call says that submitit pickled a job for it (SUBMITIT_LAUNCH_ENV): submitted by hand, it
runs the stage itself. Imported when submitting only.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import List

from submitit.core import core, utils
from submitit.slurm.slurm import SlurmExecutor, SlurmJob

from launcher.scripts import SUBMITIT_LAUNCH_ENV


class ScriptExecutor(SlurmExecutor):
    """Submits `script`, a job of `array_size` stages (more than one: an array, element i running the i-th
    submission), whose stage step runs `command`, the very command submitit gives a job."""

    def __init__(self, folder: Path, python: str, script: str, command: str, array_size: int):
        super().__init__(folder, python=python)
        self.script, self.command, self.array_size = script, command, array_size

    def _make_submission_file_text(self, command: str, uid: str) -> str:
        # A submitit that builds its command otherwise must not start a job running another one.
        if command != self.command or f"stage_step=({command})\n" not in self.script:
            raise RuntimeError(f"submitit runs {command!r}; the batch script runs {self.command!r}")
        return self.script

    def _make_submission_command(self, submission_file_path: Path) -> List[str]:
        # Every sbatch call of submitit, its array path's too (_submit_command). ALL: the rest of the environment
        # goes to the job as it would without --export (the secrets, passed by name).
        return ["sbatch", f"--export=ALL,{SUBMITIT_LAUNCH_ENV}=1", str(submission_file_path)]

    def _internal_process_submissions(self, delayed_submissions: List[utils.DelayedSubmission]) -> List[core.Job]:
        if len(delayed_submissions) != self.array_size:
            raise ValueError(f"the batch script is for {self.array_size} stage(s), not {len(delayed_submissions)}")
        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        # submitit's own array path (SlurmExecutor._internal_process_submissions) submits through a plain
        # SlurmExecutor, which would write its own script: its steps, with this executor's script.
        folder = utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        pickles = []
        for delayed in delayed_submissions:
            pickle = folder / f"{uuid.uuid4().hex}.pkl"
            delayed.set_timeout(self.parameters["time"], self.max_num_timeout)
            delayed.dump(pickle)
            pickles.append(pickle)
        array = self._submit_command(self._submitit_command_str)
        jobs: List[core.Job] = [SlurmJob(folder=self.folder, job_id=f"{array.job_id}_{i}",
                                         tasks=list(range(array.num_tasks))) for i in range(len(pickles))]
        for job, pickle in zip(jobs, pickles):
            job.paths.move_temporary_file(pickle, "submitted_pickle")
        return jobs
