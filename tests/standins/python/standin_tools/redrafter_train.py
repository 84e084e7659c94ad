"""STAND-IN logic of ``nemo_skills.training.train_redrafter`` (NeMo-Skills @ a4c0a188).

What the real script does and this stand-in mimics (no torch, no model):

* HfArgumentParser((ModelArguments, TrainingArguments)) -- see hf_training_args.py.
* ``assert phase in ["train", "eval"]``.
* Tokenizer + config from ``llm_name_or_path``; dataset
  ``load_dataset(dataset, split=dataset_split, streaming=True).take(dataset_nrows)``.
  The stand-in accepts a local dataset directory (HF layout ``*/{split}-*.parquet`` or
  a README ``configs`` mapping, read with pyarrow) or an already cached Hub dataset;
  a missing dataset/split fails like the real loader.
* ``output_dir`` is rewritten to
  ``f"{output_dir}_redrafter_{llm.split('/')[-1]}_n_{n}_lr_{lr}_layers_{L}"``; the
  original output_dir is never created.
* Trainer: logs ``{'redrafter0_top1': ..., ..., 'redrafter{n-1}_loss': ..., 'epoch': e}``
  (rank 0, every ``logging_steps`` global steps, from step 0) -- ONE micro-batch's accuracy, as
  ``ReDrafterTrainer.compute_loss`` logs apple/ml-recurrent-drafter ``drafter_loss``'s
  ``correct.float().mean()`` of the batch it computes: so each value is a trend plus deterministic
  per-micro-batch noise -- and
  ``{'loss': ..., 'grad_norm': ..., 'learning_rate': ..., 'epoch': e}`` after every
  ``logging_steps`` optimizer steps, then a final ``{'train_runtime': ...}`` line;
  saves ``checkpoint-N`` (save_strategy steps/epoch) in the *rewritten* dir and resumes
  from the last ``checkpoint-*`` found there.
* ``drafter.save_pretrained(rewritten_dir)`` -> config.json + model.safetensors.

Knobs: ``STANDIN_REDRAFTER_TOP1`` (where the trend of ``redrafter2_top1`` ends, default 0.65; for
n != 3 the last head's top1), ``STANDIN_REDRAFTER_NOISE`` (half-width of the uniform
per-micro-batch noise added to every logged top-1, default 0.03; 0: the bare trend),
``STANDIN_REDRAFTER_SEED`` (the noise's seed, default 0: identical runs of a real trainer differ
too), ``STANDIN_FAIL`` (crash half-way, after checkpoints so far were written),
``STANDIN_FAIL_AT_STEP`` (with STANDIN_FAIL: crash at that global step instead),
``STANDIN_SLEEP_S`` (total seconds, spread over the steps), ``STANDIN_REDRAFTER_ROWS`` (cap on
rows read, to keep tests small), ``STANDIN_WANDB_CONFIG_FILE`` (with ``--report_to wandb``: the config
transformers' WandbCallback records in the trainer's W&B run, ``args.to_dict()``, as JSON; ``logging_dir``
defaults to ``<output_dir>/runs/<time>_<host name>`` as in transformers 4.57.6).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

from . import hf_training_args
from .common import (StandinError, fail_code, fail_requested, log, read_json, safetensors_bytes,
                     sleep_seconds)

TOOL = "train_redrafter"
TRANSFORMERS_VERSION = "4.57.6"


# ------------------------------------------------------------------ inputs


def _check_llm(path: str) -> dict:
    d = Path(path)
    if not d.is_dir():
        raise StandinError(f"OSError: {path} is not a local folder and the stand-in has no Hub access")
    cfg = read_json(d / "config.json", "config.json of llm_name_or_path")
    if not (d / "tokenizer_config.json").is_file() or not any(
            (d / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer.model")):
        raise StandinError(f"OSError: Can't load tokenizer for '{path}'")
    for key in ("vocab_size", "hidden_size"):
        if key not in cfg:
            raise StandinError(f"config.json of {path} has no '{key}'")
    return cfg


def _split_files(root: Path, split: str) -> list[Path]:
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(errors="replace")
        for m in re.finditer(r"-\s*split:\s*(\S+)\s*\n\s*path:\s*(\S+)", text):
            if m.group(1) == split:
                return sorted(Path(p) for p in glob.glob(str(root / m.group(2))) if p.endswith(".parquet"))
    pats = [f"{split}-*.parquet", f"{split}.parquet", f"{split}/*.parquet"]
    out: list[Path] = []
    for pat in pats:
        out += [Path(p) for p in glob.glob(str(root / "**" / pat), recursive=True)]
    return sorted(set(out))


def _dataset_root(dataset: str) -> Path:
    if os.path.isdir(dataset):
        return Path(dataset)
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
    snaps = sorted(glob.glob(os.path.join(hub, "datasets--" + dataset.replace("/", "--"), "snapshots", "*")))
    if snaps:
        return Path(snaps[-1])
    raise StandinError(f"DatasetNotFoundError: Dataset '{dataset}' doesn't exist on the Hub or cannot be "
                       "accessed (stand-in: no local directory or cached copy)")


def _count_rows(dataset: str, split: str, nrows: int) -> int:
    root = _dataset_root(dataset)
    files = _split_files(root, split)
    if not files:
        raise StandinError(f'ValueError: Bad split: {split}. Available splits: '
                           f'{sorted({p.name.split("-")[0] for p in root.rglob("*.parquet")})}')
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise StandinError("the train_redrafter stand-in needs pyarrow to read the dataset")
    total = 0
    for f in files:
        md = pq.read_metadata(f)
        names = set(md.schema.names)
        missing = {"problem", "generated_solution"} - names
        if missing:
            raise StandinError(f"KeyError: {sorted(missing)[0]!r} (dataset {f} lacks the column)")
        total += md.num_rows
    cap = os.environ.get("STANDIN_REDRAFTER_ROWS")
    rows = min(total, nrows) if nrows else total
    if cap:
        rows = min(rows, int(cap))
    if rows == 0:
        raise StandinError(f"dataset {dataset} split {split} has no rows")
    return rows


# ------------------------------------------------------------------ metrics


def _target_top1() -> float:
    raw = os.environ.get("STANDIN_REDRAFTER_TOP1", "0.65")
    try:
        v = float(raw)
    except ValueError:
        raise StandinError(f"STANDIN_REDRAFTER_TOP1 must be a number, got {raw!r}")
    if not 0.0 <= v <= 1.0:
        raise StandinError(f"STANDIN_REDRAFTER_TOP1 must be in [0, 1], got {v}")
    return v


def _env_float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        v = float(raw)
    except ValueError:
        raise StandinError(f"{name} must be a number, got {raw!r}")
    if not low <= v <= high:
        raise StandinError(f"{name} must be in [{low}, {high}], got {v}")
    return v


def _noise_amplitude() -> float:
    return _env_float("STANDIN_REDRAFTER_NOISE", 0.03, 0.0, 0.5)


def _micro_batch_noise(step: int, amplitude: float) -> float:
    """Deterministic noise of the micro-batch logged at `step` (uniform in +-amplitude; one draw per micro-batch,
    shared by the heads: an easy batch is easy for every head)."""
    if not amplitude:
        return 0.0
    seed = os.environ.get("STANDIN_REDRAFTER_SEED", "0")
    u = int.from_bytes(hashlib.sha256(f"{seed}:{step}".encode()).digest()[:8], "big") / 2 ** 64
    return amplitude * (2 * u - 1)


def _redrafter_log(n: int, top_k: int, progress: float, target: float, noise: float = 0.0) -> dict:
    """Metrics for heads 0..n-1; the last head's top1 is ``target`` (+ noise) when progress == 1."""
    g = (1 - math.exp(-4 * progress)) / (1 - math.exp(-4))
    last = target * (0.35 + 0.65 * g)
    log_: dict = {}
    for i in range(n):
        top1 = last + (n - 1 - i) * 0.12 * (1 - last) if i != n - 1 else last
        top1 = min(max(top1 + noise, 0.001), 0.999)
        for k in range(1, top_k + 1):
            v = top1 if k == 1 else min(0.9999, top1 + (1 - top1) * (1 - 0.6 ** (k - 1)) * 0.85)
            log_[f"redrafter{i}_top{k}"] = round(v, 4)
        log_[f"redrafter{i}_loss"] = round(-math.log(max(top1, 1e-4)) * 1.7 + 0.05 * i, 4)
    return log_


