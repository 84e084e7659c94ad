"""What `status` shows of a failed stage: the lines of its log that say why, wherever they are.

The logs below have the shapes seen on the test cluster under pyxis 0.24 / enroot 4.1.2 and through submitit
(a broken image, a missing workdir, a tool failing, a requeue, a time limit), pyxis' messages as its source
prints them.
"""

import json

import pytest
from rich.console import Console

from launcher.contract import ExperimentState, StageRecord
from launcher.exit_codes import OK, PIPELINE_FAILED
from launcher.status import failure_cause, main, status_view

IMAGE = "/lustre/fsw/my_account/images/launcher-trtllm-1.1.0rc0.sqsh"
CODE = "/lustre/fsw/my_account/launcher/code/9edcd8e6ee4066bf"

SUBMITIT_TRACEBACK = f"""\
submitit ERROR (2026-11-28 10:02:11,512) - Submitted job triggered an exception
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/usr/local/lib/python3.12/dist-packages/submitit/core/submission.py", line 55, in process_job
    result = delayed.result()
             ^^^^^^^^^^^^^^^^
  File "{CODE}/jobs/process.py", line 166, in run_command
    raise tool_failure(argv, process)
"""

# The stage's image is broken: pyxis fails the step at once, at the top of the log. (The scripts of the time
# left the sandbox step's output in the job's log after it, until Slurm cancelled that step: the last lines
# were the sandbox's.)
BROKEN_IMAGE = """\
launcher: starting job 2315 on node-a17 (restart 0)
slurmstepd: error: pyxis: child 81234 failed with error code: 1
slurmstepd: error: pyxis: failed to create container filesystem for image: {image}
slurmstepd: error: pyxis: printing enroot log file:
slurmstepd: error: pyxis:     [ERROR] Invalid image format: {image}
slurmstepd: error: pyxis: couldn't start container
slurmstepd: error: spank: required plugin spank_pyxis.so: task_init() failed with rc=-1
slurmstepd: error: Failed to invoke spank plugin stack
srun: error: node-a17: task 0: Exited with exit code 1
{sandbox} * Serving Flask app 'nemo_skills.code_execution.local_sandbox.local_sandbox_server'
 * Debug mode: off
WARNING: This is a development server. Do not use it in a production deployment.
 * Running on http://127.0.0.1:6315
Press CTRL+C to quit
""".format(image=IMAGE, sandbox="".join(f"127.0.0.1 - - [28/Nov/2026 10:00:{i:02d}] \"GET /health HTTP/1.1\" 200 -\n"
                                          for i in range(30)))

MISSING_WORKDIR = f"""\
launcher: starting job 2401 on node-a03 (restart 0)
slurmstepd: error: pyxis: couldn't chdir to {CODE}: No such file or directory
slurmstepd: error: spank: required plugin spank_pyxis.so: task_init() failed with rc=-1
slurmstepd: error: Failed to invoke spank plugin stack
srun: error: node-a03: task 0: Exited with exit code 1
"""

NO_PYTHON_IN_IMAGE = f"""\
launcher: starting job 2402 on node-a03 (restart 0)
launcher: error: cluster.python=python is not in the container image {IMAGE}; set cluster.python to its \
interpreter (e.g. python3)
srun: error: node-a03: task 0: Exited with exit code 127
"""

TOOL_FAILED = f"""\
launcher: starting job 2311 on node-a17 (restart 0)
[launcher 10:01:02] train_drafter: job 2311 writing /lustre/fsw/my_account/launcher/artifacts/train_drafter/5fc3.partial
[launcher 10:01:05] $ torchrun --nproc_per_node 2 -m nemo_skills.training.train_redrafter --num_layers 2
{{'loss': 4.1, 'redrafter0_top1': 0.31, 'epoch': 0.1}}
[rank0]: Traceback (most recent call last):
[rank0]: RuntimeError: simulated failure at step 4 (STANDIN_FAIL)
[launcher 10:02:11] FAILED: torchrun exited with code 1; its last lines:
  {{'loss': 4.1, 'redrafter0_top1': 0.31, 'epoch': 0.1}}
  [rank0]: Traceback (most recent call last):
  [rank0]: RuntimeError: simulated failure at step 4 (STANDIN_FAIL)
{SUBMITIT_TRACEBACK}jobs.process.StageFailed: torchrun exited with code 1; its last lines:
  {{'loss': 4.1, 'redrafter0_top1': 0.31, 'epoch': 0.1}}
  [rank0]: Traceback (most recent call last):
  [rank0]: RuntimeError: simulated failure at step 4 (STANDIN_FAIL)
srun: error: node-a17: task 0: Exited with exit code 1
"""

