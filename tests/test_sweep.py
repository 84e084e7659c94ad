"""Sweeps (`-m`): every point and the baselines in one plan, shared stages once, Hydra's sweep directory."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from launcher.schema import CONF_DIR, register_configs
from launcher.sweep import PointComposer, point_name
from launcher.validation import NAME_MAX
from tests.helpers import plan_for

SWEEP = ["-m", "+experiment=fp8_redrafter", "drafter.num_layers=1,2", "drafter.draft_len_per_beam=2,3",
         "launcher.dry_run=true"]


def run_launcher(cwd, *args):
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_launcher(cwd, *SWEEP)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = next((cwd / "launcher_storage" / "sweeps").iterdir())
    name, exp_dir = (sweep_dir / "experiment.txt").read_text().split()
    return cwd, result, sweep_dir, Path(exp_dir)


def test_hydra_sweep_dir_has_one_entry_per_point(swept):
    _, _, sweep_dir, _ = swept
    entries = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert entries == ["0-fp8_redrafter.num_layers=1.draft_len_per_beam=2",
                       "1-fp8_redrafter.num_layers=1.draft_len_per_beam=3",
                       "2-fp8_redrafter.num_layers=2.draft_len_per_beam=2",
                       "3-fp8_redrafter.num_layers=2.draft_len_per_beam=3"]
    point = OmegaConf.load(sweep_dir / entries[3] / ".hydra" / "config.yaml")
    assert (point.drafter.num_layers, point.drafter.draft_len_per_beam) == (2, 3)
    assert point.launcher.experiment_name == "fp8_redrafter.num_layers=2.draft_len_per_beam=3"


def test_shared_stages_are_planned_once_and_every_point_depends_on_them(swept):
    _, result, _, exp_dir = swept
    scripts = {p.stem: p.read_text() for p in (exp_dir / "scripts").glob("*.sbatch")}
    kinds = [name.split("[")[0] for name in scripts]
    assert kinds.count("quantize") == 2  # FP8 shared by the 4 points and the FP8 baseline; BF16's
    assert kinds.count("calibration_data") == 1 and kinds.count("download_model") == 1
    assert kinds.count("train_drafter") == 2  # draft_len_per_beam does not change the trained drafter
    assert kinds.count("benchmark") == 4 + 2  # the points and the bf16 and fp8 baselines
    assert kinds.count("smoke_run") == 4 + 2  # one after every engine build
    for name, script in scripts.items():
        if name.startswith("convert_drafter["):
            assert "<quantize[qformat=fp8]>" in script
    # The report waits on every benchmark and smoke run (its inputs); its sacct line names every other stage too.
    dependency, = [line for line in scripts["report"].splitlines() if line.startswith("#SBATCH --dependency=")]
    assert dependency.startswith("#SBATCH --dependency=afterany:")
    assert dependency.count("<benchmark[") == 6 and dependency.count("<smoke_run[") == 6
    assert "4 point(s) and 2 baseline(s) planned" in result.stdout
    # The table names every stage whole: `[qformat=fp8]` is not taken for rich markup.
    assert "quantize[qformat=fp8]" in result.stdout and "quantize[qformat=full_prec]" in result.stdout
    assert "GPU-hours requested:" in result.stdout and "critical path:" in result.stdout


def test_report_inputs_name_every_configuration_and_its_chain():
    plan = plan_for("+experiment=aimo2_campaign")
    report = plan.stages["report"]
    (path, content), = report.files.items()
    inputs = json.loads(content)
    assert path.endswith("experiments/aimo2_campaign/report_inputs.json") and path in report.commands["report"]
    assert inputs["baseline"] == "bf16" and list(inputs["variants"]) == ["bf16", "fp8", "fp8_redrafter"]
    chain = inputs["variants"]["fp8_redrafter"]
    assert [entry["kind"] for entry in chain] == [
        "download_model", "download_dataset", "calibration_data", "quantize", "train_drafter", "convert_drafter",
        "build_drafter_engine", "smoke_run", "benchmark"]
    assert all(entry["artifact"] == plan.stages[entry["name"]].artifact for entry in chain)
    artifacts = {variant: {entry["name"]: entry["artifact"] for entry in stages}
                 for variant, stages in inputs["variants"].items()}
    quantize = artifacts["fp8_redrafter"]["quantize[qformat=fp8]"]
    assert quantize.startswith(f"{plan.storage_root}/artifacts/quantize/") and len(Path(quantize).name) == 16
    # fp8 and fp8_redrafter read one quantized checkpoint; bf16 its own
    assert artifacts["fp8"]["quantize[qformat=fp8]"] == quantize
    assert artifacts["bf16"]["quantize[qformat=full_prec]"] != quantize


def test_a_bad_point_stops_the_whole_sweep_before_anything_is_written(tmp_path):
    result = run_launcher(tmp_path, "-m", "+experiment=fp8_redrafter", "drafter.draft_len_per_beam=3,4",
                          "launcher.dry_run=true")
    assert result.returncode == 2
    assert "drafter.draft_len_per_beam=4" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert not list((tmp_path / "launcher_storage" / "experiments").glob("*/scripts"))


def test_points_whose_values_end_alike_are_all_planned(tmp_path):
    """Names kept only each value's last dot-part: learning rates 0.5 and 1.5 were both `.5`, one point replaced
    the other and the plan had 17 stages instead of 22."""
    result = run_launcher(tmp_path, "-m", "+experiment=fp8_redrafter", "drafter.learning_rate=0.5,1.5",
                          "launcher.dry_run=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 point(s) and 2 baseline(s) planned" in result.stdout and "22 distinct stages" in result.stdout
    sweep_dir = next((tmp_path / "launcher_storage" / "sweeps").iterdir())
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [
        "0-fp8_redrafter.learning_rate=0.5", "1-fp8_redrafter.learning_rate=1.5"]
    scripts = {p.stem for p in (Path(sweep_dir.joinpath("experiment.txt").read_text().split()[1]) / "scripts").iterdir()}
    assert {"benchmark[fp8_redrafter.learning_rate=0.5]", "benchmark[fp8_redrafter.learning_rate=1.5]",
            "train_drafter[learning_rate=0.5]", "train_drafter[learning_rate=1.5]"} <= scripts


def test_point_names_tell_every_point_apart():
    assert point_name("fp8_redrafter", ["drafter.learning_rate=0.5"]) != point_name("fp8_redrafter",
                                                                                   ["drafter.learning_rate=1.5"])
    first = point_name("fp8", ["model.hf_id=org/a"])
    second = point_name("fp8", ["model.hf_id=org_a"], taken={first})  # the same once made a safe path component
    assert first == "fp8.hf_id=org_a" and second != first and "/" not in second
    long = point_name("fp8", [f"benchmark.problems_file=/{'x' * 300}.jsonl"])
    assert len(long) <= NAME_MAX and long != point_name("fp8", [f"benchmark.problems_file=/{'x' * 301}.jsonl"])


def test_point_names_say_what_the_point_changes():
    assert point_name("fp8_redrafter", ["drafter.num_layers=1", "quantization=fp8_kv"]) == \
        "fp8_redrafter.num_layers=1.quantization=fp8_kv"


def test_cheap_composition_equals_hydras(tmp_path):
    """A point composed from the cached group composition plus its plain overrides is Hydra's own result."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra as GH

        loader = GH.instance().config_loader()
        master = compose("config", overrides=["+experiment=fp8_redrafter"], return_hydra_config=True)
        composer = PointComposer(loader, master)
        points = (["+experiment=fp8_redrafter", "drafter.num_layers=4", "serving.port=7000"],
                  ["+experiment=fp8_redrafter", "quantization=fp8_kv", "drafter.learning_rate=0.002"],
                  # drafter.tensor_parallel interpolates it
                  ["+experiment=fp8_redrafter", "model.tensor_parallel=2", "serving.port=7001"])
        composed = [composer.compose_point(overrides) for overrides in points]
        cheap = [point.cfg for point in composed]
        for overrides, point in zip(points, cheap):
            full = compose("config", overrides=overrides)
            assert OmegaConf.to_container(point, resolve=True) == OmegaConf.to_container(full, resolve=True)
        assert len(composer.compositions) == 2
        # The plain copies the per-key checks read (launcher.validation.known_containers) are the points' own.
        known = [composer.plain(point) for point in composed]
        assert known == [OmegaConf.to_container(p, resolve=True) for p in cheap]
        assert known[2]["drafter"]["tensor_parallel"] == 2
        with pytest.raises(Exception, match="num_layers"):
            composer.compose_point(["+experiment=fp8_redrafter", "drafter.num_layers=many"])


