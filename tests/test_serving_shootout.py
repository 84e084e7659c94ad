"""`+experiment=serving_shootout`: one model on the pinned engine path and on today's serving stacks, BF16 and FP8,
without and with speculative decoding, every one measured by the same load sweep; stages the entries share
planned once, one report."""
from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import yaml

from launcher.schema import CONF_DIR

SHARED_ONCE = {"download_model": 1, "download_dataset": 1, "calibration_data": 1, "train_drafter": 1,
               "download_draft_model": 1, "quantize_modelopt": 1, "report": 1}


def test_the_dry_run_plans_every_entry_and_each_shared_stage_once(tmp_path):
    result = subprocess.run([sys.executable, "-m", "launcher", "+experiment=serving_shootout", "launcher.dry_run=true",
                             f"cluster.storage_root={tmp_path}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = sorted(p.stem for p in (tmp_path / "experiments" / "serving_shootout" / "scripts").glob("*.sbatch"))
    kinds = collections.Counter(name.split("[")[0] for name in scripts)
    entries = yaml.safe_load((CONF_DIR / "experiment" / "serving_shootout.yaml").read_text())["launcher"]["campaign"]
    assert len(entries) == 16 and kinds["benchmark"] == 16
    assert sorted(n[len("benchmark["):-1] for n in scripts if n.startswith("benchmark[")) == sorted(entries)
    assert {kind: kinds[kind] for kind in SHARED_ONCE} == SHARED_ONCE
    # The engine path's TensorRT checkpoints and engines: one per quantization, one speculative engine per quantization.
    assert (kinds["quantize"], kinds["build_engine"], kinds["convert_drafter"], kinds["build_drafter_engine"]) == \
        (2, 2, 2, 2)


def test_every_entry_is_a_load_sweep_of_its_stack(tmp_path):
    from tests.helpers import plan_for

    plan = plan_for("+experiment=serving_shootout", f"cluster.storage_root={tmp_path}")
    benchmarks = {s.name[len("benchmark["):-1]: s for s in plan.stages.values() if s.kind == "benchmark"}
    for name, stage in benchmarks.items():
        stack = stage.cfg.serving.name
        assert name.startswith(f"shootout_{stack}_{stage.cfg.quantization.name}"), name
        assert stage.commands["client"][2] == "jobs.load_sweep" and "sandbox" not in stage.commands, name
        assert (stage.cfg.drafter.name != "none") == (name.endswith(("_redrafter", "_draft_target"))), name
    assert {s.cfg.serving.name for s in benchmarks.values()} == {"trtllm", "trtllm_pytorch", "vllm", "sglang"}
    # One report reads every entry's benchmark.
    assert set(plan.stages["report"].deps) >= {f"benchmark[{name}]" for name in benchmarks}