# Requeued while running (its first attempt stopped), then failing on the second for another reason.
REQUEUED_THEN_FAILED = f"""\
launcher: starting job 2312 on node-a17 (restart 0)
[launcher 10:01:02] quantize: job 2312 writing /lustre/fsw/my_account/launcher/artifacts/quantize/488f.partial
submitit WARNING (2026-11-28 10:05:00,000) - Bypassing signal SIGTERM
[launcher 10:05:00] python stopped by signal 15 (time limit/preemption/requeue)
{SUBMITIT_TRACEBACK}jobs.process.StageStopped: python stopped by signal 15 (time limit/preemption/requeue)
slurmstepd: error: *** JOB 2312 ON node-a17 CANCELLED AT 2026-11-28T10:05:01 DUE TO JOB REQUEUE ***
launcher: starting job 2312 on node-a20 (restart 1)
[launcher 10:08:40] quantize: job 2312 writing /lustre/fsw/my_account/launcher/artifacts/quantize/488f.partial
[launcher 10:08:41] FAILED: input download_model is damaged: model.safetensors is 12 bytes, manifest.json says 40
{SUBMITIT_TRACEBACK}jobs.process.StageFailed: input download_model is damaged: model.safetensors is 12 bytes, \
manifest.json says 40
srun: error: node-a20: task 0: Exited with exit code 1
"""

TIME_LIMIT = """\
launcher: starting job 2320 on node-a17 (restart 0)
[launcher 10:00:01] build_engine: job 2320 writing /lustre/fsw/my_account/launcher/artifacts/build_engine/77aa.partial
[TensorRT-LLM] [I] Building layer 31/40
slurmstepd: error: *** JOB 2320 ON node-a17 CANCELLED AT 2026-11-28T12:00:01 DUE TO TIME LIMIT ***
[launcher 12:00:01] trtllm-build stopped by signal 15 (time limit/preemption/requeue)
"""

OUR_OWN_BUG = """\
[launcher 10:00:01] report: job local writing /tmp/storage/artifacts/report/21f5.partial
Traceback (most recent call last):
  File "/work/jobs/run_stage.py", line 140, in run
    extra = {**run_kind(spec, staging), **gpus}
KeyError: 'report'
"""


def test_a_broken_image_is_the_cause_though_the_log_goes_on():
    assert failure_cause(BROKEN_IMAGE) == [
        "slurmstepd: error: pyxis: child 81234 failed with error code: 1",
        f"slurmstepd: error: pyxis: failed to create container filesystem for image: {IMAGE}",
        "slurmstepd: error: pyxis: printing enroot log file:",
        f"slurmstepd: error: pyxis:     [ERROR] Invalid image format: {IMAGE}",
        "slurmstepd: error: pyxis: couldn't start container",
        "slurmstepd: error: spank: required plugin spank_pyxis.so: task_init() failed with rc=-1",
        "slurmstepd: error: Failed to invoke spank plugin stack",
        "srun: error: node-a17: task 0: Exited with exit code 1",
    ]


def test_pyxis_errors_without_slurmstepds_prefix_are_causes_too():
    assert failure_cause(f"pyxis: importing docker image: x\npyxis: [ERROR] Invalid image format: {IMAGE}\n") == \
        [f"pyxis: [ERROR] Invalid image format: {IMAGE}"]


def test_a_missing_workdir():
    assert failure_cause(MISSING_WORKDIR)[0] == \
        f"slurmstepd: error: pyxis: couldn't chdir to {CODE}: No such file or directory"


def test_an_image_without_cluster_python():
    assert failure_cause(NO_PYTHON_IN_IMAGE) == [
        f"launcher: error: cluster.python=python is not in the container image {IMAGE}; set cluster.python to its "
        "interpreter (e.g. python3)",
        "srun: error: node-a03: task 0: Exited with exit code 127",
    ]


def test_a_failed_tool_shows_the_failed_line_with_what_it_quotes_and_the_exception():
    assert failure_cause(TOOL_FAILED) == [
        "[launcher 10:02:11] FAILED: torchrun exited with code 1; its last lines:",
        "  {'loss': 4.1, 'redrafter0_top1': 0.31, 'epoch': 0.1}",
        "  [rank0]: Traceback (most recent call last):",
        "  [rank0]: RuntimeError: simulated failure at step 4 (STANDIN_FAIL)",
        "jobs.process.StageFailed: torchrun exited with code 1; its last lines:",
        "srun: error: node-a17: task 0: Exited with exit code 1",
    ]


def test_only_the_last_attempt_of_a_requeued_job_counts():
    assert failure_cause(REQUEUED_THEN_FAILED) == [
        "[launcher 10:08:41] FAILED: input download_model is damaged: model.safetensors is 12 bytes, "
        "manifest.json says 40",
        "jobs.process.StageFailed: input download_model is damaged: model.safetensors is 12 bytes, "
        "manifest.json says 40",
        "srun: error: node-a20: task 0: Exited with exit code 1",
    ]


