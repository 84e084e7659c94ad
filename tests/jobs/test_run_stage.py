"""Tests of jobs/run_stage.py: a stage job's commands, then the atomic publication of its artifact.

`run(spec_path)` is called directly, on specs written here: small real commands, and the specs the plan
itself makes (launcher.scripts.stage_spec) with the GPU tools replaced by the stand-ins of tests/standins.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import run_stage
from jobs.run_stage import StageFailed
from launcher.contract import StageResources, StageSpec

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"
PY = sys.executable
DRAFTER_DIR = "redrafter_output_redrafter_OpenMath-Nemotron-14B-kaggle_n_3_lr_0.001_layers_2"


# --------------------------------------------------------------------------------------------------
# Helpers (test_services.py uses them too)
# --------------------------------------------------------------------------------------------------
def standin_env(monkeypatch) -> None:
    """What a stage job's environment has here: the stand-ins first, the code importable, no Slurm."""
    for name in list(os.environ):
        if name.startswith(("STANDIN_", "SLURM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{STANDINS / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(STANDINS / "python")]))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def plan(root: Path, *overrides: str):
    from tests.helpers import plan_for

    return plan_for("cluster=local", f"cluster.storage_root={root}", f"cluster.python={PY}",
                    f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}", *overrides)


def write_spec(path: Path, spec: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))
    return str(path)


def stage_spec_file(the_plan, name: str, where: Path) -> str:
    from launcher.scripts import stage_spec

    return write_spec(where / f"{name}.json", stage_spec(the_plan, the_plan.stages[name]).to_json())


def relocated(spec: dict, artifact: Path) -> dict:
    """The same stage writing to another artifact (and staging) directory: its commands follow."""
    text = json.dumps({k: v for k, v in spec.items() if k != "inputs"}).replace(spec["artifact"], str(artifact))
    return {**json.loads(text), "inputs": spec["inputs"]}


def simple_spec(tmp_path: Path, kind: str = "quantize", commands=None, name: str = "stage") -> dict:
    """A stage spec as JSON (the tests change it as a launch of other settings would write it)."""
    artifact = tmp_path / "artifacts" / kind / "0123456789abcdef"
    return StageSpec(experiment="test", name=name, kind=kind, fingerprint="0123456789abcdef", artifact=str(artifact),
                     staging_dir=f"{artifact}.partial",
                     commands=commands or {"work": [PY, "-c", "open('out.txt', 'w').write('done')"]},
                     config={"x": 1}, inputs={}, resources=StageResources(0, 1, 4, 32, 60), secret_env_vars=[],
                     drafter=None, benchmark=None, gpu_check=None).to_json()


def manifest(artifact) -> dict:
    return json.loads((Path(artifact) / "manifest.json").read_text())


# --------------------------------------------------------------------------------------------------
# Fixtures: the stand-in downloads, made once by their own stages
# --------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _env(monkeypatch):
    standin_env(monkeypatch)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="module")
def downloads(storage):
    """download_model and download_dataset of fp8_redrafter, run as stages; the plan returned."""
    with pytest.MonkeyPatch.context() as mp:
        standin_env(mp)
        the_plan = plan(storage, "+experiment=fp8_redrafter")
        for name in ("download_model", "download_dataset"):
            run_stage.run(stage_spec_file(the_plan, name, storage / "specs"))
    return the_plan


