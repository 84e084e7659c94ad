"""The stage table (launcher.stages) and what it must never change: every existing stage's fingerprint.

An artifact directory is named by its stage's fingerprint: a refactoring that changed one would make every user
rebuild what they already built. STAGES_BEFORE was recorded from the plans of the code before the table existed
(per-kind code in launcher/plan.py): the names, plan order, fingerprints, GPUs, time limits and containers.
The benchmark and report fingerprints were recorded again when the benchmark's commands changed on purpose (the
ports its job chooses, launcher.commands.serve_command and friends): a change of a stage's commands changes its
fingerprint by design; the table changed none (checked against the pre-table code, with the old commands).
The smoke runs (one per engine, issue 11) were added as new lines; every other stage kept its fingerprint but the
report, whose inputs now include them (a report is regenerated at every launch anyway).
When the stages were right-sized, only resources changed, no fingerprint: the quantizers' GPUs come from the
model's weights (model.params_b against the GPU memory: 1 for the 14B, 2 for the 51B) and train_drafter's time limit
from its rows, epochs and GPUs (360 min on 2), unless the cluster sets its own."""

import pytest
from omegaconf import open_dict

from launcher.stages import DRAFTER_KINDS, FP8_KINDS, KINDS, needed_containers
from tests.helpers import compose_config, plan_for

NEMOTRON = ("cluster=example_slurm", "model=nemotron_nas_51b", "benchmark.max_new_tokens=8192")
LLAMA = ("model=llama2_7b_chat", "benchmark.max_new_tokens=512")

