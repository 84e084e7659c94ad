"""The stage table (launcher.stages) and what it must never change: every existing stage's fingerprint.

An artifact directory is named by its stage's fingerprint: a refactoring that changed one would make every user
rebuild what they already built. STAGES_BEFORE was recorded from the plans of the code before the table existed
(per-kind code in launcher/plan.py): the names, plan order, fingerprints, GPUs, time limits and containers.
The benchmark and report fingerprints were recorded again when the benchmark's commands changed on purpose (the
ports its job chooses, launcher.commands.serve_command and friends): a change of a stage's commands changes its
fingerprint by design; the table changed none (checked against the pre-table code, with the old commands)."""
from dataclasses import replace

import pytest

from launcher import plan
from launcher.stages import DRAFTER_KINDS, FP8_KINDS, KINDS, Input, StageKind, needed_containers
from tests.helpers import compose_config, plan_for

NEMOTRON = ("cluster=example_slurm", "model=nemotron_nas_51b", "benchmark.max_new_tokens=8192")
LLAMA = ("model=llama2_7b_chat", "benchmark.max_new_tokens=512")

STAGES_BEFORE = {
    ('+experiment=aimo2_campaign',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "quantize[qformat=full_prec] 27b91f6688a86925 gpus=2 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "train_drafter e400f76216209818 gpus=2 min=480 trtllm",
        "build_engine[bf16] 014e0030dfd2234c gpus=1 min=90 trtllm",
        "quantize[qformat=fp8] 3a04485562b76f97 gpus=2 min=120 trtllm",
        "benchmark[bf16] 7f991b57e427314b gpus=2 min=90 trtllm+sandbox",
        "build_engine[fp8] fed36ff0dd008b38 gpus=1 min=90 trtllm",
        "convert_drafter c8dd2595ea75086f gpus=1 min=30 trtllm",
        "benchmark[fp8] 02dd20a10ead26ad gpus=2 min=90 trtllm+sandbox",
        "build_drafter_engine e62f005b1b966825 gpus=1 min=90 trtllm",
        "benchmark[fp8_redrafter] f278ea36024a8468 gpus=2 min=90 trtllm+sandbox",
        "report 5af98caf00d5efa7 gpus=0 min=15 trtllm",
    ],
    ('+experiment=bf16',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "quantize 27b91f6688a86925 gpus=2 min=120 trtllm",
        "build_engine 014e0030dfd2234c gpus=1 min=90 trtllm",
        "benchmark 7f991b57e427314b gpus=2 min=90 trtllm+sandbox",
        "report 25696981e95f470b gpus=0 min=15 trtllm",
    ],
    ('+experiment=fp8',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "quantize 3a04485562b76f97 gpus=2 min=120 trtllm",
        "build_engine fed36ff0dd008b38 gpus=1 min=90 trtllm",
        "benchmark 02dd20a10ead26ad gpus=2 min=90 trtllm+sandbox",
        "report aefd17a2d6363315 gpus=0 min=15 trtllm",
    ],
    ('+experiment=int8_wo',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "quantize c783e78acfe11f44 gpus=2 min=120 trtllm",
        "build_engine 18e988ff96217636 gpus=1 min=90 trtllm",
        "benchmark c7cbe8668e14d3f0 gpus=2 min=90 trtllm+sandbox",
        "report 119fabe03821d838 gpus=0 min=15 trtllm",
    ],
    ('+experiment=fp8_redrafter',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "train_drafter e400f76216209818 gpus=2 min=480 trtllm",
        "quantize 3a04485562b76f97 gpus=2 min=120 trtllm",
        "convert_drafter c8dd2595ea75086f gpus=1 min=30 trtllm",
        "build_drafter_engine e62f005b1b966825 gpus=1 min=90 trtllm",
        "benchmark f278ea36024a8468 gpus=2 min=90 trtllm+sandbox",
        "report c30c44bbc271fdb8 gpus=0 min=15 trtllm",
    ],
    (*NEMOTRON, '+experiment=bf16'): [
        "download_model a07fdc2b1700cb87 gpus=0 min=120 trtllm",
        "quantize c0712f7ac1230394 gpus=4 min=120 trtllm",
        "build_engine 0844eb0619eb7a9a gpus=1 min=90 trtllm",
        "benchmark 9925012c53d6a17e gpus=4 min=120 trtllm+sandbox",
        "report fe024673aa8ba911 gpus=0 min=15 trtllm",
    ],
    (*NEMOTRON, '+experiment=fp8_redrafter', 'drafter.tensor_parallel=2'): [
        "download_model a07fdc2b1700cb87 gpus=0 min=120 trtllm",
        "download_dataset 6e03b15a4baa4205 gpus=0 min=120 trtllm",
        "calibration_data c8c8ff21d1c41866 gpus=0 min=60 trtllm",
        "train_drafter fbc94ecc8ce4c72f gpus=2 min=720 trtllm",
        "quantize 88accb366f3bd24f gpus=4 min=120 trtllm",
        "convert_drafter 3d4906c11d2211cd gpus=1 min=30 trtllm",
        "build_drafter_engine 272d26d40affb342 gpus=1 min=90 trtllm",
        "benchmark 5fe6477116c1f892 gpus=4 min=120 trtllm+sandbox",
        "report 63c350baa8cad6ba gpus=0 min=15 trtllm",
    ],
    (*LLAMA, '+experiment=bf16'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "quantize a2923eda32ff7923 gpus=1 min=120 trtllm",
        "build_engine 8f3169181b12ab60 gpus=1 min=90 trtllm",
        "benchmark 82908253aed72b76 gpus=1 min=90 trtllm+sandbox",
        "report bdc33d59e5b93bab gpus=0 min=15 trtllm",
    ],
    (*LLAMA, 'quantization=fp8_kv'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data 7d42bd73c5a546e5 gpus=0 min=60 trtllm",
        "quantize 70a6a0fef542b4f3 gpus=1 min=120 trtllm",
        "build_engine 3f1f6cd3dccc068b gpus=1 min=90 trtllm",
        "benchmark a4cbfa080b1bb386 gpus=1 min=90 trtllm+sandbox",
        "report 3cb9d9475d50e980 gpus=0 min=15 trtllm",
    ],
    (*LLAMA, '+experiment=int8_wo', 'serving.sandbox.enabled=false'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "quantize 846c55a9a7f48bb8 gpus=1 min=120 trtllm",
        "build_engine f898b9bbbbd19daa gpus=1 min=90 trtllm",
        "benchmark e4f60ac08993dfa4 gpus=1 min=90 trtllm",
        "report 3233781139c8c82f gpus=0 min=15 trtllm",
    ],
    ('cluster=example_slurm', '+experiment=aimo2_campaign'): [
        "download_model a37a48e2d5292618 gpus=0 min=120 trtllm",
        "download_dataset 6e03b15a4baa4205 gpus=0 min=120 trtllm",
        "quantize[qformat=full_prec] b7570e36e03c8a40 gpus=2 min=120 trtllm",
        "calibration_data a82352eabc25fd80 gpus=0 min=60 trtllm",
        "train_drafter c405e24ac0e748bc gpus=2 min=720 trtllm",
        "build_engine[bf16] 519e9d4b80bee489 gpus=1 min=90 trtllm",
        "quantize[qformat=fp8] 85e8743699a1d0b9 gpus=2 min=120 trtllm",
        "benchmark[bf16] b080012f797697ef gpus=2 min=120 trtllm+sandbox",
        "build_engine[fp8] b5bbb6140af0fe47 gpus=1 min=90 trtllm",
        "convert_drafter be794943ba98a764 gpus=1 min=30 trtllm",
        "benchmark[fp8] b0253cc7a3582f59 gpus=2 min=120 trtllm+sandbox",
        "build_drafter_engine 71b755aac73869ba gpus=1 min=90 trtllm",
        "benchmark[fp8_redrafter] c1ac9d3438cd4a63 gpus=2 min=120 trtllm+sandbox",
        "report 4605234fb164f92c gpus=0 min=15 trtllm",
    ],
}


