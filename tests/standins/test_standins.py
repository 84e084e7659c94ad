"""Tests of the STAND-IN tools in tests/standins/ (no GPU, no network).

Each stand-in: the seed's exact command (docs: /work/shared/reference/pipeline.md) is
accepted and writes the expected files; a misspelled flag exits 2 (argparse); a missing
input is rejected. The stand-ins run as subprocesses with tests/standins/bin first on
PATH and tests/standins/python on PYTHONPATH, as the launcher's tests will use them.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
PYDIR = HERE / "python"
EXAMPLES = HERE / "trtllm_examples"

MODEL_ID = "nvidia/OpenMath-Nemotron-14B-kaggle"
NAS_ID = "nvidia/Llama-3_1-Nemotron-51B-Instruct"


# ----------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="module")
def env(work) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STANDIN_")}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = os.pathsep.join([str(PYDIR)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["HF_HOME"] = str(work / "hf_home")
    e["HF_HUB_OFFLINE"] = "1"
    e["HF_DATASETS_OFFLINE"] = "1"
    return e


def run(cmd: str | list, env: dict, cwd: Path, extra_env: dict | None = None, check: int | None = 0):
    """Run a shell command line (str) or argv (list) like a job script would."""
    e = dict(env, **(extra_env or {}))
    shell = isinstance(cmd, str)
    p = subprocess.run(cmd, shell=shell, env=e, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, f"rc={p.returncode}\n$ {cmd}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    return p


def run_many(cmds, env: dict, cwd: Path) -> list:
    """Run independent commands concurrently: [(cmd, expected_rc[, extra_env]), ...]."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futs = [pool.submit(run, c[0], env, cwd, c[2] if len(c) > 2 else None, c[1]) for c in cmds]
        return [f.result() for f in futs]


def cfg(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    assert data.get("standin") is True, f"{path} lacks \"standin\": true"
    return data


def py(script: Path) -> str:
    return f"{sys.executable} {script}"


def standin(module: str):
    """Import standin_tools.<module> in-process (argparse-only checks, no subprocess)."""
    sys.path.insert(0, str(PYDIR))
    try:
        return importlib.import_module(f"standin_tools.{module}")
    finally:
        sys.path.remove(str(PYDIR))


def argparse_rc(parser, argv: list) -> int:
    """Exit code argparse gives for argv (0 when it parses)."""
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        return e.code
    return 0


# ----------------------------------------------------------------- shared artifacts


@pytest.fixture(scope="module")
def model_dir(work, env) -> Path:
    run(f"hf download {MODEL_ID} --local-dir {work / 'OpenMath-Nemotron-14B-kaggle'}", env, work)
    return work / "OpenMath-Nemotron-14B-kaggle"


@pytest.fixture(scope="module")
def calib_dir(work) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    d = work / "calib"
    d.mkdir()
    pq.write_table(pa.table({"text": [f"<|im_start|>user\nproblem {i}<|im_end|>" for i in range(10)]}),
                   d / "data.parquet")
    return d


@pytest.fixture(scope="module")
def stage_outputs(work, env, model_dir, calib_dir) -> dict:
    """Seed stage 1 (dataset download) and stage 3 (FP8 quantize), run side by side to save time."""
    fp8 = work / "OpenMath-Nemotron-14B-kaggle-fp8-trtllm-tmp-ckpt"
    run_many([
        # Downloaded into ./OpenMathReasoning: the seed trains with `--dataset OpenMathReasoning`.
        ("hf download nvidia/OpenMathReasoning --repo-type dataset --local-dir OpenMathReasoning", 0),
        (f"python -m nemo_skills.conversion.hf_to_trtllm_quantize --model_dir {model_dir} --dtype auto "
         f"--qformat fp8 --output_dir {fp8} --calib_size 4096 --calib_dataset {calib_dir} --batch_size 4 "
         f"--tp_size 2 --pp_size 1", 0),
    ], env, work)
    return {"omr": work / "OpenMathReasoning", "fp8": fp8}


@pytest.fixture(scope="module")
def omr_dir(stage_outputs) -> Path:
    return stage_outputs["omr"]


@pytest.fixture(scope="module")
def fp8_ckpt(stage_outputs) -> Path:
    return stage_outputs["fp8"]


SEED_TRAIN = ("torchrun --nproc_per_node=2 -m nemo_skills.training.train_redrafter --llm_name_or_path {llm} "
              "--dataset OpenMathReasoning --dataset_split tir --bf16 True --output_dir {out} --num_train_epochs 1 "
              "--per_device_train_batch_size 1 --gradient_accumulation_steps 4 --save_strategy no "
              "--learning_rate 0.001 --weight_decay 0. --warmup_ratio 0.1 --lr_scheduler_type cosine "
              "--logging_steps 20 --tf32 True --model_max_length 2048 --dataset_nrows 50000 "
              "--drafter_predict_n_tokens 3 --drafter_num_layers 2 --rnn True --phase train --report_to wandb")


@pytest.fixture(scope="module")
def trained(work, env, model_dir, omr_dir):
    p = run(SEED_TRAIN.format(llm=model_dir, out="redrafter_out"), env, work,
            extra_env={"STANDIN_REDRAFTER_TOP1": "0.71"})
    return p, work / "redrafter_out_redrafter_OpenMath-Nemotron-14B-kaggle_n_3_lr_0.001_layers_2"


def redrafter_logs(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if line.startswith("{'redrafter0_top1'"):
            out.append(ast.literal_eval(line))
    return out


# ----------------------------------------------------------------- hf


def test_hf_download_model(model_dir):
    files = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "vocab.json", "merges.txt"} <= files
    c = cfg(model_dir / "config.json")
    assert c["architectures"] == ["Qwen2ForCausalLM"] and c["model_type"] == "qwen2"
    assert (c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]) == (48, 40, 8)
    assert c["torch_dtype"] == "bfloat16" and c["vocab_size"] == 152064
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    for shard in set(index["weight_map"].values()):
        assert (model_dir / shard).is_file()
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["standin"] is True and "chat_template" in tok_cfg


