"""launcher/contract.py: what the launch writes is what the jobs (and later commands) read, and a file of another
version is refused by name, at once."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from launcher.contract import (MANIFEST, REPORT_INPUTS, ContractError, ExperimentState, GpuRequirement, Manifest,
                               ReportInputs, StageRecord, StageSpec, experiment_dir)


def a_manifest(kind: str, fingerprint: str, files, **outputs) -> Manifest:
    """A published artifact's manifest, as jobs.run_stage writes it (for tests that publish by hand)."""
    return Manifest(stage=kind, name=kind, experiment="test", fingerprint=fingerprint, config={}, inputs={},
                    job_id="4242", restart_count=0, started=1_763_765_000.0, ended=1_763_765_060.0,
                    size_bytes=sum((files or {}).values()), versions={"python": "3.11.7"}, files=files,
                    outputs=outputs)


@pytest.fixture(scope="module")
def fp8_redrafter(tmp_path_factory):
    from tests.jobs.test_run_stage import plan

    return plan(tmp_path_factory.mktemp("storage"), "+experiment=fp8_redrafter")


def test_every_stage_spec_of_a_plan_round_trips(fp8_redrafter):
    from launcher.scripts import stage_spec

    for stage in fp8_redrafter.stages.values():
        spec = stage_spec(fp8_redrafter, stage)
        assert StageSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    benchmark = stage_spec(fp8_redrafter, fp8_redrafter.stages["benchmark"])
    assert benchmark.benchmark.start_sandbox is True and isinstance(benchmark.gpu_check, GpuRequirement)
    assert stage_spec(fp8_redrafter, fp8_redrafter.stages["convert_drafter"]).drafter.predict_n_tokens == 3


def test_a_spec_written_by_the_launch_is_read_by_its_job(fp8_redrafter, tmp_path):
    from jobs.run_stage import read_spec
    from launcher.scripts import ExperimentDir, stage_spec, write_stage_files

    exp = ExperimentDir(fp8_redrafter.storage_root, fp8_redrafter.experiment, root=tmp_path)
    stage = fp8_redrafter.stages["train_drafter"]
    write_stage_files(fp8_redrafter, stage, exp, None, tmp_path / "code")
    assert read_spec(str(exp.spec(stage.name))) == stage_spec(fp8_redrafter, stage)


@pytest.mark.parametrize("change,message", [
    (lambda s: {**s, "priority": 1}, r"unknown key 'priority' \(a StageSpec has experiment, name, .*\); written by "
                                     r"another version of the launcher\? launch again"),
    (lambda s: {k: v for k, v in s.items() if k != "gpu_check"}, r"missing key 'gpu_check'"),
    (lambda s: {**s, "drafter": {**s["drafter"], "gate": 3}}, r"drafter: unknown key 'gate' \(a DrafterGate has "),
    (lambda s: {**s, "resources": {**s["resources"], "nodes": "1"}}, r"resources.nodes: expected int, got '1'"),
    (lambda s: {**s, "commands": {"train": "torchrun x"}}, r"commands.train: expected a JSON list, got 'torchrun x'"),
])
def test_a_spec_of_another_version_fails_the_job_naming_the_key(fp8_redrafter, tmp_path, change, message):
    from jobs.process import StageFailed
    from jobs.run_stage import run
    from launcher.scripts import stage_spec

    spec = stage_spec(fp8_redrafter, fp8_redrafter.stages["train_drafter"]).to_json()
    path = tmp_path / "train_drafter.json"
    path.write_text(json.dumps(change(spec)))
    with pytest.raises(StageFailed, match=rf"^stage spec {re.escape(str(path))}: {message}"):
        run(str(path))
    assert not Path(spec["staging_dir"]).exists()  # refused before anything ran


