"""drafter=eagle3 drafter.train_eagle3=true: the head trained with NVIDIA Model-Optimizer 0.46.0's EAGLE-3 recipe
(stages eagle3_conversations, train_eagle3) instead of downloaded. The commands against the recipe's parsers (the
stand-ins transcribe them: tests/standins/README.md, "EAGLE-3 training"), the stand-ins refusing what the real
tools refuse, the plan, validation, and the chain conversations -> training -> export -> the servers' draft dir."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.eagle3_conversations import make_conversations
from launcher import serving_commands
from launcher.validation import InvalidConfig
from tests.helpers import compose_config, plan_for

STANDINS = Path(__file__).resolve().parent / "standins"
sys.path.insert(0, str(STANDINS / "python"))
from standin_tools import accelerate_launch, checkpoint_servers, modelopt_eagle3  # noqa: E402
from standin_tools.common import StandinError  # noqa: E402

TRAIN = ("drafter=eagle3", "drafter.train_eagle3=true")
EXAMPLES = f"cluster.modelopt_examples_dir={STANDINS / 'modelopt_examples'}"
ENV = {**os.environ, "PATH": f"{STANDINS / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def stages(*overrides):
    return plan_for(*overrides).stages


def kind(plan_stages, name):
    return next(s for s in plan_stages.values() if s.kind == name)


def recipe_of(argv):
    """What main.py reads from our argv: accelerate's parse, then load_recipe on the rest."""
    launch = accelerate_launch.build_parser().parse_args(argv[1:])
    assert launch.training_script.endswith("speculative_decoding/main.py")
    config_at = launch.training_script_args.index("--config")
    config = launch.training_script_args[config_at + 1]
    return launch, modelopt_eagle3.load_recipe(config, launch.training_script_args[config_at + 2:])


def test_train_command_sets_every_recipe_field_from_the_config():
    cfg = compose_config("serving=vllm", *TRAIN, "drafter.eagle3_num_gpus=4", "drafter.eagle3_learning_rate=0.0003",
                         "drafter.eagle3_training_seq_len=4096", "drafter.eagle3_num_layers=2",
                         "drafter.eagle3_ttt_steps=4", "drafter.eagle3_save_steps=500", "model.trust_remote_code=true")
    argv = serving_commands.train_eagle3_command(cfg, "/m", "/c/train.jsonl", "/o")
    launch, recipe = recipe_of(argv)
    assert (launch.mixed_precision, launch.num_processes, launch.multi_gpu) == ("bf16", 4, True)
    assert recipe["model"] == {"model_name_or_path": "/m", "trust_remote_code": True,
                               "use_fake_base_for_offline": False}
    assert recipe["data"]["data_path"] == "/c/train.jsonl" and recipe["data"]["mode"] == "online"
    t, e = recipe["training"], recipe["eagle"]
    assert (t["output_dir"], t["learning_rate"], t["training_seq_len"], t["save_steps"]) == ("/o", 0.0003, 4096, 500)
    assert (e["eagle_ttt_steps"], e["eagle_architecture_config"]) == (4, {"num_hidden_layers": 2})
    # The exported head's YaRN base length is the trained one: the recipe warns when they differ.
    assert e["eagle_export_rope_scaling"]["original_max_position_embeddings"] == 4096


def test_one_gpu_is_launched_without_multi_gpu_which_accelerate_refuses():
    argv = serving_commands.train_eagle3_command(compose_config("serving=vllm", *TRAIN), "/m", "/c", "/o")
    launch, _ = recipe_of(argv)
    assert (launch.num_processes, launch.multi_gpu) == (1, False)
    with pytest.raises(StandinError, match="at least 2 processes"):
        accelerate_launch._launch(accelerate_launch.build_parser().parse_args(
            ["launch", "--multi_gpu", "--num_processes", "1", "main.py"]))


@pytest.mark.parametrize("override, says", [
    ("training.output_dir", "missing '='"),
    ("model.revision=main", "Extra inputs are not permitted"),
    ("eagle.eagle_draft_len=3", "Extra inputs are not permitted"),
    ("training.no_such_argument=1", "unexpected keyword argument"),
    ("data.sample_size=0", "sample_size must be -1"),
    ("training.cp_size=0", "cp_size must be >= 1"),
])
def test_the_recipe_stand_in_refuses_what_load_recipe_refuses(override, says):
    with pytest.raises(StandinError, match=says):
        modelopt_eagle3.load_recipe(serving_commands.MODELOPT_EAGLE3_RECIPE, [override])