# --------------------------------------------------------------------------------------------------
# Publication
# --------------------------------------------------------------------------------------------------
def test_the_artifact_appears_only_complete(tmp_path, monkeypatch):
    spec = simple_spec(tmp_path)
    artifact = Path(spec["artifact"])
    # While the command runs, the artifact must not exist yet, and the command runs in the staging directory.
    probe = (f"import os; open('seen.json', 'w').write(__import__('json').dumps("
             f"[os.path.exists({str(artifact)!r}), os.getcwd()]))")
    spec["commands"] = {"probe": [PY, "-c", probe]}
    renames = []
    real_rename = os.rename

    def rename(src, dst):  # the publication: the manifest must already be inside
        renames.append((str(src), str(dst), (Path(src) / "manifest.json").is_file()))
        real_rename(src, dst)

    monkeypatch.setattr(run_stage.os, "rename", rename)
    run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert renames == [(spec["staging_dir"], str(artifact), True)]
    assert json.loads((artifact / "seen.json").read_text()) == [False, spec["staging_dir"]]
    assert not Path(spec["staging_dir"]).exists()
    recorded = manifest(artifact)  # what it published, as consumers read it
    assert recorded["stage"] == "quantize" and recorded["fingerprint"] == "0123456789abcdef"
    assert recorded["config"] == {"x": 1} and recorded["ended"] >= recorded["started"]
    assert recorded["size_bytes"] == len(json.dumps([False, spec["staging_dir"]]))  # its one file, seen.json
    assert [p.name for p in artifact.parent.iterdir()] == [artifact.name]  # nothing else beside it


def test_a_complete_artifact_is_not_run_again(tmp_path):
    counter = tmp_path / "runs.txt"
    spec = simple_spec(tmp_path, commands={"count": [PY, "-c", f"open({str(counter)!r}, 'a').write('x')"]})
    path = write_spec(tmp_path / "spec.json", spec)
    first = run_stage.run(path)
    second = run_stage.run(path)
    assert counter.read_text() == "x"
    assert second == first


def test_a_failing_command_leaves_no_artifact_and_says_why(tmp_path):
    script = "import sys\nfor i in range(30): print(f'step {i}')\nprint('CUDA out of memory', file=sys.stderr)\nsys.exit(3)"
    spec = simple_spec(tmp_path, commands={"first": [PY, "-c", "print('fine')"], "second": [PY, "-c", script]})
    with pytest.raises(StageFailed) as failure:
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    message = str(failure.value)
    assert "exited with code 3" in message
    assert "CUDA out of memory" in message and "step 29" in message  # its last lines, stderr included
    assert "step 0\n" not in message  # only the last lines
    assert not Path(spec["artifact"]).exists()


def test_a_missing_tool_is_a_stage_failure(tmp_path):
    spec = simple_spec(tmp_path, commands={"tool": ["no-such-tool-anywhere", "--flag"]})
    with pytest.raises(StageFailed, match="cannot start no-such-tool-anywhere"):
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert not Path(spec["artifact"]).exists()


@pytest.mark.parametrize("kind, kept", [("quantize", False), ("build_engine", False), ("calibration_data", False),
                                        ("download_model", True), ("download_dataset", True),
                                        ("train_drafter", True)])
def test_only_resumable_kinds_keep_the_staging_dir_of_an_earlier_attempt(tmp_path, kind, kept):
    spec = simple_spec(tmp_path, kind)
    listing = "import os, json; open('seen.json', 'w').write(json.dumps(sorted(os.listdir('.'))))"
    spec["commands"] = {"train" if kind == "train_drafter" else "work": [PY, "-c", listing]}
    staging = Path(spec["staging_dir"])
    staging.mkdir(parents=True)
    (staging / "earlier_attempt.bin").write_text("half done")
    path = write_spec(tmp_path / "spec.json", spec)
    if kind == "train_drafter":  # no drafter comes out of this command: the stage fails, after the command
        with pytest.raises(StageFailed, match="expected one trained drafter"):
            run_stage.run(path)
        seen_in = staging
    else:
        run_stage.run(path)
        seen_in = Path(spec["artifact"])
    assert ("earlier_attempt.bin" in json.loads((seen_in / "seen.json").read_text())) == kept


