"""A user's own cluster config, outside the package: `--config-dir DIR` (Hydra's flag, taken by every subcommand
too), `-cd DIR`, or `LAUNCHER_CONFIG_DIR=DIR`, for the launch and for status, logs, cancel, report and sync."""
import os
import subprocess
import sys

import pytest

from launcher import status, wandb_sync
from launcher.contract import ExperimentState, StageRecord
from launcher.exit_codes import CONFIG_ERROR
from launcher.scripts import ExperimentDir

SUBCOMMANDS = {  # each as its __main__ dispatch calls it
    "status": lambda argv: status.main("status", argv),
    "logs": lambda argv: status.main("logs", ["download_model", *argv]),
    "cancel": lambda argv: status.main("cancel", argv),
    "report": lambda argv: status.main("report", argv),
    "sync": lambda argv: wandb_sync.main(argv),
}
WAYS = ["--config-dir DIR", "--config-dir=DIR", "-cd DIR", "LAUNCHER_CONFIG_DIR=DIR"]


@pytest.fixture
def user_config(tmp_path):
    """~/.config/launcher as the README says to make it: a cluster of one's own, storage of its own."""
    config_dir, storage = tmp_path / "config", tmp_path / "storage"
    (config_dir / "cluster").mkdir(parents=True)
    (config_dir / "cluster" / "mycluster.yaml").write_text(f"""\
defaults:
  - cluster_schema
  - _self_
name: mycluster
executor: local
gpus_per_node: 2
gpu_type: h100
max_nodes: 1
container_runtime: none
storage_root: {storage}
""")
    storage.mkdir()
    return config_dir, storage


def arguments(way, config_dir, monkeypatch):
    if way.startswith("LAUNCHER_CONFIG_DIR"):
        monkeypatch.setenv("LAUNCHER_CONFIG_DIR", str(config_dir))
        return []
    return way.replace("DIR", str(config_dir)).split(" ")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_reads_the_users_cluster(user_config, subcommand, way, monkeypatch, capsys):
    """Nothing launched on the user's storage yet: each subcommand says so, naming that storage, so it composed
    the user's cluster (the package's `local` keeps ./launcher_storage, `example_slurm` /lustre/...)."""
    config_dir, storage = user_config
    with pytest.raises(SystemExit) as stop:
        SUBCOMMANDS[subcommand]([*arguments(way, config_dir, monkeypatch), "cluster=mycluster"])
    assert stop.value.code == CONFIG_ERROR
    assert f"no experiment has been launched on {storage}" in capsys.readouterr().err


def launched(storage):
    """An experiment as a launch on the user's cluster leaves it: state, log, the LATEST pointer."""
    exp = ExperimentDir(str(storage), "mine")
    exp.log("download_model").parent.mkdir(parents=True)
    exp.log("download_model").write_text("downloading nvidia/OpenMath-Nemotron-14B-kaggle\n")
    fingerprint = "0123456789abcdef"
    ExperimentState(
        experiment="mine", executor="local", storage_root=str(storage), code="", submitted_at=0, umask="027",
        stages={"download_model": StageRecord(
            kind="download_model", fingerprint=fingerprint, action="submitted", job_id="7",
            log=str(exp.log("download_model")), artifact=str(storage / "artifacts" / "download_model" / fingerprint))},
    ).write(exp.state)
    (storage / "experiments" / "LATEST").write_text("mine")


@pytest.mark.parametrize("way", WAYS)
def test_status_and_logs_of_an_experiment_on_the_users_cluster(user_config, way, monkeypatch, capsys):
    config_dir, storage = user_config
    launched(storage)
    args = arguments(way, config_dir, monkeypatch)
    assert status.main("status", [*args, "cluster=mycluster"]) == 0
    out = capsys.readouterr().out
    assert "mine (local)" in out and "download_model" in out
    assert status.main("logs", ["mine", "download_model", *args, "cluster=mycluster"]) == 0
    assert capsys.readouterr().out == "downloading nvidia/OpenMath-Nemotron-14B-kaggle\n"


def test_several_config_dirs_and_hydra_searchpath_together(user_config, tmp_path, capsys):
    config_dir, storage = user_config
    other = tmp_path / "other"
    (other / "cluster").mkdir(parents=True)
    launched(storage)
    argv = ["--config-dir", str(other), "-cd", str(config_dir), f"hydra.searchpath=[file://{tmp_path}]",
            "cluster=mycluster"]
    assert status.main("status", argv) == 0
    assert "mine (local)" in capsys.readouterr().out


def test_a_config_dir_that_is_not_there_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        status.main("status", ["--config-dir", str(tmp_path / "nope"), "cluster=mycluster"])
    assert stop.value.code == CONFIG_ERROR
    assert f"--config-dir {tmp_path / 'nope'}: no such directory" in capsys.readouterr().err


def run_launcher(cwd, *args, env=None):
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_the_launch_and_a_subcommand_with_launcher_config_dir(user_config, tmp_path):
    config_dir, storage = user_config
    env = {"LAUNCHER_CONFIG_DIR": str(config_dir)}
    result = run_launcher(tmp_path, "+experiment=fp8", "cluster=mycluster", "launcher.dry_run=true", env=env)
    assert result.returncode == 0, result.stderr
    assert len(list((storage / "experiments" / "fp8" / "scripts").glob("*.sbatch"))) == 8
    launched(storage)
    result = run_launcher(tmp_path, "status", "--config-dir", str(config_dir), "cluster=mycluster")
    assert result.returncode == 0, result.stderr
    assert "mine (local)" in result.stdout


def test_a_launcher_config_dir_that_is_not_there_is_named(tmp_path):
    result = run_launcher(tmp_path, "status", env={"LAUNCHER_CONFIG_DIR": str(tmp_path / "nope")})
    assert result.returncode == CONFIG_ERROR
    assert f"LAUNCHER_CONFIG_DIR: no such directory: {tmp_path / 'nope'}" in result.stderr
