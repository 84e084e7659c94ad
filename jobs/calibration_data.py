"""Calibration data for FP8 quantization, as the tutorial makes it (seeds 001/002), from local files.

    python -m jobs.calibration_data --model_dir HF --dataset_dir DS --split tir --size 4096
        --prompt generic/math --max_seq_length 512 --output_dir OUT

Takes the first `size` samples of the split (streamed), renders each with NeMo-Skills' `generic/math`
user turn and the model's chat template, the problem as the user turn and `generated_solution` as the
assistant turn, truncates it to the tokens the quantizer reads (`--calib_max_seq_length`), and writes
`OUT/data.parquet` with one column `text`: what TensorRT-LLM loads with
`load_dataset(OUT, split="train")["text"][:calib_size]`.
"""
from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

# NeMo-Skills prompt configs (nemo_skills/prompt/config/<name>.yaml at the pinned commit): user turn only,
# the system message is empty and therefore left out.
PROMPTS = {
    "generic/math": "Solve the following math problem. Make sure to put the answer (and only answer) inside "
                    "\\boxed{{}}.\n\n{problem}",
}


def user_turn(prompt: str, problem: str) -> str:
    return PROMPTS[prompt].format(problem=problem)


def assistant_turn_end(tokenizer) -> str:
    """What the chat template writes after an assistant message's content (e.g. `<|im_end|>\\n`)."""
    marker = "\x00MARK\x00"
    user = [{"role": "user", "content": ""}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": marker}], tokenize=False)
    return full[full.index(marker) + len(marker):] if full.startswith(prompt) else ""


def render(tokenizer, prompt: str, problem: str, solution: str, turn_end: str) -> str:
    """Like NeMo-Skills' fill(start_assistant_response_key=...) then format_assistant_response()."""
    messages = [{"role": "user", "content": user_turn(prompt, problem)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + solution + turn_end


def truncate(tokenizer, text: str, max_tokens: int) -> tuple[str, int]:
    """Cut `text` to at most `max_tokens` tokens, losing as few as possible; return it and its token count.

    The quantizer tokenizes the text again (tokenizer(truncation=True)), so the cut is checked that way. A
    cut right after token `max_tokens` can hold more: a character that byte-level BPE splits into several
    tokens is kept whole, or dropped whole, by a cut between characters. So the cut goes where the first
    dropped token starts, earlier if the text is still too long.
    """
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text, len(offsets)
    for keep in range(max_tokens, 0, -1):
        cut = text[:offsets[keep][0]]
        n_tokens = len(tokenizer(cut, add_special_tokens=False)["input_ids"])
        if n_tokens <= max_tokens:
            return cut, n_tokens
    return "", 0


def make_calibration_data(model_dir: str, dataset_dir: str, split: str, size: int, prompt: str,
                          max_seq_length: int, output_dir: str) -> dict:
    from datasets import Dataset, load_dataset
    from transformers import AutoTokenizer

    if prompt not in PROMPTS:
        raise SystemExit(f"--prompt {prompt!r}: unknown; known: {', '.join(PROMPTS)}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    samples = list(islice(load_dataset(dataset_dir, split=split, streaming=True), size))
    if len(samples) < size:
        raise SystemExit(f"split {split!r} of {dataset_dir} has {len(samples)} samples, {size} requested")
    turn_end = assistant_turn_end(tokenizer)
    texts, lengths, truncated = [], [], 0
    for sample in samples:
        text = render(tokenizer, prompt, sample["problem"], sample["generated_solution"], turn_end)
        cut, n_tokens = truncate(tokenizer, text, max_seq_length)
        truncated += len(cut) < len(text)
        texts.append(cut)
        lengths.append(n_tokens)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The only file there: TensorRT-LLM's load_dataset(OUT) reads every data file of the directory.
    Dataset.from_dict({"text": texts}).to_parquet(str(out / "data.parquet"))
    return {"samples": len(texts), "split": split, "prompt": prompt, "max_seq_length": max_seq_length,
            "mean_tokens": sum(lengths) / len(lengths), "truncated": truncated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split", default="tir")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--prompt", default="generic/math")
    parser.add_argument("--max_seq_length", type=int, default=512)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    print(json.dumps(make_calibration_data(**vars(args))))


if __name__ == "__main__":
    main()
