"""Tests of jobs/wandb_log.py: real offline W&B runs, read back from their files with wandb's own reader.

The runs are written offline into a temporary WANDB_DIR with a fake WANDB_API_KEY in the environment (and on the
command line, where wandb's run metadata would record it); the key's value must appear in no file wandb writes.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import run_stage, wandb_log
from launcher.contract import DrafterGate, StageResources, StageSpec
from tests.jobs.test_run_stage import plan, simple_spec

wandb = pytest.importorskip("wandb")

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 hex characters, like a real W&B API key
FAKE_HF_TOKEN = "hf_" + "fakeTokenValue0123456789"  # built, so no token-shaped literal is committed
EXPERIMENT = "exp1"
DRAFTER_METRICS = {"redrafter0_top1": 0.91, "redrafter0_loss": 0.42, "redrafter1_top1": 0.77,
                   "redrafter1_loss": 0.8, "redrafter2_top1": 0.6125, "redrafter2_loss": 1.25}


# --------------------------------------------------------------------------------------------------
# Reading an offline run back: wandb's own reader of the run-<id>.wandb transaction log
# --------------------------------------------------------------------------------------------------
def _set_nested(target: dict, keys, value) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _records_with_core(log: Path) -> list:
    """wandb >= 0.31: wandb-core's record reader, `wandb leet inspect --json` (one JSON record per line)."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    records = []
    for line in out.stdout.splitlines():
        record = json.loads(line)
        kind = record["type"]
        body = record.get(kind, {})
        if kind == "summary":  # {"update": {"a.b": value}}: nested keys are joined with dots
            body = {"update": [(key.split("."), value) for key, value in body.get("update", {}).items()]}
        records.append((kind, body))
    return records


def _records_with_datastore(log: Path, datastore) -> list:
    """wandb <= 0.29: the SDK's DataStore over the log, each record a wandb_internal_pb2.Record protobuf."""
    from google.protobuf.json_format import MessageToDict
    from wandb.proto import wandb_internal_pb2

    store = datastore.DataStore()
    store.open_for_scan(str(log))
    records = []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            body = {"update": [(list(item.nested_key) or [item.key], json.loads(item.value_json))
                               for item in record.summary.update]}
        else:
            body = MessageToDict(getattr(record, kind), preserving_proto_field_name=True)
        records.append((kind, body))
    return records


def read_offline_run(run_dir: Path) -> dict:
    """The records of an offline run, its run record and its final summary."""
    (log,) = Path(run_dir).glob("run-*.wandb")
    try:
        from wandb.sdk.internal import datastore
    except ImportError:
        records = _records_with_core(log)
    else:
        records = _records_with_datastore(log, datastore)
    summary: dict = {}
    for kind, body in records:
        if kind == "summary":
            for keys, value in body["update"]:
                _set_nested(summary, keys, value)
    return {
        "types": [kind for kind, _ in records],
        "run": next(body for kind, body in records if kind == "run"),
        "summary": summary,
        "artifacts": [body for kind, body in records if kind == "artifact"],
        "files": [f["path"] for kind, body in records if kind == "files" for f in body.get("files", [])],
    }


def files_containing(root: Path, needle: str) -> list:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# --------------------------------------------------------------------------------------------------
# Fixtures: a stage job's W&B environment (as launcher.scripts.stage_env sets it), offline
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def storage(tmp_path, monkeypatch):
    root = tmp_path / "storage"
    wandb_root = root / "experiments" / EXPERIMENT / "wandb"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # whatever wandb writes outside WANDB_DIR lands here
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR", "WANDB_DISABLED",
                 "WANDB_RUN_ID", "WANDB_RESUME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_root))
    monkeypatch.setenv("WANDB_PROJECT", "launcher-tests")
    monkeypatch.setenv("WANDB_RUN_GROUP", EXPERIMENT)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    # A secret on the command line is what wandb's run metadata (args) would record.
    monkeypatch.setattr(sys, "argv", ["jobs/run_stage.py", "--api-key", FAKE_KEY, "--token", FAKE_HF_TOKEN])
    return root


