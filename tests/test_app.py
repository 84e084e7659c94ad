"""`python -m launcher ...` as a user runs it: a fresh process, a clean working directory."""
import os
import subprocess
import sys

import pytest

from launcher.exit_codes import CONFIG_ERROR, OK, PIPELINE_FAILED


def run_launcher(cwd, *args):
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_dry_run_prints_the_plan_and_writes_scripts(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8_redrafter", "launcher.dry_run=true")
    assert result.returncode == 0, result.stderr
    for words in ("train_drafter", "build_drafter_engine", "GPU-hours requested: 19.5", "critical path",
                  "nothing was submitted"):
        assert words in result.stdout
    scripts = tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter" / "scripts"
    # one script per stage: the engine's smoke run is the tenth
    assert {p.stem for p in scripts.glob("*.sbatch")} == {
        "download_model", "download_dataset", "calibration_data", "quantize", "train_drafter", "convert_drafter",
        "build_drafter_engine", "benchmark", "smoke_run", "report"}


def test_bad_config_exits_before_writing_anything(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8_redrafter", "launcher.dry_run=true", "drafter.draft_len_per_beam=5")
    assert result.returncode == 2
    assert "drafter.draft_len_per_beam=5" in result.stdout and "allowed: 1..3" in result.stdout
    assert not (tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter" / "scripts").exists()


def test_typo_fails_at_compose_time_naming_the_key(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8", "launcher.dry_run=true", "drafter.num_layer=3")
    assert result.returncode == CONFIG_ERROR and "num_layer" in result.stdout + result.stderr


@pytest.mark.parametrize("overrides, says", [
    (["model=no_such_model"], "no_such_model"),  # an unknown group option
    (["drafter.num_layers=[1"], "'[1'"),  # override syntax
    (["drafter.num_layers=four"], "four"),  # a value of the wrong type
    (["-m", "drafter.num_layers=1,four"], "four"),  # a sweep point's value (composed by launcher.sweep)
    (["-m", "model=openmath_nemotron_14b_kaggle,no_such_model"], "no_such_model"),  # a sweep point's option
])
def test_hydras_compose_errors_exit_with_the_config_error_code(tmp_path, overrides, says):
    """Hydra prints its compose errors and exits 1, the code of any crash; a validation error exited 2. Both are
    the input's, nothing submitted: CONFIG_ERROR."""
    multirun = [o for o in overrides if o == "-m"]  # before the overrides, or argparse refuses what follows it
    result = run_launcher(tmp_path, *multirun, "+experiment=fp8_redrafter", "launcher.dry_run=true",
                          *[o for o in overrides if o != "-m"])
    assert result.returncode == CONFIG_ERROR, result.stdout + result.stderr
    assert says in result.stdout + result.stderr
    assert not (tmp_path / "launcher_storage" / "experiments").exists()


def test_hydras_full_errors_exit_with_the_config_error_code_too(tmp_path):
    """HYDRA_FULL_ERROR=1 makes Hydra raise instead of exiting 1: the traceback, and still CONFIG_ERROR."""
    result = subprocess.run([sys.executable, "-m", "launcher", "+experiment=fp8", "model=no_such_model"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert result.returncode == CONFIG_ERROR and "Traceback" in result.stderr, result.stdout + result.stderr


def test_a_subcommand_with_nothing_to_act_on_is_a_usage_error(tmp_path):
    """It used to exit 1, the code of a crash."""
    status = run_launcher(tmp_path, "status", f"cluster.storage_root={tmp_path}")
    assert status.returncode == CONFIG_ERROR and f"error: no experiment has been launched on {tmp_path}" in status.stderr
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "LATEST").write_text("x")
    logs = run_launcher(tmp_path, "logs", "x", "quantize", f"cluster.storage_root={tmp_path}")
    assert logs.returncode == CONFIG_ERROR and "error: experiment 'x' has no state at" in logs.stderr


def test_the_exit_codes_mean_what_the_report_job_means():
    """`report` passes jobs.report's code on: "written, but some configuration did not finish" is PIPELINE_FAILED."""
    from jobs import report, run_stage

    assert report.REPORT_INCOMPLETE == run_stage.REPORT_INCOMPLETE == PIPELINE_FAILED
    assert len({OK, CONFIG_ERROR, PIPELINE_FAILED, 1}) == 4  # 1: Python's code for an uncaught exception