STAGES_BEFORE = {
    ('+experiment=aimo2_campaign',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "quantize[qformat=full_prec] 27b91f6688a86925 gpus=1 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "train_drafter e400f76216209818 gpus=2 min=360 trtllm",
        "build_engine[bf16] 014e0030dfd2234c gpus=1 min=90 trtllm",
        "quantize[qformat=fp8] 3a04485562b76f97 gpus=1 min=120 trtllm",
        "benchmark[bf16] 7f991b57e427314b gpus=2 min=90 trtllm+sandbox",
        "smoke_run[bf16] c1e0bc3524daeaa3 gpus=2 min=15 trtllm",
        "build_engine[fp8] fed36ff0dd008b38 gpus=1 min=90 trtllm",
        "convert_drafter c8dd2595ea75086f gpus=1 min=30 trtllm",
        "benchmark[fp8] 02dd20a10ead26ad gpus=2 min=90 trtllm+sandbox",
        "smoke_run[fp8] 979d1a26feca3386 gpus=2 min=15 trtllm",
        "build_drafter_engine e62f005b1b966825 gpus=1 min=90 trtllm",
        "benchmark[fp8_redrafter] f278ea36024a8468 gpus=2 min=90 trtllm+sandbox",
        "smoke_run[fp8_redrafter] 0e32eed5b41a86af gpus=2 min=15 trtllm",
        "report 6b79d59b035befe3 gpus=0 min=15 trtllm",
    ],
    ('+experiment=bf16',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "quantize 27b91f6688a86925 gpus=1 min=120 trtllm",
        "build_engine 014e0030dfd2234c gpus=1 min=90 trtllm",
        "benchmark 7f991b57e427314b gpus=2 min=90 trtllm+sandbox",
        "smoke_run c1e0bc3524daeaa3 gpus=2 min=15 trtllm",
        "report a73d76dfde4bb2f7 gpus=0 min=15 trtllm",
    ],
    ('+experiment=fp8',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "quantize 3a04485562b76f97 gpus=1 min=120 trtllm",
        "build_engine fed36ff0dd008b38 gpus=1 min=90 trtllm",
        "benchmark 02dd20a10ead26ad gpus=2 min=90 trtllm+sandbox",
        "smoke_run 979d1a26feca3386 gpus=2 min=15 trtllm",
        "report dcd6a0d15ddb86a4 gpus=0 min=15 trtllm",
    ],
    ('+experiment=int8_wo',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "quantize c783e78acfe11f44 gpus=1 min=120 trtllm",
        "build_engine 18e988ff96217636 gpus=1 min=90 trtllm",
        "benchmark c7cbe8668e14d3f0 gpus=2 min=90 trtllm+sandbox",
        "smoke_run ba4e85c8e30e7171 gpus=2 min=15 trtllm",
        "report eaee6c1f41b026a6 gpus=0 min=15 trtllm",
    ],
    ('+experiment=fp8_redrafter',): [
        "download_model 26d30aff2db9c3fa gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data d0dbfd96e1235b37 gpus=0 min=60 trtllm",
        "train_drafter e400f76216209818 gpus=2 min=360 trtllm",
        "quantize 3a04485562b76f97 gpus=1 min=120 trtllm",
        "convert_drafter c8dd2595ea75086f gpus=1 min=30 trtllm",
        "build_drafter_engine e62f005b1b966825 gpus=1 min=90 trtllm",
        "benchmark f278ea36024a8468 gpus=2 min=90 trtllm+sandbox",
        "smoke_run 0e32eed5b41a86af gpus=2 min=15 trtllm",
        "report 5d1455a82969bbe7 gpus=0 min=15 trtllm",
    ],
    (*NEMOTRON, '+experiment=bf16'): [
        "download_model a07fdc2b1700cb87 gpus=0 min=120 trtllm",
        "quantize c0712f7ac1230394 gpus=2 min=120 trtllm",
        "build_engine 0844eb0619eb7a9a gpus=1 min=90 trtllm",
        "benchmark 9925012c53d6a17e gpus=4 min=120 trtllm+sandbox",
        "smoke_run 130a6d56fc03e7fd gpus=4 min=15 trtllm",
        "report 07a6706923891e71 gpus=0 min=15 trtllm",
    ],
    (*NEMOTRON, '+experiment=fp8_redrafter', 'drafter.tensor_parallel=2'): [
        "download_model a07fdc2b1700cb87 gpus=0 min=120 trtllm",
        "download_dataset 6e03b15a4baa4205 gpus=0 min=120 trtllm",
        "calibration_data c8c8ff21d1c41866 gpus=0 min=60 trtllm",
        "train_drafter fbc94ecc8ce4c72f gpus=2 min=720 trtllm",
        "quantize 88accb366f3bd24f gpus=2 min=120 trtllm",
        "convert_drafter 3d4906c11d2211cd gpus=1 min=30 trtllm",
        "build_drafter_engine 272d26d40affb342 gpus=1 min=90 trtllm",
        "benchmark 5fe6477116c1f892 gpus=4 min=120 trtllm+sandbox",
        "smoke_run a424b714ffcb7db2 gpus=4 min=15 trtllm",
        "report 846ccb6270249f76 gpus=0 min=15 trtllm",
    ],
    (*LLAMA, '+experiment=bf16'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "quantize a2923eda32ff7923 gpus=1 min=120 trtllm",
        "build_engine 8f3169181b12ab60 gpus=1 min=90 trtllm",
        "benchmark 82908253aed72b76 gpus=1 min=90 trtllm+sandbox",
        "smoke_run d9f19ba649ff980b gpus=1 min=15 trtllm",
        "report 5ecf00e2635b7282 gpus=0 min=15 trtllm",
    ],
    (*LLAMA, 'quantization=fp8_kv'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "download_dataset e934b92f7f28ef38 gpus=0 min=120 trtllm",
        "calibration_data 7d42bd73c5a546e5 gpus=0 min=60 trtllm",
        "quantize 70a6a0fef542b4f3 gpus=1 min=120 trtllm",
        "build_engine 3f1f6cd3dccc068b gpus=1 min=90 trtllm",
        "benchmark a4cbfa080b1bb386 gpus=1 min=90 trtllm+sandbox",
        "smoke_run 6b6555a4d7ab2810 gpus=1 min=15 trtllm",
        "report e7ee6492dfb40bfe gpus=0 min=15 trtllm",
    ],
    (*LLAMA, '+experiment=int8_wo', 'serving.sandbox.enabled=false'): [
        "download_model 2c42a63f8c1b6f22 gpus=0 min=120 trtllm",
        "quantize 846c55a9a7f48bb8 gpus=1 min=120 trtllm",
        "build_engine f898b9bbbbd19daa gpus=1 min=90 trtllm",
        "benchmark e4f60ac08993dfa4 gpus=1 min=90 trtllm",
        "smoke_run 55715e044806ffb9 gpus=1 min=15 trtllm",
        "report 3972343b9182b932 gpus=0 min=15 trtllm",
    ],
    ('cluster=example_slurm', '+experiment=aimo2_campaign'): [
        "download_model a37a48e2d5292618 gpus=0 min=120 trtllm",
        "download_dataset 6e03b15a4baa4205 gpus=0 min=120 trtllm",
        "quantize[qformat=full_prec] b7570e36e03c8a40 gpus=1 min=120 trtllm",
        "calibration_data a82352eabc25fd80 gpus=0 min=60 trtllm",
        "train_drafter 0f290601a412150a gpus=4 min=720 trtllm",
        "build_engine[bf16] 519e9d4b80bee489 gpus=1 min=90 trtllm",
        "quantize[qformat=fp8] 85e8743699a1d0b9 gpus=1 min=120 trtllm",
        "benchmark[bf16] b080012f797697ef gpus=2 min=120 trtllm+sandbox",
        "smoke_run[bf16] 1992fe4b937f688b gpus=2 min=15 trtllm",
        "build_engine[fp8] b5bbb6140af0fe47 gpus=1 min=90 trtllm",
        "convert_drafter edebd8480921b3aa gpus=1 min=30 trtllm",
        "benchmark[fp8] b0253cc7a3582f59 gpus=2 min=120 trtllm+sandbox",
        "smoke_run[fp8] 5262e353a3693f96 gpus=2 min=15 trtllm",
        "build_drafter_engine 89c071582389d9c4 gpus=1 min=90 trtllm",
        "benchmark[fp8_redrafter] 10be1be1c35b6214 gpus=2 min=120 trtllm+sandbox",
        "smoke_run[fp8_redrafter] 2a14132923a6045e gpus=2 min=15 trtllm",
        "report 9511995ff7bf0c6a gpus=0 min=15 trtllm",
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
    assert FP8_KINDS == ("quantize", "quantize_modelopt", "build_engine", "build_drafter_engine", "smoke_run",
                         "benchmark")
    assert DRAFTER_KINDS == ("train_drafter", "convert_drafter", "build_drafter_engine", "smoke_run", "benchmark")


@pytest.mark.parametrize("overrides, kinds", [
    (("+experiment=bf16",), ["download_model", "quantize", "build_engine", "benchmark", "smoke_run", "report"]),
    (("+experiment=fp8_redrafter",), ["download_model", "download_dataset", "calibration_data", "train_drafter",
                                      "quantize", "convert_drafter", "build_drafter_engine", "benchmark", "smoke_run",
                                      "report"]),
    (("model=llama2_7b_chat", "quantization=fp8_kv", "serving=triton", "benchmark=cnn_dailymail"),
     ["download_model", "download_dataset", "download_dataset", "calibration_data", "prompt_set", "quantize",
      "build_engine", "triton_model_repo", "smoke_run", "benchmark", "report"]),
])
def test_needed_decides_which_stages_a_config_gets(overrides, kinds):
    assert [s.kind for s in plan_for(*overrides).stages.values()] == kinds


def test_the_containers_a_config_needs_come_from_the_table():
    assert needed_containers(compose_config("+experiment=fp8")) == ("trtllm", "sandbox")
    assert needed_containers(compose_config("+experiment=fp8", "serving.sandbox.enabled=false")) == ("trtllm",)


def test_every_engine_is_smoke_run_and_the_report_reads_it():
    """smoke_run: one table entry after the engine, read by the report; nothing else waits on it."""
    stages = plan_for("+experiment=fp8_redrafter").stages
    assert stages["smoke_run"].deps == ("build_drafter_engine",)
    smoke = stages["smoke_run"].commands["smoke"]
    assert "--engine_dir=" + stages["build_drafter_engine"].artifact in smoke
    assert smoke[:3] == ["mpirun", "-n", "2"]  # the 14B engine is tensor parallel 2
    assert (stages["smoke_run"].resources.gpus, stages["smoke_run"].resources.time_min) == (2, 15)
    assert set(stages["report"].deps) == {"benchmark", "smoke_run"}
    assert not [s.name for s in stages.values() if "smoke_run" in s.deps and s.kind != "report"]


def test_the_triton_stages_come_from_the_table():
    cfg = ("model=llama2_7b_chat", "quantization=fp8_kv", "serving=triton", "benchmark=cnn_dailymail")
    assert needed_containers(compose_config(*cfg)) == ("trtllm", "triton")
    stages = plan_for(*cfg).stages
    assert stages["benchmark"].deps == ("build_engine", "triton_model_repo", "prompt_set")
    assert stages["benchmark"].containers == stages["triton_model_repo"].containers == ("triton",)
    assert stages["triton_model_repo"].resources.gpus == stages["prompt_set"].resources.gpus == 0
    assert stages["benchmark"].commands["server"][1] == (
        f"--model-repository={stages['triton_model_repo'].artifact}/model_repository")


def test_a_load_sweep_hashes_its_own_keys_and_needs_no_sandbox():
    """benchmark=load_sweep: the benchmark stage runs jobs.load_sweep instead of the notebook client, hashes the
    sweep's keys (not the notebook's), and starts no code sandbox; everything before it is the notebook's."""
    sweep = plan_for("+experiment=fp8", "benchmark=load_sweep")
    notebook = plan_for("+experiment=fp8")
    bench = sweep.stages["benchmark"]
    assert set(bench.commands) == {"server", "client"} and bench.commands["client"][1:3] == ["-m", "jobs.load_sweep"]
    assert bench.containers == ("trtllm",)
    assert needed_containers(compose_config("+experiment=fp8", "benchmark=load_sweep")) == ("trtllm",)
    assert set(bench.config_subset["benchmark"]) == {"name", "kind", "problems_file", "prompt", "concurrency",
                                                     "requests_per_user", "min_requests", "warmup_requests",
                                                     "prompt_set", "endpoint", "output_tokens", "goodput", "repeats",
                                                     "streaming", "request_timeout_s"}
    assert all(s.fingerprint == notebook.stages[n].fingerprint for n, s in sweep.stages.items()
               if n not in ("benchmark", "report"))
    fewer = plan_for("+experiment=fp8", "benchmark=load_sweep", "benchmark.concurrency=[1,8]").stages["benchmark"]
    assert fewer.fingerprint != bench.fingerprint and fewer.commands["client"][
        fewer.commands["client"].index("--concurrency") + 1] == "1,8"


def test_a_load_sweeps_time_limit_comes_from_its_points():
    """The server's start-up (30 min), then per point its rounds of requests at 10 tokens/s plus 2 minutes: at
    concurrency 1, 8 requests of 600 tokens = 8 min + 2; at 4, 4 rounds = 4 + 2; twice (repeats)."""
    cfg = compose_config("benchmark=load_sweep", "benchmark.concurrency=[1,4]", "benchmark.output_tokens=600",
                         "benchmark.repeats=2")
    assert KINDS["benchmark"].time_limit(cfg) == 30 + 2 * ((8 + 2) + (4 + 2))
    assert KINDS["benchmark"].time_limit(compose_config()) == 90  # the notebook's, as before
    assert KINDS["benchmark"].time_limit(compose_config("benchmark=load_sweep", "+cluster.time_limits.benchmark=45")) == 45


def _sized(*overrides, params_b=None):
    """A composed config whose model declares `params_b` billion parameters (model.params_b)."""
    cfg = compose_config(*overrides)
    with open_dict(cfg.model):
        cfg.model.params_b = params_b
    return cfg


@pytest.mark.parametrize("overrides, params_b, gpus", [
    (("+experiment=fp8",), 14.8, 1),  # 29.6 GB of BF16 weights on one 80 GB H100, though the engine is TP 2
    (("+experiment=fp8", "cluster.gpu_type=a100"), 14.8, 2),  # 29.6 GB > 0.7 x 40 GB
    (("+experiment=fp8", "cluster.gpu_type=a100", "cluster.gpu_memory_gb=80"), 14.8, 1),  # A100 80 GB
    (("model=nemotron_nas_51b", "cluster=example_slurm"), 51.5, 2),  # 103 GB on 2 of the 4 serving GPUs
    (("model=nemotron_nas_51b", "cluster=example_slurm", "model.dtype=float32"), 51.5, 4),  # 4 bytes a weight
    (("model=nemotron_nas_51b", "cluster.gpus_per_node=2"), 200, 2),  # a node's GPUs at most: the rest on CPU
    (("+experiment=fp8",), None, 2),  # no declared size: the serving GPUs
    (("+experiment=fp8", "cluster.gpu_type=mi300x"), 14.8, 2),  # no known memory: the serving GPUs
])
def test_the_quantizers_get_the_gpus_the_weights_fit_on(overrides, params_b, gpus):
    """quantize and quantize_modelopt load the model once with device_map="auto"; --tp_size only shapes the
    export, which one process writes for every rank: their GPUs come from the weights, not the serving TP."""
    cfg = _sized(*overrides, params_b=params_b)
    assert KINDS["quantize"].gpus(cfg) == KINDS["quantize_modelopt"].gpus(cfg) == gpus
    assert KINDS["quantize"].naive_gpus(cfg) == cfg.model.tensor_parallel * cfg.model.pipeline_parallel


def test_drafter_training_time_comes_from_its_work_and_gpus():
    """8 GPU-hours per 50k rows and epoch (the tutorial's 4 hours on 2 GPUs), split over drafter.num_gpus, x1.5."""
    train = KINDS["train_drafter"]
    assert train.time_limit(compose_config("+experiment=fp8_redrafter")) == 360
    assert train.time_limit(compose_config("+experiment=fp8_redrafter", "drafter.num_gpus=4")) == 180
    assert train.time_limit(compose_config("+experiment=fp8_redrafter", "drafter.dataset_nrows=100000",
                                           "drafter.num_train_epochs=2")) == 1440
    assert train.time_limit(compose_config("+experiment=fp8_redrafter", "drafter.dataset_nrows=100")) == 60
    assert train.time_limit(compose_config("+experiment=fp8_redrafter", "+cluster.time_limits.train_drafter=45")) == 45
    assert train.gpus(compose_config("+experiment=fp8_redrafter", "drafter.num_gpus=4")) == 4  # the user's choice
