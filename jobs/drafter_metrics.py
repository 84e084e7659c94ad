"""ReDrafter's quality, read from the trainer's log, and the gate that stops a weak drafter early.

With `--save_strategy no` the HF Trainer writes no trainer_state.json: the metrics exist only in its
printed log lines, dicts such as {'loss': ..., 'redrafter2_top1': ..., 'epoch': ...} every logging_steps.
"""
from __future__ import annotations

import ast
import glob
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional


def read_metrics(log_text: str) -> List[Dict[str, float]]:
    """Every logged dict that carries redrafter metrics, in order."""
    found = []
    for line in log_text.splitlines():
        start = line.find("{")
        if start < 0 or "redrafter" not in line:
            continue
        try:
            record = ast.literal_eval(line[start:line.rfind("}") + 1])
        except (ValueError, SyntaxError):
            continue
        if isinstance(record, dict) and any(str(k).startswith("redrafter") for k in record):
            found.append({k: float(v) for k, v in record.items() if isinstance(v, (int, float))})
    return found


def find_drafter_dir(staging: Path) -> Path:
    """train_redrafter writes beside --output_dir: `<output_dir>_redrafter_<model>_n_<n>_lr_<lr>_layers_<L>`."""
    candidates = [Path(p) for p in glob.glob(str(staging / "redrafter_output_redrafter_*"))]
    complete = [p for p in candidates if (p / "config.json").is_file() and (p / "model.safetensors").is_file()]
    if len(complete) != 1:
        raise FileNotFoundError(f"expected one trained drafter (config.json + model.safetensors) in "
                                f"{staging}/redrafter_output_redrafter_*, found {[str(p) for p in candidates]}")
    return complete[0]


def last_checkpoint(staging: Path) -> Optional[Path]:
    """The newest `checkpoint-N` an earlier attempt left in the drafter's output dir (the trainer resumes from
    it), or None."""
    found = []
    for path in staging.glob("redrafter_output_redrafter_*/checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def remove_checkpoints(drafter_dir: Path) -> None:
    """The trainer's `checkpoint-N` dirs (weights and optimizer state, several times the drafter's size) are
    only for resuming: a published drafter is its config.json and model.safetensors."""
    for path in drafter_dir.glob("checkpoint-*"):
        if path.is_dir():
            shutil.rmtree(path)


def check_trained_drafter(spec: dict, staging: Path, train_log: Path) -> dict:
    """Record the final metrics; fail (or warn) when the last draft token's top-1 is below the gate."""
    from jobs.run_stage import StageFailed, log

    gate = spec["drafter"]
    try:
        drafter_dir = find_drafter_dir(staging)
    except FileNotFoundError as missing:  # the trainer exited 0 without saving: a failed stage, said plainly
        raise StageFailed(str(missing)) from None
    history = read_metrics(train_log.read_text(errors="replace"))
    if not history:
        raise StageFailed(f"no redrafter metrics in the trainer's log {train_log}")
    final = {k: v for k, v in history[-1].items() if k.startswith("redrafter")}
    key = f"redrafter{gate['predict_n_tokens'] - 1}_top1"
    value = final.get(key)
    passed = value is not None and value >= gate["min_top1"]
    message = f"{key}={value} (gate drafter.min_top1={gate['min_top1']})"
    if not passed and gate["on_low_quality"] == "fail":
        raise StageFailed(f"drafter quality below the gate: {message}; no engine will be built on it. "
                          "Train longer or set drafter.on_low_quality=warn")
    log(("drafter quality ok: " if passed else "WARNING drafter quality below the gate: ") + message)
    return {"drafter_dir": drafter_dir.name, "drafter_metrics": final, "drafter_gate_passed": passed,
            "drafter_metrics_history_len": len(history)}
