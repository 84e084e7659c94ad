"""Tests of jobs/check_download.py: a download is complete only when it holds what the later stages read."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import check_download as cd

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"
TOKENIZER = STANDINS / "data" / "tiny_tokenizer"


def safetensors(path: Path, n_bytes: int = 16, truncate: int = 0) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [n_bytes], "data_offsets": [0, n_bytes]}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0" * n_bytes
    path.write_bytes(data[:len(data) - truncate])


def parquet(path: Path, rows: int = 2) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"problem": [f"p{i}" for i in range(rows)],
                             "generated_solution": [f"s{i}" for i in range(rows)]}), path)


@pytest.fixture
def model(tmp_path) -> Path:
    """A complete sharded model directory: config, tokenizer, index and both shards."""
    d = tmp_path / "model"
    shutil.copytree(TOKENIZER, d)
    (d / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for shard in shards:
        safetensors(d / shard)
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1]}}))
    return d


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs.check_download", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def test_the_standin_hf_downloads_pass_through_the_cli(tmp_path):
    env = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python")}
    for args in (["nvidia/OpenMath-Nemotron-14B-kaggle", "--local-dir", tmp_path / "m"],
                 ["nvidia/OpenMathReasoning", "--repo-type", "dataset", "--local-dir", tmp_path / "d"]):
        subprocess.run(["hf", "download", *map(str, args)], env=env, check=True, capture_output=True, timeout=60)
    done = cli("model", tmp_path / "m")
    assert done.returncode == 0, done.stderr
    done = cli("dataset", tmp_path / "d", "--split", "tir", "--split", "cot")
    assert done.returncode == 0, done.stderr
    (tmp_path / "m" / "model-00001-of-00001.safetensors").unlink()
    done = cli("model", tmp_path / "m")
    assert done.returncode == 1
    assert "model-00001-of-00001.safetensors: missing (named by model.safetensors.index.json)" in done.stderr


def test_a_complete_model_has_no_problems(model):
    assert cd.check_model(str(model)) == []


def test_single_file_and_bin_weights_need_no_index(model):
    for f in model.glob("model*"):
        f.unlink()
    safetensors(model / "model.safetensors")
    assert cd.check_model(str(model)) == []
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    assert cd.check_model(str(model)) == []


@pytest.mark.parametrize("remove, expected", [
    (["config.json"], "config.json: missing"),
    (["tokenizer_config.json"], "tokenizer_config.json: missing"),
    (["tokenizer.json", "vocab.json"], "tokenizer: missing"),
    (["model-00002-of-00002.safetensors"],
     "model-00002-of-00002.safetensors: missing (named by model.safetensors.index.json)"),
    (["model.safetensors.index.json"], "model.safetensors.index.json: missing (the weights are sharded"),
    (["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
     "weights: missing"),
])
def test_what_is_missing_is_named(model, remove, expected):
    for name in remove:
        (model / name).unlink()
    problems = cd.check_model(str(model))
    assert any(expected in p for p in problems), problems


def test_tokenizer_model_alone_is_a_tokenizer(model):
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (model / name).unlink()
    assert any("tokenizer: missing" in p for p in cd.check_model(str(model)))
    (model / "tokenizer.model").write_bytes(b"sentencepiece")
    assert cd.check_model(str(model)) == []


def test_truncated_unfinished_and_broken_files_are_errors(model):
    safetensors(model / "model-00002-of-00002.safetensors", truncate=5)
    pending = model / ".cache" / "huggingface" / "download"
    pending.mkdir(parents=True)
    (pending / "8d4c1e2b.9f86d081884c7d65.incomplete").write_bytes(b"x")
    (model / "config.json").write_text("{not json")
    problems = "\n".join(cd.check_model(str(model)))
    assert "model-00002-of-00002.safetensors: truncated" in problems
    assert ".cache/huggingface/download/8d4c1e2b.9f86d081884c7d65.incomplete: a download that did not finish" \
        in problems
    assert "config.json: not valid JSON" in problems


def test_a_missing_directory_fails_clearly_through_the_cli(tmp_path):
    done = cli("model", tmp_path / "nowhere")
    assert done.returncode == 1
    assert "no such directory" in done.stderr


def test_dataset_by_naming_convention(tmp_path):
    d = tmp_path / "ds"
    parquet(d / "data" / "tir-00000-of-00002.parquet")
    parquet(d / "data" / "cot-00000-of-00001.parquet")
    problems = cd.check_dataset(str(d), ["tir"])
    assert problems == ["data/tir-00001-of-00002.parquet: missing (its shard set is incomplete)"]
    parquet(d / "data" / "tir-00001-of-00002.parquet")
    assert cd.check_dataset(str(d), ["tir", "cot"]) == []
    missing = cd.check_dataset(str(d), ["genselect"])
    assert len(missing) == 1 and "split 'genselect'" in missing[0] and "splits found: cot, tir" in missing[0]


def test_dataset_card_configs_name_the_split_files(tmp_path):
    d = tmp_path / "ds"
    parquet(d / "shards" / "part-a.parquet")
    (d / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: tir\n"
                                 "    path: shards/part-*\n---\n# card\n")
    assert cd.check_dataset(str(d), ["tir"]) == []
    assert "not among the splits of README.md's configs (tir)" in cd.check_dataset(str(d), ["cot"])[0]
    (d / "shards" / "part-a.parquet").write_bytes(b"PAR1 cut short")
    assert cd.check_dataset(str(d), ["tir"]) == ["shards/part-a.parquet: not a complete parquet file (Parquet magic bytes "
                                                 "not found in footer. Either the file is corrupted or this is not a "
                                                 "parquet file.)"]


def test_dataset_cli_exit_codes(tmp_path):
    d = tmp_path / "ds"
    parquet(d / "data" / "tir-00000-of-00001.parquet")
    assert cli("dataset", d, "--split", "tir").returncode == 0
    done = cli("dataset", d, "--split", "cot")
    assert done.returncode == 1
    assert "split 'cot'" in done.stderr and "missing" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("dataset", empty)
    assert done.returncode == 1 and "no data files at all" in done.stderr


def test_a_parquet_file_with_both_magics_but_no_metadata_is_broken(tmp_path):
    """Its footer's magic bytes are not enough: the metadata they close must be readable (a file cut and padded,
    or two files' ends glued together)."""
    d = tmp_path / "ds"
    parquet(d / "tir.parquet")
    whole = (d / "tir.parquet").read_bytes()
    (d / "tir.parquet").write_bytes(whole[:4] + whole[len(whole) // 2:])  # its middle lost, both ends kept
    [problem] = cd.check_dataset(str(d), ["tir"])
    assert problem.startswith("tir.parquet: not a complete parquet file (")