def test_sigterm_stops_the_job_and_its_tool(tmp_path):
    pid_file = tmp_path / "tool.pid"
    tool = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    spec = simple_spec(tmp_path, commands={"sleep": [PY, "-c", tool]})
    job = subprocess.Popen([PY, "-m", "jobs.run_stage", write_spec(tmp_path / "spec.json", spec)], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    tool_pid = int(pid_file.read_text())
    job.send_signal(signal.SIGTERM)
    output, _ = job.communicate(timeout=30)
    assert job.returncode != 0
    assert not alive(tool_pid), output
    assert not Path(spec["artifact"]).exists()


STOPPED_BY_SLURM = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"  # as a requeue or a time limit ends a tool


def test_a_tool_stopped_by_sigterm_is_a_stop_not_a_failure(tmp_path, capsys):
    """A requeue (or a time limit) sends SIGTERM to the tools too: the log said `StageFailed: torchrun exited
    with code -15` before the job was run again. It says what happened instead."""
    from jobs.run_stage import StageJob, StageStopped

    spec = simple_spec(tmp_path, commands={"train": [PY, "-c", STOPPED_BY_SLURM]})
    with pytest.raises(StageStopped, match=r"stopped by signal 15 \(time limit/preemption/requeue\)$"):
        StageJob(write_spec(tmp_path / "spec.json", spec))()
    out = capsys.readouterr().out
    assert "stopped by signal 15 (time limit/preemption/requeue)" in out
    assert "FAILED" not in out and "exited with code -15" not in out
    assert not Path(spec["artifact"]).exists()


def test_run_stage_logs_a_tool_stopped_by_sigterm_as_stopped(tmp_path):
    spec = simple_spec(tmp_path, commands={"train": [PY, "-c", STOPPED_BY_SLURM]})
    job = subprocess.run([PY, "-m", "jobs.run_stage", write_spec(tmp_path / "spec.json", spec)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert job.returncode == 128 + signal.SIGTERM
    assert "stopped by signal 15 (time limit/preemption/requeue)" in job.stdout and "FAILED" not in job.stdout


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


# --------------------------------------------------------------------------------------------------
# Stage kinds, with the plan's own specs and the stand-in tools
# --------------------------------------------------------------------------------------------------
def test_downloads_are_published_with_what_later_stages_read(downloads):
    model = Path(downloads.stages["download_model"].artifact)
    dataset = Path(downloads.stages["download_dataset"].artifact)
    assert manifest(model)["stage"] == "download_model" and manifest(dataset)["stage"] == "download_dataset"
    assert (model / "OpenMath-Nemotron-14B-kaggle" / "config.json").is_file()
    assert (dataset / "OpenMathReasoning" / "data" / "tir-00000-of-00001.parquet").is_file()


def train_spec(downloads, tmp_path, extra_args=()) -> tuple[str, Path]:
    from launcher.scripts import stage_spec

    spec = relocated(stage_spec(downloads, downloads.stages["train_drafter"]).to_json(), tmp_path / "train_drafter" / "fp")
    spec["commands"]["train"] += list(extra_args)
    return write_spec(tmp_path / "train.json", spec), Path(spec["artifact"])


def test_train_drafter_records_the_drafter_and_its_metrics(downloads, tmp_path):
    path, artifact = train_spec(downloads, tmp_path)
    run_stage.run(path)
    result = manifest(artifact)  # what it published, as consumers read it
    assert result["drafter_dir"] == DRAFTER_DIR and result["resumed_from_checkpoint"] is None
    assert (artifact / DRAFTER_DIR / "config.json").is_file() and (artifact / DRAFTER_DIR / "model.safetensors").is_file()
    # The stand-in's trend ends at 0.65; each logged value is one micro-batch's, +-0.03 around it.
    assert result["drafter_metrics"]["redrafter2_top1"] == pytest.approx(0.65, abs=0.03)
    assert set(result["drafter_metrics"]) >= {"redrafter0_top1", "redrafter2_top5", "redrafter2_loss"}
    assert result["drafter_gate"]["metric"] == "redrafter2_top1" and "drafter_gate_passed" not in result
    assert result["train_log"] == "train.attempt-1.log" and result["train_logs"] == ["train.attempt-1.log"]
    assert "redrafter2_top1" in (artifact / "train.attempt-1.log").read_text()


def test_the_drafter_plan_path_is_where_training_writes(downloads):
    from launcher import commands

    stage = downloads.stages["train_drafter"]
    expected = commands.drafter_output_dir(stage.cfg, f"{stage.artifact}/redrafter_output", "x/OpenMath-Nemotron-14B-kaggle")
    assert Path(expected).name == DRAFTER_DIR


# A drafter below the quality gate, the gate window, per-attempt logs: tests/jobs/test_drafter_gate.py


def test_training_resumes_from_the_checkpoint_of_an_earlier_attempt(downloads, tmp_path, monkeypatch):
    # Checkpoints every 2 of the 8 steps (64 rows, 2 ranks, 4 accumulation steps); the first attempt crashes
    # half-way, after saving checkpoint-4.
    path, artifact = train_spec(downloads, tmp_path, ["--save_strategy", "steps", "--save_steps", "2",
                                                      "--logging_steps", "1"])
    spec = json.loads(Path(path).read_text())  # later flags win, as with argparse
    monkeypatch.setenv("STANDIN_FAIL", "train_redrafter")
    with pytest.raises(StageFailed, match="simulated failure at step 4"):
        run_stage.run(path)
    drafter = Path(spec["staging_dir"]) / DRAFTER_DIR
    assert sorted(p.name for p in drafter.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not artifact.exists()

    monkeypatch.delenv("STANDIN_FAIL")
    result = run_stage.run(path)
    log = (artifact / "train.attempt-2.log").read_text()  # each attempt its own log
    assert "Continuing training from checkpoint, will skip to saved global_step 4" in log
    assert "simulated failure" in (artifact / "train.attempt-1.log").read_text() and "simulated failure" not in log
    assert result["resumed_from_checkpoint"] == "checkpoint-4"
    assert result["drafter_metrics_last"]["redrafter2_top1"] == pytest.approx(0.65, abs=0.03)
    assert result["drafter_dir"] == DRAFTER_DIR
    # The checkpoints were only for resuming: the published drafter is its config and weights.
    assert sorted(p.name for p in (artifact / DRAFTER_DIR).iterdir()) == ["config.json", "model.safetensors"]


def test_build_engine_records_the_engine_size(downloads, storage, tmp_path):
    bf16 = plan(storage, "+experiment=bf16")
    assert bf16.stages["download_model"].artifact == downloads.stages["download_model"].artifact
    run_stage.run(stage_spec_file(bf16, "quantize", tmp_path))
    result = run_stage.run(stage_spec_file(bf16, "build_engine", tmp_path))
    engine = Path(bf16.stages["build_engine"].artifact)
    engines = sorted(engine.glob("rank*.engine"))
    assert [p.name for p in engines] == ["rank0.engine", "rank1.engine"]  # tensor_parallel 2
    assert result["engine_size_bytes"] == sum(p.stat().st_size for p in engines) > 0
    assert (engine / "tokenizer_config.json").is_file() and (engine / "config.json").is_file()


def report_spec(tmp_path: Path, exit_code: int) -> dict:
    """A report command that writes its report, then exits like jobs.report (3: some results are missing)."""
    script = (f"import sys; open('report.md', 'w').write('| bf16 | failed |'); print('report written'); "
              f"sys.exit({exit_code})")
    return simple_spec(tmp_path, "report", commands={"report": [PY, "-c", script]})


def test_the_report_is_not_published_while_results_are_missing(tmp_path):
    spec = report_spec(tmp_path, run_stage.REPORT_INCOMPLETE)
    path = write_spec(tmp_path / "report.json", spec)
    result = run_stage.run(path)
    assert not Path(spec["artifact"]).exists() and "fingerprint" not in result
    # The next launch runs it again (a non-resumable kind: afresh), and publishes it once complete.
    spec["commands"]["report"] = report_spec(tmp_path, 0)["commands"]["report"]
    run_stage.run(write_spec(tmp_path / "report.json", spec))
    assert manifest(spec["artifact"])["stage"] == "report"
    assert (Path(spec["artifact"]) / "report.md").read_text() == "| bf16 | failed |"


def test_a_failing_report_fails_the_stage(tmp_path):
    spec = report_spec(tmp_path, 1)
    with pytest.raises(StageFailed, match="exited with code 1; its last lines:\n  report written"):
        run_stage.run(write_spec(tmp_path / "report.json", spec))
    assert not Path(spec["artifact"]).exists()


# --------------------------------------------------------------------------------------------------
# Quantization: calibration out of GPU memory
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fp8_calibrated(downloads, storage):
    """The fp8 plan (16 calibration samples, batch size 4) with its calibration data made by its own stage."""
    with pytest.MonkeyPatch.context() as mp:
        standin_env(mp)
        the_plan = plan(storage, "+experiment=fp8", "quantization.calib_size=16")
        run_stage.run(stage_spec_file(the_plan, "calibration_data", storage / "specs"))
    return the_plan


def test_calibration_out_of_memory_retries_at_half_the_batch_size(fp8_calibrated, tmp_path, monkeypatch, capsys):
    # The stand-in quantizer runs out of memory above 1024 tokens per batch: 4 x 512 does, 2 x 512 does not.
    monkeypatch.setenv("STANDIN_CALIB_MAX_TOKENS", "1024")
    spec = json.loads(Path(stage_spec_file(fp8_calibrated, "quantize", tmp_path)).read_text())
    assert spec["commands"]["quantize"][spec["commands"]["quantize"].index("--batch_size") + 1] == "4"
    result = run_stage.run(write_spec(tmp_path / "q.json", relocated(spec, tmp_path / "quantized")))
    assert result["calib_batch_size_used"] == 2
    config = json.loads((tmp_path / "quantized" / "config.json").read_text())
    assert config["standin_calibration"]["batch_size"] == 2 and config["standin_calibration"]["num_samples"] == 16
    out = capsys.readouterr().out
    assert "calibration ran out of GPU memory at batch size 4 (quantization.calib_batch_size); retrying at 2" in out
    assert "torch.OutOfMemoryError: CUDA out of memory" in out


def test_calibration_out_of_memory_at_batch_size_1_says_what_to_change(fp8_calibrated, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CALIB_MAX_TOKENS", "100")
    spec = json.loads(Path(stage_spec_file(fp8_calibrated, "quantize", tmp_path)).read_text())
    with pytest.raises(StageFailed, match=r"even at batch size 1: lower quantization.calib_max_seq_length"):
        run_stage.run(write_spec(tmp_path / "q.json", relocated(spec, tmp_path / "quantized")))
    assert not (tmp_path / "quantized").exists()


def test_other_quantizer_failures_are_not_retried(fp8_calibrated, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STANDIN_FAIL", "hf_to_trtllm_quantize")
    spec = json.loads(Path(stage_spec_file(fp8_calibrated, "quantize", tmp_path)).read_text())
    with pytest.raises(StageFailed, match="simulated failure"):
        run_stage.run(write_spec(tmp_path / "q.json", relocated(spec, tmp_path / "quantized")))
    assert "retrying" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Damaged artifacts (jobs.artifacts), and the requeue of a stage that cannot resume
# --------------------------------------------------------------------------------------------------
def counting_spec(tmp_path: Path, kind: str = "build_engine") -> tuple[dict, Path]:
    """A stage whose one tool leaves a mark each time it runs."""
    counter = tmp_path / "runs.txt"
    return simple_spec(tmp_path, kind, commands={"count": [PY, "-c", f"open({str(counter)!r}, 'a').write('x')"]}), counter


def test_a_damaged_input_fails_the_stage_before_any_tool(tmp_path):
    upstream = simple_spec(tmp_path / "upstream")  # its tool writes out.txt, 4 bytes
    run_stage.run(write_spec(tmp_path / "upstream.json", upstream))
    (Path(upstream["artifact"]) / "out.txt").write_text("do")  # truncated on the shared storage
    spec, counter = counting_spec(tmp_path)
    spec["inputs"] = {"quantize": upstream["artifact"]}
    with pytest.raises(StageFailed) as failure:
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert str(failure.value) == (f"input quantize is damaged: {upstream['artifact']}: out.txt is 2 bytes, "
                                  "manifest.json says 4; launch again: the launch moves a damaged artifact aside and "
                                  "rebuilds it")
    assert not counter.exists() and not Path(spec["artifact"]).exists()


def test_an_input_never_published_fails_the_stage_but_not_the_report(tmp_path):
    """The report runs after failed benchmarks too (afterany): their missing artifacts are its to show."""
    spec, counter = counting_spec(tmp_path)
    spec["inputs"] = {"quantize": str(tmp_path / "artifacts" / "quantize" / "fedcba9876543210")}
    with pytest.raises(StageFailed, match="input quantize has no published artifact at"):
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    report = {**report_spec(tmp_path, 0), "inputs": {"benchmark": spec["inputs"]["quantize"]}}
    run_stage.run(write_spec(tmp_path / "report.json", report))
    assert (Path(report["artifact"]) / "report.md").is_file()


def test_a_published_artifact_is_verified_before_the_job_calls_it_complete(tmp_path, capsys):
    spec, counter = counting_spec(tmp_path)
    path = write_spec(tmp_path / "spec.json", spec)
    run_stage.run(path)
    (Path(spec["artifact"]) / "manifest.json").write_text("")  # emptied
    with pytest.raises(StageFailed, match=r"is published but damaged: its manifest.json is not valid JSON \(0 bytes\); "
                                          "launch again: the launch moves it aside and rebuilds it"):
        run_stage.run(path)
    assert "already complete" not in capsys.readouterr().out
    assert counter.read_text() == "x"  # not rebuilt over it: the launch moves it aside, under its lock
    assert (Path(spec["artifact"]) / "manifest.json").is_file()


class SlurmJobEnvironment:
    """What submitit's signal handler asks of the job's environment: its rank, and the requeue itself."""
    global_rank = 0

    def __init__(self):
        self.requeued = False

    def _requeue(self, countdown: int) -> None:
        self.requeued = True


@pytest.mark.parametrize("kind, restart_count, requeued", [
    ("quantize", 0, True), ("quantize", 1, True), ("quantize", 2, False), ("benchmark", 5, False),
    ("download_model", 7, True), ("train_drafter", 7, True),
])
def test_a_stage_that_cannot_resume_is_requeued_only_a_few_times(tmp_path, monkeypatch, kind, restart_count, requeued):
    """The decision where submitit makes it: its USR2 handler, which calls StageJob.checkpoint and requeues what
    it returns. A stage that starts afresh at every requeue would, with a time limit too short for it, requeue
    until submitit gives up; it fails instead, after MAX_RESTARTS_NOT_RESUMABLE requeues, naming the limit."""
    from submitit.core import job_environment, utils

    spec = simple_spec(tmp_path, kind)
    spec["resources"]["time_min"] = 10
    delayed = utils.DelayedSubmission(run_stage.StageJob(write_spec(tmp_path / "spec.json", spec)))
    delayed.set_timeout(10, 3)  # as SlurmExecutor does: the time limit, max_num_timeout
    paths = utils.JobPaths(tmp_path / "submitit", job_id="42")
    paths.folder.mkdir(parents=True)
    env = SlurmJobEnvironment()
    handler = job_environment.SignalHandler(env, paths, delayed)
    monkeypatch.setattr(handler, "_exit", lambda: None)  # sys.exit after a requeue
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restart_count))
    if requeued:
        handler.checkpoint_and_try_requeue(signal.SIGUSR2)
        assert env.requeued and paths.submitted_pickle.is_file()
        return
    with pytest.raises(StageFailed) as failure:
        handler.checkpoint_and_try_requeue(signal.SIGUSR2)
    assert not env.requeued
    assert str(failure.value) == (
        f"stage was signalled by Slurm {restart_count + 1} times (its time limit, or a preemption) and a {kind} stage "
        f"starts afresh at every requeue: not requeued again. The time limit is too short for the stage if it ran "
        f"out of time: raise cluster.time_limits.{kind} (now 10 min)")
