"""An experiment's scripts are exactly its current plan's: a change of `drafter=` used to leave the earlier plan's
scripts and specs beside the new ones (11 scripts for an 8-stage plan). A launch on cluster=local is in
tests/dispatch/test_local.py."""
import json
import subprocess
import sys

from launcher.scripts import ExperimentDir, remove_stale_stage_files
from tests.helpers import plan_for

DRAFTER_STAGES = ["build_drafter_engine", "convert_drafter", "train_drafter"]
PLAIN_STAGES = ["benchmark", "build_engine", "calibration_data", "download_dataset", "download_model", "quantize",
                "report", "smoke_run"]


def _dry_run(cwd, *overrides):
    result = subprocess.run([sys.executable, "-m", "launcher", "+experiment=fp8_redrafter", "launcher.dry_run=true",
                             *overrides], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _names(folder, suffix):
    return sorted(p.name[:-len(suffix)] for p in folder.glob(f"*{suffix}"))


def test_a_dry_run_after_a_change_of_drafter_leaves_only_the_new_plans_scripts(tmp_path):
    exp = tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter"
    _dry_run(tmp_path)
    assert len(_names(exp / "scripts", ".sbatch")) == 10
    result = _dry_run(tmp_path, "drafter=none")
    assert (f"removed the scripts of stages no longer in the plan: {', '.join(DRAFTER_STAGES)}"
            in result.stdout), result.stdout
    assert _names(exp / "scripts", ".sbatch") == _names(exp / "stages", ".json") == PLAIN_STAGES


def test_a_dry_run_keeps_the_specs_the_last_launch_submitted(tmp_path):
    """A dry run asks Slurm nothing, and a pending job reads its spec when it starts: the specs of the stages the
    experiment's state says were submitted stay (their scripts go)."""
    exp = tmp_path / "launcher_storage" / "experiments" / "fp8_redrafter"
    _dry_run(tmp_path)
    (exp / "state.json").write_text(json.dumps({"stages": {
        "train_drafter": {"action": "submitted", "job_id": "12"}, "convert_drafter": {"action": "complete"}}}))
    _dry_run(tmp_path, "drafter=none")
    assert _names(exp / "scripts", ".sbatch") == PLAIN_STAGES
    assert _names(exp / "stages", ".json") == sorted([*PLAIN_STAGES, "train_drafter"])


def test_only_files_of_stages_outside_the_plan_go(tmp_path):
    """Names are compared whole: a sweep point's stage (dots and brackets in its name) is not taken for another."""
    plan = plan_for("+experiment=fp8", f"cluster.storage_root={tmp_path}")
    exp = ExperimentDir(str(tmp_path), "fp8")
    for name in [*plan.stages, "quantize[qformat=fp8]", "benchmark.old", "gone"]:
        for path in (exp.script(name), exp.spec(name)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    (exp.root / "scripts" / "notes.txt").write_text("the user's")
    removed = remove_stale_stage_files(plan, exp, keep_specs=["gone"])
    assert sorted(removed) == sorted(["quantize[qformat=fp8]", "benchmark.old", "gone"])
    assert _names(exp.root / "scripts", ".sbatch") == sorted(plan.stages)
    assert _names(exp.root / "stages", ".json") == sorted([*plan.stages, "gone"])
    assert (exp.root / "scripts" / "notes.txt").is_file()