def test_hf_tokenizer_loads_and_renders_chat(model_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"},
         {"role": "assistant", "content": "<tool_call>\nprint(2+3)\n</tool_call>\n\\boxed{5}"}], tokenize=False)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>assistant\n<tool_call>" in text
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.convert_tokens_to_ids("</tool_call>") != tok.unk_token_id
    slow = transformers.AutoTokenizer.from_pretrained(str(model_dir), use_fast=False)  # as train_redrafter
    assert slow.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                    add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_hf_download_dataset(omr_dir):
    pq = pytest.importorskip("pyarrow.parquet")
    for split in ("tir", "cot", "genselect"):
        f = omr_dir / "data" / f"{split}-00000-of-00001.parquet"
        table = pq.read_table(f)
        assert table.num_rows == 64
        assert {"problem", "generated_solution", "expected_answer", "problem_type", "problem_source",
                "generation_model", "pass_rate_72b_tir", "inference_mode", "used_in_kaggle"} <= set(table.column_names)
    tir = pq.read_table(omr_dir / "data" / "tir-00000-of-00001.parquet").to_pydict()
    assert "<tool_call>" in tir["generated_solution"][0] and "\\boxed{" in tir["generated_solution"][0]


def test_hf_dataset_loads_with_datasets(omr_dir, work):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(str(omr_dir), split="tir", cache_dir=str(work / "ds_cache"))
    assert len(ds) == 64 and "generated_solution" in ds.column_names


