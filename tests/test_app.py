"""`python -m launcher ...` as a user runs it: a fresh process, a clean working directory."""
import subprocess
import sys


def run_launcher(cwd, *args):
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_dry_run_prints_the_plan_and_writes_scripts(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8_redrafter", "launcher.dry_run=true")
    assert result.returncode == 0, result.stderr
    for words in ("train_drafter", "build_drafter_engine", "GPU-hours requested: 25.0", "critical path",
                  "nothing was submitted"):
        assert words in result.stdout
    scripts = tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter" / "scripts"
    assert len(list(scripts.glob("*.sbatch"))) == 9


def test_bad_config_exits_before_writing_anything(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8_redrafter", "launcher.dry_run=true", "drafter.draft_len_per_beam=5")
    assert result.returncode == 2
    assert "drafter.draft_len_per_beam=5" in result.stdout and "allowed: 1..3" in result.stdout
    assert not (tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter" / "scripts").exists()


def test_typo_fails_at_compose_time_naming_the_key(tmp_path):
    result = run_launcher(tmp_path, "+experiment=fp8", "launcher.dry_run=true", "drafter.num_layer=3")
    assert result.returncode != 0 and "num_layer" in result.stderr
