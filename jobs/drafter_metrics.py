"""ReDrafter's quality, read from the trainer's output, and the quality gate: a decision taken on a trained drafter.

What the trainer logs. NeMo-Skills `train_redrafter.py` (ReDrafterTrainer.compute_loss) calls `self.log(...)` on
local rank 0 for the first micro-batch of every global step that is a multiple of logging_steps, with the
dict of apple/ml-recurrent-drafter `recurrent_drafting/train/loss.py` `drafter_loss`: `redrafter{i}_top{k}` is
`correct.float().mean()` over THAT micro-batch only. So one logged value is one micro-batch's accuracy (three
identical runs ended at 0.738 / 0.722 / 0.730): the gate reads the mean of the last `drafter.gate_window`
logged values, and records their spread.

Where the values are. The HF Trainer prints every logged dict (ProgressCallback: `{'redrafter0_top1': ...,
'epoch': ...}`) into the attempt's log, one log per attempt (`train.attempt-<n>.log`). With save_strategy
`steps`/`epoch` it also keeps them, with their step, in `checkpoint-N/trainer_state.json` (`log_history`);
an attempt that resumes from a checkpoint restores that history and extends it, and saves a last checkpoint
when it finishes. So the metrics of the attempt that finished are: its own printed log when it started from
scratch; the history in the newest checkpoint's trainer_state.json when it resumed (the part before the
checkpoint it resumed from, restored by the trainer, then its own), so that an attempt that resumed late and
logged nothing before finishing still has the values logged before. Never the logs of other attempts, whose
last steps the resumed one repeated.

The gate. train_drafter always publishes its drafter with these measurements (the whole history of the gated
metric included). drafter.min_top1, drafter.on_low_quality and drafter.gate_window are a decision taken where
the drafter is used (the convert_drafter job, and the launcher when the trained drafter is already
published): changing them never retrains.
"""
from __future__ import annotations

import ast
import glob
import json
import math
import re
import shutil
import statistics
from pathlib import Path
from typing import Dict, List, Optional

from jobs.process import StageFailed, log
from launcher.contract import MANIFEST, ContractError, DrafterGate, Manifest, StageSpec

TRAIN_LOG = "train.attempt-{n}.log"
TRAIN_LOG_PATTERN = re.compile(r"train\.attempt-(\d+)\.log")
TRAINER_STATE = "trainer_state.json"


# --------------------------------------------------------------------------------------------------
# The trainer's output
# --------------------------------------------------------------------------------------------------
def read_metrics(log_text: str) -> List[Dict[str, float]]:
    """Every printed dict that carries redrafter metrics, in order."""
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


def read_state_history(checkpoint: Path) -> List[Dict[str, float]]:
    """The redrafter records of a checkpoint's trainer_state.json `log_history` (each with its `step`)."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return []
    return [{k: float(v) for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for entry in state.get("log_history") or []
            if isinstance(entry, dict) and any(str(k).startswith("redrafter") for k in entry)]


def attempt_log(staging: Path) -> Path:
    """This attempt's own log: `train.attempt-<n>.log`, n one more than the attempts the staging dir has seen
    (a requeue keeps the staging dir, and so does a relaunch after a failure: SLURM_RESTART_COUNT restarts at 0
    in a new job, so it cannot number them)."""
    return staging / TRAIN_LOG.format(n=1 + max((n for n, _ in train_logs(staging)), default=0))


def train_logs(staging: Path) -> List[tuple]:
    """(n, path) of every attempt's log in the staging dir, in order."""
    found = []
    for path in staging.glob("train.attempt-*.log"):
        match = TRAIN_LOG_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_drafter_dir(staging: Path) -> Path:
    """train_redrafter writes beside --output_dir: `<output_dir>_redrafter_<model>_n_<n>_lr_<lr>_layers_<L>`."""
    candidates = [Path(p) for p in glob.glob(str(staging / "redrafter_output_redrafter_*"))]
    complete = [p for p in candidates if (p / "config.json").is_file() and (p / "model.safetensors").is_file()]
    if len(complete) != 1:
        raise FileNotFoundError(f"expected one trained drafter (config.json + model.safetensors) in "
                                f"{staging}/redrafter_output_redrafter_*, found {[str(p) for p in candidates]}")
    return complete[0]


