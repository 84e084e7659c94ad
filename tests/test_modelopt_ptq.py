"""quantize_modelopt: the launcher's hf_ptq.py argv against the stand-in of Model-Optimizer 0.46.0's hf_ptq.py,
whose export has the shapes the real script wrote on an H200 (tests/standins/README.md, "Serving stacks"), and
what the stand-in refuses as the real script does."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import plan_for

STANDINS = Path(__file__).resolve().parent / "standins"
sys.path.insert(0, str(STANDINS / "python"))
from standin_tools.common import read_safetensors_header, write_safetensors  # noqa: E402

# What the real hf_ptq.py (nvidia-modelopt 0.46.0, transformers 5.12.0, one H200) wrote for --qformat fp8 on a
# random 2-layer Llama: every decoder Linear FP8 with per-tensor F32 scales, the rest BF16; k/v scales only with
# --kv_cache_qformat fp8.
REAL_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
REAL_BF16 = {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight",
             *(f"model.layers.{i}.{n}.weight" for i in (0, 1) for n in ("input_layernorm", "post_attention_layernorm"))}
REAL_FP8 = {f"model.layers.{i}.{n}.weight" for i in (0, 1) for n in REAL_LINEARS}
REAL_SCALES = {f"model.layers.{i}.{n}.{s}" for i in (0, 1) for n in REAL_LINEARS for s in ("weight_scale", "input_scale")}
REAL_KV_SCALES = {f"model.layers.{i}.self_attn.{p}_proj.{p}_scale" for i in (0, 1) for p in "kv"}
REAL_FP8_SCHEME = {"dynamic": False, "num_bits": 8, "type": "float"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 2-layer Llama directory and our calibration_data stage's output for it (the real job, on the stand-in
    hub's OpenMathReasoning)."""
    from jobs.calibration_data import make_calibration_data

    root = tmp_path_factory.mktemp("ptq")
    model = root / "model"
    model.mkdir()
    for f in (STANDINS / "data" / "tiny_tokenizer").iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 256,
        "dtype": "bfloat16"}))
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": 642}))
    write_safetensors(model / "model.safetensors", {"model.embed_tokens.weight": ("BF16", (2, 2))})
    dataset = root / "dataset"
    subprocess.run([str(STANDINS / "bin" / "hf"), "download", "nvidia/OpenMathReasoning", "--repo-type", "dataset",
                    "--local-dir", str(dataset)], check=True, capture_output=True)
    make_calibration_data(str(model), str(dataset), "tir", 16, "generic/math", 256, str(root / "calib"))
    return model, root / "calib"


def hf_ptq_argv(model: Path, calib: Path, export: Path, *overrides) -> list:
    stages = plan_for("serving=vllm", "+experiment=fp8", "quantization.calib_size=16",
                      f"cluster.modelopt_examples_dir={STANDINS / 'modelopt_examples'}", *overrides).stages
    argv = next(s for s in stages.values() if s.kind == "quantize_modelopt").commands["quantize"]
    argv = [sys.executable, *argv[1:]]
    for flag, value in (("--pyt_ckpt_path", model), ("--dataset", calib), ("--export_path", export)):
        argv[argv.index(flag) + 1] = str(value)
    return argv


@pytest.mark.parametrize("kv_cache_dtype", [None, "fp8"])
def test_the_launchers_argv_gives_the_real_fp8_export(inputs, tmp_path, kv_cache_dtype):
    model, calib = inputs
    export = tmp_path / "export"
    argv = hf_ptq_argv(model, calib, export, f"quantization.kv_cache_dtype={kv_cache_dtype or 'null'}")
    assert argv[argv.index("--kv_cache_qformat") + 1] == (kv_cache_dtype or "none")
    subprocess.run(argv, check=True, capture_output=True, text=True)
    kv = kv_cache_dtype == "fp8"
    config = json.loads((export / "config.json").read_text())
    q = config["quantization_config"]
    assert q == {"config_groups": {"group_0": {"input_activations": REAL_FP8_SCHEME, "weights": REAL_FP8_SCHEME,
                                               "targets": ["Linear"]}},
                 "ignore": ["lm_head", "model.embed_tokens"], "quant_algo": "FP8",
                 **({"kv_cache_scheme": REAL_FP8_SCHEME} if kv else {}),
                 "producer": {"name": "modelopt", "version": "0.46.0"}, "quant_method": "modelopt"}
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((export / "hf_quant_config.json").read_text()) == {
        "producer": {"name": "modelopt", "version": "0.46.0"},
        "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8" if kv else None,
                         "exclude_modules": ["lm_head", "model.embed_tokens"]}}
    header = read_safetensors_header(export / "model.safetensors")
    dtypes = {name: t["dtype"] for name, t in header.items() if name != "__metadata__"}
    assert set(dtypes) == REAL_BF16 | REAL_FP8 | REAL_SCALES | (REAL_KV_SCALES if kv else set())
    assert {dtypes[n] for n in REAL_BF16} == {"BF16"} and {dtypes[n] for n in REAL_FP8} == {"F8_E4M3"}
    assert {dtypes[n] for n in set(dtypes) - REAL_BF16 - REAL_FP8} == {"F32"}
    assert all(header[n]["shape"] == [] for n in set(dtypes) - REAL_BF16 - REAL_FP8)
    # the tokenizer files and the chat template come along; the source's weights do not
    assert (export / "tokenizer.json").is_file() and (export / "tokenizer_config.json").is_file()
    assert (export / "generation_config.json").is_file()


def _parquet(path: Path, column: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir()
    pq.write_table(pa.table({column: ["a sample"]}), path / "data.parquet")
    return path


@pytest.mark.parametrize("change, message", [
    (lambda a, t: a.__setitem__(a.index("--dataset") + 1, str(_parquet(t / "bad", "problem"))),
     "no recognized column"),
    (lambda a, t: a.__setitem__(a.index("--dataset") + 1, str(t / "missing")), "not a local path"),
    (lambda a, t: a.__setitem__(a.index("--calib_size") + 1, "4k"), "--calib_size"),
    (lambda a, t: a.__setitem__(a.index("--qformat") + 1, "fp9"), "QUANT_CFG_CHOICES"),
    (lambda a, t: a.__setitem__(a.index("--kv_cache_qformat") + 1, "fp16"), "invalid choice"),
    (lambda a, t: a.__setitem__(a.index("--pyt_ckpt_path") + 1, str(t)), "config.json"),
    (lambda a, t: a.append("--calib_samples"), "unrecognized arguments"),
])
def test_the_stand_in_refuses_what_hf_ptq_refuses(inputs, tmp_path, change, message):
    model, calib = inputs
    argv = hf_ptq_argv(model, calib, tmp_path / "export")
    change(argv, tmp_path)
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "export" / "config.json").exists()