def test_the_report_inputs_the_plan_writes_are_what_the_report_reads(fp8_redrafter):
    from jobs.report import read_inputs

    report = fp8_redrafter.stages["report"]
    path, = [p for p in report.files if p.endswith(REPORT_INPUTS)]
    assert Path(path).parent == experiment_dir(fp8_redrafter.storage_root, fp8_redrafter.experiment)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(report.files[path])
    inputs = read_inputs(Path(path))
    assert list(inputs.variants) == ["fp8_redrafter"] and inputs.baseline == "fp8_redrafter"
    chain = inputs.variants["fp8_redrafter"]
    assert chain[-1].kind == "benchmark" and {s.kind for s in chain} >= {"download_model", "train_drafter"}
    assert all(fp8_redrafter.stages[s.name].artifact == s.artifact and fp8_redrafter.stages[s.name].kind == s.kind
               for s in chain)
    assert ReportInputs.from_json(inputs.to_json()) == inputs


def test_a_manifest_round_trips_with_its_outputs_beside_its_own_keys(tmp_path):
    manifest = a_manifest("build_engine", "0123456789abcdef", {"rank0.engine": 10}, engine_size_bytes=10,
                          gpus=[{"index": 0}])
    manifest.write(tmp_path / MANIFEST)
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk["engine_size_bytes"] == 10 and on_disk["files"] == {"rank0.engine": 10} and "outputs" not in on_disk
    assert Manifest.read(tmp_path / MANIFEST) == manifest


def test_a_manifest_from_before_files_were_listed_is_read():
    legacy = {k: v for k, v in a_manifest("quantize", "fp", {}).to_json().items() if k != "files"}
    assert Manifest.from_json(legacy).files is None


def test_a_manifest_refuses_an_output_that_shadows_its_own_keys():
    with pytest.raises(ContractError, match=r"manifest outputs \['job_id'\] would overwrite its own keys"):
        a_manifest("quantize", "fp", {}, job_id="1")


def test_a_manifest_missing_a_key_is_refused_by_name():
    broken = {k: v for k, v in a_manifest("quantize", "fp", {}).to_json().items() if k != "ended"}
    with pytest.raises(ContractError, match=r"^manifest: missing key 'ended' \(a Manifest has stage, "):
        Manifest.from_json(broken)


def test_the_experiment_state_round_trips_and_refuses_an_unknown_key(tmp_path):
    state = ExperimentState(experiment="fp8", executor="slurm", storage_root=str(tmp_path), code="/code/abc",
                            submitted_at=1.5, umask="027", stages={
                                "quantize": StageRecord(kind="quantize", fingerprint="fp", artifact="/a", action="submitted",
                                                        job_id="12", log="/l")})
    state.write(tmp_path / "state.json")
    assert ExperimentState.read(tmp_path / "state.json") == state
    data = json.loads((tmp_path / "state.json").read_text())
    data["stages"]["quantize"]["array_index"] = 3
    with pytest.raises(ContractError, match=r"^experiment state: stages.quantize: unknown key 'array_index'"):
        ExperimentState.from_json(data)
    with pytest.raises(ContractError, match=r"stages.quantize.job_id: expected str, got 12"):
        ExperimentState.from_json({**state.to_json(), "stages": {"quantize": {
            **state.to_json()["stages"]["quantize"], "job_id": 12}}})


def test_report_inputs_have_one_keying():
    inputs = ReportInputs.from_json({"experiment": "e", "baseline": None, "variants": {
        "bf16": [{"kind": "benchmark", "name": "benchmark[bf16]", "artifact": "/a"}]}})
    assert inputs.variants["bf16"][0].name == "benchmark[bf16]"
    with pytest.raises(ContractError, match=r"variants.bf16: expected a JSON list, got \{'stages'"):
        ReportInputs.from_json({**inputs.to_json(), "variants": {"bf16": {"stages": {}}}})


def test_a_float_field_takes_a_json_integer_but_an_int_field_no_boolean(fp8_redrafter):
    from launcher.scripts import stage_spec

    spec = stage_spec(fp8_redrafter, fp8_redrafter.stages["quantize"]).to_json()
    need = {**spec["gpu_check"], "min_compute_capability": 9}
    assert StageSpec.from_json({**spec, "gpu_check": need}).gpu_check.min_compute_capability == 9.0
    with pytest.raises(ContractError, match=r"^stage spec: gpu_check.count: expected int, got True$"):
        StageSpec.from_json({**spec, "gpu_check": {**need, "count": True}})