def last_checkpoint(staging: Path) -> Optional[Path]:
    """The newest `checkpoint-N` in the drafter's output dir (the trainer resumes from it), or None."""
    found = []
    for path in staging.glob("redrafter_output_redrafter_*/checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def remove_checkpoints(drafter_dir: Path) -> None:
    """The trainer's `checkpoint-N` dirs (the whole frozen base model and optimizer state with the real
    trainer) are only for resuming: a published drafter is its config.json and model.safetensors."""
    for path in drafter_dir.glob("checkpoint-*"):
        if path.is_dir():
            shutil.rmtree(path)


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------
def gated_metric(predict_n_tokens: int) -> str:
    """The last drafted token's teacher-forced top-1 accuracy: the hardest head, the one the gate reads."""
    return f"redrafter{predict_n_tokens - 1}_top1"


def window_stats(values: List[float]) -> dict:
    """Mean (the gated statistic) and spread of the values of a window."""
    return {"value": round(statistics.fmean(values), 6), "window": len(values), "min": min(values),
            "max": max(values), "std": round(statistics.pstdev(values), 6) if len(values) > 1 else 0.0}


def windowed_means(history: List[Dict[str, float]], window: int) -> Dict[str, float]:
    """Every redrafter metric as the mean of its last `window` logged values."""
    tail = history[-window:]
    keys = [k for k in tail[-1] if k.startswith("redrafter")]
    return {k: round(statistics.fmean(r[k] for r in tail if k in r), 6) for k in keys}


def measure_trained_drafter(settings: DrafterGate, staging: Path, train_log: Path, resumed: Optional[Path]) -> dict:
    """What the manifest records of the drafter the attempt that finished trained (the gate is not applied
    here: see the module's docstring)."""
    try:
        drafter_dir = find_drafter_dir(staging)
    except FileNotFoundError as missing:  # the trainer exited 0 without saving: a failed stage, said plainly
        raise StageFailed(str(missing)) from None
    printed = read_metrics(train_log.read_text(errors="replace")) if train_log.is_file() else []
    history, source = printed, train_log.name
    checkpoint = last_checkpoint(staging) if resumed else None
    if checkpoint is not None:
        restored = read_state_history(checkpoint)
        if restored:
            history, source = restored, f"{checkpoint.name}/{TRAINER_STATE}"
    if not history:
        raise StageFailed(f"no redrafter metrics from the attempt that finished: none in its log {train_log}"
                          + (f", nor in {checkpoint}/{TRAINER_STATE}" if checkpoint else "")
                          + "; the drafter's quality is unknown")
    if resumed:
        log(f"training resumed from {resumed.name}: its metrics are the trainer's history in {source} "
             f"({len(history)} logged records, {len(printed)} of them printed by this attempt)")
    key = gated_metric(settings.predict_n_tokens)
    values = [r[key] for r in history if key in r]
    if not values:
        raise StageFailed(f"the trainer logged no {key} (drafter.predict_n_tokens={settings.predict_n_tokens}) "
                          f"in {source}")
    window = settings.gate_window
    gate = {"metric": key, "statistic": "mean", **window_stats(values[-window:]), "window_requested": window,
            "last": values[-1], "history": values, "source": source}
    log(f"drafter trained: {describe(gate)}")
    return {"drafter_dir": drafter_dir.name, "drafter_metrics": windowed_means(history, window),
            "drafter_metrics_last": {k: v for k, v in history[-1].items() if k.startswith("redrafter")},
            "drafter_metrics_history_len": len(history), "drafter_gate": gate}


# --------------------------------------------------------------------------------------------------
# The gate: a decision on a published drafter (convert_drafter job, launcher)
# --------------------------------------------------------------------------------------------------
def describe(measured: dict) -> str:
    if measured["window"] == 1:
        return f"{measured['metric']}={measured['value']:.4f} (its last logged value)"
    return (f"{measured['metric']}={measured['value']:.4f} (mean of its last {measured['window']} logged values: "
            f"min {measured['min']:.4f}, max {measured['max']:.4f}, std {measured['std']:.4f})")


def passing_min_top1(decision: dict) -> float:
    """The highest drafter.min_top1 (to 4 decimals) this drafter passes."""
    return math.floor(decision["value"] * 1e4) / 1e4


def gate_decision(train_outputs: dict, settings: DrafterGate) -> dict:
    """The gate of `settings` applied to the drafter a train_drafter manifest's outputs describe."""
    key = gated_metric(settings.predict_n_tokens)
    window = settings.gate_window
    recorded = train_outputs.get("drafter_gate") or {}
    if recorded.get("metric") == key and recorded.get("history"):
        values = [float(v) for v in recorded["history"]][-window:]
    else:  # published before the gate window existed: the last logged value is all it recorded
        last = (train_outputs.get("drafter_metrics") or {}).get(key)
        values = [float(last)] if isinstance(last, (int, float)) and math.isfinite(last) else []
    if values:
        measured = {"metric": key, **window_stats(values), "window_requested": window}
        passed = measured["value"] >= settings.min_top1
    else:
        measured = {"metric": key, "value": None, "window": 0, "window_requested": window}
        passed = False
    return {**measured, "min_top1": settings.min_top1, "on_low_quality": settings.on_low_quality, "passed": passed}


def gate_problem(decision: dict) -> str:
    """Why a drafter is below the gate."""
    if decision["value"] is None:
        return f"its manifest records no {decision['metric']}"
    return f"{describe(decision)} < drafter.min_top1={decision['min_top1']}"


def gate_remedy(decision: dict) -> str:
    """What to change: the gate, not the drafter (changing the gate never retrains it)."""
    lower = f" (<= {passing_min_top1(decision)} passes it)" if decision["value"] is not None else ""
    return (f"the trained drafter is kept: lower drafter.min_top1{lower}, change drafter.gate_window or set "
            "drafter.on_low_quality=warn and launch again, it is not retrained; or train a better one")


def train_input(spec: StageSpec) -> tuple:
    """(artifact path, manifest) of the train_drafter artifact among the stage's inputs."""
    for path in spec.inputs.values():
        try:
            manifest = Manifest.read(Path(path) / MANIFEST)
        except (OSError, ContractError):
            continue
        if manifest.stage == "train_drafter":
            return path, manifest
    raise StageFailed(f"{spec.name}: no published train_drafter artifact among its inputs "
                      f"{sorted(spec.inputs.values())}")


def check_gate(spec: StageSpec) -> dict:
    """The convert_drafter job's decision, before any tool runs: fail below the gate (drafter.on_low_quality
    fail, so that what depends on it is cancelled), else record the decision in its manifest."""
    path, manifest = train_input(spec)
    decision = gate_decision(manifest.outputs, spec.drafter)
    if not decision["passed"]:
        if decision["on_low_quality"] == "fail":
            raise StageFailed(f"drafter quality below the gate (drafter.on_low_quality=fail): {gate_problem(decision)};"
                              f" no engine is built on it. {gate_remedy(decision)} ({path})")
        log(f"WARNING drafter quality below the gate (drafter.on_low_quality=warn): {gate_problem(decision)}; "
             f"converting it anyway")
    else:
        log(f"drafter quality ok: {describe(decision)} >= drafter.min_top1={decision['min_top1']}")
    return {"drafter_gate": decision, "drafter_gate_passed": decision["passed"]}


