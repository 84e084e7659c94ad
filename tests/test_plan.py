"""Plan shape, shared artifacts, fingerprint stability and sensitivity, GPU-hours and critical path."""
import pytest
from rich.console import Console

from launcher.preview import print_requests, sizing_savings
from tests.helpers import plan_for

FP8_REDRAFTER_DEPS = {
    "download_model": (),
    "download_dataset": (),
    "calibration_data": ("download_model", "download_dataset"),
    "quantize": ("download_model", "calibration_data"),
    "train_drafter": ("download_model", "download_dataset"),
    "convert_drafter": ("quantize", "train_drafter"),
    "build_drafter_engine": ("convert_drafter", "download_model"),
    "benchmark": ("build_drafter_engine",),
    "smoke_run": ("build_drafter_engine",),  # every engine answers the seed's prompt once (issue 11)
    "report": ("benchmark", "smoke_run"),
}


@pytest.fixture(scope="module")
def fp8_redrafter():
    return plan_for("+experiment=fp8_redrafter")


def test_fp8_redrafter_plan_shape(fp8_redrafter):
    assert {n: s.deps for n, s in fp8_redrafter.stages.items()} == FP8_REDRAFTER_DEPS


def test_stages_are_in_dependency_order(fp8_redrafter):
    seen = set()
    for name, stage in fp8_redrafter.stages.items():
        assert set(stage.deps) <= seen, name
        seen.add(name)


def test_drafter_training_runs_beside_quantization(fp8_redrafter):
    def ancestors(name):
        deps = fp8_redrafter.stages[name].deps
        return set(deps).union(*(ancestors(d) for d in deps)) if deps else set()
    assert "quantize" not in ancestors("train_drafter") and "train_drafter" not in ancestors("quantize")


def test_resources(fp8_redrafter):
    gpus = {n: s.resources.gpus for n, s in fp8_redrafter.stages.items()}
    # quantize: the 14B model's 29.6 GB of BF16 weights fit on one 80 GB H100 (launcher.stages._weights_gpus)
    assert gpus == {"download_model": 0, "download_dataset": 0, "calibration_data": 0, "quantize": 1,
                    "train_drafter": 2, "convert_drafter": 1, "build_drafter_engine": 1, "benchmark": 2, "smoke_run": 2,
                    "report": 0}
    assert fp8_redrafter.stages["benchmark"].containers == ("trtllm", "sandbox")


def test_artifact_directories_are_content_addressed(fp8_redrafter):
    for stage in fp8_redrafter.stages.values():
        assert stage.artifact == f"{fp8_redrafter.storage_root}/artifacts/{stage.kind}/{stage.fingerprint}"


def test_gpu_hours_and_critical_path(fp8_redrafter):
    # 2 GPUs x (6 h training + 1.5 h benchmark + 0.25 h smoke run) + 1 GPU x (2 h quantize + 0.5 h convert +
    # 1.5 h build); training's 6 h: 50k rows, one epoch, on 2 GPUs (launcher.stages.train_drafter_time_limit_min)
    assert fp8_redrafter.gpu_hours == pytest.approx(2 * (6 + 1.5 + 0.25) + 2 + 0.5 + 1.5)
    path, minutes = fp8_redrafter.critical_path()
    assert path == ["download_model", "train_drafter", "convert_drafter", "build_drafter_engine", "benchmark", "report"]
    assert minutes == 120 + 360 + 30 + 90 + 90 + 15


def test_cluster_time_limits_override_the_defaults():
    plan = plan_for("+experiment=fp8_redrafter", "+cluster.time_limits.train_drafter=60")
    assert plan.stages["train_drafter"].resources.time_min == 60


def _fingerprints(*overrides):
    return {n: s.fingerprint for n, s in plan_for(*overrides).stages.items()}


def test_fingerprints_are_stable(fp8_redrafter):
    assert _fingerprints("+experiment=fp8_redrafter") == {n: s.fingerprint for n, s in fp8_redrafter.stages.items()}


def test_a_drafter_setting_changes_only_drafter_stages(fp8_redrafter):
    base = {n: s.fingerprint for n, s in fp8_redrafter.stages.items()}
    changed = _fingerprints("+experiment=fp8_redrafter", "drafter.num_layers=4")
    differ = {n for n in base if base[n] != changed[n]}
    assert differ == {"train_drafter", "convert_drafter", "build_drafter_engine", "benchmark", "smoke_run",
                      "report"}


def test_the_calibration_size_changes_calibration_and_quantize(fp8_redrafter):
    base = {n: s.fingerprint for n, s in fp8_redrafter.stages.items()}
    changed = _fingerprints("+experiment=fp8_redrafter", "quantization.calib_size=512")
    differ = {n for n in base if base[n] != changed[n]}
    assert {"calibration_data", "quantize"} <= differ
    assert not {"download_model", "download_dataset", "train_drafter"} & differ