def stage_spec(root: Path, kind: str, name: str, monkeypatch) -> StageSpec:
    monkeypatch.setenv("WANDB_NAME", f"{EXPERIMENT}/{name}")
    monkeypatch.setenv("WANDB_JOB_TYPE", kind)
    fingerprint = f"{kind}fp"
    staging = root / "artifacts" / kind / f"{fingerprint}.partial"
    staging.mkdir(parents=True)
    return StageSpec(
        experiment=EXPERIMENT, name=name, kind=kind, fingerprint=fingerprint,
        artifact=str(root / "artifacts" / kind / fingerprint), staging_dir=str(staging), commands={},
        # A secret pasted into a config value is redacted, never logged.
        config={"hf_id": "org/model", "dataset_url": f"https://user:{FAKE_HF_TOKEN}@example.org/data"},
        inputs={}, resources=StageResources(0, 1, 4, 32, 60), secret_env_vars=["HF_TOKEN", "WANDB_API_KEY"],
        drafter=None, benchmark=None, gpu_check=None)


def record(status: str, latency: float, ttft: float) -> dict:
    return {"problem_index": 0, "seed": 0, "status": status, "output_tokens": 100, "e2e_latency_s": latency,
            "ttft_s": ttft, "itl_s": [0.01, 0.02], "answer": "42", "expected_answer": "42"}


FINISHED = [record("finished", 2.0, 0.25), record("finished", 4.0, 0.5), record("finished", 6.0, 0.75)]
SUMMARY = {"num_generations": 4, "num_finished": 3, "total_generation_time_s": 8.0, "batch_throughput_tok_s": 37.5,
           "avg_sample_throughput_tok_s": 12.5, "std_sample_throughput_tok_s": 0.0, "p50_latency_s": 4.0,
           "p90_latency_s": 5.6, "p99_latency_s": 5.96, "avg_ttft_s": 0.5, "mean_itl_s": 0.015,
           "majority_vote_accuracy": 1.0, "requests_per_s": None, "per_problem": [{"problem_index": 0}]}


def write_results(spec: StageSpec) -> None:
    results = {"config": {"model": "m"}, "summary": SUMMARY, "batches": [],
               "records": FINISHED + [record("cancelled", 100.0, 50.0)]}
    (Path(spec.staging_dir) / "results.json").write_text(json.dumps(results))


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------
def test_train_drafter_run_has_final_metrics_and_gate(storage, monkeypatch):
    spec = dataclasses.replace(stage_spec(storage, "train_drafter", "train_drafter", monkeypatch),
                               drafter=DrafterGate(min_top1=0.6, on_low_quality="fail", gate_window=5,
                                                   predict_n_tokens=3))
    # The gated statistic (mean of the last gate_window logged values), its window and spread (jobs.drafter_metrics).
    gate = {"metric": "redrafter2_top1", "statistic": "mean", "value": 0.6125, "window": 5, "min": 0.58, "max": 0.64,
            "std": 0.021, "window_requested": 5, "last": 0.59, "history": [0.5, 0.58, 0.6, 0.64, 0.6125, 0.63, 0.59],
            "source": "train.attempt-1.log"}
    extra = {"drafter_dir": "d", "drafter_metrics": DRAFTER_METRICS, "drafter_gate": gate,
             "drafter_metrics_history_len": 7}
    run_dir = wandb_log.log_stage_results(spec, extra)

    assert run_dir is not None
    run_dir = Path(run_dir)
    wandb_root = storage / "experiments" / EXPERIMENT / "wandb"
    assert run_dir.name.startswith("offline-run-") and wandb_root in run_dir.parents
    run = read_offline_run(run_dir)
    assert run["types"][-1] == "exit"  # finished: the log is complete
    assert run["run"]["display_name"] == f"{EXPERIMENT}/train_drafter/final"
    assert (run["run"]["run_group"], run["run"]["job_type"], run["run"]["project"]) == (
        EXPERIMENT, "train_drafter", "launcher-tests")
    assert run["summary"]["redrafter2_top1"] == pytest.approx(0.6125)
    for key, value in DRAFTER_METRICS.items():
        assert run["summary"][key] == pytest.approx(value), key
    assert run["summary"]["drafter_gate_passed"] is True  # 0.6125 >= this launch's drafter.min_top1=0.6
    assert run["summary"]["drafter_gate_min_top1"] == 0.6 and run["summary"]["drafter_gate_metric"] == "redrafter2_top1"
    for key in ("value", "window", "min", "max", "std", "last"):
        assert run["summary"][f"drafter_gate_{key}"] == pytest.approx(gate[key]), key
    assert "drafter_metrics_history_len" not in run["summary"] and "drafter_gate_history" not in run["summary"]