def test_a_campaign_swept_plans_every_variant_of_every_point_once(tmp_path):
    result = run_launcher(tmp_path, "-m", "+experiment=aimo2_campaign", "serving.max_batch_size=8,16",
                          "launcher.dry_run=true")
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = next((tmp_path / "launcher_storage" / "sweeps").iterdir())
    scripts = sorted(p.stem for p in (Path((sweep_dir / "experiment.txt").read_text().split()[1]) / "scripts").iterdir())
    benchmarks = [s for s in scripts if s.startswith("benchmark[")]
    assert benchmarks == [f"benchmark[aimo2_campaign.max_batch_size={b}.{v}]" for b in (16, 8)
                          for v in ("bf16", "fp8", "fp8_redrafter")]
    # The serving setting changes neither checkpoints nor the drafter: those are planned once for both points.
    kinds = [s.split("[")[0] for s in scripts]
    assert kinds.count("quantize") == 2 and kinds.count("train_drafter") == 1 and kinds.count("download_model") == 1
    # nor the engines: each of the 3 engines is built and smoke-run once for both points
    assert kinds.count("build_engine") + kinds.count("build_drafter_engine") == 3 and kinds.count("smoke_run") == 3
    assert "2 point(s) and 0 baseline(s) planned" in result.stdout and "20 distinct stages" in result.stdout
