"""The benchmarks' input files, JSON Lines (a problem set, a prompt set): one reader, whose errors name the file,
the line and what is missing.

Standard library only: the benchmark clients import it in their containers.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence


def read_rows(path: str, what: str, required: Sequence[str] = (), remedy: str = "") -> List[Dict[str, Any]]:
    """The rows of `path`, blank lines skipped. ValueError for a line that is not a JSON object, a row without one
    of the `required` fields (then `remedy`, in parentheses, says how to write the file), and a file of no rows
    (no `what`: prompts, problems)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: not a JSON object, a {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"{path}:{n}: no {missing}" + (f" ({remedy})" if remedy else ""))
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no {what}")
    return rows
