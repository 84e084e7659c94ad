"""`cluster=local`: the same plan run on this machine in dependency order, with the same artifacts and state,
the GPU tools replaced by the test stand-ins (tests/standins)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from launcher.exit_codes import OK, PIPELINE_FAILED

STANDINS = Path(__file__).resolve().parents[1] / "standins"


def run_local(root, *overrides, env=None):
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "launcher", "+experiment=fp8", "cluster=local", f"cluster.storage_root={root}",
         f"cluster.python={sys.executable}", f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}",
         "quantization.calib_size=16", *overrides],
        cwd=root, env=environment, capture_output=True, text=True, timeout=300)


def test_local_runs_every_stage_in_order_then_reuses_them(tmp_path):
    first = run_local(tmp_path)
    assert first.returncode == OK, first.stdout + first.stderr
    assert "GPU-hours requested:" in first.stdout and "running 8 stage(s) here, one after another" in first.stdout
    assert "fp8: all 8 stage(s) completed here" in first.stdout
    assert "submitted" not in first.stdout.split("running 8 stage(s)")[1]  # they ran: nothing to follow
    order = [line.split(":")[0] for line in first.stdout.splitlines() if line.endswith(": COMPLETED")]
    assert order == ["download_model", "download_dataset", "calibration_data", "quantize", "build_engine",
                     "benchmark", "smoke_run", "report"]
    state = json.loads((tmp_path / "experiments" / "fp8" / "state.json").read_text())
    for record in state["stages"].values():
        assert (Path(record["artifact"]) / "manifest.json").is_file()
    results = json.loads((Path(state["stages"]["benchmark"]["artifact"]) / "results.json").read_text())
    assert results["summary"]["num_finished"] >= 10
    assert "batch throughput" in (tmp_path / "experiments" / "fp8" / "report.md").read_text()
    again = run_local(tmp_path)
    assert again.returncode == OK and "nothing to run: every stage of fp8 is complete" in again.stdout
    report = tmp_path / "experiments" / "fp8" / "report.md"
    report.unlink()
    regenerated = subprocess.run([sys.executable, "-m", "launcher", "report", "fp8", f"cluster.storage_root={tmp_path}"],
                                 capture_output=True, text=True, timeout=120)
    assert regenerated.returncode == 0, regenerated.stdout + regenerated.stderr
    assert "batch throughput" in report.read_text()


def test_a_local_failure_cancels_what_depends_on_it(tmp_path):
    """The launch ran the stages itself: it says what failed and why (its log's cause lines, as `status` shows
    them) and exits PIPELINE_FAILED, where it used to exit 0 with "FAILED" and no reason."""
    result = run_local(tmp_path, env={"STANDIN_FAIL": "trtllm-build"})
    assert result.returncode == PIPELINE_FAILED, result.stdout + result.stderr
    states = dict(line.rsplit(": ", 1) for line in result.stdout.splitlines()
                  if line.rsplit(": ", 1)[-1] in ("COMPLETED", "FAILED", "CANCELLED"))
    assert states["build_engine"] == "FAILED" and states["benchmark"] == "CANCELLED"
    assert states["quantize"] == "COMPLETED"
    assert ("fp8: 5 of 8 stage(s) completed here" in result.stdout and "; failed: build_engine; cancelled (an input "
            "did not complete): benchmark" in result.stdout), result.stdout
    cause = result.stdout.split("build_engine FAILED: cause, from ")[1]
    assert "FAILED: trtllm-build exited with code" in cause and "simulated failure" in cause, result.stdout
    status = subprocess.run([sys.executable, "-m", "launcher", "status", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120).stdout
    assert "build_engine FAILED" in status and "simulated failure" in status
    # The report job ran (afterany) and showed the failed configuration; regenerated, it says so in its code.
    report = subprocess.run([sys.executable, "-m", "launcher", "report", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == PIPELINE_FAILED and "some configurations did not finish" in report.stdout


def test_a_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path):
    """A published artifact truncated on the storage: a dry run reports it and leaves it; a launch moves it aside
    (kept, for the user) and rebuilds it, where it used to call it complete and submit nothing."""
    from jobs import artifacts

    assert run_local(tmp_path).returncode == 0
    state_file = tmp_path / "experiments" / "fp8" / "state.json"
    quantize = Path(json.loads(state_file.read_text())["stages"]["quantize"]["artifact"])
    shard = sorted(quantize.glob("*.safetensors"))[0]
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size // 2)
    problem = f"{shard.name} is {size // 2} bytes, manifest.json says {size}"

    dry = run_local(tmp_path, "launcher.dry_run=true")
    assert f"quantize: artifact {quantize} is damaged: {problem}; a launch moves it aside and rebuilds it" in dry.stdout
    assert "damaged: to rebuild" in dry.stdout  # the plan's table too
    assert sorted(p.name for p in quantize.parent.iterdir()) == [quantize.name, quantize.name + ".job"]

    again = run_local(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    aside = [p for p in quantize.parent.iterdir() if p.name.startswith(quantize.name + ".damaged-")]
    assert len(aside) == 1 and (aside[0] / shard.name).stat().st_size == size // 2  # kept as it was found
    assert f"quantize: artifact {quantize} is damaged: {problem}; moved aside to {aside[0]}" in again.stdout
    records = json.loads(state_file.read_text())["stages"]
    assert records["quantize"]["action"] == "submitted" and records["quantize"]["damaged_moved_to"] == str(aside[0])
    assert {r["action"] for n, r in records.items() if n != "quantize"} == {"complete"}
    assert [line for line in again.stdout.splitlines() if line.endswith(": COMPLETED")] == ["quantize: COMPLETED"]
    assert artifacts.problem(quantize) is None and shard.stat().st_size == size


def test_a_cluster_python_that_is_not_there_fails_the_stage_saying_so(tmp_path):
    """cluster.python names the interpreter where the job runs (an image with only `python3` has no
    `python`): the job checks it first, and `status` shows that line as the cause."""
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-m", "launcher", "+experiment=bf16", "cluster=local", f"cluster.storage_root={tmp_path}",
         "cluster.python=python-not-installed-here"], cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=300)
    assert "download_model: FAILED" in result.stdout, result.stdout + result.stderr
    message = ("launcher: error: cluster.python=python-not-installed-here is not on the PATH where the job runs; "
               "set cluster.python to its interpreter (e.g. python3)")
    assert message in (tmp_path / "experiments" / "bf16" / "logs" / "download_model.log").read_text()
    status = subprocess.run([sys.executable, "-m", "launcher", "status", f"cluster.storage_root={tmp_path}"],
                            capture_output=True, text=True, timeout=120).stdout
    assert message in status


def _wait_for_text(path, text, process, timeout=240):
    """Poll a log until `text` appears (the stage is where the test wants it); fails if the launch ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError(f"the launch ended before {text!r} appeared in {path}: {process.stdout.read()}")
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} never appeared in {path}")