def test_a_serving_setting_changes_only_the_benchmark(fp8_redrafter):
    base = {n: s.fingerprint for n, s in fp8_redrafter.stages.items()}
    changed = _fingerprints("+experiment=fp8_redrafter", "serving.max_batch_size=24")
    assert {n for n in base if base[n] != changed[n]} == {"benchmark", "report"}


def test_the_container_image_is_part_of_the_fingerprint():
    slurm = ("cluster=example_slurm", "+experiment=fp8")
    base = _fingerprints(*slurm)
    changed = _fingerprints(*slurm, "cluster.containers.trtllm=/lustre/images/other.sqsh")
    assert all(base[n] != changed[n] for n in base)


def test_the_storage_root_is_not_part_of_the_fingerprint():
    assert _fingerprints("+experiment=fp8", "cluster.storage_root=/a") == \
        _fingerprints("+experiment=fp8", "cluster.storage_root=/b")


def test_experiments_share_artifacts():
    fp8 = plan_for("+experiment=fp8")
    redrafter = plan_for("+experiment=fp8_redrafter")
    for name in ("download_model", "download_dataset", "calibration_data", "quantize"):
        assert fp8.stages[name].artifact == redrafter.stages[name].artifact


def test_campaign_runs_shared_stages_once():
    plan = plan_for("+experiment=aimo2_campaign")
    kinds = [s.kind for s in plan.stages.values()]
    assert kinds.count("download_model") == 1 and kinds.count("download_dataset") == 1
    assert kinds.count("quantize") == 2  # full_prec and fp8; FP8+ReDrafter reuses the FP8 checkpoint
    assert kinds.count("benchmark") == 3 and kinds.count("report") == 1
    assert set(plan.stages["report"].deps) == {"benchmark[bf16]", "benchmark[fp8]", "benchmark[fp8_redrafter]",
                                               "smoke_run[bf16]", "smoke_run[fp8]", "smoke_run[fp8_redrafter]"}
    assert plan.stages["convert_drafter"].deps == ("quantize[qformat=fp8]", "train_drafter")
    assert sorted(plan.stages["quantize[qformat=fp8]"].variants) == ["fp8", "fp8_redrafter"]


def test_campaign_applies_the_users_overrides_to_every_experiment():
    plan = plan_for("+experiment=aimo2_campaign", "serving.max_batch_size=24")
    for name in ("benchmark[bf16]", "benchmark[fp8]", "benchmark[fp8_redrafter]"):
        assert "24" in plan.stages[name].commands["server"]


def test_the_plan_says_what_sizing_each_stage_saves(fp8_redrafter):
    """Against every stage on the serving GPUs (2) with fixed time limits: the CPU stages hold none, the quantizer
    (the weights fit on one), the drafter's conversion and engine build one; training keeps its GPUs but its time
    limit comes from its work (6 h instead of 8); the stages that need the serving GPUs for their fixed time
    (benchmark, smoke run) are not listed."""
    savings = {name: (naive_request, requested, naive) for name, naive_request, requested, naive
               in sizing_savings(fp8_redrafter)}
    assert savings["download_model"] == ("2 GPUs x 02:00:00", 0, 4.0)
    assert savings["calibration_data"] == ("2 GPUs x 01:00:00", 0, 2.0)
    assert savings["build_drafter_engine"] == ("2 GPUs x 01:30:00", 1.5, 3.0)
    assert savings["quantize"] == ("2 GPUs x 02:00:00", 2.0, 4.0)
    assert savings["train_drafter"] == ("2 GPUs x 08:00:00", 12.0, 16.0)
    assert set(savings) == {"download_model", "download_dataset", "calibration_data", "quantize", "train_drafter",
                            "convert_drafter", "build_drafter_engine", "report"}
    console = Console(record=True, width=200)
    print_requests(fp8_redrafter, console)
    text = console.export_text()
    saved = sum(naive - requested for _, requested, naive in savings.values())
    assert f"total: {fp8_redrafter.gpu_hours:.1f} instead of {fp8_redrafter.gpu_hours + saved:.1f}" in text
    assert "    build_drafter_engine: 1.5 instead of 3.0 (2 GPUs x 01:30:00), saves 1.5" in text
    assert "drafter.num_gpus=2 (your choice) needs 06:00:00; 4 would need 03:00:00" in text


def test_a_stage_on_its_serving_gpus_saves_nothing():
    plan = plan_for("+experiment=bf16", "serving.sandbox.enabled=false")
    # benchmark and smoke_run hold the serving GPUs for their fixed time: not listed; quantize fits on one GPU
    assert {name for name, *_ in sizing_savings(plan)} == {"download_model", "quantize", "build_engine", "report"}
