"""Stage commands against the seeds' commands, flag for flag, with the seeds' paths replaced by artifacts."""
import pytest

from jobs import ports
from tests.helpers import parse_command, plan_for

# The seeds' commands (tutorial 001/002 and TensorRT-LLM's Nemotron-NAS notes 003), verbatim but for paths.
SEED_FP8_REDRAFTER = {
    "download_model": "hf download nvidia/OpenMath-Nemotron-14B-kaggle --local-dir {out}/OpenMath-Nemotron-14B-kaggle",
    "download_dataset": "hf download nvidia/OpenMathReasoning --repo-type dataset --local-dir {out}/OpenMathReasoning",
    "quantize": "python -m nemo_skills.conversion.hf_to_trtllm_quantize --model_dir {model} --dtype auto "
                "--qformat fp8 --output_dir {out} --calib_size 4096 --calib_dataset {calib} --batch_size 4 "
                "--tp_size 2 --pp_size 1",
    "train_drafter": "torchrun --nproc_per_node=2 -m nemo_skills.training.train_redrafter --llm_name_or_path {model} "
                     "--dataset {dataset} --dataset_split tir --bf16 True --output_dir {out}/redrafter_output "
                     "--num_train_epochs 1 --per_device_train_batch_size 1 --gradient_accumulation_steps 4 "
                     "--save_strategy no --learning_rate 0.001 --weight_decay 0. --warmup_ratio 0.1 "
                     "--lr_scheduler_type cosine --logging_steps 20 --tf32 True --model_max_length 2048 "
                     "--dataset_nrows 50000 --drafter_predict_n_tokens 3 --drafter_num_layers 2 --rnn True "
                     "--phase train --report_to wandb",
    "convert_drafter": "python /opt/TensorRT-LLM/examples/redrafter/convert_checkpoint.py "
                       "--base_model_checkpoint_dir {quantize} --drafter_model_dir {drafter} --output_dir {out} "
                       "--dtype bfloat16 --tp_size 2 --redrafter_num_beams 1 --redrafter_draft_len_per_beam 3",
    "build_drafter_engine": "trtllm-build --checkpoint_dir {convert} --output_dir {out} --gemm_plugin fp8 "
                            "--use_paged_context_fmha=enable --max_batch_size 32 --max_seq_len 32000 "
                            "--max_input_len 32000 --max_num_tokens 32000 --speculative_decoding_mode "
                            "explicit_draft_tokens --max_beam_width 1 --kv_cache_type paged",
    "server": "trtllm-serve serve {engine} --tokenizer {model} --backend trt --tp_size 2 "
              "--kv_cache_free_gpu_memory_fraction 0.92 --max_batch_size 12 --host 127.0.0.1 --port 5000",
}
# What the launcher adds to a seed's command, and why.
LAUNCHER_ADDS = {
    # TrainingArguments' default logging_dir ends in the host name, which WandbCallback records in the trainer's
    # W&B run config (tests/jobs/test_drafter_gate.py test_the_trainer_wandb_config_holds_no_host_name).
    "train_drafter": " --logging_dir {out}/redrafter_output/runs",
}
SEED_FP8_ENGINE = ("trtllm-build --checkpoint_dir {quantize} --output_dir {out} --gemm_plugin auto "
                   "--use_paged_context_fmha enable --max_batch_size 512 --max_input_len 30000 --max_seq_len 32000 "
                   "--max_num_tokens 8192")


def _paths(plan):
    s = plan.stages
    model = s["download_model"].artifact + "/OpenMath-Nemotron-14B-kaggle"
    paths = {"model": model, "dataset": s["download_dataset"].artifact + "/OpenMathReasoning"}
    if "calibration_data" in s:
        paths["calib"] = s["calibration_data"].artifact + "/calib"
    paths["quantize"] = s["quantize"].artifact
    if "train_drafter" in s:
        paths["drafter"] = (s["train_drafter"].artifact + "/redrafter_output_redrafter_OpenMath-Nemotron-14B-kaggle"
                            "_n_3_lr_0.001_layers_2")
        paths["convert"] = s["convert_drafter"].artifact
        paths["engine"] = s["build_drafter_engine"].artifact
    return paths


