"""The comparison report of an experiment or campaign: the seeds' table from the benchmark results.

    python -m jobs.report --output_dir OUT --experiment_dir EXP --results NAME=RESULTS.json ...

A result that is missing (its benchmark or an earlier stage failed) is shown as failed, not dropped; the
report is then written to the experiment directory but not published as a complete artifact, so the next
launch regenerates it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Dict, Optional

COLUMNS = (
    ("total generation time (s)", "total_generation_time_s", False),
    ("batch throughput (tok/s)", "batch_throughput_tok_s", True),
    ("average sample throughput (tok/s)", "avg_sample_throughput_tok_s", True),
)


def load_results(paths: Dict[str, str]) -> Dict[str, Optional[dict]]:
    loaded = {}
    for name, path in paths.items():
        file = Path(path)
        loaded[name] = json.loads(file.read_text())["summary"] if file.is_file() else None
    return loaded


def speedup(value: float, baseline: float, higher_is_better: bool) -> float:
    return value / baseline if higher_is_better else baseline / value


def report_markdown(results: Dict[str, Optional[dict]]) -> str:
    names = list(results)
    baseline = next((results[n] for n in names if results[n]), None)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, higher in COLUMNS:
        cells = []
        for name in names:
            summary = results[name]
            if summary is None:
                cells.append("failed")
            else:
                cells.append(f"{summary[key]:.1f} ({speedup(summary[key], baseline[key], higher):.2f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "# Benchmark report\n\nSpeed-ups are against the first configuration that finished.\n\n" + "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--experiment_dir", required=True)
    parser.add_argument("--results", action="append", default=[], help="NAME=PATH of a results.json")
    args = parser.parse_args()
    results = load_results(dict(item.split("=", 1) for item in args.results))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report_markdown(results))
    Path(args.experiment_dir).mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "report.md", Path(args.experiment_dir) / "report.md")
    print((out / "report.md").read_text())
    return 0 if all(results.values()) else 3


if __name__ == "__main__":
    raise SystemExit(main())
