"""launcher/triton_commands.py: the seed 004 commands, run against the Triton stand-ins' templates.

The filled repository is parsed with protobuf's text format into tritonclient's ``inference.ModelConfig`` (what
tritonserver parses): a key the builder forgot leaves an unquoted ``${...}`` there and the parse fails.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.triton_commands import (TRITON_MODELS, escape_fill_value, fill_template_argv, model_repository_commands,
                                      smoke_run_argv, template_substitutions, tritonserver_argv)

STANDINS = Path(__file__).resolve().parent / "standins"
BACKEND = STANDINS / "triton_backend"
TOKENIZER = STANDINS / "data" / "tiny_tokenizer"
UNQUOTED_PLACEHOLDER = re.compile(r'^[^"#\n]*\$\{', re.M)


def repo_commands(tmp_path, **overrides):
    kwargs = dict(repo_dir=str(tmp_path / "repo"), engine_dir=str(tmp_path / "engine, v1:fp8"),
                  tokenizer_dir=str(TOKENIZER), max_batch_size=64, max_queue_delay_us=100, decoupled=True,
                  backend_dir=str(BACKEND), python=sys.executable)
    kwargs.update(overrides)
    return model_repository_commands(**kwargs)


def test_seed_server_command_with_per_job_ports():
    # seed: tritonserver --model-repository=/workspace/triton_model_repo/llama_7b/fp8
    argv = tritonserver_argv(repo_dir="/workspace/triton_model_repo/llama_7b/fp8", http_port=9000, grpc_port=9001,
                             metrics_port=9002)
    assert argv == ["tritonserver", "--model-repository=/workspace/triton_model_repo/llama_7b/fp8",
                    "--http-port=9000", "--grpc-port=9001", "--metrics-port=9002"]


def test_multi_rank_server_is_one_mpirun_with_a_tritonserver_per_rank():
    argv = tritonserver_argv(repo_dir="/r", http_port=9000, grpc_port=9001, metrics_port=9002, world_size=2)
    assert argv[:2] == ["mpirun", "--allow-run-as-root"]
    ranks = " ".join(argv[2:]).split(" : ")
    assert len(ranks) == 2
    assert ranks[0].startswith("-n 1 tritonserver --model-repository=/r") and "--load-model" not in ranks[0]
    assert "--model-control-mode=explicit --load-model=tensorrt_llm" in ranks[1]
    assert "shm-region-prefix-name=prefix0_" in ranks[0] and "shm-region-prefix-name=prefix1_" in ranks[1]


def test_server_ports_may_be_the_jobs_placeholders():
    argv = tritonserver_argv(repo_dir="/r", http_port="${LAUNCHER_SERVER_PORT}", grpc_port="${LAUNCHER_GRPC_PORT}",
                             metrics_port="${LAUNCHER_METRICS_PORT}")
    assert argv[2:] == ["--http-port=${LAUNCHER_SERVER_PORT}", "--grpc-port=${LAUNCHER_GRPC_PORT}",
                        "--metrics-port=${LAUNCHER_METRICS_PORT}"]


@pytest.mark.parametrize("kwargs, key", [
    (dict(http_port=9000, grpc_port=9000, metrics_port=9002), "must differ"),
    (dict(http_port="$PORT", grpc_port=9001, metrics_port=9002), "http_port"),
    (dict(http_port=0, grpc_port=9001, metrics_port=9002), "http_port"),
    (dict(http_port=9000, grpc_port=9001, metrics_port=9002, world_size=0), "world_size"),
])
def test_server_argv_refuses_bad_ports_and_world_size(kwargs, key):
    with pytest.raises(ValueError, match=key):
        tritonserver_argv(repo_dir="/r", **kwargs)


def test_seed_smoke_command_and_its_mpirun_form():
    # seed: python .../examples/llama/run.py --engine_dir=... --max_output_len 100 --tokenizer_dir ... --input_text "..."
    argv = smoke_run_argv(examples_dir="/opt/TensorRT-LLM/examples", engine_dir="/e", tokenizer_dir="/t",
                          input_text="How do I count in French ? 1 un", max_output_len=100, python="python")
    assert argv == ["python", "/opt/TensorRT-LLM/examples/run.py", "--engine_dir=/e", "--max_output_len", "100",
                    "--tokenizer_dir", "/t", "--input_text", "How do I count in French ? 1 un"]
    wrapped = smoke_run_argv(examples_dir="/x", engine_dir="/e", tokenizer_dir="/t", input_text="hi",
                             max_output_len=5, world_size=4)
    assert wrapped[:4] == ["mpirun", "-n", "4", "--allow-run-as-root"] and wrapped[5] == "/x/run.py"


def test_substitutions_cover_each_templates_mandatory_keys():
    subs = template_substitutions(engine_dir="/e", tokenizer_dir="/t", max_batch_size=8, max_queue_delay_us=0,
                                  decoupled=False)
    assert set(subs) == set(TRITON_MODELS)
    assert subs["tensorrt_llm"]["triton_backend"] == "tensorrtllm"
    assert subs["tensorrt_llm"]["batching_strategy"] == "inflight_fused_batching"
    assert subs["tensorrt_llm"]["decoupled_mode"] == subs["tensorrt_llm_bls"]["decoupled_mode"] == "false"
    assert "max_queue_delay_microseconds" not in subs["postprocessing"]  # its template has no such key


@pytest.mark.parametrize("bad, key", [(dict(max_batch_size=0), "max_batch_size"),
                                      (dict(max_queue_delay_us=-1), "max_queue_delay_us"),
                                      (dict(logits_datatype="FP32"), "logits_datatype"),
                                      (dict(tokenizer_dir=""), "tokenizer_dir")])
def test_substitutions_refuse_bad_values(bad, key):
    kwargs = dict(engine_dir="/e", tokenizer_dir="/t", max_batch_size=8, max_queue_delay_us=0, decoupled=True)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=key):
        template_substitutions(**kwargs)


def test_escaping_keeps_commas_and_colons_in_values():
    assert escape_fill_value("a,b:c\\d") == "a\\,b\\\\\\:c" + "\\" * 4 + "d"
    assert fill_template_argv("py", "f.py", "c.pbtxt", {"k": "x,y"}) == ["py", "f.py", "-i", "c.pbtxt", "k:x\\,y"]


def test_filled_repository_parses_as_triton_configs(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    for argv in repo_commands(tmp_path).values():
        subprocess.run(argv, check=True, capture_output=True, text=True)
    repo = tmp_path / "repo"
    for model in TRITON_MODELS:
        text = (repo / model / "config.pbtxt").read_text()
        assert not UNQUOTED_PLACEHOLDER.search(text), model
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
        assert config.name == model and config.max_batch_size == 64
    trt = text_format.Parse((repo / "tensorrt_llm" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert trt.parameters["gpt_model_path"].string_value == str(tmp_path / "engine, v1:fp8")  # escaped , and :
    assert trt.model_transaction_policy.decoupled is True
    assert trt.dynamic_batching.max_queue_delay_microseconds == 100


def test_a_forgotten_key_leaves_the_config_unparsable(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    commands = repo_commands(tmp_path)
    commands["fill_ensemble"][-1] = commands["fill_ensemble"][-1].replace(",logits_datatype:TYPE_FP32", "")
    for argv in commands.values():
        subprocess.run(argv, check=True, capture_output=True)
    with pytest.raises(text_format.ParseError):
        text_format.Parse((tmp_path / "repo" / "ensemble" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_fill_template_refuses_a_key_the_template_lacks(tmp_path):
    commands = repo_commands(tmp_path)
    for name in ("mkdir", "copy"):
        subprocess.run(commands[name], check=True)
    bad = fill_template_argv(sys.executable, str(BACKEND / "tools" / "fill_template.py"),
                             str(tmp_path / "repo" / "postprocessing" / "config.pbtxt"),
                             {"max_queue_delay_microseconds": "10"})
    done = subprocess.run(bad, capture_output=True, text=True)
    assert done.returncode == 1
    assert "AssertionError: key 'max_queue_delay_microseconds' does not exist in the file" in done.stderr