def test_an_unknown_recipe_is_refused():
    with pytest.raises(StandinError, match="not a valid YAML file"):
        modelopt_eagle3.load_recipe("general/speculative_decoding/eagle4", [])


def test_plan_trains_the_head_instead_of_downloading_one_and_serves_it():
    plan = stages("serving=vllm", *TRAIN)
    kinds = [s.kind for s in plan.values()]
    assert "download_draft_model" not in kinds
    assert kinds.index("eagle3_conversations") < kinds.index("train_eagle3") < kinds.index("benchmark")
    train, bench = kind(plan, "train_eagle3"), kind(plan, "benchmark")
    assert train.containers == ("modelopt",) and train.resources.gpus_per_node == 1
    assert list(train.commands) == ["train", "export"]
    head = f"{train.artifact}/{serving_commands.EAGLE3_HEAD_DIR}"
    server = bench.commands["server"]
    spec = json.loads(server[server.index("--speculative-config") + 1])
    assert spec == {"method": "eagle3", "model": head, "num_speculative_tokens": 3}
    assert train.name in bench.deps and "train_eagle3" in [s.kind for s in bench.inputs]
    # The conversations come from the drafter's dataset, downloaded once with the calibration data's.
    conversations = kind(plan, "eagle3_conversations")
    assert [s.kind for s in conversations.inputs] == ["download_dataset"] and kinds.count("download_dataset") == 1


def test_trtllm_pytorch_and_sglang_draft_with_the_trained_head():
    train = kind(stages("serving=trtllm_pytorch", *TRAIN), "train_eagle3")
    head = f"{train.artifact}/{serving_commands.EAGLE3_HEAD_DIR}"
    options = kind(stages("serving=trtllm_pytorch", *TRAIN), "benchmark").commands["server_options"]
    assert json.loads(options[options.index("--json") + 1])["speculative_config"]["speculative_model_dir"] == head
    sglang = kind(stages("serving=sglang", *TRAIN), "benchmark").commands["server"]
    assert sglang[sglang.index("--speculative-draft-model-path") + 1].endswith(serving_commands.EAGLE3_HEAD_DIR)


def test_the_training_time_limit_grows_with_rows_and_shrinks_with_gpus():
    small = kind(stages("serving=vllm", *TRAIN, "drafter.eagle3_dataset_nrows=1000"), "train_eagle3")
    big = kind(stages("serving=vllm", *TRAIN, "drafter.eagle3_dataset_nrows=200000"), "train_eagle3")
    split = kind(stages("serving=vllm", *TRAIN, "drafter.eagle3_dataset_nrows=200000", "drafter.eagle3_num_gpus=2"),
                 "train_eagle3")
    assert small.resources.time_min < split.resources.time_min < big.resources.time_min


@pytest.mark.parametrize("overrides, key, says", [
    (("serving=vllm", "drafter=ngram", "drafter.train_eagle3=true"), "drafter.train_eagle3", "only an EAGLE-3 head"),
    (("serving=vllm", "drafter=eagle3"), "drafter.draft_model", "drafter.train_eagle3=true"),
    (("serving=vllm", *TRAIN, "drafter.eagle3_num_gpus=16"), "drafter.eagle3_num_gpus", "one node"),
    (("serving=vllm", "drafter=eagle3", "drafter.draft_model=a/b", "drafter.eagle3_num_gpus=2"),
     "drafter.eagle3_num_gpus", "changes nothing"),
    (("serving=vllm", *TRAIN, "drafter.eagle3_learning_rate=0"), "drafter.eagle3_learning_rate", ""),
])
def test_validation_names_the_key_and_what_is_allowed(overrides, key, says):
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*overrides)
    errors = {e.key: e for e in raised.value.errors}
    assert key in errors and says in str(errors[key]) and errors[key].allowed


def test_fingerprint_hashes_the_training_keys_only_where_the_head_is_trained():
    base = kind(stages("serving=vllm", *TRAIN), "train_eagle3")
    assert kind(stages("serving=vllm", *TRAIN, "drafter.eagle3_ttt_steps=5"), "train_eagle3").fingerprint \
        != base.fingerprint
    downloaded = stages("serving=vllm", "drafter=eagle3", "drafter.draft_model=a/b")
    assert "train_eagle3" not in [s.kind for s in downloaded.values()]
    assert "download_draft_model" in [s.kind for s in downloaded.values()]