def test_hf_cache_layout_and_variants(work, env):
    p = run(f"hf download {NAS_ID} --include '*.json'", env, work)
    snap = Path(p.stdout.strip().splitlines()[-1])
    assert snap.parent.name == "snapshots"
    assert snap.parent.parent.name == "models--nvidia--Llama-3_1-Nemotron-51B-Instruct"
    assert Path(env["HF_HOME"]) / "hub" in snap.parents
    c = cfg(snap / "config.json")
    assert c["architectures"] == ["DeciLMForCausalLM"] and "auto_map" in c and len(c["block_configs"]) == 80
    assert not list(snap.glob("*.safetensors"))  # --include honoured
    llama = run("hf download meta-llama/Llama-2-7b-chat-hf config.json --local-dir l2cfg", env, work)
    assert llama.stdout.strip().endswith("config.json")
    assert cfg(work / "l2cfg" / "config.json")["architectures"] == ["LlamaForCausalLM"]


def test_hf_rejects_bad_input(work, env, capsys):
    res = run_many([("hf download x/y --local-dirr d", 2),
                    ("hf download nvidia/NoSuchData --repo-type dataset --local-dir nd", 1)], env, work)
    assert "RepositoryNotFoundError" in res[1].stderr and not (work / "nd").exists()
    parser = standin("hf_cli").build_parser()
    assert argparse_rc(parser, ["download", "x/y", "--repo-type", "modle"]) == 2
    assert argparse_rc(parser, ["download", "x/y", "--local_dir", "d"]) == 2
    assert argparse_rc(parser, ["upload", "x/y"]) == 2
    assert argparse_rc(parser, ["download", "x/y", "a.json", "--include", "*.json", "--exclude", "x",
                                "--revision", "main", "--token", "t", "--max-workers", "4", "--quiet",
                                "--force-download", "--cache-dir", "c"]) == 0


# ----------------------------------------------------------------- quantize (NeMo-Skills module)


def test_quantize_seed_command(fp8_ckpt, calib_dir):
    c = cfg(fp8_ckpt / "config.json")
    assert sorted(p.name for p in fp8_ckpt.iterdir()) == ["config.json", "rank0.safetensors", "rank1.safetensors"]
    assert c["architecture"] == "Qwen2ForCausalLM" and c["dtype"] == "bfloat16"
    assert c["mapping"]["world_size"] == 2 and c["mapping"]["tp_size"] == 2 and c["mapping"]["pp_size"] == 1
    assert c["quantization"]["quant_algo"] == "FP8" and c["quantization"]["kv_cache_quant_algo"] is None
    calib = c["standin_calibration"]
    assert calib["dataset"] == str(calib_dir) and calib["requested_calib_size"] == 4096
    assert calib["num_samples"] == 10 and calib["batch_size"] == 4  # only 10 rows available


def test_quantize_honours_calib_size_and_seed_003(work, env, model_dir, calib_dir):
    out = work / "q_calib4"
    nas_out = work / "nas_fp8_ckpt"
    run(f"hf download {NAS_ID} --local-dir nas51b", env, work)
    run_many([  # two `datasets` loads: run them side by side
        (f"python -m nemo_skills.conversion.hf_to_trtllm_quantize --model_dir {model_dir} --qformat fp8 "
         f"--kv_cache_dtype fp8 --calib_size 4 --calib_dataset {calib_dir} --output_dir {out}", 0),
        # seed 003: TensorRT-LLM's own examples/quantization/quantize.py on a Nemotron-NAS model
        (f"{py(EXAMPLES / 'quantization' / 'quantize.py')} --model_dir nas51b --output_dir {nas_out} "
         f"--dtype bfloat16 --kv_cache_dtype fp8 --qformat fp8 --calib_dataset {calib_dir}", 0),
    ], env, work)
    c = cfg(out / "config.json")
    assert c["standin_calibration"]["num_samples"] == 4
    assert c["quantization"]["kv_cache_quant_algo"] == "FP8"
    assert c["mapping"]["world_size"] == 1 and (out / "rank0.safetensors").is_file()
    n = cfg(nas_out / "config.json")
    assert n["architecture"] == "DeciLMForCausalLM" and n["quantization"]["kv_cache_quant_algo"] == "FP8"
    assert len(n["block_configs"]) == 80 and n["standin_calibration"]["num_samples"] == 10


