"""Runs one stage inside its container: the stage's commands, then the atomic publication of its artifact.

    python -m jobs.run_stage SPEC.json      (or submitted through submitit as StageJob(SPEC.json))

The spec (written by the launcher beside the batch script) names the commands, the staging directory and
the artifact. The artifact appears only by renaming a finished staging directory that already holds its
manifest, so a half-written artifact is never taken as complete. A requeued job finds either the published
artifact (and does nothing) or the staging directory: downloads and drafter training resume from it, the
other stages start it afresh.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from jobs import artifacts, drafter_metrics, gpu_check, services, smoke_run, triton_serving, wandb_log
from jobs.process import StageFailed, StageStopped, log, process_group, run_command, stopped_by, tool_failure
from launcher.contract import MANIFEST, REPORT_INCOMPLETE, ContractError, Manifest, StageSpec

RESUMABLE_KINDS = ("download_model", "download_dataset", "train_drafter", "train_eagle3")
# Any other kind starts afresh at every requeue: if its time limit is what signals it, every attempt ends the
# same way (submitit requeues a checkpointable job on each signal). It is requeued this many times (after a
# preemption or a node failure), then fails naming the time limit to raise.
MAX_RESTARTS_NOT_RESUMABLE = 2
# Calibration memory grows with batch size x calib_max_seq_length (a trap the seeds name); the calibration
# statistics (per-tensor amax) do not depend on the batch size, so an out-of-memory quantize retries at half.
CUDA_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError")


def _versions() -> dict:
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    # The trainer's stack too (it breaks on datasets >= 4, transformers 5, huggingface_hub 1.0, a missing fschat).
    for dist in ("tensorrt_llm", "nemo_skills", "recurrent_drafting", "transformers", "torch", "submitit",
                 "datasets", "tokenizers", "huggingface_hub", "accelerate", "wandb", "fschat"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def run_kind(spec: StageSpec, staging: Path) -> dict:
    """Run the stage's commands; return what the manifest should record beyond the basics."""
    kind, commands = spec.kind, spec.commands
    if kind == "train_drafter":
        train_log = drafter_metrics.attempt_log(staging)  # one log per attempt: train.attempt-<n>.log
        resumed = drafter_metrics.last_checkpoint(staging)
        if resumed:
            log(f"training resumes from {resumed.parent.name}/{resumed.name} of an earlier attempt")
        # The trainer's own W&B run (WandbCallback) records no host, argv, hardware, system stats or console.
        run_command(commands["train"], train_log, cwd=staging, env={**os.environ, **wandb_log.TRAINER_ENV})
        # Always published with its measurements: the quality gate is decided where the drafter is used.
        result = drafter_metrics.measure_trained_drafter(spec.drafter, staging, train_log, resumed)
        drafter_metrics.remove_checkpoints(staging / result["drafter_dir"])
        return {**result, "resumed_from_checkpoint": resumed.name if resumed else None,
                "train_log": train_log.name, "train_logs": [p.name for _, p in drafter_metrics.train_logs(staging)]}
    if kind == "benchmark":
        triton = spec.config["serving"]["name"] == "triton"  # tritonserver's three ports and its health path
        return (triton_serving if triton else services).run_benchmark(spec, staging)
    if kind == "smoke_run":  # its answer goes into the manifest
        return smoke_run.run(spec, staging)
    if kind == "quantize" and "--batch_size" in commands.get("quantize", ()):
        return quantize_halving_batch_on_oom(commands["quantize"], staging)
    if kind == "report":
        with process_group(commands["report"], cwd=staging) as process:
            process.wait()
        if process.returncode == REPORT_INCOMPLETE:
            log("report written with failed points; it is not published, the next launch regenerates it")
            return {"publish": False}
        if process.returncode:
            raise tool_failure(commands["report"], process)
        return {}
    for name, argv in commands.items():
        # In the staging directory: trtllm-build leaves its timing cache (model.cache) in the working directory.
        run_command(argv, cwd=staging)
    if kind in ("build_engine", "build_drafter_engine"):
        return {"engine_size_bytes": sum(p.stat().st_size for p in staging.glob("*.engine"))}
    return {}


