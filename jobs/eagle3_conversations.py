"""The conversations NVIDIA Model-Optimizer's EAGLE-3 recipe trains on, from the drafter's dataset (local files).

    python -m jobs.eagle3_conversations --dataset_dir DS --split tir --nrows 50000 --output OUT/train.jsonl

Takes the first `nrows` rows of the split (streamed), each the problem as the user turn (NeMo-Skills'
`generic/math` prompt, as the calibration data renders it: jobs.calibration_data) and `generated_solution` as the
assistant turn, and writes one {"messages": [...]} object a line: the format Model-Optimizer 0.46.0's
examples/speculative_decoding reads as online data (README "Other Datasets"; eagle_utils.make_speculative_data_module
loads `data.data_path` with load_dataset("json") and the collator applies the base model's chat template).
"""
from __future__ import annotations

import argparse
import json
import os
from itertools import islice
from pathlib import Path

from jobs.calibration_data import user_turn

PROMPT = "generic/math"
COLUMNS = ("problem", "generated_solution")  # nvidia/OpenMathReasoning's, which the ReDrafter trainer reads too


def make_conversations(dataset_dir: str, split: str, nrows: int, output: str) -> dict:
    from datasets import load_dataset

    rows = list(islice(load_dataset(dataset_dir, split=split, streaming=True), nrows))
    if len(rows) < nrows:
        raise SystemExit(f"split {split!r} of {dataset_dir} has {len(rows)} rows, {nrows} requested "
                         "(drafter.eagle3_dataset_nrows)")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise SystemExit(f"split {split!r} of {dataset_dir} has no column {', '.join(missing)}; its columns: "
                         f"{', '.join(rows[0])}. drafter.eagle3_dataset must have {', '.join(COLUMNS)} "
                         "(like nvidia/OpenMathReasoning)")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # a stopped job leaves no half file under the final name
    with partial.open("w") as f:
        for row in rows:
            messages = [{"role": "user", "content": user_turn(PROMPT, row["problem"])},
                        {"role": "assistant", "content": row["generated_solution"]}]
            f.write(json.dumps({"messages": messages}) + "\n")
    os.replace(partial, out)
    return {"conversations": len(rows), "split": split, "prompt": PROMPT, "output": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--nrows", type=int, required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    print(json.dumps(make_conversations(args.dataset_dir, args.split, args.nrows, args.output)))


if __name__ == "__main__":
    main()