def _stage_lines(plan):
    return [f"{s.name} {s.fingerprint} gpus={s.resources.gpus} min={s.resources.time_min} {'+'.join(s.containers)}"
            for s in plan.stages.values()]


@pytest.mark.parametrize("overrides", list(STAGES_BEFORE), ids=" ".join)
def test_fingerprints_names_and_order_are_unchanged(overrides):
    assert _stage_lines(plan_for(*overrides)) == STAGES_BEFORE[overrides]


def test_the_table_is_in_dependency_order_and_names_only_its_kinds():
    seen = set()
    for name, kind in KINDS.items():
        for spec in kind.inputs:
            assert set(spec.kinds) <= seen, f"{name} reads {spec.role} of a kind not before it: {spec.kinds}"
        seen.add(name)


def test_the_gpu_checks_follow_the_table():
    assert FP8_KINDS == ("quantize", "build_engine", "build_drafter_engine", "benchmark")
    assert DRAFTER_KINDS == ("train_drafter", "convert_drafter", "build_drafter_engine", "benchmark")


@pytest.mark.parametrize("overrides, kinds", [
    (("+experiment=bf16",), ["download_model", "quantize", "build_engine", "benchmark", "report"]),
    (("+experiment=fp8_redrafter",), ["download_model", "download_dataset", "calibration_data", "train_drafter",
                                      "quantize", "convert_drafter", "build_drafter_engine", "benchmark", "report"]),
])
def test_needed_decides_which_stages_a_config_gets(overrides, kinds):
    assert [s.kind for s in plan_for(*overrides).stages.values()] == kinds


def test_the_containers_a_config_needs_come_from_the_table():
    assert needed_containers(compose_config("+experiment=fp8")) == ("trtllm", "sandbox")
    assert needed_containers(compose_config("+experiment=fp8", "serving.sandbox.enabled=false")) == ("trtllm",)


def _echo(ctx, out):
    return {"smoke": ["echo", ctx.input("engine"), out]}


def test_a_new_stage_kind_is_one_entry(monkeypatch):
    """A smoke run of each engine, read by the report: one table entry and the report's input; the plan code is
    unchanged, the other stages keep their fingerprints."""
    smoke = StageKind("smoke_run", 10, values=lambda ctx: {}, commands=_echo, gpus=lambda cfg: 1,
                      inputs=(Input("engine", ("build_drafter_engine", "build_engine")),))
    monkeypatch.setitem(KINDS, "smoke_run", smoke)
    report = replace(plan.REPORT, inputs=(*plan.REPORT.inputs, Input("smoke", ("smoke_run",), every_experiment=True)))
    monkeypatch.setattr(plan, "REPORT", report)
    stages = plan_for("+experiment=fp8_redrafter").stages
    assert stages["smoke_run"].deps == ("build_drafter_engine",)
    assert stages["smoke_run"].commands["smoke"][1] == stages["build_drafter_engine"].artifact
    assert (stages["smoke_run"].resources.gpus, stages["smoke_run"].resources.time_min) == (1, 10)
    assert set(stages["report"].deps) == {"benchmark", "smoke_run"}
    before = {line.split()[0]: line.split()[1] for line in STAGES_BEFORE[("+experiment=fp8_redrafter",)]}
    assert all(before[name] == s.fingerprint for name, s in stages.items() if name not in ("smoke_run", "report"))
