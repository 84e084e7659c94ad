"""Rendered batch scripts: #SBATCH resources, pyxis flags, secrets by name only, valid bash."""
import contextlib
import re
import socket
import subprocess

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
    assert f"python -u -m jobs.run_stage {root}/experiments/fp8_redrafter/stages/quantize.json" in script


def test_benchmark_starts_the_sandbox_beside_it_without_secrets(slurm_plan):
    script = _script(slurm_plan, "benchmark")
    sandbox_line = next(line for line in script.splitlines() if line.startswith("(set +e; srun --overlap"))
    assert "--container-image=/lustre/fsw/my_account/images/nemo-skills-sandbox.sqsh" in sandbox_line
    assert "--container-env" not in sandbox_line
    assert "--container-mounts" not in sandbox_line and "--container-workdir=/tmp" in sandbox_line
    assert ("env -u HF_TOKEN -u WANDB_API_KEY python -m flask --app "
            "nemo_skills.code_execution.local_sandbox.local_sandbox_server run --host 127.0.0.1 --port "
            '"$sandbox_port"; echo $? > "$LAUNCHER_SANDBOX_EXIT") &') in script
    assert (f"export LAUNCHER_SANDBOX_EXIT={slurm_plan.storage_root}/experiments/fp8_redrafter/logs/sandbox-exit."
            "$SLURM_JOB_ID") in script


def _hold_two_ports(stack) -> int:
    """Listen on 6000 + k and 6001 + k for the first k where both are free; return a job id with that k."""
    for k in range(100, 990):
        try:
            for port in (6000 + k, 6001 + k):
                listener = stack.enter_context(socket.socket())
                listener.bind(("127.0.0.1", port))
                listener.listen()
            return 4000 + k
        except OSError:
            stack.close()
    pytest.skip("no two free ports in 6100-6990")


def test_the_sandbox_port_skips_ports_in_use(slurm_plan):
    """Slurm's own daemons hold 6817-6819, which 6000 + SLURM_JOB_ID % 1000 reaches: the script moves on."""
    lines = _script(slurm_plan, "benchmark").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("sandbox_port="))
    choose = "\n".join(lines[start:start + 3])
    assert "export LAUNCHER_SANDBOX_PORT=$sandbox_port" in choose
    with contextlib.ExitStack() as stack:
        job_id = _hold_two_ports(stack)  # 6000 + job_id % 1000 and the port after it now listen
        chosen = subprocess.run(["bash", "-c", f"set -euo pipefail; SLURM_JOB_ID={job_id}; {choose}; "
                                 "echo $LAUNCHER_SANDBOX_PORT"], capture_output=True, text=True, check=True)
    port = 6000 + job_id % 1000
    assert int(chosen.stdout) >= port + 2  # past both (and past anything else listening there)


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