def quantize_halving_batch_on_oom(argv: list, staging: Path) -> dict:
    """Run the quantizer; when calibration runs out of GPU memory, again from scratch at half the batch size."""
    at = argv.index("--batch_size") + 1
    batch_size = int(argv[at])
    while True:
        try:
            run_command(argv, cwd=staging)
            return {"calib_batch_size_used": batch_size}
        except StageFailed as failure:
            if not CUDA_OOM.search(str(failure)):
                raise
            if batch_size == 1:
                raise StageFailed(f"{failure}\ncalibration ran out of GPU memory even at batch size 1: lower "
                                  "quantization.calib_max_seq_length or spread the model over more GPUs "
                                  "(model.tensor_parallel)") from None
        log(f"calibration ran out of GPU memory at batch size {batch_size} (quantization.calib_batch_size); "
            f"retrying at {batch_size // 2}")
        batch_size //= 2
        argv = [*argv[:at], str(batch_size), *argv[at + 1:]]
        for leftover in staging.iterdir():  # the failed attempt's partial checkpoint
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def read_spec(spec_path: str) -> StageSpec:
    """The stage's spec; a spec this code cannot read (another version's) fails the stage, naming the key."""
    try:
        return StageSpec.read(spec_path)
    except ContractError as error:
        raise StageFailed(str(error)) from None


def run(spec_path: str) -> dict:
    spec = read_spec(spec_path)
    artifact, staging = Path(spec.artifact), Path(spec.staging_dir)
    if (artifact / MANIFEST).is_file():
        damage = artifacts.problem(artifact, spec.kind, spec.fingerprint)
        if damage:  # never overwritten here: moving it aside is the launch's, under its storage lock
            raise StageFailed(f"{spec.name}: its artifact {artifact} is published but damaged: {damage}; "
                              "launch again: the launch moves it aside and rebuilds it")
        log(f"{spec.name}: artifact already complete at {artifact}")
        return Manifest.read(artifact / MANIFEST).to_json()
    verify_inputs(spec)  # before any tool: a damaged input fails in seconds, naming it
    if staging.exists() and spec.kind not in RESUMABLE_KINDS:
        log(f"{spec.name}: removing the unfinished staging directory of an earlier attempt")
        shutil.rmtree(staging)
    # Before any tool, and before the staging dir exists (a wrong node leaves nothing): wrong GPUs fail in
    # seconds; a drafter below the quality gate is not converted.
    gpus = gpu_check.check(spec.gpu_check)
    gate = drafter_metrics.check_gate(spec) if spec.kind == "convert_drafter" else {}
    staging.mkdir(parents=True, exist_ok=True)
    # The stage's W&B run name (the trainer's runs and ours); an array job's elements share their batch script.
    os.environ["WANDB_NAME"] = f"{spec.experiment}/{spec.name}"
    started = time.time()
    log(f"{spec.name}: job {os.environ.get('SLURM_JOB_ID', 'local')} writing {staging}")
    extra = {**gate, **run_kind(spec, staging), **gpus}
    publish = extra.pop("publish", True)
    # Drafter metrics, benchmark results and the report as W&B runs (a report with failed points too).
    wandb_log.log_stage_results(spec, extra)  # never fails the stage
    if not publish:
        return extra
    files = artifacts.list_files(staging)  # what launches and consumers verify the artifact against
    manifest = Manifest(
        stage=spec.kind, name=spec.name, experiment=spec.experiment, fingerprint=spec.fingerprint,
        config=spec.config, inputs=spec.inputs, job_id=os.environ.get("SLURM_JOB_ID"),
        restart_count=int(os.environ.get("SLURM_RESTART_COUNT", 0)), started=started, ended=time.time(),
        size_bytes=sum(files.values()), versions=_versions(), files=files, outputs=extra)
    manifest.write(staging / MANIFEST)
    try:
        os.rename(staging, artifact)
    except OSError:
        if not (artifact / MANIFEST).is_file():
            raise
        log(f"{spec.name}: another job published the same artifact first; keeping it")
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{spec.name}: published {artifact}")
    return manifest.to_json()


