"""Rendered batch scripts: #SBATCH resources, pyxis flags, secrets by name only, valid bash."""
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from launcher.launch import dry_run
from launcher.scripts import ExperimentDir, format_time_limit, render_script
from rich.console import Console
from tests.helpers import NGC_IMAGE, example_slurm_plan, plan_for

@pytest.fixture(scope="module")
def slurm_plan(tmp_path_factory):
    return example_slurm_plan(tmp_path_factory.mktemp("storage"))


def _script(plan, name, dependency=None):
    from launcher.dispatch.storage import code_snapshot_dir
    return render_script(plan, plan.stages[name], ExperimentDir(plan.storage_root, plan.experiment), dependency,
                         code_snapshot_dir(plan.storage_root))


def _sbatch(script):
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M))


def test_sbatch_resources(slurm_plan):
    sbatch = _sbatch(_script(slurm_plan, "train_drafter", "afterok:11:12"))
    assert sbatch["gpus-per-node"] == "2" and sbatch["nodes"] == "1"
    assert sbatch["time"] == "12:00:00"  # the example cluster's train_drafter limit
    assert (sbatch["account"], sbatch["partition"], sbatch["qos"]) == ("my_account", "batch", "normal")
    assert sbatch["dependency"] == "afterok:11:12" and sbatch["kill-on-invalid-dep"] == "yes"
    assert "requeue" in sbatch and sbatch["signal"] == "USR2@90"


def test_cpu_stages_go_to_the_cpu_partition_without_gpus(slurm_plan):
    sbatch = _sbatch(_script(slurm_plan, "download_model"))
    assert sbatch["partition"] == "cpu" and "gpus-per-node" not in sbatch and "dependency" not in sbatch


def test_pyxis_flags(slurm_plan):
    script = _script(slurm_plan, "quantize")
    root = slurm_plan.storage_root
    assert f"'--container-image={NGC_IMAGE}'" in script  # quoted: `#` stays part of the image name
    assert f"--container-mounts={root}:{root},/lustre/fsw/my_account/hf_cache:/hf_cache" in script
    assert re.search(rf"--container-workdir={root}/code/[0-9a-f]{{16}} ", script)
    assert "--no-container-mount-home" in script
    assert "--container-env=HF_TOKEN,WANDB_API_KEY" in script
    # The StageJob of the stage's spec, pickled by submitit in the job's folder (requeued through submitit on USR2).
    assert f" python -u -m submitit.core._submit {root}/experiments/fp8_redrafter/submitit)\n" in script
    assert f" python -u -m jobs.run_stage {root}/experiments/fp8_redrafter/stages/quantize.json)\n" in script


def test_benchmark_starts_the_sandbox_beside_it_without_secrets(slurm_plan):
    script = _script(slurm_plan, "benchmark")
    sandbox_line = next(line for line in script.splitlines() if line.startswith("  srun --overlap"))
    assert "--container-image=/lustre/fsw/my_account/images/launcher-sandbox.sqsh" in sandbox_line
    assert "--container-env" not in sandbox_line and "--container-workdir=/tmp" in sandbox_line
    # The image does not hold our code: the launch's snapshot, read-only, and nothing else of the storage.
    code = re.search(r"--container-mounts=(\S+) ", sandbox_line)[1]
    assert re.fullmatch(rf"{slurm_plan.storage_root}/code/[0-9a-f]{{16}}:{slurm_plan.storage_root}/code/[0-9a-f]{{16}}:ro",
                        code), code
    # ... named in the command itself (pyxis gives the image's ENV precedence), without the secrets, limited
    assert sandbox_line.endswith(
        f"env -u HF_TOKEN -u WANDB_API_KEY PYTHONPATH={code.split(':')[0]} python -m jobs.sandbox_guard --host "
        '127.0.0.1 --memory-limit-mb 4096 --timeout-s 10.0 --base-port 6000 --port-file - > "$LAUNCHER_SANDBOX_PORT_FILE" '
        '2> "$sandbox_log" &')
    assert 'echo "$code" > "$LAUNCHER_SANDBOX_EXIT"' in script
    assert (f"export LAUNCHER_SANDBOX_EXIT={slurm_plan.storage_root}/experiments/fp8_redrafter/logs/sandbox-exit."
            "$SLURM_JOB_ID") in script


def test_the_sandbox_steps_own_mounts_and_variables(tmp_path):
    """serving.sandbox.mounts and .env reach the sandbox step, and only it; without a container the step
    inherits the batch script's PYTHONPATH (the snapshot first) and gets no pyxis flags."""
    sandbox = ("serving.sandbox.mounts=[/data/tables:/tables:ro]", "+serving.sandbox.env.OMP_NUM_THREADS=2")
    plan = plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}", *sandbox)
    script = _script(plan, "benchmark")
    line = next(line for line in script.splitlines() if line.startswith("  srun --overlap"))
    code = re.search(r"--container-mounts=([^:]+):", line)[1]
    assert f"--container-mounts={code}:{code}:ro,/data/tables:/tables:ro " in line
    assert f"env -u HF_TOKEN -u WANDB_API_KEY OMP_NUM_THREADS=2 PYTHONPATH={code} python -m jobs.sandbox_guard" in line
    assert "/data/tables" not in script.replace(line, "")  # not the stage step's
    bare = plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}",
                    "cluster.container_runtime=none", sandbox[1])
    line = next(line for line in _script(bare, "benchmark").splitlines() if line.startswith("  srun --overlap"))
    assert line.startswith("  srun --overlap --ntasks=1 env -u HF_TOKEN -u WANDB_API_KEY OMP_NUM_THREADS=2 python -m "
                           "jobs.sandbox_guard ") and "PYTHONPATH" not in line