def _command(plan, stage, key=None):
    commands = plan.stages[stage].commands
    return commands[key] if key else next(iter(commands.values()))


@pytest.fixture(scope="module")
def fp8_redrafter():
    return plan_for("+experiment=fp8_redrafter")


@pytest.mark.parametrize("stage", [s for s in SEED_FP8_REDRAFTER if s != "server"])
def test_fp8_redrafter_commands_match_the_seed(fp8_redrafter, stage):
    paths = _paths(fp8_redrafter)
    expected = (SEED_FP8_REDRAFTER[stage] + LAUNCHER_ADDS.get(stage, "")).format(
        out=fp8_redrafter.stages[stage].staging_dir, **paths)
    assert parse_command(_command(fp8_redrafter, stage)) == parse_command(expected)


def test_server_command_matches_the_seed(fp8_redrafter):
    """The seed's port 5000 is serving.port: the command names the port the job chooses from there (jobs.ports),
    which is 5000 itself for a job whose 5000 + SLURM_JOB_ID % 1000 is 5000 and free."""
    expected = SEED_FP8_REDRAFTER["server"].format(**_paths(fp8_redrafter))
    server = _command(fp8_redrafter, "benchmark", "server")
    assert server[-2:] == ["--port", "${LAUNCHER_SERVER_PORT}"]
    assert fp8_redrafter.stages["benchmark"].cfg.serving.port == 5000
    assert parse_command(ports.expand(server, {ports.SERVER_PORT_ENV: "5000"})) == parse_command(expected)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_benchmark_commands_name_the_ports_the_job_chooses(enabled):
    """Placeholders, shown as such in previews; no sandbox URL (and no port of it) without a sandbox."""
    plan = plan_for("+experiment=fp8", f"serving.sandbox.enabled={enabled}", "serving.port=5100",
                    *(["serving.sandbox.port=6100"] if enabled else []))
    commands = plan.stages["benchmark"].commands
    _, client = parse_command(commands["client"])
    assert client["--server-url"] == "http://127.0.0.1:${LAUNCHER_SERVER_PORT}"
    if enabled:
        assert client["--sandbox-url"] == "http://127.0.0.1:${LAUNCHER_SANDBOX_PORT}"
        assert commands["sandbox"][-4:] == ["--base-port", "6100", "--port-file", "${LAUNCHER_SANDBOX_PORT_FILE}"]
    else:
        assert "--sandbox-url" not in client and "sandbox" not in commands
        assert client["--max-code-executions"] == 0
    # What the job fills in is all there is to fill in.
    chosen = {ports.SERVER_PORT_ENV: "5342", ports.SANDBOX_PORT_ENV: "6342", ports.SANDBOX_PORT_FILE_ENV: "/p"}
    for argv in commands.values():
        assert "${" not in " ".join(ports.expand(argv, chosen))


@pytest.mark.parametrize("experiment,engine_stage", [("fp8_redrafter", "build_drafter_engine"),
                                                     ("fp8", "build_engine")])
def test_client_reads_the_served_engine(experiment, engine_stage):
    """The client keeps every request within the engine's max_seq_len, which it reads from the served engine."""
    plan = plan_for(f"+experiment={experiment}")
    _, client = parse_command(_command(plan, "benchmark", "client"))
    engine = plan.stages[engine_stage].artifact
    assert client["--engine-dir"] == engine == _command(plan, "benchmark", "server")[2]


def test_the_client_gets_the_sandbox_output_cap_and_the_prompt():
    """serving.sandbox.max_output_characters and benchmark.prompt change the benchmark's fingerprint: they reach
    the client, which sends the cap with every tool call and puts each problem in the prompt."""
    from jobs import benchmark_client

    plan = plan_for("+experiment=fp8", "serving.sandbox.max_output_characters=250")
    argv = _command(plan, "benchmark", "client")
    _, client = parse_command(argv)
    assert (client["--max-output-characters"], client["--prompt"]) == (250, "generic/math")
    args = benchmark_client.build_parser().parse_args(argv[3:])
    assert (args.max_output_characters, args.prompt) == (250, "generic/math")


