"""Tests of jobs/calibration_data.py, run for real: a small local dataset, the shipped tiny Qwen-style tokenizer,
`datasets` and `transformers` as in the job.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobs.calibration_data import make_calibration_data, truncate

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "tests" / "standins" / "data" / "tiny_tokenizer"
MAX_TOKENS = 128  # the short samples' texts are about 100 tokens of the tiny tokenizer, the long ones 300+
# What the tiny tokenizer's ChatML template writes around a single user turn (its default system message
# included), and the assistant's end of turn: written out here, not computed with the template.
HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
PROMPT = ("Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{}.\n\n")
ASSISTANT = "<|im_end|>\n<|im_start|>assistant\n"
END = "<|im_end|>\n"

SHORT = [("What is 6 times 7?", "6 * 7 = 42, so the answer is \\boxed{42}."),
         ("Find x if x + 1 = 3.", "x = 2.\n\\boxed{2}")]
LONG = [
    # Non-ASCII characters are several byte-level tokens each: a cut must not fall inside one.
    ("Let x² ≤ π and y ∈ ℝ. Compute ∑ (x·y)² — über-carefully, 🙂.",
     "We use the tool.\n<tool_call>\nimport math\nprint(math.pi ** 2)\n</tool_call>\n```output\n9.8696\n```\n"
     "Therefore x² ≤ π ⇒ |x| ≤ √π ≈ 1.7725. ∀ε>0 ∃δ … so the answer is \\boxed{π²}. " * 3),
    ("Ünïcödé everywhere: αβγδε ζηθ ικλμν ξοπρσ τυφχψω.", "Σ " * 60 + "\\boxed{0}"),
    ("A long one.", "step " * 200 + "\\boxed{1}"),
]


def full_text(problem: str, solution: str) -> str:
    return HEAD + PROMPT + problem + ASSISTANT + solution + END


def write_split(path: Path, rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"problem": [p for p, _ in rows], "generated_solution": [s for _, s in rows],
                             "expected_answer": ["?"] * len(rows)}), path)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib_inputs")
    model = root / "model"
    shutil.copytree(TOKENIZER, model)
    (model / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}')
    dataset = root / "dataset"
    rows = SHORT + LONG + [("An extra problem, beyond the requested size.", "\\boxed{0}")]
    write_split(dataset / "data" / "tir-00000-of-00001.parquet", rows)
    write_split(dataset / "data" / "cot-00000-of-00001.parquet", [("a cot problem", "not this split")] * 9)
    return model, dataset


@pytest.fixture(scope="module")
def made(inputs, tmp_path_factory):
    model, dataset = inputs
    out = tmp_path_factory.mktemp("calib") / "calib"
    stats = make_calibration_data(str(model), str(dataset), "tir", len(SHORT + LONG), "generic/math", MAX_TOKENS,
                                  str(out))
    return out, stats


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_first_samples_of_the_split_in_one_text_column(made):
    import pyarrow.parquet as pq

    out, stats = made
    assert sorted(p.name for p in out.iterdir()) == ["data.parquet"]  # TensorRT-LLM reads every file there
    table = pq.read_table(out / "data.parquet")
    assert table.column_names == ["text"] and table.num_rows == len(SHORT + LONG)
    assert stats["samples"] == len(SHORT + LONG) and stats["split"] == "tir"
    texts = table.column("text").to_pylist()
    assert all("cot problem" not in t and "beyond the requested size" not in t for t in texts)


def test_each_text_is_the_user_turn_then_the_solution_then_the_end_of_turn(made, tokenizer):
    out, _ = made
    import pyarrow.parquet as pq

    texts = pq.read_table(out / "data.parquet").column("text").to_pylist()
    for text, (problem, solution) in zip(texts, SHORT):
        assert tokens(tokenizer, full_text(problem, solution)) <= MAX_TOKENS  # short enough: kept whole
        assert text == full_text(problem, solution)


def test_long_texts_are_cut_to_the_token_budget(made, tokenizer):
    out, stats = made
    import pyarrow.parquet as pq

    texts = pq.read_table(out / "data.parquet").column("text").to_pylist()
    for text, (problem, solution) in zip(texts[len(SHORT):], LONG):
        whole = full_text(problem, solution)
        assert tokens(tokenizer, whole) > MAX_TOKENS
        assert whole.startswith(text)
        n = tokens(tokenizer, text)
        assert MAX_TOKENS - 3 <= n <= MAX_TOKENS, (n, text)
    assert stats["truncated"] == len(LONG)


@pytest.mark.parametrize("sample", LONG[:2], ids=["symbols", "greek"])
def test_no_budget_is_exceeded_where_characters_are_several_tokens(tokenizer, sample):
    whole = full_text(*sample)
    for budget in range(1, 240):
        text, n = truncate(tokenizer, whole, budget)
        assert whole.startswith(text) and n == tokens(tokenizer, text)
        assert budget - 3 <= n <= budget, (budget, n)  # at most one 4-byte character's tokens short


def test_a_text_of_exactly_the_budget_is_kept_whole_and_one_token_more_is_cut(tokenizer):
    whole = full_text(*SHORT[0])
    n = tokens(tokenizer, whole)
    assert truncate(tokenizer, whole, n) == (whole, n)
    cut, kept = truncate(tokenizer, whole, n - 1)
    assert whole.startswith(cut) and cut != whole and kept == tokens(tokenizer, cut) == n - 1


def test_tensorrt_llm_reads_the_same_texts(made):
    import pyarrow.parquet as pq
    from datasets import load_dataset

    out, _ = made
    texts = pq.read_table(out / "data.parquet").column("text").to_pylist()
    # What TensorRT-LLM's quantizer does with a local --calib_dataset directory.
    assert load_dataset(str(out), split="train")["text"][:len(texts)] == texts


def test_too_few_samples_fail_clearly(inputs, tmp_path):
    model, dataset = inputs
    with pytest.raises(SystemExit, match=r"split 'tir' of .* has 6 samples, 7 requested"):
        make_calibration_data(str(model), str(dataset), "tir", 7, "generic/math", MAX_TOKENS, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_unknown_prompt_fails_clearly(inputs, tmp_path):
    model, dataset = inputs
    with pytest.raises(SystemExit, match="--prompt 'generic/nope': unknown; known: generic/math"):
        make_calibration_data(str(model), str(dataset), "tir", 1, "generic/nope", MAX_TOKENS, str(tmp_path / "out"))