def _processes_mentioning(text):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:  # ended meanwhile
            pass
    return found


def test_cancel_from_another_shell_stops_a_local_run(tmp_path):
    """cluster=local runs the stages in the foreground; `cancel` from another shell stops the running stage and its
    tool, marks it and those after it CANCELLED, says which, and the launch exits PIPELINE_FAILED saying why. A
    repeat cancels nothing. (`cancel` used to print "cancelled 7 job(s)" and leave the run going.)"""
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled",
                   "STANDIN_SLEEP_S": "trtllm-build=600"}
    launch = subprocess.Popen(
        [sys.executable, "-m", "launcher", "+experiment=fp8", "cluster=local", f"cluster.storage_root={tmp_path}",
         f"cluster.python={sys.executable}", f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}",
         "quantization.calib_size=16"], cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    cancel = [sys.executable, "-m", "launcher", "cancel", "fp8", f"cluster.storage_root={tmp_path}"]
    try:
        _wait_for_text(tmp_path / "experiments" / "fp8" / "logs" / "build_engine.log", "sleeping 600", launch)
        assert _processes_mentioning(str(tmp_path / "artifacts" / "build_engine"))  # the tool, sleeping
        result = subprocess.run(cancel, capture_output=True, text=True, timeout=120)
        assert result.returncode == OK, result.stdout + result.stderr
        jobs = {name: record["job_id"] for name, record in
                json.loads((tmp_path / "experiments" / "fp8" / "state.json").read_text())["stages"].items()}
        assert (f"cancelled 4 job(s) of fp8: build_engine ({jobs['build_engine']}, RUNNING), benchmark "
                f"({jobs['benchmark']}, PENDING), smoke_run ({jobs['smoke_run']}, PENDING), report "
                f"({jobs['report']}, PENDING); the launch running them "
                "stopped; 4 had already ended" in result.stdout), result.stdout
        out, _ = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    assert launch.returncode == PIPELINE_FAILED, out
    assert ("fp8: 4 of 8 stage(s) completed here" in out and "cancelled (stopped by python -m launcher cancel): "
            "build_engine, benchmark, smoke_run, report" in out), out
    assert not _processes_mentioning(str(tmp_path / "artifacts" / "build_engine"))  # its tool was stopped with it
    assert "stopped by signal 15" in (tmp_path / "experiments" / "fp8" / "logs" / "build_engine.log").read_text()
    again = subprocess.run(cancel, capture_output=True, text=True, timeout=120)
    assert again.returncode == OK and "nothing to cancel: all 8 job(s) of fp8 already ended" in again.stdout


def test_a_launch_after_a_change_of_drafter_leaves_only_the_new_plans_scripts(tmp_path):
    """Under the storage lock, a launch removes the scripts and specs of the stages its plan no longer has, whose
    jobs ended (a dry run's side: tests/test_stage_files.py). They used to stay: 9 + 1 scripts for 7 stages."""
    environment = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}",
                   "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled"}

    def launch(*overrides):  # with an interpreter that is not there, every stage fails at once: only plans matter
        return subprocess.run([sys.executable, "-m", "launcher", "+experiment=fp8_redrafter", "cluster=local",
                               f"cluster.storage_root={tmp_path}", "cluster.python=python-not-installed-here",
                               *overrides], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)

    exp = tmp_path / "experiments" / "fp8_redrafter"
    first = launch()
    assert first.returncode == PIPELINE_FAILED, first.stdout + first.stderr
    assert len(list((exp / "scripts").glob("*.sbatch"))) == 10
    second = launch("drafter=none")
    assert second.returncode == PIPELINE_FAILED, second.stdout + second.stderr
    assert ("removed the scripts of stages no longer in the plan: build_drafter_engine, convert_drafter, "
            "train_drafter" in second.stdout), second.stdout
    plan = sorted(json.loads((exp / "state.json").read_text())["stages"])
    assert len(plan) == 8
    assert sorted(p.stem for p in (exp / "scripts").glob("*.sbatch")) == plan
    assert sorted(p.stem for p in (exp / "stages").glob("*.json")) == plan
