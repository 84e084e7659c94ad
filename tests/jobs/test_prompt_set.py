"""jobs/prompt_set.py: the real `datasets` loader on a tiny local copy of cnn_dailymail's layout.

The copy has the hub repo's shape: `3.0.0/{split}-00000-of-00001.parquet` with the columns article, highlights,
id, and a README whose YAML `configs` maps config 3.0.0's splits (how `load_dataset(repo, "3.0.0", split=...)`
finds them); the tokenizer is the stand-ins' tiny one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import prompt_set
from jobs.benchmark_client import load_tokenizer

TOKENIZER = Path(__file__).resolve().parents[1] / "standins" / "data" / "tiny_tokenizer"
README = """---
configs:
- config_name: 3.0.0
  data_files:
  - split: validation
    path: 3.0.0/validation-*
  - split: test
    path: 3.0.0/test-*
---
"""


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cnn_dailymail")
    (root / "3.0.0").mkdir()
    (root / "README.md").write_text(README)
    for split, n in (("validation", 40), ("test", 5)):
        words = [" ".join(f"w{(i * 7 + j) % 50} news" for j in range(3 + 11 * (i % 9))) for i in range(n)]
        table = pa.table({"article": [f"(CNN) {split} story {i}: {w}." for i, w in enumerate(words)],
                          "highlights": [f"Summary {i} of the {split} story ." for i in range(n)],
                          "id": [f"{split}-{i:04x}" for i in range(n)]})
        pq.write_table(table, root / "3.0.0" / f"{split}-00000-of-00001.parquet")
    return root


def run(cnn_dir, out, *extra):
    assert prompt_set.main(["--tokenizer", str(TOKENIZER), "--output", str(out), "--dataset", str(cnn_dir),
                            "--num-prompts", "12", *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_fixed_sample_by_seed_with_token_counts(cnn_dir, tmp_path):
    rows = run(cnn_dir, tmp_path / "a.jsonl", "--seed", "3", "--max-input-len", "300")
    again = run(cnn_dir, tmp_path / "b.jsonl", "--seed", "3", "--max-input-len", "300")
    other = run(cnn_dir, tmp_path / "c.jsonl", "--seed", "4", "--max-input-len", "300")
    assert len(rows) == 12 and rows == again
    assert [r["id"] for r in rows] != [r["id"] for r in other]
    assert all(r["id"].startswith("validation-") for r in rows)
    tokenizer = load_tokenizer(str(TOKENIZER))
    for r in rows:
        assert r["input_tokens"] == len(tokenizer.encode(r["prompt"])) <= 300
        assert r["max_tokens"] == int(len(r["reference"].split(" ")) * 1.3)
    assert any(r["truncated"] for r in rows) and not all(r["truncated"] for r in rows)
    assert all(r["prompt"].endswith(prompt_set.INSTRUCTION) for r in rows if not r["truncated"])


def test_skip_drops_overlong_prompts_as_the_seed_client_did(cnn_dir, tmp_path):
    rows = run(cnn_dir, tmp_path / "s.jsonl", "--max-input-len", "300", "--overlong", "skip")
    assert 0 < len(rows) < 12 and not any(r["truncated"] for r in rows)
    assert [r["index"] for r in rows] == list(range(len(rows)))


def test_split_and_size_errors(cnn_dir, tmp_path):
    with pytest.raises(ValueError, match="more than the 5 rows"):
        run(cnn_dir, tmp_path / "t.jsonl", "--split", "test")
    with pytest.raises(SystemExit, match="--max-input-len must be >= 1"):
        run(cnn_dir, tmp_path / "t.jsonl", "--max-input-len", "0")


def test_rows_without_the_dataset_columns_are_refused():
    with pytest.raises(ValueError, match=r"no column\(s\) \['highlights'\]"):
        prompt_set.build_prompt_set([{"article": "a", "id": "x"}], load_tokenizer(str(TOKENIZER)),
                                    max_input_len=10, overlong="truncate", op_tokens_per_word=1.3)