def test_benchmark_run_has_summary_table_and_histograms(storage, monkeypatch):
    spec = stage_spec(storage, "benchmark", "benchmark[fp8]", monkeypatch)
    write_results(spec)
    run_dir = Path(wandb_log.log_stage_results(spec, {"benchmark_summary": SUMMARY, "server_startup_s": 12.5}))

    run = read_offline_run(run_dir)
    assert run["run"]["display_name"] == f"{EXPERIMENT}/benchmark[fp8]"
    assert run["run"]["job_type"] == "benchmark"
    summary = run["summary"]
    numeric = {k: v for k, v in SUMMARY.items() if isinstance(v, (int, float))}
    for key, value in numeric.items():
        assert summary[key] == pytest.approx(value), key
    assert summary["server_startup_s"] == pytest.approx(12.5)
    assert "per_problem" not in summary and "requests_per_s" not in summary

    # The table: its summary entry names the table file the run wrote.
    table_entry = summary[wandb_log.TABLE_NAME]
    assert table_entry["_type"] == "table-file"
    assert table_entry["path"] in run["files"]
    table = json.loads((run_dir / "files" / table_entry["path"]).read_text())
    assert table["columns"] == ["experiment", "total generation time (s)", "batch throughput (tok/s)",
                                "average sample throughput (tok/s)", "p50 latency (s)", "p90 latency (s)",
                                "p99 latency (s)", "avg TTFT (s)", "accuracy"]
    assert table["data"] == [["fp8", 8.0, 37.5, 12.5, 4.0, 5.6, 5.96, 0.5, 1.0]]

    # Histograms of the finished generations only (the cancelled one's 100 s is left out).
    latency, ttft = summary[wandb_log.LATENCY_HISTOGRAM], summary[wandb_log.TTFT_HISTOGRAM]
    assert latency["_type"] == ttft["_type"] == "histogram"
    assert sum(latency["values"]) == sum(ttft["values"]) == len(FINISHED)
    assert (latency["bins"][0], latency["bins"][-1]) == (pytest.approx(2.0), pytest.approx(6.0))
    assert (ttft["bins"][0], ttft["bins"][-1]) == (pytest.approx(0.25), pytest.approx(0.75))

    # The table's staged copy, which `wandb sync` uploads later from the login node, is on shared storage.
    staged = [c["local_path"] for a in run["artifacts"] for c in a["manifest"]["contents"] if c.get("local_path")]
    assert staged and all(Path(p).is_relative_to(storage / "experiments" / EXPERIMENT / "wandb") for p in staged)
    assert all(Path(p).is_file() for p in staged)


def test_no_secret_and_no_environment_is_written(storage, monkeypatch, tmp_path):
    spec = stage_spec(storage, "benchmark", "benchmark", monkeypatch)
    write_results(spec)
    run_dir = Path(wandb_log.log_stage_results(spec, {"benchmark_summary": SUMMARY}))
    drafter = stage_spec(storage, "train_drafter", "train_drafter", monkeypatch)
    assert wandb_log.log_stage_results(drafter, {"drafter_metrics": DRAFTER_METRICS, "drafter_gate_passed": False})

    assert len(list(storage.rglob("run-*.wandb"))) == 2
    for secret in (FAKE_KEY, FAKE_HF_TOKEN):
        assert files_containing(tmp_path, secret) == []
    run = read_offline_run(run_dir)
    # No system metadata (program, args, host, executable), system metrics, console capture or requirements.
    assert not {"environment", "stats", "output", "output_raw"} & set(run["types"]), run["types"]
    assert not run["run"].get("host")  # else the machine's name, in the run record
    assert not list(run_dir.rglob("wandb-metadata.json")) and not list(run_dir.rglob("requirements.txt"))
    assert not list(run_dir.rglob("output.log")) and not list(run_dir.rglob("*.patch"))
    assert run["run"]["config"]  # the stage's config is there, the secret in it redacted
    assert wandb_log.REDACTED in json.dumps(run["run"]["config"])
    assert [p for p in (tmp_path / "home").rglob("*") if p.is_file()] == []  # nothing outside WANDB_DIR