def test_fp8_engine_matches_the_seed():
    plan = plan_for("+experiment=fp8")
    expected = SEED_FP8_ENGINE.format(out=plan.stages["build_engine"].staging_dir, **_paths(plan))
    assert parse_command(_command(plan, "build_engine", "build")) == parse_command(expected)
    assert _command(plan, "build_engine", "copy_tokenizer")[-2:] == [_paths(plan)["model"], plan.stages["build_engine"].staging_dir]


def test_bf16_baseline_quantizes_full_prec_without_calibration():
    plan = plan_for("+experiment=bf16")
    _, flags = parse_command(_command(plan, "quantize"))
    assert flags["--qformat"] == "full_prec"
    assert not {"--calib_size", "--calib_dataset", "--batch_size"} & set(flags)
    assert "calibration_data" not in plan.stages


def test_int8_wo_needs_no_calibration():
    plan = plan_for("+experiment=int8_wo", "cluster.gpu_type=a100")
    _, flags = parse_command(_command(plan, "quantize"))
    assert flags["--qformat"] == "int8_wo" and "--calib_dataset" not in flags


def test_fp8_kv_adds_the_kv_cache_dtype():
    plan = plan_for("+experiment=fp8", "quantization=fp8_kv")
    _, flags = parse_command(_command(plan, "quantize"))
    assert flags["--kv_cache_dtype"] == "fp8" and flags["--qformat"] == "fp8"


def test_calibration_max_length_is_passed_only_when_changed():
    default = parse_command(_command(plan_for("+experiment=fp8"), "quantize"))[1]
    changed = parse_command(_command(plan_for("+experiment=fp8", "quantization.calib_max_seq_length=1024"), "quantize"))[1]
    assert "--calib_max_seq_length" not in default and changed["--calib_max_seq_length"] == 1024


def test_non_greedy_drafting_flag():
    plan = plan_for("+experiment=fp8_redrafter", "drafter.greedy_search=false")
    assert "--redrafter_no_greedy_search" in _command(plan, "convert_drafter")


# Seed 003: Nemotron-NAS, tensor and pipeline parallel, remote code. Its engine (max_seq_len 16384, inputs up to
# 8192) leaves 8192 new tokens; the benchmark's default 20000 would be refused by the engine (test_validation.py).
NEMOTRON = ("model=nemotron_nas_51b", "cluster.gpus_per_node=8", "benchmark.max_new_tokens=8192")
def test_nemotron_nas_bf16_uses_its_convert_script():
    plan = plan_for(*NEMOTRON, "+experiment=bf16")
    model = plan.stages["download_model"].artifact + "/Llama-3_1-Nemotron-51B-Instruct"
    expected = ("python /opt/TensorRT-LLM/examples/models/core/nemotron_nas/convert_checkpoint.py "
                f"--model_dir {model} --output_dir {plan.stages['quantize'].staging_dir} --dtype bfloat16 "
                "--tp_size 2 --pp_size 2 --trust_remote_code")
    assert parse_command(_command(plan, "quantize")) == parse_command(expected)
    # the 51B's 103 GB of BF16 weights fit on 2 of the 4 serving GPUs; the benchmark serves on all 4
    assert plan.stages["quantize"].resources.gpus == 2 and plan.stages["benchmark"].resources.gpus == 4


def test_nemotron_nas_fp8_uses_quantize_py_with_the_seed_flags():
    plan = plan_for(*NEMOTRON, "+experiment=fp8", "quantization=fp8_kv")
    positional, flags = parse_command(_command(plan, "quantize"))
    seed_positional, seed_flags = parse_command(
        "python /opt/TensorRT-LLM/examples/quantization/quantize.py --model_dir M --output_dir C --dtype bfloat16 "
        "--kv_cache_dtype fp8 --qformat fp8 --calib_dataset D")
    assert positional == seed_positional
    assert {k: v for k, v in flags.items() if k in seed_flags and k not in ("--model_dir", "--output_dir", "--calib_dataset")} == \
        {k: v for k, v in seed_flags.items() if k not in ("--model_dir", "--output_dir", "--calib_dataset")}
    assert {k: flags[k] for k in set(flags) - set(seed_flags)} == {
        "--tp_size": 2, "--pp_size": 2, "--calib_size": 4096, "--batch_size": 4}