def _fmt_epoch(e: float):
    r = round(e, 2)
    return 0 if e == 0 else r


# ------------------------------------------------------------------ training


def _last_checkpoint(out: Path):
    best = None
    for p in out.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if p.is_dir() and m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best


def _drafter_config(llm_cfg: dict, a) -> dict:
    hidden = int(llm_cfg["hidden_size"])
    return {
        "architectures": ["Drafter"], "dtype": "bfloat16", "exit_dim": 2 * hidden,
        "hidden_size": hidden, "model_type": "recurrent_drafting_drafter",
        "num_draft_layers": a.drafter_num_layers, "num_lookback_tokens": -1, "rnn": a.rnn,
        "transformers_version": TRANSFORMERS_VERSION, "vocab_size": int(llm_cfg["vocab_size"]),
        "standin": True, "standin_drafter_predict_n_tokens": a.drafter_predict_n_tokens,
    }


def _drafter_weights(cfg: dict) -> bytes:
    t = {}
    for i in range(int(cfg["num_draft_layers"])):
        t[f"lm_head.{i}.linear.weight"] = ("BF16", [8, 8])
        t[f"lm_head.{i}.linear.bias"] = ("BF16", [8])
    t[f"lm_head.{int(cfg['num_draft_layers'])}.weight"] = ("BF16", [16, 8])
    if cfg["rnn"]:
        t["rnn_u.weight"] = ("BF16", [8, 8])
        t["rnn_u.bias"] = ("BF16", [8])
        t["rnn_w.weight"] = ("BF16", [8, 8])
    return safetensors_bytes(t)