def test_other_kinds_disabled_or_missing_wandb_log_nothing(storage, monkeypatch, capsys):
    spec = stage_spec(storage, "benchmark", "benchmark", monkeypatch)
    write_results(spec)
    wandb_root = storage / "experiments" / EXPERIMENT / "wandb"

    assert wandb_log.log_stage_results(dataclasses.replace(spec, kind="quantize"), {}) is None
    assert capsys.readouterr().out == ""

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_log.log_stage_results(spec, {"benchmark_summary": SUMMARY}) is None
    assert capsys.readouterr().out.count("\n") == 1

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    assert wandb_log.log_stage_results(spec, {"benchmark_summary": SUMMARY}) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not installed" in out
    assert not wandb_root.exists()


def test_without_wandb_dir_set_runs_go_where_the_launcher_points_it(tmp_path, monkeypatch):
    """WANDB_DIR unset (a job started by hand): the runs go where launcher.scripts.stage_env points WANDB_DIR,
    where `python -m launcher sync` finds them."""
    from launcher.scripts import stage_env
    from launcher.scripts import stage_spec as launcher_stage_spec

    the_plan = plan(tmp_path / "storage", "+experiment=bf16")
    stage = the_plan.stages["benchmark"]
    monkeypatch.delenv("WANDB_DIR", raising=False)
    expected = Path(stage_env(the_plan, stage, tmp_path / "code")["WANDB_DIR"])
    assert wandb_log.wandb_dir(launcher_stage_spec(the_plan, stage)) == expected
    assert expected == tmp_path / "storage" / "experiments" / the_plan.experiment / "wandb"


def test_run_stage_logs_before_the_manifest_is_written(tmp_path, monkeypatch):
    staging, artifact = tmp_path / "benchmark.partial", tmp_path / "benchmark"
    spec = {**simple_spec(tmp_path, "benchmark", name="benchmark"), "experiment": EXPERIMENT, "commands": {},
            "artifact": str(artifact), "staging_dir": str(staging)}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    monkeypatch.setattr(run_stage, "run_kind", lambda spec, staging: {"benchmark_summary": SUMMARY})
    calls = []

    def fake_log(spec_arg, extra):
        calls.append((spec_arg.name, extra, (staging / run_stage.MANIFEST).exists(), artifact.exists()))

    monkeypatch.setattr(wandb_log, "log_stage_results", fake_log)
    run_stage.run(str(spec_path))
    assert calls == [("benchmark", {"benchmark_summary": SUMMARY}, False, False)]
    assert (artifact / run_stage.MANIFEST).is_file()


def test_report_run_has_every_table_and_the_charts(storage, monkeypatch):
    spec = stage_spec(storage, "report", "report", monkeypatch)
    staging = Path(spec.staging_dir)
    report = {
        "configurations": [{"name": "bf16", "finished": True}, {"name": "fp8_redrafter", "finished": False}],
        "tables": {"speed": {"title": "Speed", "columns": ["bf16", "fp8_redrafter"], "rows": [
            {"key": "total_generation_time_s", "label": "total generation time (s)",
             "cells": {"bf16": {"value": 144.2, "speedup": 1.0},
                       "fp8_redrafter": {"value": None, "failed_at": "train_drafter"}}}]},
            "drafter": None},
        "charts": ["throughput.png"],
    }
    (staging / "report.json").write_text(json.dumps(report))
    from PIL import Image

    Image.new("RGB", (4, 4)).save(staging / "throughput.png")
    run_dir = Path(wandb_log.log_stage_results(spec, {}))
    run = read_offline_run(run_dir)
    summary = run["summary"]
    assert (summary["configurations"], summary["configurations_finished"]) == (2, 1)
    table = json.loads((run_dir / "files" / summary["report/speed"]["path"]).read_text())
    assert table["columns"] == ["metric", "bf16", "fp8_redrafter"]
    assert table["data"] == [["total generation time (s)", "144.2 (1.00x)", "failed at train_drafter"]]
    assert summary["report/throughput"]["_type"] == "image-file"
    assert "report/drafter" not in summary