def test_nemotron_nas_engine_has_the_seed_flags():
    plan = plan_for(*NEMOTRON, "+experiment=bf16")
    _, flags = parse_command(_command(plan, "build_engine", "build"))
    _, seed = parse_command("trtllm-build --checkpoint_dir C --output_dir E --gemm_plugin auto --kv_cache_type paged")
    assert {k: flags[k] for k in ("--gemm_plugin", "--kv_cache_type")} == {k: seed[k] for k in ("--gemm_plugin", "--kv_cache_type")}
    _, serve = parse_command(_command(plan, "benchmark", "server"))
    assert serve["--tp_size"] == 2 and serve["--pp_size"] == 2


# Seed 004: Llama-2-7B chat, FP16 and FP8 weights with FP8 KV cache; build.py limits on trtllm-build
# (--max_input_len 2048, --max_output_len 512: 512 new tokens).
LLAMA2 = ("model=llama2_7b_chat", "benchmark.max_new_tokens=512")
def test_llama2_fp16_and_fp8_kv():
    fp16 = plan_for(*LLAMA2, "+experiment=bf16")
    positional, flags = parse_command(_command(fp16, "quantize"))
    assert positional[1].endswith("examples/models/core/llama/convert_checkpoint.py")
    assert flags["--dtype"] == "float16" and "--trust_remote_code" not in flags
    fp8 = plan_for(*LLAMA2, "+experiment=fp8", "quantization=fp8_kv")
    positional, flags = parse_command(_command(fp8, "quantize"))
    assert positional[1].endswith("examples/quantization/quantize.py")
    assert (flags["--qformat"], flags["--kv_cache_dtype"], flags["--dtype"]) == ("fp8", "fp8", "float16")
    _, build = parse_command(_command(fp8, "build_engine", "build"))
    assert (build["--max_input_len"], build["--max_seq_len"]) == (2048, 2560)
    assert fp8.stages["benchmark"].resources.gpus == 1


@pytest.mark.parametrize("scale_out,gpus,accumulation,time_min", [
    (8, 8, 1, 90), (4, 4, 2, 180), (16, 8, 1, 90),  # at most a node's 8 GPUs
    (3, 2, 4, 360),  # 3 does not divide the 8 per-device batches of a step: the most that do
])
def test_drafter_training_scaled_out_keeps_the_seeds_optimisation(scale_out, gpus, accumulation, time_min):
    """drafter.scale_out_gpus on 8-GPU nodes: the seed's 8 samples per optimizer step (2 GPUs x 1 x 4) on more
    GPUs, as if set by hand: the seed's command but for those two flags, the time limit of the same GPU-hours."""
    seed = plan_for("+experiment=fp8_redrafter")
    node = ("cluster=example_slurm", "~cluster.time_limits.train_drafter", "+experiment=fp8_redrafter")
    scaled, by_hand = (plan_for(*node, *overrides) for overrides in (
        (f"drafter.scale_out_gpus={scale_out}",),
        (f"drafter.num_gpus={gpus}", f"drafter.gradient_accumulation_steps={accumulation}")))
    seed_words, seed_flags = parse_command(_command(seed, "train_drafter"))
    words, flags = parse_command(_command(scaled, "train_drafter"))
    paths = {"--llm_name_or_path", "--dataset", "--output_dir", "--logging_dir"}  # another cluster's storage
    assert words == seed_words and set(flags) == set(seed_flags)
    assert {flag: value for flag, value in flags.items() if flag not in paths and seed_flags[flag] != value} == (
        {"--nproc_per_node": gpus, "--gradient_accumulation_steps": accumulation} if gpus != 2 else {})
    assert scaled.stages["train_drafter"].fingerprint == by_hand.stages["train_drafter"].fingerprint
    train = scaled.stages["train_drafter"].resources
    assert (train.gpus, train.time_min) == (gpus, time_min)  # 8 GPU-hours / GPUs x 1.5 margin


def test_drafter_training_scaled_out_on_two_gpus_is_the_seeds():
    seed = plan_for("+experiment=fp8_redrafter").stages["train_drafter"]
    local = plan_for("+experiment=fp8_redrafter", "drafter.scale_out_gpus=8").stages["train_drafter"]
    assert local.fingerprint == seed.fingerprint and local.resources.gpus == 2 and local.commands == seed.commands
