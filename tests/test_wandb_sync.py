"""Tests of `python -m launcher sync` (launcher/wandb_sync.py), with a fake `wandb` first on PATH: no network.

The fake records its arguments (and whether WANDB_API_KEY reached it, never the value) and, like the real
`wandb sync`, leaves a `.wandb.synced` marker beside each log it was given.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import wandb_sync
from launcher.contract import ExperimentState, StageResources, StageSpec

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "exp1"
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"
FAKE_WANDB = """#!/bin/sh
log="$FAKE_WANDB_LOG"
echo "argv: $*" >> "$log"
if [ -n "$WANDB_API_KEY" ]; then echo "WANDB_API_KEY: set" >> "$log"; fi
if [ -n "$WANDB_MODE" ]; then echo "WANDB_MODE: $WANDB_MODE" >> "$log"; fi
shift
for run in "$@"; do for f in "$run"/*.wandb; do touch "$f.synced"; done; done
exit "${FAKE_WANDB_EXIT:-0}"
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "wandb"
    fake.write_text(FAKE_WANDB)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_WANDB_LOG", str(tmp_path / "wandb_calls.log"))
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")  # as a login shell that sourced the jobs' environment might
    monkeypatch.delenv("FAKE_WANDB_EXIT", raising=False)
    return tmp_path


def storage_override(tmp_path: Path) -> str:
    return f"cluster.storage_root={tmp_path / 'storage'}"


def experiment_wandb_dir(tmp_path: Path, experiment: str = EXPERIMENT) -> Path:
    return tmp_path / "storage" / "experiments" / experiment / "wandb"


def make_run(tmp_path: Path, name: str, synced: bool = False, experiment: str = EXPERIMENT) -> Path:
    """A run directory as wandb lays it out under WANDB_DIR: <WANDB_DIR>/wandb/<name>/run-<id>.wandb."""
    run = experiment_wandb_dir(tmp_path, experiment) / "wandb" / name
    (run / "files").mkdir(parents=True)
    log = run / f"run-{name.rsplit('-', 1)[-1]}.wandb"
    log.write_bytes(b":W&B")
    if synced:
        log.with_name(log.name + ".synced").touch()
    return run


def calls(tmp_path: Path) -> list:
    log = tmp_path / "wandb_calls.log"
    return log.read_text().splitlines() if log.is_file() else []


def test_dry_run_lists_offline_runs_and_syncs_nothing(env, capsys):
    old = make_run(env, "offline-run-20260101_000000-aaaa1111", synced=True)
    new = make_run(env, "offline-run-20260102_000000-bbbb2222")
    make_run(env, "run-20260103_000000-cccc3333")  # an online run: nothing to sync
    (experiment_wandb_dir(env) / "wandb" / "offline-run-20260104_000000-empty").mkdir()  # no log: not a run

    assert wandb_sync.main([EXPERIMENT, "--dry-run", storage_override(env)]) == 0
    out = capsys.readouterr().out
    assert f"2 offline W&B run(s) of {EXPERIMENT}" in out and "1 not synced yet" in out
    assert f"wandb/{old.name}  (already synced)" in out
    assert f"wandb/{new.name}\n" in out
    assert "cccc3333" not in out and "empty" not in out
    assert "dry run: nothing synced" in out
    assert calls(env) == []


def test_sync_runs_wandb_sync_on_the_unsynced_runs(env, capsys):
    make_run(env, "offline-run-20260101_000000-aaaa1111", synced=True)
    first = make_run(env, "offline-run-20260102_000000-bbbb2222")
    second = make_run(env, "offline-run-20260102_010000-dddd4444")
    make_run(env, "offline-run-20260102_000000-eeee5555", experiment="other")  # another experiment's run

    assert wandb_sync.main([EXPERIMENT, storage_override(env)]) == 0
    out = capsys.readouterr().out
    assert calls(env) == [f"argv: sync {first} {second}", "WANDB_API_KEY: set"]  # no WANDB_MODE=offline
    assert f"synced 2 run(s) of {EXPERIMENT}" in out
    assert FAKE_KEY not in out

    # Marked synced by wandb: a second sync has nothing to do.
    assert wandb_sync.main([EXPERIMENT, storage_override(env)]) == 0
    assert "nothing to sync: every offline run of exp1 is already synced" in capsys.readouterr().out
    assert len(calls(env)) == 2


def test_nothing_to_sync_message(env, capsys):
    assert wandb_sync.main([EXPERIMENT, storage_override(env)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"nothing to sync: no offline W&B runs of {EXPERIMENT} under ")
    assert str(experiment_wandb_dir(env)) in out
    assert calls(env) == []


def test_failed_wandb_sync_is_reported(env, capsys, monkeypatch):
    make_run(env, "offline-run-20260102_000000-bbbb2222")
    monkeypatch.setenv("FAKE_WANDB_EXIT", "3")
    assert wandb_sync.main([EXPERIMENT, storage_override(env)]) == 3
    assert "wandb sync failed (exit code 3)" in capsys.readouterr().out


def test_latest_experiment_and_the_subcommand(env):
    """`python -m launcher sync` is registered; with no experiment it takes the latest launched one."""
    run = make_run(env, "offline-run-20260102_000000-bbbb2222")
    experiments = env / "storage" / "experiments"
    (experiments / "LATEST").write_text(EXPERIMENT)
    ExperimentState(experiment=EXPERIMENT, executor="slurm", storage_root=str(env / "storage"), code="",
                    submitted_at=0, stages={}, umask="027").write(experiments / EXPERIMENT / "state.json")
    out = subprocess.run([sys.executable, "-m", "launcher", "sync", "--dry-run", storage_override(env)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"wandb/{run.name}" in out.stdout and "dry run: nothing synced" in out.stdout


def test_lists_a_real_offline_run(env, monkeypatch, capsys):
    """The layout the finder expects is the one jobs.wandb_log's real offline runs have."""
    pytest.importorskip("wandb")
    from jobs import wandb_log

    root = env / "storage"
    staging = root / "artifacts" / "train_drafter" / "fp.partial"
    staging.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(env / "home"))
    monkeypatch.setenv("WANDB_DIR", str(experiment_wandb_dir(env)))
    spec = StageSpec(experiment=EXPERIMENT, name="train_drafter", kind="train_drafter", fingerprint="fp",
                     artifact=str(root / "artifacts" / "train_drafter" / "fp"), staging_dir=str(staging), commands={},
                     config={}, inputs={}, resources=StageResources(0, 1, 4, 32, 60), secret_env_vars=[], drafter=None,
                     benchmark=None, gpu_check=None)
    run_dir = wandb_log.log_stage_results(spec, {"drafter_metrics": {"redrafter0_top1": 0.5}})
    assert run_dir
    assert wandb_sync.offline_runs(experiment_wandb_dir(env)) == [Path(run_dir)]
    assert wandb_sync.main([EXPERIMENT, storage_override(env)]) == 0
    assert calls(env)[0] == f"argv: sync {run_dir}"