def verify_inputs(spec: StageSpec) -> None:
    """Every input artifact is whole (jobs.artifacts), else the stage fails naming it: a file deleted or
    truncated on the shared storage would otherwise fail a tool deep inside, the same way at every rerun."""
    for name, path in spec.inputs.items():
        if not (Path(path) / MANIFEST).is_file():
            if spec.kind == "report":  # runs after failed benchmarks too (afterany), to show them failed
                continue
            raise StageFailed(f"input {name} has no published artifact at {path}")
        damage = artifacts.problem(path)
        if damage:
            raise StageFailed(f"input {name} is damaged: {path}: {damage}; launch again: the launch moves a damaged "
                              "artifact aside and rebuilds it")


def requeue_refusal(spec: StageSpec, restarts: int) -> str | None:
    """Why a signalled stage must not be requeued again, or None to requeue it (see StageJob.checkpoint)."""
    kind = spec.kind
    if "serve" in spec.commands:  # launcher.serve_only (jobs.serve)
        return (f"{spec.name} served its configuration (launcher.serve_only) until Slurm signalled it (its time "
                "limit, or a preemption); it is not requeued: it would come back on another node and port than "
                "the address it gave. Launch again to serve it again")
    if kind in RESUMABLE_KINDS or restarts < MAX_RESTARTS_NOT_RESUMABLE:
        return None
    return (f"{spec.name} was signalled by Slurm {restarts + 1} times (its time limit, or a preemption) and a "
            f"{kind} stage starts afresh at every requeue: not requeued again. The time limit is too short for "
            f"the stage if it ran out of time: raise cluster.time_limits.{kind}"
            + f" (now {spec.resources.time_min} min)")


class StageJob:
    """What dispatch submits through submitit: picklable by reference, checkpointable.

    On the time-limit signal (or preemption) submitit calls `checkpoint`, which requeues the same stage:
    the next attempt resumes from the staging directory where the stage kind allows it. A kind that cannot
    resume is requeued at most MAX_RESTARTS_NOT_RESUMABLE times, so that a time limit too short for it fails
    the stage, saying so, instead of requeueing it until submitit gives up ("timed-out too many times").
    """

    def __init__(self, spec_path: str):
        self.spec_path = spec_path

    def __call__(self) -> dict:
        try:
            return run(self.spec_path)
        except StageStopped as stopped:  # Slurm ends this attempt (a requeue runs it again): no FAILED line
            log(str(stopped))
            raise
        except StageFailed as failure:  # `status` shows this line (launcher.status.failure_cause)
            log(f"FAILED: {failure}")
            raise

    def checkpoint(self, *args, **kwargs):
        """Called by submitit's USR2 handler (SignalHandler.checkpoint_and_try_requeue) in the main thread:
        what it returns is requeued; what it raises unwinds the stage from wherever the signal interrupted it
        (stopping its tools) up to __call__, which logs it, and the job ends FAILED with it as the reason."""
        import submitit

        refusal = requeue_refusal(read_spec(self.spec_path), int(os.environ.get("SLURM_RESTART_COUNT") or 0))
        if refusal:
            raise StageFailed(refusal)
        return submitit.helpers.DelayedSubmission(StageJob(self.spec_path))


def _stop_on_sigterm(signum, frame) -> None:
    """scancel, a local cancel or a time limit: unwind, so that every tool's process group is stopped."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not interrupt the stopping
    log(f"{stopped_by(signum)}: stopping the stage's tools")
    raise SystemExit(128 + signum)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m jobs.run_stage SPEC.json")
    # Python's default for SIGTERM ends the process at once, without `finally`: the tools, each in its own
    # process group, would outlive the job (servers keeping their GPUs and ports).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        run(sys.argv[1])
    except StageStopped as stopped:
        log(str(stopped))
        sys.exit(128 + signal.SIGTERM)
    except StageFailed as failure:
        log(f"FAILED: {failure}")
        sys.exit(1)


if __name__ == "__main__":
    main()