@pytest.mark.parametrize("calib", ["", "--calib_dataset {work}/no_such_dir"])
def test_quantize_fp8_needs_calibration_data(work, env, model_dir, calib):
    out = work / "q_nocalib"
    p = run(f"python -m nemo_skills.conversion.hf_to_trtllm_quantize --model_dir {model_dir} --qformat fp8 "
            f"--output_dir {out} {calib.format(work=work)}", env, work, check=1)
    assert "calibration" in p.stderr or "Unsupported dataset" in p.stderr
    assert not (out / "config.json").exists()


@pytest.mark.parametrize("qformat,algo", [("full_prec", None), ("int8_wo", "W8A16")])
def test_quantize_without_calibration(work, env, model_dir, qformat, algo):
    out = work / f"q_{qformat}"
    run(f"python -m nemo_skills.conversion.hf_to_trtllm_quantize --model_dir {model_dir} --dtype auto "
        f"--qformat {qformat} --output_dir {out} --tp_size 2 --pp_size 1", env, work)
    c = cfg(out / "config.json")
    assert c["quantization"]["quant_algo"] == algo and "standin_calibration" not in c
    assert (out / "rank1.safetensors").is_file()


def test_quantize_rejects_bad_input(work, env, model_dir, capsys):
    mod = "python -m nemo_skills.conversion.hf_to_trtllm_quantize"
    run_many([(f"{mod} --model_dir {model_dir} --qformat fp8 --calib-size 4", 2),
              (f"{mod} --model_dir {work}/missing --qformat full_prec", 1)], env, work)
    ck = standin("trtllm_ckpt")
    nemo, trt = ck.quantize_parser("nemo_skills"), ck.quantize_parser("trtllm")
    assert argparse_rc(nemo, ["--qformat", "fp9"]) == 2
    assert argparse_rc(nemo, ["--kv_cache_dtype", "fp16"]) == 2
    assert argparse_rc(nemo, ["--quantize_lm_head"]) == 2  # only in TensorRT-LLM's newer copy
    assert argparse_rc(trt, ["--quantize_lm_head"]) == 0
    assert argparse_rc(nemo, ["--calib_size", "4k"]) == 2


# ----------------------------------------------------------------- trtllm-build


SEED_BUILD = ("trtllm-build --checkpoint_dir {ckpt} --output_dir {out} --gemm_plugin auto "
              "--use_paged_context_fmha enable --max_batch_size 512 --max_input_len 30000 --max_seq_len 32000 "
              "--max_num_tokens 8192")


