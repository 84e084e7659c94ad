"""serving=triton, benchmark=cnn_dailymail and the seed 003/004 experiments: what validation refuses, what the
plans hold (dry runs: nothing is submitted)."""
from __future__ import annotations

import pytest

from launcher.validation import InvalidConfig
from tests.helpers import plan_for

TRITON = ("model=llama2_7b_chat", "quantization=fp8_kv", "serving=triton", "benchmark=cnn_dailymail")


def test_nemotron_nas_smoke_runs_each_engine_on_all_its_ranks():
    """Seed 003: BF16 and FP8 engines of the 51B model, each smoke-run with run.py under mpirun -n tp*pp."""
    stages = plan_for("cluster=example_slurm", "+experiment=nemotron_nas").stages
    smokes = {name: s for name, s in stages.items() if s.kind == "smoke_run"}
    assert set(smokes) == {"smoke_run[nemotron_nas_bf16]", "smoke_run[nemotron_nas_fp8]"}
    for name, smoke in smokes.items():
        argv = smoke.commands["smoke"]
        assert argv[:4] == ["mpirun", "-n", "4", "--allow-run-as-root"]  # tensor 2 x pipeline 2
        assert argv[5].endswith("/examples/run.py") and argv[-2:] == ["--input_text", "How do I count in French ? 1 un"]
        assert smoke.resources.gpus == 4 and smoke.deps == (name.replace("smoke_run", "build_engine"),)
    assert {stages[n].config_subset["qformat"] for n in stages if n.startswith("quantize")} == {"full_prec", "fp8"}


def test_seed_004_shares_each_engine_between_triton_and_trtllm_serve():
    stages = plan_for("+experiment=llama2_fp8_triton").stages
    kinds = [s.kind for s in stages.values()]
    assert (kinds.count("build_engine"), kinds.count("smoke_run"), kinds.count("benchmark")) == (2, 2, 4)
    assert kinds.count("prompt_set") == 1 and kinds.count("triton_model_repo") == 2
    on_triton, on_trtllm = stages["benchmark[llama2_fp8_on_triton]"], stages["benchmark[llama2_fp8_on_trtllm]"]
    assert on_triton.deps[0] == on_trtllm.deps[0] == "build_engine[llama2_fp8_on_triton]"
    assert on_triton.commands["server"][0] == "tritonserver" and on_trtllm.commands["server"][0] == "trtllm-serve"
    assert "--protocol" in on_trtllm.commands["client"] and "openai" in on_trtllm.commands["client"]
    assert "sandbox" not in on_trtllm.commands  # the protocol runs no code


@pytest.mark.parametrize("overrides, key, words", [
    (("serving=triton", "model=llama2_7b_chat", "benchmark.max_new_tokens=512"), "benchmark.kind",
     "benchmark=cnn_dailymail"),
    ((*TRITON, "serving.decoupled=false"), "serving.decoupled", "decoupled"),
    ((*TRITON, "benchmark.max_input_len=4096"), "benchmark.max_input_len", "model.max_input_len=2048"),
    ((*TRITON, "model.max_seq_len=2048"), "benchmark.max_input_len", "no room"),
    ((*TRITON, "serving.grpc_port=8000"), "serving.grpc_port", "three different"),
    ((*TRITON[:3], "drafter=redrafter", "benchmark=cnn_dailymail"), "drafter", "one output token per streamed"),
    (("model=llama2_7b_chat", "benchmark.max_new_tokens=512", "serving.grpc_port=9001"), "serving.grpc_port",
     "serving=triton"),
    (("model=llama2_7b_chat", "benchmark.max_new_tokens=512", "benchmark.sample_size=12"), "benchmark.sample_size",
     "benchmark=cnn_dailymail"),
])
def test_triton_and_the_seed_protocol_refuse_what_cannot_work(overrides, key, words):
    with pytest.raises(InvalidConfig) as refused:
        plan_for(*overrides)
    found = [e for e in refused.value.errors if e.key == key]
    assert found and words in str(found[0]), refused.value.errors
