"""Data stage job: seed 004's benchmark prompt set from CNN/DailyMail, as JSONL with token counts.

The seed measured Triton with ``identity_test.py`` on ``mini_cnn_eval.json`` (tensorrtllm_backend
``tools/dataset``): 100 CNN/DailyMail articles, each ``{"input": article, "instruction": "Summarize the following
news article:", "output": highlights}``; the prompt is ``input + " " + instruction``, its tokens are counted with
the model's tokenizer (special tokens added), prompts over ``--max_input_len`` (2048) are skipped (98 of 100
remained), and each request asks for ``int(words in output * op_tokens_per_word)`` tokens (1.3 by default:
41.49 on average in the seed). This job draws the same kind of set from the ``cnn_dailymail`` dataset itself:
a fixed sample of N articles (``Dataset.shuffle(seed).select(range(N))``), each prompt truncated to
``--max-input-len`` tokens (or, with ``--overlong skip``, dropped as the seed's client did), each request's
``max_tokens`` cut to what ``--max-seq-len`` leaves after its prompt.

Rows: ``{"index", "id", "prompt", "input_tokens", "max_tokens", "truncated", "reference"}``.

Usage::

    python -m jobs.prompt_set --tokenizer DIR --output prompts.jsonl [--dataset abisee/cnn_dailymail]
        [--config 3.0.0] [--split validation] [--num-prompts 98] [--seed 0] [--max-input-len 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from jobs.benchmark_client import load_tokenizer

INSTRUCTION = "Summarize the following news article:"
COLUMNS = ("article", "highlights", "id")
OVERLONG = ("truncate", "skip")


def requested_tokens(reference: str, op_tokens_per_word: float) -> int:
    """The seed's output length: words of the reference summary (split on single spaces) x tokens per word."""
    return int(len(reference.split(" ")) * op_tokens_per_word)


def fit_prompt(tokenizer, prompt: str, max_input_len: int) -> tuple:
    """(prompt, tokens, truncated): the prompt cut to at most ``max_input_len`` tokens as the server counts them
    (special tokens added). Decoding a cut and encoding it again can merge pieces differently, so the cut is
    re-counted and shortened until it fits."""
    ids = tokenizer.encode(prompt)
    if len(ids) <= max_input_len:
        return prompt, len(ids), False
    keep = max_input_len
    while keep > 0:
        text = tokenizer.decode(ids[:keep], skip_special_tokens=True)
        count = len(tokenizer.encode(text))
        if count <= max_input_len:
            return text, count, True
        keep -= count - max_input_len
    raise ValueError(f"max_input_len={max_input_len} leaves no room for any prompt text")


def build_prompt_set(rows: Sequence[Dict[str, Any]], tokenizer, *, max_input_len: int, overlong: str,
                     op_tokens_per_word: float, instruction: str = INSTRUCTION,
                     max_seq_len: Optional[int] = None) -> List[Dict[str, Any]]:
    """`max_seq_len`: the engine's; a request's max_tokens is cut to the room its prompt leaves (trtllm-serve
    refuses a request past it, Triton lowers it: cut here, both servers get the same requests)."""
    if max_seq_len is not None and max_seq_len <= max_input_len:
        raise ValueError(f"max_seq_len {max_seq_len} leaves no room for output after {max_input_len} input tokens")
    if overlong not in OVERLONG:
        raise ValueError(f"overlong must be one of {', '.join(OVERLONG)}, got {overlong!r}")
    out = []
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"dataset row has no column(s) {missing}; cnn_dailymail rows have {list(COLUMNS)}")
        prompt = f"{row['article']} {instruction}"
        if overlong == "skip" and len(tokenizer.encode(prompt)) > max_input_len:
            continue
        text, tokens, truncated = fit_prompt(tokenizer, prompt, max_input_len)
        requested = requested_tokens(row["highlights"], op_tokens_per_word)
        out.append({"index": len(out), "id": row["id"], "prompt": text, "input_tokens": tokens,
                    "max_tokens": requested if max_seq_len is None else min(requested, max_seq_len - tokens),
                    "truncated": truncated, "reference": row["highlights"]})
    return out


def load_rows(dataset: str, config: Optional[str], split: str, num_prompts: int, seed: int) -> List[Dict[str, Any]]:
    import datasets  # heavy import: only in the job

    ds = datasets.load_dataset(dataset, config, split=split)
    if len(ds) < num_prompts:
        raise ValueError(f"--num-prompts {num_prompts} is more than the {len(ds)} rows of {dataset} "
                         f"{config or ''} split {split!r}")
    return list(ds.shuffle(seed=seed).select(range(num_prompts)))


def write_jsonl(rows: Sequence[Dict[str, Any]], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.prompt_set", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="the served model's tokenizer dir (counts prompt tokens)")
    p.add_argument("--output", required=True, help="JSONL file to write")
    p.add_argument("--dataset", default="abisee/cnn_dailymail", help="hub id or local dataset dir")
    p.add_argument("--config", default="3.0.0", help="dataset config name")
    p.add_argument("--split", default="validation")
    p.add_argument("--num-prompts", type=int, default=98)
    p.add_argument("--seed", type=int, default=0, help="shuffle seed of the fixed sample")
    p.add_argument("--max-input-len", type=int, default=2048, help="the engine's max_input_len")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="the engine's max_seq_len: each request's max_tokens is cut to the room its prompt leaves")
    p.add_argument("--overlong", choices=OVERLONG, default="truncate",
                   help="a prompt over --max-input-len tokens: cut it, or drop it as the seed's client did")
    p.add_argument("--op-tokens-per-word", type=float, default=1.3)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("num_prompts", "max_input_len"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.op_tokens_per_word <= 0:
        raise SystemExit(f"--op-tokens-per-word must be > 0, got {args.op_tokens_per_word}")
    tokenizer = load_tokenizer(args.tokenizer)
    rows = load_rows(args.dataset, args.config, args.split, args.num_prompts, args.seed)
    prompts = build_prompt_set(rows, tokenizer, max_input_len=args.max_input_len, overlong=args.overlong,
                               op_tokens_per_word=args.op_tokens_per_word, max_seq_len=args.max_seq_len)
    write_jsonl(prompts, args.output)
    mean_in = sum(p["input_tokens"] for p in prompts) / max(len(prompts), 1)
    mean_out = sum(p["max_tokens"] for p in prompts) / max(len(prompts), 1)
    print(f"{len(prompts)} prompts ({sum(p['truncated'] for p in prompts)} truncated) -> {args.output}; "
          f"avg input tokens {mean_in:.2f}, avg requested output tokens {mean_out:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