def test_trtllm_build_seed_command(work, env, fp8_ckpt, model_dir):
    out = work / "OpenMath-Nemotron-14B-kaggle-fp8-trtllm"
    run(SEED_BUILD.format(ckpt=fp8_ckpt, out=out) + f" && cp {model_dir}/tokenizer* {out}", env, work)
    assert {"config.json", "rank0.engine", "rank1.engine", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    c = cfg(out / "config.json")
    assert c["version"] == "1.1.0rc0"
    pc, bc = c["pretrained_config"], c["build_config"]
    assert pc["architecture"] == "Qwen2ForCausalLM" and pc["quantization"]["quant_algo"] == "FP8"
    assert pc["mapping"]["world_size"] == 2
    assert (bc["max_batch_size"], bc["max_input_len"], bc["max_seq_len"], bc["max_num_tokens"]) == (512, 30000, 32000, 8192)
    assert bc["plugin_config"]["gemm_plugin"] == "auto" and bc["plugin_config"]["use_paged_context_fmha"] is True
    assert bc["kv_cache_type"] == "PAGED" and bc["speculative_decoding_mode"] == 1


def test_trtllm_build_rejects_bad_input(work, env, fp8_ckpt, capsys):
    run_many([(f"trtllm-build --checkpoint_dir {fp8_ckpt} --output_dir e1 --use_paged_context_fmha enabled", 2),
              (f"trtllm-build --checkpoint_dir {work}/nope --output_dir e1", 1),
              ("trtllm-build --output_dir e1", 1)], env, work)
    assert not (work / "e1").exists()
    parser = standin("trtllm_build").build_parser()
    for argv in (["--checkpoint-dir", "c"], ["--max_batch_size", "512x"], ["--kv_cache_type", "pagged"],
                 ["--speculative_decoding_mode", "redrafter"], ["--gemm_plugin", "fp16"],
                 ["--max_seq_length", "10"]):
        assert argparse_rc(parser, argv) == 2, argv
    for argv in (["--use_paged_context_fmha=enable"], ["--max_decoder_seq_len", "10"], ["--kv_cache_type", "PAGED"],
                 ["--auto_parallel", "1"], ["--cluster_key", "H100-SXM"], ["--workers", "2"]):
        assert argparse_rc(parser, argv) == 0, argv


# ----------------------------------------------------------------- torchrun + train_redrafter


def test_train_redrafter_seed_command(trained, work):
    p, out = trained
    assert out.is_dir() and not (work / "redrafter_out").exists()  # sibling dir; output_dir never created
    assert sorted(f.name for f in out.iterdir()) == ["config.json", "model.safetensors"]
    c = cfg(out / "config.json")
    assert c["model_type"] == "recurrent_drafting_drafter" and c["num_draft_layers"] == 2 and c["rnn"] is True
    assert c["hidden_size"] == 5120 and c["exit_dim"] == 10240 and c["vocab_size"] == 152064
    logs = redrafter_logs(p.stdout)
    assert logs and set(logs[-1]) >= {f"redrafter{i}_top{k}" for i in range(3) for k in range(1, 6)} | {
        "redrafter0_loss", "redrafter2_loss", "epoch"}
    # One micro-batch's accuracy: the trend (ending at STANDIN_REDRAFTER_TOP1) plus noise of at most 0.03.
    assert logs[-1]["redrafter2_top1"] == pytest.approx(0.71, abs=0.03)
    assert any(line.startswith("{'train_runtime'") for line in p.stdout.splitlines())


def test_train_redrafter_logs_noisy_micro_batch_accuracy(work, env, model_dir, omr_dir):
    """Each logged top-1 is one micro-batch's (apple/ml-recurrent-drafter drafter_loss, logged by
    ReDrafterTrainer.compute_loss): deterministic noise around the trend, the same for the same seed."""
    cmd = SEED_TRAIN.format(llm=model_dir, out="noisy").replace("--logging_steps 20", "--logging_steps 1")

    def top1(**extra_env):
        return [r["redrafter2_top1"] for r in redrafter_logs(run(cmd, env, work, extra_env=extra_env).stdout)]

    trend = top1(STANDIN_REDRAFTER_NOISE="0")
    assert len(trend) == 8 and trend == sorted(trend) and trend[-1] == 0.65
    noisy = top1()
    assert noisy == top1() != top1(STANDIN_REDRAFTER_SEED="7")  # deterministic, per seed
    assert noisy != sorted(noisy) and 0 < max(abs(a - b) for a, b in zip(noisy, trend)) <= 0.03 + 1e-4


def test_train_redrafter_logging_resume_and_failure(work, env, model_dir, omr_dir):
    cmd = SEED_TRAIN.format(llm=model_dir, out="resume").replace("--save_strategy no", "--save_strategy steps "
                                                                 "--save_steps 2").replace("--logging_steps 20",
                                                                                           "--logging_steps 2")
    out = work / "resume_redrafter_OpenMath-Nemotron-14B-kaggle_n_3_lr_0.001_layers_2"
    p = run(cmd, env, work, extra_env={"STANDIN_FAIL": "train_redrafter"}, check=1)
    assert "ChildFailedError" in p.stderr
    assert (out / "checkpoint-2").is_dir() and not (out / "model.safetensors").exists()
    first = redrafter_logs(p.stdout)
    p = run(cmd, env, work, extra_env={"STANDIN_REDRAFTER_TOP1": "0.55", "STANDIN_REDRAFTER_NOISE": "0"})
    assert "Continuing training from checkpoint" in p.stderr
    logs = redrafter_logs(p.stdout)
    assert logs[-1]["redrafter2_top1"] == 0.55 and len(first) + len(logs) == 4  # steps 0,2,4,6 of 8
    assert all(a["redrafter2_top1"] <= b["redrafter2_top1"] for a, b in zip(logs, logs[1:]))
    assert (out / "checkpoint-8").is_dir() and (out / "model.safetensors").is_file()
    assert any(line.startswith("{'loss'") for line in p.stdout.splitlines())


def test_train_redrafter_counts_a_last_partial_accumulation_as_a_step(work, env, model_dir, omr_dir):
    """transformers 4.57.6 (Trainer.set_initial_training_values): steps per epoch = ceil(batches a rank /
    gradient_accumulation_steps). The real trainer on 2 x H200 (2026-11-29): 300 rows, 2 ranks, accumulation 4
    -> 150 batches a rank -> 38 steps, the redrafter dict logged at steps 0, 2, ..., 36."""
    cmd = SEED_TRAIN.format(llm=model_dir, out="partial").replace("--logging_steps 20", "--logging_steps 1")
    logs = redrafter_logs(run(cmd, env, work, extra_env={"STANDIN_REDRAFTER_ROWS": "60"}).stdout)
    assert len(logs) == 8  # 30 batches a rank: 7 accumulations of 4, then one of 2 (steps 0..7)


def test_train_redrafter_rejects_bad_input(work, env, model_dir, omr_dir, capsys):
    base = SEED_TRAIN.format(llm=model_dir, out="bad")
    direct = base.replace("torchrun --nproc_per_node=2 -m", "python -m")
    res = run_many([
        # HfArgumentParser: unknown flags raise ValueError (rc 1), bad values are argparse errors (rc 2);
        # torchrun turns any worker failure into rc 1.
        (base.replace("--drafter_num_layers", "--drafter_num_layres"), 1),
        (direct.replace("--bf16 True", "--bf16 maybe"), 2),
        (direct.replace("--dataset_split tir", "--dataset_split tirr"), 1),
        (base.replace("--nproc_per_node=2", "--nprocs_per_node=2"), 2),
    ], env, work)
    assert "not used by the HfArgumentParser" in res[0].stderr and "ChildFailedError" in res[0].stderr
    assert "Bad split" in res[2].stderr
    assert not list(work.glob("bad_redrafter_*"))
    args = standin("hf_training_args")
    with pytest.raises(ValueError, match="not used by the HfArgumentParser"):
        args.parse(["--learning_rate", "1e-3", "--warmpu_ratio", "0.1"])
    assert argparse_rc(args.build_parser(), ["--lr_scheduler_type", "cosinus"]) == 2
    ns = args.parse(["--bf16", "--rnn", "True", "--no_include_inputs_for_metrics", "--output-dir", "o",
                     "--logging_steps", "20", "--save_strategy", "steps", "--report_to", "wandb"])
    assert ns.bf16 is True and ns.rnn is True and ns.include_inputs_for_metrics is False
    assert ns.output_dir == "o" and ns.logging_steps == 20 and ns.drafter_predict_n_tokens == 5
    torchrun = standin("torchrun").build_parser()
    assert argparse_rc(torchrun, ["--nproc-per-node", "2", "--master_port", "1234", "-m", "x", "--a", "b"]) == 0


# ----------------------------------------------------------------- redrafter conversion + engine


SEED_CONVERT = ("{py} --base_model_checkpoint_dir {base} --drafter_model_dir {drafter} --output_dir {out} "
                "--dtype bfloat16 --tp_size 2 --redrafter_num_beams 1 --redrafter_draft_len_per_beam 3")
SEED_RD_BUILD = ("trtllm-build --checkpoint_dir {ckpt} --output_dir {out} --gemm_plugin fp8 "
                 "--use_paged_context_fmha=enable --max_batch_size 32 --max_seq_len 32000 --max_input_len 32000 "
                 "--max_num_tokens 32000 --speculative_decoding_mode explicit_draft_tokens --max_beam_width 1 "
                 "--kv_cache_type paged")


def test_redrafter_convert_and_build_seed_commands(work, env, fp8_ckpt, trained):
    convert = py(EXAMPLES / "redrafter" / "convert_checkpoint.py")
    ckpt = work / "redrafter-ckpt"
    run(SEED_CONVERT.format(py=convert, base=fp8_ckpt, drafter=trained[1], out=ckpt), env, work)
    c = cfg(ckpt / "config.json")
    assert c["architecture"] == "ReDrafterForQWenLM" and c["base_model_architecture"] == "Qwen2ForCausalLM"
    assert (c["redrafter_num_layers"], c["redrafter_hidden_size"], c["redrafter_exit_dim"]) == (2, 5120, 10240)
    assert c["redrafter_is_rnn"] is True and c["redrafter_num_beams"] == 1
    assert c["redrafter_draft_len_per_beam"] == 3 and c["redrafter_greedy_search"] is True
    assert "drafter.rnn_u" in c["quantization"]["exclude_modules"]
    assert {"rank0.safetensors", "rank1.safetensors"} <= {p.name for p in ckpt.iterdir()}

    engine = work / "OpenMath-Nemotron-14B-kaggle-fp8-redrafter-trtllm"
    run(SEED_RD_BUILD.format(ckpt=ckpt, out=engine), env, work)
    e = cfg(engine / "config.json")
    bc = e["build_config"]
    assert bc["speculative_decoding_mode"] == 16 and bc["max_draft_len"] == 3
    assert bc["max_seq_len"] == 32003 and bc["plugin_config"]["gemm_plugin"] == "fp8"
    assert (engine / "rank1.engine").is_file()
    # explicit_draft_tokens on a plain checkpoint is refused
    run(SEED_RD_BUILD.format(ckpt=fp8_ckpt, out=work / "bad_engine"), env, work, check=1)


def test_redrafter_convert_rejects_bad_input(work, env, fp8_ckpt, trained, capsys):
    convert = py(EXAMPLES / "redrafter" / "convert_checkpoint.py")
    seed = SEED_CONVERT.format(py=convert, base=fp8_ckpt, drafter=trained[1], out=work / "bad_rd")
    empty = work / "empty_drafter"
    empty.mkdir()
    (empty / "config.json").write_text((trained[1] / "config.json").read_text())
    res = run_many([
        (seed.replace("--tp_size 2", "--tp_size 1"), 1),
        (seed.replace("--redrafter_num_beams", "--redrafter_num_beems"), 2),
        (seed.replace(str(trained[1]), str(empty)), 1),  # no model.safetensors
    ], env, work)
    assert "tp_size" in res[0].stderr
    assert not (work / "bad_rd" / "config.json").exists()
    parser = standin("trtllm_ckpt").redrafter_parser()
    assert argparse_rc(parser, ["--base_model_dir", "b", "--drafter_model_dir", "d"]) == 2
    assert argparse_rc(parser, ["--drafter_model_dir", "d"]) == 2  # base ckpt is required
    assert argparse_rc(parser, ["--base_model_checkpoint_dir", "b", "--drafter_model_dir", "d",
                                "--redrafter-no-greedy-search"]) == 2


# ----------------------------------------------------------------- nemotron_nas / llama convert_checkpoint


def test_nemotron_nas_convert_and_build_seed_003(work, env):
    run(f"hf download {NAS_ID} --local-dir nas51b_c", env, work)
    conv = py(EXAMPLES / "models" / "core" / "nemotron_nas" / "convert_checkpoint.py")
    out = work / "nas_ckpt"
    run(f"{conv} --model_dir nas51b_c --output_dir {out} --dtype bfloat16 --tp_size 2 --pp_size 2 "
        "--trust_remote_code", env, work)
    c = cfg(out / "config.json")
    assert c["architecture"] == "DeciLMForCausalLM" and c["mapping"]["world_size"] == 4
    assert {b["attention"]["impl"] for b in c["block_configs"]} == {"attention", "no_op", "linear"}
    assert len(list(out.glob("rank*.safetensors"))) == 4
    run(f"trtllm-build --checkpoint_dir {out} --output_dir nas_engine --gemm_plugin auto --kv_cache_type paged",
        env, work)
    assert len(list((work / "nas_engine").glob("rank*.engine"))) == 4
    res = run_many([
        (f"{conv} --model_dir nas51b_c --output_dir {work}/nas_bad --tp_size 2", 1),
        (f"{conv} --model_dir nas51b_c --output_dir {work}/nas_bad --trust-remote-code", 2),
        (f"{conv} --model_dir {work}/missing --trust_remote_code", 1),
    ], env, work)
    assert "trust_remote_code" in res[0].stderr
    assert argparse_rc(standin("trtllm_ckpt").nemotron_nas_parser(), ["--trust_remote_code"]) == 2  # --model_dir


def test_llama_convert_checkpoint(work, env):
    run("hf download meta-llama/Llama-2-7b-chat-hf --local-dir llama2", env, work)
    conv = py(EXAMPLES / "models" / "core" / "llama" / "convert_checkpoint.py")
    run(f"{conv} --model_dir llama2 --output_dir llama_ckpt --dtype float16 --tp_size 2 --fp8_kv_cache", env, work)
    c = cfg(work / "llama_ckpt" / "config.json")
    assert c["architecture"] == "LlamaForCausalLM" and c["quantization"]["kv_cache_quant_algo"] == "FP8"
    assert (work / "llama_ckpt" / "rank1.safetensors").is_file()
    run_many([(f"{conv} --model_dir llama2 --output_dir llama_bad --tp-size 2", 2),
              (f"{conv} --model_dir {work}/missing --output_dir llama_bad", 1)], env, work)


# ----------------------------------------------------------------- generic knobs and help


def test_standin_fail_and_sleep_are_generic(work, env, fp8_ckpt):
    res = run_many([
        (SEED_BUILD.format(ckpt=fp8_ckpt, out="fail_engine"), 1, {"STANDIN_FAIL": "1"}),
        ("hf download x/fail --local-dir failed_dl", 0, {"STANDIN_FAIL": "trtllm-build"}),
        ("hf download x/fail --local-dir failed_dl2", 3, {"STANDIN_FAIL": "hf", "STANDIN_FAIL_CODE": "3"}),
    ], env, work)
    assert "STANDIN_FAIL" in res[0].stderr and not (work / "fail_engine").exists()
    assert not (work / "failed_dl2").exists()
    t = time.monotonic()
    run("hf download x/slow --local-dir slow_dl", env, work, extra_env={"STANDIN_SLEEP_S": "0.3"})
    assert time.monotonic() - t >= 0.3


def test_help_says_standin(work, env):
    # End to end for the executables on PATH, in-process for the other parsers.
    for p in run_many([("hf download --help", 0), ("trtllm-build --help", 0), ("torchrun --help", 0),
                       ("python -m nemo_skills.training.train_redrafter --help", 0)], env, work):
        assert "STAND-IN" in p.stdout, p.args
    ck = standin("trtllm_ckpt")
    for parser in (ck.quantize_parser("nemo_skills"), ck.quantize_parser("trtllm"), ck.llama_parser(),
                   ck.nemotron_nas_parser(), ck.redrafter_parser(), standin("hf_cli").build_parser()):
        assert "STAND-IN" in parser.format_help()
    for script in ("quantization/quantize.py", "redrafter/convert_checkpoint.py",
                   "models/core/llama/convert_checkpoint.py", "models/core/nemotron_nas/convert_checkpoint.py"):
        assert "STAND-IN" in (EXAMPLES / script).read_text().split('"""')[1]
