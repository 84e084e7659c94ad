"""`sync`: upload an experiment's offline W&B runs from the login node.

    python -m launcher sync [EXPERIMENT] [--dry-run] [overrides such as cluster=mycluster]

Where compute nodes have no internet the stage jobs log to W&B offline, into
<storage_root>/experiments/<experiment>/wandb/ (launcher.scripts.stage_env). This runs `wandb sync` on every
run there that is not synced yet (wandb leaves a `run-<id>.wandb.synced` marker beside a synced run); wandb
reads WANDB_API_KEY from this shell's environment. With no experiment it acts on the latest one launched on
that storage; --dry-run only lists the runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

from launcher.scripts import ExperimentDir
from launcher.user_config import add_config_dir_argument

RUN_GLOBS = ("offline-run-*", "wandb/offline-run-*")  # wandb puts its runs in <WANDB_DIR>/wandb/


def wandb_dir(storage_root: str, experiment: str) -> Path:
    return ExperimentDir(storage_root, experiment).root / "wandb"


def offline_runs(root: Path) -> List[Path]:
    """The offline run directories (those holding a run-<id>.wandb transaction log) under `root`, oldest first."""
    found = {p for pattern in RUN_GLOBS for p in root.glob(pattern) if p.is_dir() and any(p.glob("*.wandb"))}
    return sorted(found, key=lambda p: (p.name, str(p)))


def is_synced(run_dir: Path) -> bool:
    logs = list(run_dir.glob("*.wandb"))
    return bool(logs) and all(log.with_name(log.name + ".synced").exists() for log in logs)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="[EXPERIMENT]")
    parser.add_argument("--dry-run", action="store_true", help="list the offline runs, sync nothing")
    add_config_dir_argument(parser)
    args, overrides = parser.parse_known_args(argv)
    names = [n for n in args.names if "=" not in n]
    overrides += [n for n in args.names if "=" in n]
    from launcher.status import fail, load_state, storage_root_from

    if len(names) > 1:
        fail("usage: python -m launcher sync [EXPERIMENT] [--dry-run] [overrides]")

    root = storage_root_from(overrides, args.config_dir)
    experiment = names[0] if names else load_state(root, None).experiment
    directory = wandb_dir(root, experiment)
    runs = offline_runs(directory)
    if not runs:
        print(f"nothing to sync: no offline W&B runs of {experiment} under {directory}")
        return 0
    pending = [r for r in runs if not is_synced(r)]
    print(f"{len(runs)} offline W&B run(s) of {experiment} in {directory}, {len(pending)} not synced yet:")
    for run in runs:
        print(f"  {run.relative_to(directory)}{'  (already synced)' if run not in pending else ''}")
    if args.dry_run:
        print("dry run: nothing synced")
        return 0
    if not pending:
        print(f"nothing to sync: every offline run of {experiment} is already synced")
        return 0
    executable = shutil.which("wandb")
    if executable is None:
        fail("the wandb command is not installed here: pip install 'launcher[wandb]'")
    if not os.environ.get("WANDB_API_KEY"):
        print("note: WANDB_API_KEY is not set; wandb uses its stored login, if any")
    # The jobs' WANDB_MODE=offline must not leak into the upload, should this shell have it.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    result = subprocess.run([executable, "sync", *map(str, pending)], env=env)
    if result.returncode:
        print(f"wandb sync failed (exit code {result.returncode}); runs not marked synced are retried next time")
        return result.returncode
    print(f"synced {len(pending)} run(s) of {experiment}:")
    for run in pending:
        print(f"  {run.relative_to(directory)}")
    return 0
