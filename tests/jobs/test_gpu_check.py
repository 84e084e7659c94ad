"""jobs/gpu_check.py: a GPU stage checks the GPUs it landed on before running any tool.

nvidia-smi is the STAND-IN of tests/standins/bin (rows shaped as a real H200's, seen on one with driver 580);
the rows below are that real output."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from jobs import gpu_check, run_stage
from jobs.gpu_check import Gpu
from jobs.run_stage import StageFailed
from launcher.contract import GpuRequirement
from tests.jobs.test_run_stage import PY, plan, simple_spec, standin_env, write_spec
from tests.test_contract import a_manifest

REAL_H200_ROW = "0, GPU-ddf1675b-272d-f94e-3980-e38be2509662, NVIDIA H200, 9.0, 143771\n"
A100 = "NVIDIA A100-SXM4-80GB:8.0:81920"
FP8_NEED = GpuRequirement(count=2, min_compute_capability=8.9, why="quantization.qformat=fp8", gpu_type="h100",
                          expected_compute_capability=9.0, engine_manifest=None)


def gpus(*specs):
    return [Gpu(i, f"GPU-{i}", name, cc, 81559) for i, (name, cc) in enumerate(specs)]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    standin_env(monkeypatch)


def test_parses_the_real_nvidia_smi_row():
    assert gpu_check.parse(REAL_H200_ROW + "\n") == [
        Gpu(0, "GPU-ddf1675b-272d-f94e-3980-e38be2509662", "NVIDIA H200", 9.0, 143771)]


@pytest.mark.parametrize("visible_devices,indices", [
    (None, [0, 1, 2, 3]),  # no Slurm GPU binding: all of them
    ("1,3", [1, 3]),  # Slurm's indices, nvidia-smi listing the whole node
    ("GPU-2", [2]),  # UUIDs
    ("5,6", [0, 1]),  # cgroups hide the others: nvidia-smi renumbers what the job has from 0
])
def test_the_job_sees_the_gpus_cuda_visible_devices_names(visible_devices, indices):
    node = gpus(*[("NVIDIA H100 80GB HBM3", 9.0)] * 4)
    assert [g.index for g in gpu_check.visible(node, visible_devices)] == indices


def test_fp8_on_a100s_names_the_key_and_the_partition():
    errors = gpu_check.problems(FP8_NEED, gpus(("NVIDIA A100-SXM4-80GB", 8.0), ("NVIDIA A100-SXM4-80GB", 8.0)))
    assert errors == ["quantization.qformat=fp8 needs compute capability 8.9+, this node has 2 x NVIDIA "
                      "A100-SXM4-80GB (8.0); cluster.gpu_type=h100 promised 9.0: check cluster.partition"]


def test_fewer_gpus_than_the_stage_needs():
    assert gpu_check.problems(FP8_NEED, gpus(("NVIDIA H100 80GB HBM3", 9.0))) == [
        "the stage needs 2 GPU(s) but the job sees 1 x NVIDIA H100 80GB HBM3 (9.0)"]


def test_the_right_gpus_pass():
    assert gpu_check.problems(FP8_NEED, gpus(("NVIDIA H200", 9.0), ("NVIDIA H200", 9.0))) == []


def test_an_engine_runs_only_on_the_architecture_it_was_built_on(tmp_path):
    manifest = tmp_path / "manifest.json"
    a_manifest("build_engine", "fp", {}, gpus=[{"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3",
                                                 "compute_capability": 9.0, "memory_mib": 81559}]).write(manifest)
    need = replace(FP8_NEED, min_compute_capability=None, engine_manifest=str(manifest))
    errors = gpu_check.problems(need, gpus(("NVIDIA L40S", 8.9), ("NVIDIA L40S", 8.9)), gpu_check.engine_build_gpus(need))
    assert errors == ["the engine was built on compute capability 9.0 (1 x NVIDIA H100 80GB HBM3 (9.0)) and only "
                      "runs there; this node has 2 x NVIDIA L40S (8.9): run the benchmark on the build's GPU "
                      "type or rebuild"]


def test_an_engine_manifest_without_gpus_checks_nothing_more(tmp_path):
    a_manifest("build_engine", "fp", {}).write(tmp_path / "manifest.json")
    assert gpu_check.engine_build_gpus(replace(FP8_NEED, engine_manifest=str(tmp_path / "manifest.json"))) == []


def test_check_reads_the_node_through_nvidia_smi(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    recorded = gpu_check.check(FP8_NEED)
    assert [(g["index"], g["name"], g["compute_capability"]) for g in recorded["gpus"]] == [
        (2, "NVIDIA H100 80GB HBM3", 9.0), (5, "NVIDIA H100 80GB HBM3", 9.0)]
    monkeypatch.setenv("STANDIN_GPUS", A100)
    with pytest.raises(StageFailed, match=r"wrong GPUs for this stage: quantization.qformat=fp8 needs compute "
                                          r"capability 8.9\+, this node has 2 x NVIDIA A100-SXM4-80GB \(8.0\)"):
        gpu_check.check(FP8_NEED)


def test_without_nvidia_smi_nothing_is_checked(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_check.check(FP8_NEED) == {}
    assert "nvidia-smi not found" in capsys.readouterr().out
    assert gpu_check.check(None) == {}


def test_a_stage_on_the_wrong_gpus_fails_before_its_tools_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_GPUS", A100)
    spec = simple_spec(tmp_path)  # its command would write out.txt in the staging directory
    spec["gpu_check"] = asdict(FP8_NEED)
    with pytest.raises(StageFailed, match="wrong GPUs"):
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert not (Path(spec["staging_dir"]) / "out.txt").exists() and not Path(spec["artifact"]).exists()


def test_the_manifest_records_the_gpus(tmp_path):
    spec = simple_spec(tmp_path)
    spec["gpu_check"] = asdict(FP8_NEED)
    result = run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert len(result["gpus"]) == 8 and result["gpus"][0]["compute_capability"] == 9.0


# count: the GPUs the stage asks for (the seed model runs tensor parallel 2; an engine build takes one; the 14B's
# weights fit on one GPU for quantization)
@pytest.mark.parametrize("experiment,kind,minimum,why,count", [
    ("fp8", "quantize", 8.9, "quantization.qformat=fp8", 1),
    ("fp8", "benchmark", 8.9, "quantization.qformat=fp8", 2),
    ("bf16", "build_engine", None, "", 1),
    ("fp8_redrafter", "train_drafter", 8.0, "drafter=redrafter", 2),
    ("fp8_redrafter", "build_drafter_engine", 8.9, "quantization.qformat=fp8", 1),
])
def test_the_plan_says_what_each_gpu_stage_needs(tmp_path, experiment, kind, minimum, why, count):
    from launcher.scripts import stage_spec

    the_plan = plan(tmp_path, f"+experiment={experiment}")
    stage = next(s for s in the_plan.stages.values() if s.kind == kind)
    need = stage_spec(the_plan, stage).gpu_check
    assert (need.min_compute_capability, need.why, need.count) == (minimum, why, count)
    assert need.gpu_type == "h100" and need.expected_compute_capability == 9.0
    if kind == "benchmark":
        assert need.engine_manifest == str(Path(stage.inputs[0].artifact) / "manifest.json")


def test_cpu_stages_check_no_gpu(tmp_path):
    from launcher.scripts import stage_spec

    the_plan = plan(tmp_path, "+experiment=fp8")
    assert stage_spec(the_plan, the_plan.stages["download_model"]).gpu_check is None


def test_the_module_prints_the_gpus(monkeypatch):
    import subprocess

    out = subprocess.run([PY, "-m", "jobs.gpu_check"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)[0]["name"] == "NVIDIA H100 80GB HBM3"