def _save_checkpoint(out: Path, step: int, state: dict, dcfg: dict, limit) -> None:
    ck = out / f"checkpoint-{step}"
    ck.mkdir(parents=True, exist_ok=True)
    (ck / "config.json").write_text(json.dumps(dcfg, indent=2) + "\n")
    (ck / "model.safetensors").write_bytes(_drafter_weights(dcfg))
    (ck / "trainer_state.json").write_text(json.dumps(dict(state, global_step=step), indent=2) + "\n")
    if limit is not None and int(limit) > 0:  # Trainer._rotate_checkpoints: None or <= 0 keeps them all
        cks = sorted((int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*")
                     if re.fullmatch(r"checkpoint-\d+", p.name))
        for _, p in cks[:-int(limit)]:
            shutil.rmtree(p, ignore_errors=True)


def _print(obj) -> None:
    print(obj, flush=True)


def run(a) -> int:
    if a.phase not in ("train", "eval"):
        raise StandinError("AssertionError")  # `assert training_args.phase in ["train", "eval"]`
    if a.logging_steps <= 0:
        # TrainingArguments refuses it for logging_strategy "steps"; compute_loss's
        # `global_step % logging_steps` would divide by zero otherwise.
        raise StandinError("ValueError: logging strategy steps requires non-zero --logging_steps")
    output_dir = a.output_dir if a.output_dir is not None else "trainer_output"
    llm_cfg = _check_llm(a.llm_name_or_path)
    rows = _count_rows(a.dataset, a.dataset_split, a.dataset_nrows)

    if a.phase == "eval":
        if not a.drafter_name_or_path or not (Path(a.drafter_name_or_path) / "config.json").is_file():
            raise StandinError(f"OSError: no drafter at {a.drafter_name_or_path!r}")
        target = _target_top1()
        ev = {f"eval_{k}": v for k, v in _redrafter_log(a.drafter_predict_n_tokens, a.drafter_top_k, 1.0,
                                                       target).items() if "_loss" not in k}
        _print(ev)
        return 0

    out = Path(f"{output_dir}_redrafter_{a.llm_name_or_path.split('/')[-1]}"
               f"_n_{a.drafter_predict_n_tokens}_lr_{a.learning_rate}_layers_{a.drafter_num_layers}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    per_step = a.per_device_train_batch_size * world
    batches = math.ceil(rows / per_step)
    # Trainer.set_initial_training_values (4.57.6): a last partial accumulation is an optimizer step too
    # (300 rows, 2 ranks, accumulation 4: 38 steps on 2 x H200, 2026-11-29).
    steps_per_epoch = max(1, math.ceil(batches / a.gradient_accumulation_steps))
    total = a.max_steps if a.max_steps > 0 else math.ceil(a.num_train_epochs * steps_per_epoch)
    target = _target_top1()
    n = a.drafter_predict_n_tokens
    dcfg = _drafter_config(llm_cfg, a)
    rd_every = a.logging_steps  # compute_loss logs the redrafter dict whatever logging_strategy is
    log_every = a.logging_steps if a.logging_strategy == "steps" else None
    save_every = None
    if a.save_strategy == "steps":
        save_every = int(a.save_steps) if a.save_steps >= 1 else max(1, math.ceil(a.save_steps * total))
    elif a.save_strategy == "epoch":
        save_every = steps_per_epoch
    # The last step at which the redrafter dict is logged (global_step % logging_steps == 0).
    last_logged = ((total - 1) // rd_every) * rd_every

    if rank == 0:
        _print(f"TrainingArguments(output_dir={str(out)!r}, learning_rate={a.learning_rate}, "
               f"num_train_epochs={a.num_train_epochs}, per_device_train_batch_size="
               f"{a.per_device_train_batch_size}, gradient_accumulation_steps={a.gradient_accumulation_steps}, "
               f"logging_steps={a.logging_steps}, save_strategy={a.save_strategy}, bf16={a.bf16}, "
               f"drafter_predict_n_tokens={n}, drafter_num_layers={a.drafter_num_layers}, rnn={a.rnn}, "
               f"report_to={a.report_to}, logging_dir={a.logging_dir!r}, ...)  # [STAND-IN]")
        # transformers' WandbCallback.setup (world process zero) puts args.to_dict() in the run's config.
        if "wandb" in str(a.report_to) and os.environ.get("STANDIN_WANDB_CONFIG_FILE"):
            Path(os.environ["STANDIN_WANDB_CONFIG_FILE"]).write_text(
                json.dumps({**vars(a), "output_dir": str(out)}, indent=1, default=str))
        log(TOOL, f"{rows} rows of {a.dataset}:{a.dataset_split}; world_size {world}; "
                  f"{steps_per_epoch} steps/epoch; {total} steps; output {out}")

    start = 0
    state = {"log_history": [], "max_steps": total, "logging_steps": a.logging_steps,
             "num_train_epochs": a.num_train_epochs, "train_batch_size": a.per_device_train_batch_size,
             "standin": True}
    last = _last_checkpoint(out) if out.is_dir() else None
    if last:
        st = read_json(last[1] / "trainer_state.json", "trainer_state.json")
        start = int(st.get("global_step", last[0]))
        state["log_history"] = list(st.get("log_history", []))
        if rank == 0:
            log(TOOL, f"Continuing training from checkpoint, will skip to saved global_step {start} "
                      f"({last[1]})")

    sleep_total = sleep_seconds(TOOL)
    per_step_sleep = sleep_total / max(1, total - start)
    fail_at = start + max(1, (total - start) // 2) if fail_requested(TOOL) else None
    if fail_at is not None and os.environ.get("STANDIN_FAIL_AT_STEP"):
        fail_at = int(os.environ["STANDIN_FAIL_AT_STEP"])
    amplitude = _noise_amplitude()
    t0 = time.time()
    loss_acc = loss_sum = 0.0
    for step in range(start, total):
        epoch = step / steps_per_epoch
        if fail_at is not None and step == fail_at:
            print(f"Traceback (most recent call last):\n  (stand-in {TOOL})\nRuntimeError: simulated failure "
                  f"at step {step} (STANDIN_FAIL)", file=sys.stderr, flush=True)
            sys.exit(fail_code())
        if step % rd_every == 0 and local_rank == 0:
            rl = _redrafter_log(n, a.drafter_top_k, step / last_logged if last_logged else 1.0, target,
                                _micro_batch_noise(step, amplitude))
            state["log_history"].append(dict(rl, epoch=epoch, step=step))
            _print(str(dict(rl, epoch=_fmt_epoch(epoch))))
        step_loss = sum(v for k, v in _redrafter_log(n, a.drafter_top_k, step / max(1, total - 1),
                                                      target).items() if k.endswith("_loss"))
        loss_acc += step_loss
        loss_sum += step_loss
        if per_step_sleep:
            time.sleep(per_step_sleep)
        done = step + 1
        epoch_after = done / steps_per_epoch
        if log_every and done % log_every == 0 and rank == 0:
            lr = a.learning_rate * 0.5 * (1 + math.cos(math.pi * done / total)) \
                if a.lr_scheduler_type == "cosine" else a.learning_rate * (1 - done / total)
            entry = {"loss": round(loss_acc / log_every, 4), "grad_norm": 1.0 / (1 + done),
                     "learning_rate": lr, "epoch": round(epoch_after, 2)}
            state["log_history"].append(dict(entry, step=done))
            loss_acc = 0.0
            _print(str(entry))
        if save_every and done % save_every == 0 and done < total and rank == 0:
            _save_checkpoint(out, done, state, dcfg, a.save_total_limit)
    if rank == 0:
        if save_every and total > start:
            _save_checkpoint(out, total, state, dcfg, a.save_total_limit)
        runtime = max(time.time() - t0, 1e-3)
        _print(str({"train_runtime": round(runtime, 4),
                    "train_samples_per_second": round(rows * a.num_train_epochs / runtime, 3),
                    "train_steps_per_second": round(total / runtime, 3),
                    "train_loss": round(loss_sum / max(1, total - start), 4), "epoch": round(total / steps_per_epoch, 2)}))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dcfg, indent=2) + "\n")
        (out / "model.safetensors").write_bytes(_drafter_weights(dcfg))
        log(TOOL, f"drafter saved to {out}")
    return 0


def main(argv=None) -> None:
    try:
        args = hf_training_args.parse(argv, prog=os.path.basename(sys.argv[0]) or "train_redrafter.py")
        rc = run(args)
    except (StandinError, hf_training_args.UnusedArgumentsError) as e:
        print(f"Traceback (most recent call last):\n  (stand-in {TOOL})\n{type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(rc)