def test_offline_compute_nodes_get_offline_wandb(slurm_plan):
    assert "export WANDB_MODE=offline" in _script(slurm_plan, "train_drafter")
    assert "export WANDB_RUN_GROUP=fp8_redrafter" in _script(slurm_plan, "train_drafter")


def test_scripts_are_valid_bash(slurm_plan, tmp_path):
    for name in slurm_plan.stages:
        path = tmp_path / f"{name}.sbatch"
        path.write_text(_script(slurm_plan, name, "afterok:1"))
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_dry_run_writes_every_script_and_no_secret(tmp_path, monkeypatch):
    secret = "hf_" + "s3cr3t" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    plan = plan_for("cluster=example_slurm", "+experiment=aimo2_campaign", f"cluster.storage_root={tmp_path}")
    exp = dry_run(plan, Console(file=open("/dev/null", "w")))
    scripts = sorted(p.stem for p in (exp.root / "scripts").iterdir())
    assert scripts == sorted(plan.stages)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert "#SBATCH --dependency=afterok:<quantize[qformat=fp8]>:<train_drafter>" in \
        (exp.root / "scripts" / "convert_drafter.sbatch").read_text()


@pytest.mark.parametrize("minutes,expected", [(15, "00:15:00"), (90, "01:30:00"), (24 * 60 + 5, "1-00:05:00")])
def test_time_limit_format(minutes, expected):
    assert format_time_limit(minutes) == expected


# --------------------------------------------------------------------------------------------------
# What reaches the container, and what a job's log says (issue 8, defect 10: seen under pyxis 0.24)
# --------------------------------------------------------------------------------------------------
def _launch(script, launched=True):
    """The stage's own srun, the script's last command, as words, with the step a launch runs (`launched`) or
    the one a by-hand submission runs."""
    lines = script.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("srun "))
    words = shlex.split("\n".join(lines[start:]).replace("\\\n", " "))
    choices = re.findall(r"^  stage_step=\((.*)\)$", script, re.M)
    return words[:-1] + shlex.split(choices[0 if launched else 1])


def _container_env(words):
    return next(w for w in words if w.startswith("--container-env=")).split("=", 1)[1].split(",")


def _in_container(words):
    """What srun runs in the container: the words after srun's own flags."""
    return words[next(i for i, w in enumerate(words) if i and not w.startswith("--")):]


@pytest.fixture(scope="module")
def env_plan(tmp_path_factory):
    return plan_for("cluster=example_slurm", "+experiment=fp8_redrafter",
                    f"cluster.storage_root={tmp_path_factory.mktemp('storage')}",
                    "+cluster.env.NCCL_DEBUG=WARN", "+cluster.env.TOKENIZERS_PARALLELISM='false'")


def test_every_variable_the_script_exports_is_named_in_container_env(env_plan):
    """pyxis gives the image's own ENV precedence over any variable not named in --container-env: an image
    setting PYTHONPATH would run its own code, not the launch's snapshot. Derived from the script, so an
    export added later without being named fails here."""
    for name in env_plan.stages:
        script = _script(env_plan, name)
        exported = re.findall(r"^\s*export (\w+)=", script, re.M)
        assert {"PYTHONPATH", "HF_HOME", "WANDB_RUN_GROUP", "NCCL_DEBUG", "TOKENIZERS_PARALLELISM"} <= set(exported)
        named = _container_env(_launch(script))
        assert set(exported) | {"HF_TOKEN", "WANDB_API_KEY"} <= set(named), (name, set(exported) - set(named))


def test_cluster_env_is_exported_by_value(env_plan):
    script = _script(env_plan, "quantize")
    assert "export NCCL_DEBUG=WARN\n" in script and "export TOKENIZERS_PARALLELISM=false\n" in script


def test_a_dry_runs_scripts_name_a_code_snapshot_that_exists(tmp_path):
    """A dry run's scripts are submittable by hand: pyxis fails "couldn't chdir to .../code/<hash>" on a
    snapshot that only a launch used to take."""
    plan = plan_for("cluster=example_slurm", "+experiment=fp8_redrafter", f"cluster.storage_root={tmp_path}")
    exp = dry_run(plan, Console(file=open(os.devnull, "w")))
    scripts = list((exp.root / "scripts").iterdir())
    assert len(scripts) == len(plan.stages)
    for path in scripts:
        script = path.read_text()
        workdir = next(w for w in _launch(script) if w.startswith("--container-workdir=")).split("=", 1)[1]
        pythonpath = shlex.split(re.search(r"^export PYTHONPATH=(.*?)\$\{PYTHONPATH", script, re.M).group(1))[0]
        for directory in (workdir, pythonpath):
            assert (Path(directory) / "jobs" / "run_stage.py").is_file(), (path.name, directory)


