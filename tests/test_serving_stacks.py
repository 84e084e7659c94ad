"""serving=trtllm_pytorch, vllm, sglang: their commands against the pinned releases' parser and schema facts (the
stand-ins' parsers transcribe them: tests/standins/README.md, "Serving stacks"), what validation refuses, the plan's
shape (shared stages once), and the stand-ins refusing what the real servers refuse."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import ports
from launcher import serving_commands
from launcher.validation import InvalidConfig
from tests.helpers import plan_for

STANDINS = Path(__file__).resolve().parent / "standins"
sys.path.insert(0, str(STANDINS / "python"))
from standin_tools import checkpoint_servers  # noqa: E402

JOB_PORTS = {ports.SERVER_PORT_ENV: "5242", ports.SANDBOX_PORT_ENV: "6242"}
DRAFT = ("drafter.draft_model=Qwen/Qwen2.5-0.5B-Instruct",)


def benchmark(*overrides):
    stages = plan_for(*overrides).stages
    return next(s for s in stages.values() if s.kind == "benchmark"), stages


def server_argv(*overrides):
    stage, _ = benchmark(*overrides)
    return ports.expand(stage.commands["server"], JOB_PORTS), stage


@pytest.mark.parametrize("drafter, method", [("none", None), ("ngram", "ngram"), ("draft_target", "draft_model"),
                                             ("eagle3", "eagle3")])
def test_vllm_command_parses_with_vllm_facts(drafter, method):
    extra = DRAFT if drafter == "eagle3" else ()
    argv, _ = server_argv("serving=vllm", f"drafter={drafter}", *extra)
    assert argv[:2] == ["vllm", "serve"]
    args = checkpoint_servers.vllm_parser().parse_args(argv[2:])
    assert (args.tensor_parallel_size, args.max_model_len, args.port) == (2, 32000, 5242)
    spec = args.speculative_config
    assert (spec or {}).get("method") == method
    if spec:
        assert set(spec) <= set(checkpoint_servers.VLLM_SPEC_FIELDS) and spec["num_speculative_tokens"] >= 1


@pytest.mark.parametrize("drafter, algorithm", [("none", None), ("ngram", "NGRAM"), ("draft_target", "STANDALONE"),
                                                ("eagle3", "EAGLE3")])
def test_sglang_command_parses_with_sglang_facts(drafter, algorithm):
    extra = DRAFT if drafter == "eagle3" else ()
    argv, _ = server_argv("serving=sglang", f"drafter={drafter}", *extra)
    assert argv[1:3] == ["-m", "sglang.launch_server"]
    args = checkpoint_servers.sglang_parser().parse_args(argv[3:])
    assert (args.tp_size, args.context_length, args.speculative_algorithm) == (2, 32000, algorithm)
    assert bool(args.speculative_draft_model_path) == (drafter in ("draft_target", "eagle3"))


@pytest.mark.parametrize("drafter, decoding_type", [("ngram", "NGram"), ("draft_target", "Draft_Target"),
                                                    ("eagle3", "Eagle3")])
def test_trtllm_pytorch_options_follow_the_llm_api_schema(drafter, decoding_type):
    extra = DRAFT if drafter == "eagle3" else ()
    argv, stage = server_argv("serving=trtllm_pytorch", f"drafter={drafter}", *extra)
    assert argv[argv.index("--backend") + 1] == "pytorch"
    written = stage.commands["server_options"]
    spec = json.loads(written[written.index("--json") + 1])["speculative_config"]
    assert spec["decoding_type"] == decoding_type
    allowed = set(checkpoint_servers.TRTLLM_BASE_KEYS) | set(checkpoint_servers.TRTLLM_SPEC_KEYS[decoding_type])
    assert set(spec) <= allowed
    assert argv[argv.index("--extra_llm_api_options") + 1] == written[written.index("--output") + 1]


def test_fp8_is_the_modelopt_export_or_online_quantization():
    argv, stage = server_argv("serving=vllm", "+experiment=fp8")
    assert "--quantization" not in argv and stage.inputs[0].kind == "quantize_modelopt"
    argv, stage = server_argv("serving=vllm", "+experiment=fp8", "serving.fp8_weights=online")
    assert argv[argv.index("--quantization") + 1] == "fp8" and stage.inputs[0].kind == "download_model"


def test_vllm_and_sglang_of_one_model_share_the_download_and_the_modelopt_export():
    vllm = {s.kind: s.fingerprint for s in plan_for("serving=vllm").stages.values()}
    sglang = {s.kind: s.fingerprint for s in plan_for("serving=sglang").stages.values()}
    assert vllm["download_model"] == sglang["download_model"]
    assert vllm["quantize_modelopt"] == sglang["quantize_modelopt"]
    assert vllm["benchmark"] != sglang["benchmark"]
    assert "build_engine" not in vllm and "smoke_run" not in vllm and "quantize" not in vllm


def test_the_draft_model_has_its_own_download_stage():
    stage, stages = benchmark("serving=vllm", "drafter=draft_target")
    assert "download_draft_model" in stage.deps
    spec = json.loads(stage.commands["server"][stage.commands["server"].index("--speculative-config") + 1])
    assert spec["model"] == stages["download_draft_model"].artifact + "/Qwen2.5-0.5B-Instruct"


def test_the_pinned_recipe_keeps_its_serving_fingerprint():
    stage, _ = benchmark("+experiment=fp8")
    assert "stack" not in stage.config_subset["serving"] and "fp8_weights" not in stage.config_subset["serving"]


@pytest.mark.parametrize("overrides, key, says", [
    (("serving=vllm", "drafter=mtp"), "drafter.method", "no multi-token-prediction layers"),
    (("serving=sglang", "drafter=redrafter"), "drafter", "ReDrafter exists only on the TensorRT engine path"),
    (("drafter=ngram",), "drafter.method", "drafts with ReDrafter only"),
    (("serving=vllm", "drafter=ngram", "drafter.train_eagle3=true"), "drafter.train_eagle3", "only an EAGLE-3 head"),
    (("serving=vllm", "+experiment=int8_wo"), "quantization.qformat", "INT8 weight-only"),
    (("serving=vllm", "serving.kv_cache_free_gpu_memory_fraction=0.5"), "serving.kv_cache_free_gpu_memory_fraction",
     "changes nothing"),
    (("serving=vllm", "cluster=example_slurm", "cluster.gpus_per_node=2", "model.tensor_parallel=1",
      "model.pipeline_parallel=3"), "model.tensor_parallel", "vLLM needs tp*pp divisible by its nodes"),
])
def test_validation_names_the_key_and_what_is_allowed(overrides, key, says):
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*overrides)
    errors = {e.key: e for e in raised.value.errors}
    assert key in errors and says in str(errors[key]) and errors[key].allowed


def test_trtllm_pytorch_spans_nodes_under_srun_pmix():
    argv, stage = server_argv("serving=trtllm_pytorch", "cluster=example_slurm", "model.tensor_parallel=16",
                              "model.num_attention_heads=32", "model.num_kv_heads=8")
    # Every rank runs it (the server step's srun: tests/test_multi_node.py).
    assert argv[:3] == ["trtllm-llmapi-launch", "trtllm-serve", "serve"]
    assert serving_commands.server_step_srun(stage.cfg)[:3] == ["srun", "--overlap", "--mpi=pmix"]
    assert (stage.resources.nodes, stage.resources.gpus_per_node) == (2, 8)
    assert argv[argv.index("--gpus_per_node") + 1] == "8"


@pytest.mark.parametrize("stack", ["vllm", "sglang"])
def test_vllm_and_sglang_span_nodes_with_one_task_per_node(stack):
    argv, stage = server_argv(f"serving={stack}", "cluster=example_slurm", "model.tensor_parallel=16",
                              "model.num_attention_heads=32", "model.num_kv_heads=8")
    # The job's command is the single-node one: each node's task adds --nnodes, its rank and the head's address.
    assert "--nnodes" not in argv and "trtllm-llmapi-launch" not in argv
    assert serving_commands.server_step_srun(stage.cfg) == ["srun", "--overlap", "--kill-on-bad-exit=1", "--nodes=2",
                                                            "--ntasks=2", "--ntasks-per-node=1"]
    assert serving_commands.node_args(stage.cfg)["all"][:4] == ["--nnodes", "2", "--node-rank", "${LAUNCHER_NODE_RANK}"]
    assert (stage.resources.nodes, stage.resources.gpus_per_node) == (2, 8)


# ------------------------------------------------------------------------------------------ the stand-ins refuse
def _checkpoint(tmp_path, quant_method=None):
    model = tmp_path / "model"
    model.mkdir()
    config = {"architectures": ["Qwen2ForCausalLM"]}
    if quant_method:
        config["quantization_config"] = {"quant_method": quant_method}
    (model / "config.json").write_text(json.dumps(config))
    return str(model)


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_vllm_standin_refuses_what_vllm_refuses(tmp_path):
    vllm = str(STANDINS / "bin" / "vllm")
    assert "config.json" in _run([vllm, "serve", str(tmp_path / "none")]).stderr
    modelopt = _checkpoint(tmp_path, "modelopt")
    assert "does not match the quantization" in _run([vllm, "serve", modelopt, "--quantization", "fp8"]).stderr
    bad = json.dumps({"method": "eagle3", "num_speculative_tokens": 3, "draft_len": 3})
    assert "Extra inputs are not permitted" in _run([vllm, "serve", modelopt, "--speculative-config", bad]).stderr
    assert "unrecognized arguments: --tp_size" in _run([vllm, "serve", modelopt, "--tp_size", "2"]).stderr


def test_sglang_and_trtllm_pytorch_standins_refuse_bad_speculation(tmp_path):
    model = _checkpoint(tmp_path)
    sglang = [sys.executable, "-m", "sglang.launch_server", "--model-path", model]
    env_run = subprocess.run([*sglang, "--speculative-algorithm", "EAGLE3"], capture_output=True, text=True,
                             timeout=60, env={"PYTHONPATH": str(STANDINS / "python"), "PATH": "/usr/bin:/bin"})
    assert "needs --speculative-draft-model-path" in env_run.stderr
    options = tmp_path / "options.yaml"
    options.write_text(json.dumps({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 3,
                                                          "prompt_lookup_num_tokens": 3}}))
    serve = _run([str(STANDINS / "bin" / "trtllm-serve"), "serve", model, "--backend", "pytorch",
                  "--extra_llm_api_options", str(options)])
    assert "prompt_lookup_num_tokens: Extra inputs are not permitted" in serve.stderr


def test_the_readme_table_names_what_validation_allows():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Serving stacks", 1)[1]
    for stack, methods in serving_commands.SUPPORTED_METHODS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `serving={stack}`"))
        assert all(f"`{m}`" in row for m in methods), row