# ------------------------------------------------------------------------------------------------ the chain
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("omr")
    subprocess.run(["hf", "download", "nvidia/OpenMathReasoning", "--repo-type", "dataset", "--local-dir",
                    str(root)], check=True, env=ENV, capture_output=True)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    subprocess.run(["hf", "download", "Qwen/Qwen2.5-0.5B-Instruct", "--local-dir", str(root)], check=True, env=ENV,
                   capture_output=True)
    return root


def test_conversations_are_the_recipes_messages(dataset, tmp_path):
    out = tmp_path / "train.jsonl"
    summary = make_conversations(str(dataset), "tir", 10, str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["conversations"] == len(rows) == 10
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    assert modelopt_eagle3.read_conversations(str(out))  # what the trainer reads
    with pytest.raises(SystemExit, match="eagle3_dataset_nrows"):
        make_conversations(str(dataset), "tir", 10_000, str(tmp_path / "more.jsonl"))


def test_conversations_refuse_a_dataset_without_problems(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"text": ["a", "b"]}).to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(SystemExit, match="no column problem, generated_solution"):
        make_conversations(str(tmp_path), "train", 2, str(tmp_path / "train.jsonl"))


def run(argv):
    return subprocess.run(argv, env=ENV, capture_output=True, text=True)


def test_train_export_and_serve_the_head_through_the_stand_ins(dataset, model, tmp_path):
    cfg = compose_config("serving=vllm", *TRAIN, EXAMPLES, "drafter.eagle3_dataset_nrows=12",
                         "drafter.eagle3_save_steps=5", "drafter.eagle3_logging_steps=2",
                         "drafter.eagle3_save_total_limit=1")
    conversations, checkpoint, head = tmp_path / "train.jsonl", tmp_path / "ckpt", tmp_path / "head"
    make_conversations(str(dataset), "tir", 12, str(conversations))
    trained = run(serving_commands.train_eagle3_command(cfg, str(model), str(conversations), str(checkpoint)))
    assert trained.returncode == 0, trained.stderr
    assert [p.name for p in checkpoint.glob("checkpoint-*")] == ["checkpoint-10"]  # save_total_limit=1
    exported = run(serving_commands.export_eagle3_command(cfg, str(checkpoint), str(head)))
    assert exported.returncode == 0, exported.stderr
    config = json.loads((head / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["draft_vocab_size"]
    assert config["rope_scaling"]["original_max_position_embeddings"] == cfg.drafter.eagle3_training_seq_len
    assert (head / "model.safetensors").is_file()
    checkpoint_servers.model_config("vllm", str(head))  # what the servers' stand-ins read of a draft model


def test_training_resumes_from_the_newest_checkpoint(model, dataset, tmp_path):
    cfg = compose_config("serving=vllm", *TRAIN, EXAMPLES, "drafter.eagle3_save_steps=4")
    conversations, checkpoint = tmp_path / "train.jsonl", tmp_path / "ckpt"
    make_conversations(str(dataset), "tir", 12, str(conversations))
    argv = serving_commands.train_eagle3_command(cfg, str(model), str(conversations), str(checkpoint))
    assert run(argv).returncode == 0
    (checkpoint / "model.safetensors").unlink()  # as if stopped after checkpoint-12 was saved
    again = run(argv)
    assert again.returncode == 0 and "Last checkpoint detected" in again.stderr and "trained 0 steps" in again.stderr


@pytest.mark.parametrize("broken, says", [
    ("no_model", "config.json"),
    ("bad_row", "not a {\"messages\": [...]} conversation"),
])
def test_the_trainer_stand_in_refuses_missing_or_malformed_inputs(model, tmp_path, broken, says):
    cfg = compose_config("serving=vllm", *TRAIN, EXAMPLES)
    conversations = tmp_path / "train.jsonl"
    conversations.write_text('{"conversations": []}\n' if broken == "bad_row" else
                             json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    model_dir = tmp_path / "empty" if broken == "no_model" else model
    model_dir.mkdir(exist_ok=True)
    result = run(serving_commands.train_eagle3_command(cfg, str(model_dir), str(conversations), str(tmp_path / "o")))
    assert result.returncode == 1 and says in result.stderr


def test_the_export_stand_in_refuses_a_model_without_the_eagle_state(model, tmp_path):
    cfg = compose_config("serving=vllm", *TRAIN, EXAMPLES)
    result = run(serving_commands.export_eagle3_command(cfg, str(model), str(tmp_path / "head")))
    assert result.returncode == 1 and "not optimized for speculative decoding" in result.stderr