def test_a_time_limit():
    assert failure_cause(TIME_LIMIT) == [
        "slurmstepd: error: *** JOB 2320 ON node-a17 CANCELLED AT 2026-11-28T12:00:01 DUE TO TIME LIMIT ***",
        "[launcher 12:00:01] trtllm-build stopped by signal 15 (time limit/preemption/requeue)",
    ]


def test_an_uncaught_exception_is_its_tracebacks_last_line():
    assert failure_cause(OUR_OWN_BUG) == ["KeyError: 'report'"]


def test_a_log_that_names_no_cause():
    assert failure_cause("step 1\nstep 2\n") == []


def _status_text(tmp_path, log_text, job_state="FAILED"):
    log = tmp_path / "2315_0_log.out"
    log.write_text(log_text)
    state = ExperimentState(experiment="fp8", executor="slurm", storage_root=str(tmp_path), code="", submitted_at=0,
                            umask="027", stages={"benchmark": StageRecord(
                                kind="benchmark", fingerprint="1a29", artifact=str(tmp_path / "artifacts/benchmark/1a29"),
                                action="submitted", job_id="2315", log=str(log))})
    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    console.print(status_view(state, {"benchmark": (job_state, "00:00:07")}), soft_wrap=True)
    return console.export_text()


def test_status_shows_the_pyxis_error_at_the_top_of_a_failed_stages_log(tmp_path):
    text = _status_text(tmp_path, BROKEN_IMAGE)
    assert f"slurmstepd: error: pyxis:     [ERROR] Invalid image format: {IMAGE}" in text
    assert "python -m launcher logs fp8 benchmark" in text  # where the rest is
    assert "GET /health" not in text


def test_status_shows_the_last_lines_when_no_line_names_a_cause(tmp_path):
    text = _status_text(tmp_path, "".join(f"step {i}\n" for i in range(40)))
    assert "last lines of" in text and "step 39" in text and "step 14\n" not in text


def test_a_sandbox_whose_image_is_broken():
    """The batch script copies the output of a sandbox step that ended by itself into the job's log."""
    log = """\
launcher: starting job 2330 on node-a17 (restart 0)
launcher: the code sandbox step ended by itself with exit code 1; its output:
slurmstepd: error: pyxis: couldn't start container
srun: error: node-a17: task 0: Exited with exit code 1
[launcher 10:00:09] benchmark: job 2330 writing /lustre/fsw/my_account/launcher/artifacts/benchmark/1a29.partial
[launcher 10:00:40] FAILED: the sandbox (started by the batch script; its output is in this job's log) exited \
with code 1 before it was healthy
"""
    assert failure_cause(log) == [
        "launcher: the code sandbox step ended by itself with exit code 1; its output:",
        "slurmstepd: error: pyxis: couldn't start container",
        "srun: error: node-a17: task 0: Exited with exit code 1",
        "[launcher 10:00:40] FAILED: the sandbox (started by the batch script; its output is in this job's log) "
        "exited with code 1 before it was healthy",
    ]


def _local_experiment(root, job_states):
    """A cluster=local experiment as its launch leaves it: one stage per job, each job's state in local_jobs.json
    (no artifact published, so the local runner's word stands)."""
    exp = root / "experiments" / "x"
    exp.mkdir(parents=True)
    stages = {f"stage{i}": StageRecord(kind="quantize", fingerprint="f", artifact=str(root / "artifacts" / str(i)),
                                       action="submitted", job_id=f"local-1-{i}", log=str(exp / f"{i}.log"))
              for i in range(len(job_states))}
    ExperimentState(experiment="x", executor="local", storage_root=str(root), code="", submitted_at=0,
                    stages=stages, umask="027").write(exp / "state.json")
    (exp / "local_jobs.json").write_text(json.dumps({f"local-1-{i}": {"state": s, "started": 0, "ended": 1}
                                                     for i, s in enumerate(job_states)}))
    (root / "experiments" / "LATEST").write_text("x")


@pytest.mark.parametrize("job_states, code", [
    (["COMPLETED", "FAILED"], PIPELINE_FAILED),
    (["CANCELLED", "PENDING"], PIPELINE_FAILED),
    (["COMPLETED", "TIMEOUT"], PIPELINE_FAILED),
    (["COMPLETED", "RUNNING", "PENDING"], OK),  # nothing failed yet
])
def test_status_exits_pipeline_failed_when_a_stage_failed(tmp_path, capsys, job_states, code):
    """A script (or CI) polling `status` reads the outcome from its exit code, as from the launch's."""
    _local_experiment(tmp_path, job_states)
    assert main("status", ["x", f"cluster.storage_root={tmp_path}"]) == code
    assert job_states[-1] in capsys.readouterr().out


def test_status_help_names_its_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main("status", ["--help"])
    assert f"{PIPELINE_FAILED} (PIPELINE_FAILED) when any stage failed" in capsys.readouterr().out