def test_the_job_says_when_cluster_python_is_not_in_the_image(slurm_plan, tmp_path):
    """An image with only `python3`: the rendered launch line, run by bash with a PATH that lacks `python`."""
    inner = shlex.join(_in_container(_launch(_script(slurm_plan, "quantize"))))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh"))
    missing = subprocess.run(["/bin/bash", "-c", inner], env={"PATH": str(bin_dir)}, capture_output=True, text=True)
    assert missing.returncode == 127
    assert missing.stderr == (f"launcher: error: cluster.python=python is not in the container image {NGC_IMAGE}; "
                              "set cluster.python to its interpreter (e.g. python3)\n")
    (bin_dir / "python").write_text('#!/bin/sh\necho "python ran with: $*"\n')
    (bin_dir / "python").chmod(0o755)
    present = subprocess.run(["/bin/bash", "-c", inner], env={"PATH": str(bin_dir)}, capture_output=True, text=True)
    folder = f"{slurm_plan.storage_root}/experiments/fp8_redrafter/submitit"
    assert (present.returncode, present.stdout) == (0, f"python ran with: -u -m submitit.core._submit {folder}\n")


# srun without Slurm: the sandbox step (--overlap) serves until it is stopped, or exits at once with
# $FAKE_SANDBOX_EXIT; the stage's step ends with $FAKE_STAGE_EXIT once the sandbox has started (or ended).
FAKE_SRUN = """#!/bin/bash
if [[ " $* " == *" --overlap "* ]]; then
  echo $$ > "$FAKE_SANDBOX_PID"
  echo "sandbox: serving" >&2  # its log is its stderr: its stdout is the port file
  [ -n "${FAKE_SANDBOX_EXIT:-}" ] && exit "$FAKE_SANDBOX_EXIT"
  exec sleep 120
fi
while [ ! -s "$FAKE_SANDBOX_PID" ] || { [ -n "${FAKE_SANDBOX_EXIT:-}" ] && [ ! -s "$LAUNCHER_SANDBOX_EXIT" ]; }; do
  sleep 0.05
done
echo "stage: done"
exit "${FAKE_STAGE_EXIT:-0}"
"""


def _run_benchmark_script(plan, tmp_path, **fake):
    """The benchmark's batch script, run by bash as slurmd does (its output to a log file), with FAKE_SRUN."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "benchmark.sbatch"
    script.write_text(_script(plan, "benchmark"))
    (ExperimentDir(plan.storage_root, plan.experiment).root / "logs").mkdir(parents=True, exist_ok=True)
    pid_file, log = tmp_path / "sandbox.pid", tmp_path / "benchmark.log"
    pid_file.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "FAKE_SANDBOX_PID": str(pid_file), **fake}
    with open(log, "w") as out:
        code = subprocess.run(["bash", str(script)], stdout=out, stderr=subprocess.STDOUT, env=env,
                              timeout=60).returncode
    return code, log.read_text(), int(pid_file.read_text())


def _gone(pid):
    """Whether the process ended (waiting for it up to 10 s, then killing what is left of a failed test)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return False


@pytest.mark.parametrize("stage_exit", [0, 3])
def test_the_script_stops_the_sandbox_step_itself_saying_so(slurm_plan, tmp_path, stage_exit):
    """Left to Slurm at the job's end, the sandbox step's `*** STEP ... CANCELLED ***` and `srun: error: ...
    Terminated` ended a successful benchmark's log. The script stops it, and its log says so last."""
    from launcher.scripts import SANDBOX_STOP

    code, log, sandbox_pid = _run_benchmark_script(slurm_plan, tmp_path, FAKE_STAGE_EXIT=str(stage_exit))
    assert code == stage_exit  # the stage's outcome is the job's
    assert _gone(sandbox_pid)
    assert log.splitlines()[-1].startswith(SANDBOX_STOP), log
    assert "sandbox: serving" not in log  # in the sandbox's own log: nothing of it here unless it fails
    assert (Path(slurm_plan.storage_root) / "experiments/fp8_redrafter/logs/sandbox.4242.log").read_text() \
        == "sandbox: serving\n"


def test_a_sandbox_that_ends_by_itself_is_reported_in_the_jobs_log(slurm_plan, tmp_path):
    code, log, _ = _run_benchmark_script(slurm_plan, tmp_path, FAKE_SANDBOX_EXIT="1")
    assert code == 0
    assert "launcher: the code sandbox step ended by itself with exit code 1; its output:\nsandbox: serving\n" in log
    exit_file = Path(slurm_plan.storage_root) / "experiments/fp8_redrafter/logs/sandbox-exit.4242"
    assert exit_file.read_text() == "1\n"  # what the job reads to fail at once
