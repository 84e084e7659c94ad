"""Tests of jobs/report.py on a fake storage: the seeds' three configurations (their published numbers), a sweep
point that failed at train_drafter, and the Slurm accounting of the experiment's jobs; seed 004's four
configurations (results from jobs.triton_benchmark's table on fixed timings, engine sizes, smoke answers); load
sweeps (jobs.load_sweep's results from a captured AIPerf export) with their curves, Pareto front and W&B run.

Every expected number below is computed by hand from the fixture's values, not by the code under test.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from jobs import report
from launcher.contract import Manifest, ReportInputs, ReportStage

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "fp8_redrafter-sweep-2026-11-21_23-20-05"
FAILED = "fp8_redrafter.num_layers=1"
GIB = 2 ** 30
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The seeds' table (2x H100): total generation time (s), batch throughput, average sample throughput (tok/s).
SEEDS = {"bf16": (144.2, 346.0, 34.6), "fp8": (64.7, 751.7, 75.2), "fp8_redrafter": (30.5, 1385.4, 138.5)}
LATENCY = {  # avg, p50, p90, p99 latency; avg, p50, p90, p99 TTFT; requests/s; output tokens/s
    "bf16": (120.5, 118.25, 140.0, 143.9, 0.412, 0.400, 0.500, 0.650, 0.0693, 400.1),
    "fp8": (55.0, 54.5, 62.0, 64.5, 0.210, 0.200, 0.300, 0.333, 0.1546, 850.2),
    "fp8_redrafter": (26.0, 25.5, 29.0, 30.4, 0.150, 0.140, 0.200, 0.222, 0.3279, 1500.9),
}
CHAINS = {  # stage name (kind[label]) per configuration, in dependency order
    "bf16": ["download_model", "quantize[qformat=full_prec]", "build_engine[qformat=full_prec]", "benchmark[bf16]"],
    "fp8": ["download_model", "download_dataset", "calibration_data", "quantize[qformat=fp8]",
            "build_engine[qformat=fp8]", "benchmark[fp8]"],
    "fp8_redrafter": ["download_model", "download_dataset", "calibration_data", "quantize[qformat=fp8]",
                      "train_drafter[num_layers=2]", "convert_drafter[num_layers=2]",
                      "build_drafter_engine[num_layers=2]", "benchmark[fp8_redrafter]"],
    FAILED: ["download_model", "download_dataset", "calibration_data", "quantize[qformat=fp8]",
             "train_drafter[num_layers=1]", "convert_drafter[num_layers=1]", "build_drafter_engine[num_layers=1]",
             f"benchmark[{FAILED}]"],
}
# Complete stages: wall-clock seconds between the manifest's started and ended, and the job that published it.
PUBLISHED = {
    "download_model": (1764, "101"), "download_dataset": (864, "102"), "calibration_data": (564, "103"),
    "quantize[qformat=full_prec]": (864, "42"),  # built by an earlier experiment's job 42, reused here
    "quantize[qformat=fp8]": (2664, "105"), "build_engine[qformat=full_prec]": (1164, "106"),
    "build_engine[qformat=fp8]": (684, "107"), "train_drafter[num_layers=2]": (7164, "108"),
    "convert_drafter[num_layers=2]": (324, "110"), "build_drafter_engine[num_layers=2]": (1044, "112"),
    "benchmark[bf16]": (1764, "120"), "benchmark[fp8]": (864, "115"), "benchmark[fp8_redrafter]": (504, "116"),
}
ENGINE_BYTES = {"build_engine[qformat=full_prec]": int(29.5 * GIB), "build_engine[qformat=fp8]": int(16.25 * GIB),
                "build_drafter_engine[num_layers=2]": int(19.5 * GIB)}
DRAFTER_METRICS = {"redrafter0_top1": 0.912, "redrafter1_top1": 0.781, "redrafter2_top1": 0.654,
                   "redrafter0_top5": 0.99, "redrafter0_loss": 0.41, "redrafter1_loss": 0.83, "redrafter2_loss": 1.2}
# sacct -X -P -n --format=JobIDRaw,JobName,State,ElapsedRaw,AllocTRES,Start,End
# (stage name, job id, state, elapsed s, GPUs); the experiment's name prefix is added below
ACCOUNTING = [
    ("download_model", "101", "COMPLETED", 1800, 0),
    # download_dataset: no record
    ("calibration_data", "103", "COMPLETED", 600, 0),
    ("quantize[qformat=fp8]", "105", "COMPLETED", 2700, 2),
    ("build_engine[qformat=full_prec]", "106", "COMPLETED", 1200, 1),
    ("build_engine[qformat=fp8]", "107", "COMPLETED", 720, 1),
    ("train_drafter[num_layers=2]", "108", "COMPLETED", 7200, 2),
    ("train_drafter[num_layers=1]", "109", "FAILED", 5400, 2),
    ("convert_drafter[num_layers=2]", "110", "COMPLETED", 360, 1),
    ("convert_drafter[num_layers=1]", "111", "CANCELLED by 0", 0, 1),
    ("build_drafter_engine[num_layers=2]", "112", "COMPLETED", 1080, 1),
    ("build_drafter_engine[num_layers=1]", "113", "CANCELLED by 0", 0, 1),
    ("benchmark[bf16]", "114", "FAILED", 600, 2),  # first attempt
    ("benchmark[fp8]", "115", "COMPLETED", 900, 2),
    ("benchmark[fp8_redrafter]", "116", "COMPLETED", 540, 2),
    (f"benchmark[{FAILED}]", "117", "CANCELLED by 0", 0, 2),
    ("benchmark[bf16]", "120", "COMPLETED", 1800, 2),  # the attempt that published it
    ("report", "121", "RUNNING", 5, 0),  # the report job itself: not a stage of the inputs
]
EARLIER, DAY = "launcher:fp8-2026-11-20_10-00-00", "2026-11-20T"
OTHER_JOBS = [  # job 42 published an artifact reused here; job 90 is unrelated
    f"42|{EARLIER}:quantize[qformat=full_prec]|COMPLETED|900|cpu=8,gres/gpu=2,mem=64G|{DAY}10:00:00|{DAY}10:15:00",
    f"90|{EARLIER}:quantize[qformat=fp8]|COMPLETED|3600|cpu=8,gres/gpu=2,mem=64G|{DAY}10:00:00|{DAY}11:00:00",
]
# Hand-computed GPU-hours = GPUs x ElapsedRaw / 3600
GPU_HOURS = {
    "download_model": [0.0], "calibration_data": [0.0], "quantize[qformat=full_prec]": [0.5],
    "quantize[qformat=fp8]": [1.5], "build_engine[qformat=full_prec]": [1 / 3], "build_engine[qformat=fp8]": [0.2],
    "train_drafter[num_layers=2]": [4.0], "train_drafter[num_layers=1]": [3.0],
    "convert_drafter[num_layers=2]": [0.1], "convert_drafter[num_layers=1]": [0.0],
    "build_drafter_engine[num_layers=2]": [0.3], "build_drafter_engine[num_layers=1]": [0.0],
    "benchmark[bf16]": [1 / 3, 1.0], "benchmark[fp8]": [0.5], "benchmark[fp8_redrafter]": [0.3],
    f"benchmark[{FAILED}]": [0.0],
}
TOTAL_GPU_HOURS = 43440 / 3600  # 12.07: the sum of GPUs x seconds over the rows above
TOTAL_WALL_HOURS = 20232 / 3600  # 5.62: the sum of PUBLISHED's wall-clock seconds


# --------------------------------------------------------------------------------------------------
# The fake storage
# --------------------------------------------------------------------------------------------------
def summary(name: str) -> dict:
    time_s, batch, sample = SEEDS[name]
    lat = dict(zip(["avg_latency_s", "p50_latency_s", "p90_latency_s", "p99_latency_s", "avg_ttft_s", "p50_ttft_s",
                    "p90_ttft_s", "p99_ttft_s", "requests_per_s", "output_tokens_per_s"], LATENCY[name]))
    return {"num_generations": 12, "num_finished": 10, "num_cancelled": 2, "num_errors": 0,
            "total_generation_time_s": time_s, "batch_throughput_tok_s": batch, "avg_sample_throughput_tok_s": sample,
            "majority_vote_accuracy": 1.0, **lat,
            "avg_input_tokens": 799.66, "avg_output_tokens": 41.49, "avg_inflight_requests": 53.86}  # seed 004's


def artifact_of(root: Path, stage: str) -> Path:
    kind = stage.split("[")[0]
    return root / "artifacts" / kind / (stage.replace("[", "-").replace("]", "").replace("=", "-") or kind)


def gpus_of(name: str, cc: float, count: int = 2) -> list:
    """A manifest's `gpus`, as jobs.gpu_check records them."""
    return [{"index": i, "uuid": f"GPU-{i}", "name": name, "compute_capability": cc, "memory_mib": 81559}
            for i in range(count)]


def publish(root: Path, stage: str, job_id: str, wall_s: float = 60.0, outputs=None, files=None,
            results=None) -> Path:
    """A complete artifact of `stage` (`kind[label]`), as jobs.run_stage publishes it: its files listed with their
    sizes in the manifest, the stage kind's `outputs` beside them; `results`: a benchmark's results.json."""
    artifact = artifact_of(root, stage)
    artifact.mkdir(parents=True)
    files = files or {"data.bin": 1234}
    if results is not None:
        (artifact / "results.json").write_text(json.dumps(results))
    Manifest(stage=stage.split("[")[0], name=stage, experiment=EXPERIMENT, fingerprint=artifact.name, config={},
             inputs={}, job_id=job_id, restart_count=0, started=1_763_765_000.0, ended=1_763_765_000.0 + wall_s,
             size_bytes=sum(files.values()), versions={}, files=files, outputs=outputs or {}
             ).write(artifact / "manifest.json")
    return artifact


def write_inputs(root: Path, chains: dict, baseline: str) -> Path:
    """The INPUTS.json the launcher would write: each configuration's chain of stages, in display order."""
    inputs = ReportInputs(experiment=EXPERIMENT, baseline=baseline, variants={
        name: [ReportStage(kind=s.split("[")[0], name=s, artifact=str(artifact_of(root, s))) for s in chain]
        for name, chain in chains.items()})
    path = root / "report_inputs.json"
    inputs.write(path)
    return path


def make_storage(root: Path, configurations=tuple(CHAINS), published=tuple(PUBLISHED), baseline=None,
                 benchmark_gpus=None) -> Path:
    """Manifests (and results) of the `published` stages; returns the INPUTS.json the launcher would write.
    `benchmark_gpus`: {configuration: the GPUs its benchmark's manifest records}."""
    for stage in published:
        wall_s, job_id = PUBLISHED[stage]
        outputs, files, results = {}, None, None
        if stage in ENGINE_BYTES:  # as run_stage publishes an engine: its files in the manifest, the engine's size
            outputs["engine_size_bytes"] = ENGINE_BYTES[stage] - 1000
            files = {"rank0.engine": ENGINE_BYTES[stage] - 1000, "config.json": 1000}
        if stage.startswith("train_drafter"):
            outputs.update(drafter_metrics=DRAFTER_METRICS, drafter_gate_passed=True)
        if stage.startswith("benchmark"):
            name = stage[len("benchmark["):-1]
            results = {"config": {"model": name}, "summary": summary(name), "batches": [], "records": []}
            if benchmark_gpus and name in benchmark_gpus:
                outputs["gpus"] = benchmark_gpus[name]
        publish(root, stage, job_id, wall_s, outputs, files, results)
    return write_inputs(root, {name: CHAINS[name] for name in configurations}, baseline or configurations[0])


def write_accounting(root: Path, rows=ACCOUNTING, other=OTHER_JOBS) -> Path:
    lines = [f"{job}|launcher:{EXPERIMENT}:{stage}|{state}|{elapsed}|billing=4,cpu=4,gres/gpu={gpus},mem=32G,node=1"
             f"|2026-11-21T23:20:10|2026-11-22T00:20:10" for stage, job, state, elapsed, gpus in rows]
    path = root / "accounting.psv"
    path.write_text("\n".join([*lines, *other]) + "\n")
    return path


def run_report(root: Path, inputs: Path, accounting: Path | None = None, charts: bool = False) -> tuple:
    """report.main in this process; without `charts`, the charts (tested on the standard run) are not drawn."""
    out, exp = root / "out", root / "experiments" / EXPERIMENT
    argv = ["--inputs", str(inputs), "--output_dir", str(out), "--experiment_dir", str(exp)]
    with mock.patch.object(report, "write_charts", report.write_charts if charts else lambda *_: []):
        code = report.main(argv + (["--accounting", str(accounting)] if accounting else []))
    return code, out, exp


def table_row(markdown: str, label: str) -> list:
    """The cells after the label of the markdown table row that starts with `label` (one such row expected)."""
    found = [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]
    assert len(found) == 1, (label, found)
    return [cell.strip() for cell in found[0].strip().strip("|").split(" | ")][1:]


def section(markdown: str, title: str) -> str:
    """From the heading `title` (## or ###) to the next heading."""
    return markdown.split(f"## {title}", 1)[1].split("\n#", 1)[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The standard run: 3 finished configurations, one failed at train_drafter, accounting available."""
    root = tmp_path_factory.mktemp("storage")
    inputs = make_storage(root)
    code, out, exp = run_report(root, inputs, write_accounting(root), charts=True)
    return {"code": code, "out": out, "exp": exp, "md": (out / "report.md").read_text(),
            "json": json.loads((out / "report.json").read_text())}


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def test_seeds_table_has_the_values_and_speedups_against_bf16(sweep):
    md = section(sweep["md"], "Speed")
    assert table_row(md, "metric") == ["bf16", "fp8", "fp8_redrafter", FAILED]
    # time: baseline / value (144.2/64.7 = 2.229, 144.2/30.5 = 4.728); throughputs: value / baseline
    assert table_row(md, "total generation time (s)") == [
        "144.2 (1.00x)", "64.7 (2.23x)", "30.5 (4.73x)", "failed at train_drafter"]
    assert table_row(md, "batch throughput (tok/s)") == [  # 751.7/346 = 2.173, 1385.4/346 = 4.004
        "346.0 (1.00x)", "751.7 (2.17x)", "1385.4 (4.00x)", "failed at train_drafter"]
    assert table_row(md, "average sample throughput (tok/s)") == [  # 75.2/34.6 = 2.173, 138.5/34.6 = 4.003
        "34.6 (1.00x)", "75.2 (2.17x)", "138.5 (4.00x)", "failed at train_drafter"]
    assert "Speed-ups are against `bf16`." in sweep["md"]
    assert "3 of 4 configuration(s) finished" in sweep["md"]


def test_report_json_holds_the_same_numbers(sweep):
    data = sweep["json"]
    assert data["baseline"] == "bf16" and data["complete"] is False
    time_row, = [r for r in data["tables"]["speed"]["rows"] if r["key"] == "total_generation_time_s"]
    assert time_row["cells"]["fp8_redrafter"]["value"] == 30.5
    assert time_row["cells"]["fp8_redrafter"]["speedup"] == pytest.approx(144.2 / 30.5)
    assert time_row["cells"][FAILED] == {"value": None, "failed_at": "train_drafter"}
    failed, = [c for c in data["configurations"] if not c["finished"]]
    assert failed["name"] == FAILED and failed["failed_at"]["name"] == "train_drafter[num_layers=1]"
    assert failed["failed_at"]["artifact"] == str(artifact_of(sweep["out"].parent, "train_drafter[num_layers=1]"))


def test_latency_table_shows_every_percentile_and_the_failure(sweep):
    md = section(sweep["md"], "Latency")
    assert table_row(md, "avg latency (s)") == ["120.50", "55.00", "26.00", "failed at train_drafter"]
    assert table_row(md, "p50 latency (s)") == ["118.25", "54.50", "25.50", "failed at train_drafter"]
    assert table_row(md, "p99 latency (s)") == ["143.90", "64.50", "30.40", "failed at train_drafter"]
    assert table_row(md, "p90 TTFT (s)") == ["0.500", "0.300", "0.200", "failed at train_drafter"]
    assert table_row(md, "requests/s") == ["0.069", "0.155", "0.328", "failed at train_drafter"]
    assert table_row(md, "output tokens/s") == ["400.1", "850.2", "1500.9", "failed at train_drafter"]
    assert table_row(md, "accuracy (majority vote)") == ["100.0%", "100.0%", "100.0%", "failed at train_drafter"]
    # The rest of seed 004's table (Triton's identity_test): per-request tokens and requests in flight.
    assert table_row(md, "avg input tokens per request") == ["799.7", "799.7", "799.7", "failed at train_drafter"]
    assert table_row(md, "avg output tokens per request") == ["41.5", "41.5", "41.5", "failed at train_drafter"]
    assert table_row(md, "avg in-flight requests") == ["53.86", "53.86", "53.86", "failed at train_drafter"]


def test_accuracy_row_only_when_some_accuracy_is_known(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "summary",
                        lambda name, real=summary: {**real(name), "majority_vote_accuracy": None})
    code, out, _ = run_report(tmp_path, make_storage(tmp_path, configurations=("bf16", "fp8")))
    assert code == report.REPORT_COMPLETE
    assert "majority vote" not in (out / "report.md").read_text()


def test_drafter_table_lists_every_final_top1_and_the_gate(sweep):
    md = section(sweep["md"], "Drafter")
    assert table_row(md, "metric") == ["fp8_redrafter", FAILED]  # only the configurations with a drafter
    assert table_row(md, "redrafter0_top1 (final)") == ["0.912", "failed at train_drafter"]
    assert table_row(md, "redrafter1_top1 (final)") == ["0.781", "failed at train_drafter"]
    assert table_row(md, "redrafter2_top1 (final)") == ["0.654", "failed at train_drafter"]
    assert table_row(md, "quality gate") == ["passed", "failed at train_drafter"]
    assert "top5" not in md and "loss" not in md


def test_a_drafter_below_the_gate_says_so(tmp_path):
    inputs = make_storage(tmp_path, configurations=("fp8_redrafter",))
    manifest = artifact_of(tmp_path, "train_drafter[num_layers=2]") / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "drafter_gate_passed": False}))
    code, out, _ = run_report(tmp_path, inputs)
    assert code == report.REPORT_COMPLETE
    assert table_row((out / "report.md").read_text(), "quality gate") == ["below the gate"]


def test_the_gate_shown_is_the_one_convert_drafter_took(tmp_path):
    # The gate is a decision taken where the drafter is used: convert_drafter's manifest records it.
    inputs = make_storage(tmp_path, configurations=("fp8_redrafter",))
    train = artifact_of(tmp_path, "train_drafter[num_layers=2]") / "manifest.json"
    train.write_text(json.dumps({k: v for k, v in json.loads(train.read_text()).items() if k != "drafter_gate_passed"}))
    convert = artifact_of(tmp_path, "convert_drafter[num_layers=2]") / "manifest.json"
    convert.write_text(json.dumps({**json.loads(convert.read_text()), "drafter_gate_passed": False}))
    code, out, _ = run_report(tmp_path, inputs)
    assert table_row((out / "report.md").read_text(), "quality gate") == ["below the gate"]


def test_engine_sizes_on_disk_in_gib_and_their_ratio_to_the_baseline(sweep):
    md = section(sweep["md"], "Engine sizes")
    # Every file of the artifact (engine and config.json); ratios to bf16's 29.5: 16.25/29.5 = 0.551, 19.5/29.5 = 0.661
    assert table_row(md, "engine on disk (GiB)") == ["29.50 (1.00x)", "16.25 (0.55x)", "—", "—"]
    assert table_row(md, "engine with drafter on disk (GiB)") == ["—", "—", "19.50 (0.66x)", "failed at train_drafter"]
    assert "the ratio to `bf16`'s engine" in md


def test_the_failed_configuration_is_in_every_table(sweep):
    for key, table in sweep["json"]["tables"].items():
        assert FAILED in table["columns"], key
        if key != "gpu_hours":  # there: the hours it spent before failing
            assert any(row["cells"][FAILED].get("failed_at") == "train_drafter" for row in table["rows"]), key
    assert f"`{FAILED}`: **failed at train_drafter** (stage `train_drafter[num_layers=1]`" in sweep["md"]


def test_a_benchmark_without_results_fails_at_benchmark(tmp_path):
    inputs = make_storage(tmp_path, configurations=("bf16", "fp8"))
    (artifact_of(tmp_path, "benchmark[fp8]") / "results.json").unlink()
    code, out, _ = run_report(tmp_path, inputs)
    assert code == report.REPORT_INCOMPLETE
    assert table_row((out / "report.md").read_text(), "batch throughput (tok/s)") == [
        "346.0 (1.00x)", "failed at benchmark"]


def test_speedups_against_the_named_baseline_wherever_it_is(tmp_path):
    code, out, _ = run_report(tmp_path, make_storage(tmp_path, configurations=("bf16", "fp8"), baseline="fp8"))
    md = (out / "report.md").read_text()
    assert "Speed-ups are against `fp8`." in md
    assert table_row(md, "total generation time (s)") == ["144.2 (0.45x)", "64.7 (1.00x)"]  # 64.7/144.2 = 0.449


def test_speedups_against_the_first_finished_when_the_baseline_failed(tmp_path):
    published = [s for s in PUBLISHED if s != "benchmark[bf16]"]
    code, out, _ = run_report(tmp_path, make_storage(tmp_path, configurations=("bf16", "fp8", "fp8_redrafter"),
                                                     published=published))
    md = (out / "report.md").read_text()
    assert code == report.REPORT_INCOMPLETE
    assert "Speed-ups are against `fp8`: the baseline `bf16` did not finish." in md
    assert table_row(md, "total generation time (s)") == [  # 64.7/30.5 = 2.121
        "failed at benchmark", "64.7 (1.00x)", "30.5 (2.12x)"]
    assert json.loads((out / "report.json").read_text())["baseline"] == "fp8"


# --------------------------------------------------------------------------------------------------
# GPU-hours
# --------------------------------------------------------------------------------------------------
def test_gpu_hours_per_stage_from_accounting(sweep):
    usage = sweep["json"]["gpu_usage"]
    assert usage["source"] == "accounting"
    found = {}
    for row in usage["stages"]:
        if row["gpu_hours"] is not None:
            found.setdefault(row["stage"], []).append(row["gpu_hours"])
    assert found.keys() == GPU_HOURS.keys()
    for stage, hours in GPU_HOURS.items():
        assert found[stage] == pytest.approx(hours), stage
    assert usage["total_gpu_hours"] == pytest.approx(TOTAL_GPU_HOURS)
    names = [row["stage"] for row in usage["stages"]]
    assert names.count("download_model") == 1 and names.count("quantize[qformat=fp8]") == 1  # shared: once
    assert "report" not in names


def test_gpu_hours_markdown_rows(sweep):
    md = section(sweep["md"], "GPU-hours per stage")
    assert table_row(md, "stage") == ["job id", "state", "GPUs", "elapsed (h)", "GPU-hours"]
    assert table_row(md, "train_drafter[num_layers=2]") == ["108", "COMPLETED", "2", "2.00", "4.00"]
    assert table_row(md, "train_drafter[num_layers=1]") == ["109", "FAILED", "2", "1.50", "3.00"]
    assert table_row(md, "quantize[qformat=full_prec]") == ["42", "COMPLETED", "2", "0.25", "0.50"]  # by job id
    assert table_row(md, "download_dataset") == ["102", "no accounting record", "—", "—", "—"]
    bf16_attempts = [line for line in md.splitlines() if line.startswith("| benchmark[bf16] |")]
    assert bf16_attempts == ["| benchmark[bf16] | 114 | FAILED | 2 | 0.17 | 0.33 |",
                             "| benchmark[bf16] | 120 | COMPLETED | 2 | 0.50 | 1.00 |"]
    assert table_row(md, "**total**")[-1] == "12.07"
    assert "| 90 |" not in md  # another experiment's job


def test_wall_clock_hours_from_manifests_without_accounting(tmp_path):
    code, out, _ = run_report(tmp_path, make_storage(tmp_path))
    md = (out / "report.md").read_text()
    usage = json.loads((out / "report.json").read_text())["gpu_usage"]
    assert code == report.REPORT_INCOMPLETE
    assert usage["source"] == "manifests" and usage["total_gpu_hours"] is None
    assert usage["total_hours"] == pytest.approx(TOTAL_WALL_HOURS)
    assert "accounting unavailable: wall-clock hours from manifests" in md
    gpu_md = section(md, "GPU-hours per stage")
    assert table_row(gpu_md, "stage")[3] == "wall-clock (h)"
    assert table_row(gpu_md, "train_drafter[num_layers=2]") == ["108", "complete", "unknown", "1.99", "unknown"]
    assert table_row(gpu_md, "train_drafter[num_layers=1]") == ["—", "incomplete", "unknown", "—", "unknown"]
    assert table_row(gpu_md, "**total**")[-2:] == ["5.62", "unknown"]


def test_missing_empty_or_foreign_accounting_falls_back_to_manifests(tmp_path):
    inputs = make_storage(tmp_path)
    (tmp_path / "empty.psv").write_text("\n")  # what `sacct ... > accounting.psv || true` leaves when sacct fails
    for absent in ("absent.psv", "empty.psv"):
        code, out, _ = run_report(tmp_path, inputs, tmp_path / absent)
        assert json.loads((out / "report.json").read_text())["gpu_usage"]["source"] == "manifests"
        assert "accounting unavailable: wall-clock hours from manifests" in (out / "report.md").read_text()
    foreign = write_accounting(tmp_path, rows=[], other=OTHER_JOBS[1:])
    code, out, _ = run_report(tmp_path, inputs, foreign)
    assert "accounting has no record of this experiment's jobs" in (out / "report.md").read_text()


def test_gpu_count_of_alloc_tres():
    assert report.gpu_count("billing=4,cpu=4,gres/gpu=2,mem=32G,node=1") == 2
    assert report.gpu_count("cpu=4,gres/gpu:h100=4,mem=32G") == 4
    assert report.gpu_count("cpu=4,gres/gpu=8,gres/gpu:h100=8") == 8
    assert report.gpu_count("billing=1,cpu=1,mem=4G,node=1") == 0
    assert report.gpu_count("") == 0


# --------------------------------------------------------------------------------------------------
# Charts, files and exit codes
# --------------------------------------------------------------------------------------------------
def test_charts_are_valid_pngs_in_both_directories(sweep):
    from PIL import Image

    names = ["throughput.png", "generation_time.png", "latency.png"]
    assert sweep["json"]["charts"] == names
    for directory in (sweep["out"], sweep["exp"]):
        for name in names:
            path = directory / name
            assert path.read_bytes()[:8] == PNG_MAGIC, path
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400
        assert (directory / "report.md").read_text() == sweep["md"]
        assert json.loads((directory / "report.json").read_text()) == sweep["json"]
    for name in names:
        assert f"]({name})" in sweep["md"]


def test_without_matplotlib_the_tables_are_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import raise ImportError
    code, out, _ = run_report(tmp_path, make_storage(tmp_path, configurations=("bf16", "fp8")), charts=True)
    md = (out / "report.md").read_text()
    assert code == report.REPORT_COMPLETE
    assert "charts skipped" in md and ".png" not in md and not list(out.glob("*.png"))
    assert table_row(md, "total generation time (s)") == ["144.2 (1.00x)", "64.7 (2.23x)"]


def test_exit_code_3_when_some_configuration_failed(sweep):
    assert sweep["code"] == report.REPORT_INCOMPLETE == 3


def test_exit_code_0_when_every_configuration_finished(tmp_path):
    inputs = make_storage(tmp_path, configurations=("bf16", "fp8", "fp8_redrafter"))
    code, out, _ = run_report(tmp_path, inputs, write_accounting(tmp_path))
    assert code == report.REPORT_COMPLETE == 0
    assert json.loads((out / "report.json").read_text())["complete"] is True


def test_the_command_line_exit_code_is_what_run_stage_expects(tmp_path):
    from jobs.run_stage import REPORT_INCOMPLETE

    inputs = make_storage(tmp_path)
    result = subprocess.run([sys.executable, "-m", "jobs.report", "--inputs", str(inputs), "--output_dir",
                             str(tmp_path / "out"), "--experiment_dir", str(tmp_path / "exp")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == REPORT_INCOMPLETE, result.stderr
    assert "failed at train_drafter" in result.stdout and (tmp_path / "exp" / "report.md").is_file()


@pytest.mark.parametrize("problem", ["missing", "not json", "no benchmark", "unknown baseline", "bad accounting"])
def test_exit_code_1_on_bad_input(tmp_path, problem):
    inputs = make_storage(tmp_path, configurations=("bf16",))
    data = json.loads(inputs.read_text())
    accounting = None
    if problem == "missing":
        inputs.unlink()
    elif problem == "not json":
        inputs.write_text("{not json")
    elif problem == "no benchmark":
        data["variants"]["bf16"] = [s for s in data["variants"]["bf16"] if s["kind"] != "benchmark"]
        inputs.write_text(json.dumps(data))
    elif problem == "unknown baseline":
        inputs.write_text(json.dumps({**data, "baseline": "fp16"}))
    else:
        accounting = tmp_path / "accounting.psv"
        accounting.write_text(f"101|launcher:{EXPERIMENT}:download_model|COMPLETED|1800\n")  # 4 fields of 7
    code, out, _ = run_report(tmp_path, inputs, accounting)
    assert code == report.BAD_INPUT == 1
    assert not (out / "report.md").exists()


# --------------------------------------------------------------------------------------------------
# The GPUs the benchmarks ran on
# --------------------------------------------------------------------------------------------------
def test_each_configuration_says_what_it_ran_on(tmp_path):
    h100 = gpus_of("NVIDIA H100 80GB HBM3", 9.0)
    inputs = make_storage(tmp_path, configurations=("bf16", "fp8", "fp8_redrafter"),
                          benchmark_gpus={"bf16": h100, "fp8": h100, "fp8_redrafter": h100})
    _, out, _ = run_report(tmp_path, inputs)
    md = (out / "report.md").read_text()
    assert "- `fp8`: finished on 2 x NVIDIA H100 80GB HBM3 (9.0)" in md and "Not like for like" not in md
    assert json.loads((out / "report.json").read_text())["benchmark_gpus"] == ["2 x NVIDIA H100 80GB HBM3 (9.0)"]


def test_benchmarks_on_different_gpus_are_flagged(tmp_path):
    h100, h200 = gpus_of("NVIDIA H100 80GB HBM3", 9.0), gpus_of("NVIDIA H200", 9.0)
    inputs = make_storage(tmp_path, configurations=("bf16", "fp8", "fp8_redrafter"),
                          benchmark_gpus={"bf16": h100, "fp8": h200, "fp8_redrafter": h100})
    _, out, _ = run_report(tmp_path, inputs)
    md = (out / "report.md").read_text()
    assert ("**Not like for like:** the benchmarks ran on different GPUs (2 x NVIDIA H100 80GB HBM3 (9.0); "
            "2 x NVIDIA H200 (9.0)), so speed-ups mix hardware with configuration.") in md
    configurations = json.loads((out / "report.json").read_text())["configurations"]
    assert [c["benchmark_gpus"] for c in configurations] == [
        "2 x NVIDIA H100 80GB HBM3 (9.0)", "2 x NVIDIA H200 (9.0)", "2 x NVIDIA H100 80GB HBM3 (9.0)"]


def test_gpu_hours_per_configuration_count_every_stage_it_needs(sweep):
    md = section(sweep["md"], "GPU-hours per configuration")
    # By hand from ACCOUNTING (GPUs x elapsed), every attempt, a shared stage in each configuration that needs it:
    # bf16 = quantize[full_prec] 0.5 (job 42) + build 1/3 + benchmark 1/3 + 1.0; fp8 = quantize 1.5 + build 0.2 +
    # benchmark 0.5; fp8_redrafter = 1.5 + train 4.0 + convert 0.1 + build 0.3 + benchmark 0.3; the failed one
    # = 1.5 + train 3.0 (FAILED) + the cancelled rest 0.
    assert table_row(md, "GPU-hours, every stage it needs") == ["2.17", "2.20", "6.20", "4.50"]
    assert table_row(md, "GPU-hours, its benchmark") == ["1.33", "0.50", "0.30", "0.00"]
    row, = [r for r in sweep["json"]["tables"]["gpu_hours"]["rows"] if r["key"] == "all_stages"]
    assert row["cells"]["bf16"]["value"] == pytest.approx(0.5 + 1 / 3 + 1 / 3 + 1.0)
    assert row["cells"][FAILED] == {"value": pytest.approx(4.5)}  # spent before it failed


# --------------------------------------------------------------------------------------------------
# Seed 004: its table (jobs.triton_benchmark), engine sizes and the smoke runs' answers
# --------------------------------------------------------------------------------------------------
SEED_004 = {  # configuration: (engine, time scale of its requests)
    "fp16_triton": ("fp16", 1.0), "fp8_triton": ("fp8", 0.5), "fp16_trtllm": ("fp16", 1.25), "fp8_trtllm": ("fp8", 0.8)}
SEED_004_ENGINE_BYTES = {"fp16": 13 * GIB, "fp8": int(6.6 * GIB)}  # the seed's `ls -lsh` totals: 13G and 6,6G
COUNT_IN_FRENCH = "How do I count in French ? 1 un"
ANSWER = ", 2 deux, 3 trois, 4 quatre, 5 cinq, 6 six, 7 sept, 8 huit, 9 neuf, 10 dix."  # the seed's, both engines


def seed_004_results(scale: float) -> dict:
    """results.json as jobs.triton_benchmark writes it, its table from seed_table on fixed timings: 4 requests
    sent at 0 s, of 800 input and 40 output tokens, answered after 1, 2, 3 and 4 s (x scale)."""
    from jobs import triton_benchmark

    timings = [triton_benchmark.RequestTiming(i, input_tokens=800, max_tokens=64, start_s=0.0,
                                              first_token_s=0.1 * scale, end_s=(i + 1) * scale, output_tokens=40)
               for i in range(4)]
    table = triton_benchmark.seed_table(timings)
    return {"benchmark": "cnn_dailymail", "protocol": "triton", "url": "127.0.0.1:8001", "model": "ensemble",
            "concurrency": 0, "prompts": "prompts.jsonl", "table": table, "summary": table, "errors": 0,
            "requests": []}


def make_seed_004_storage(root: Path, answers=None) -> Path:
    """Llama-2 FP16 and FP8 engines, each smoke-run once and served by Triton and by trtllm-serve."""
    answers = answers or {}
    for engine, size in SEED_004_ENGINE_BYTES.items():
        publish(root, f"build_engine[{engine}]", f"3{len(engine)}",
                files={"llama_float16_tp1_rank0.engine": size - 1300 - 49_000, "config.json": 1300,
                       "model.cache": 49_000})
        built = f"build_engine[{engine}]"
        publish(root, f"smoke_run[{engine}]", f"4{len(engine)}", outputs={
            "prompt": COUNT_IN_FRENCH, "output_text": answers.get(engine, ANSWER), "world_size": 1,
            "engine": {"stage": built, "artifact": str(artifact_of(root, built))}})
    publish(root, "download_model", "30")
    chains = {}
    for name, (engine, scale) in SEED_004.items():
        publish(root, f"benchmark[{name}]", f"5{len(chains)}", results=seed_004_results(scale))
        chains[name] = ["download_model", f"build_engine[{engine}]", f"smoke_run[{engine}]", f"benchmark[{name}]"]
    return write_inputs(root, chains, "fp16_triton")


@pytest.fixture(scope="module")
def seed_004(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed_004")
    code, out, exp = run_report(root, make_seed_004_storage(root), charts=True)
    return {"code": code, "out": out, "md": (out / "report.md").read_text(),
            "json": json.loads((out / "report.json").read_text())}


def test_seed_004_table_one_column_per_configuration(seed_004):
    assert seed_004["code"] == report.REPORT_COMPLETE
    md = section(seed_004["md"], "Seed 004's table")
    assert table_row(md, "metric") == list(SEED_004)
    # By hand: 4 requests over 4 s x scale (1, 0.5, 1.25, 0.8); 160 output tokens; latencies 1..4 s x scale.
    assert table_row(md, "Requests/Sec") == ["1.00 (1.00x)", "2.00 (2.00x)", "0.80 (0.80x)", "1.25 (1.25x)"]
    assert table_row(md, "OP tokens/sec") == ["40.00 (1.00x)", "80.00 (2.00x)", "32.00 (0.80x)", "50.00 (1.25x)"]
    assert table_row(md, "Avg. latency (ms)") == ["2500.00", "1250.00", "3125.00", "2000.00"]
    assert table_row(md, "P90 latency (ms)") == ["4000.00", "2000.00", "5000.00", "3200.00"]  # sorted[ceil(3.6)-1]
    assert table_row(md, "Avg. IP tokens per request") == ["800.00"] * 4
    assert table_row(md, "Avg. OP tokens per request") == ["40.00"] * 4
    assert table_row(md, "Avg. InFlight requests") == ["2.50"] * 4  # (1+2+3+4) / 4
    assert table_row(md, "Total latency (ms)") == ["4000.00", "2000.00", "5000.00", "3200.00"]
    assert table_row(md, "Total requests") == ["4.00"] * 4
    assert "Speed-ups are against `fp16_triton`." in md
    # The notebook protocol's tables are not the seed's measurement: not shown for it.
    assert "## Speed (the seeds' table)" not in seed_004["md"] and "## Latency" not in seed_004["md"]


def test_seed_004_engine_sizes_on_disk_and_ratio(seed_004):
    md = section(seed_004["md"], "Engine sizes")
    # Every file the engine's manifest lists; 6.6 / 13 = 0.508: the seed's "divided by 2".
    assert table_row(md, "engine on disk (GiB)") == ["13.00 (1.00x)", "6.60 (0.51x)", "13.00 (1.00x)", "6.60 (0.51x)"]
    row, = seed_004["json"]["tables"]["engines"]["rows"]
    assert row["cells"]["fp8_triton"]["speedup"] == pytest.approx(int(6.6 * GIB) / (13 * GIB))


def test_smoke_answers_side_by_side_alike(seed_004):
    md = section(seed_004["md"], "Smoke runs")
    assert f"Prompt: `{COUNT_IN_FRENCH}`" in md
    assert table_row(md, "answer") == [ANSWER.replace("|", "\\|")] * 4
    assert table_row(md, "engine (MPI ranks)") == ["build_engine[fp16] (1)", "build_engine[fp8] (1)",
                                                   "build_engine[fp16] (1)", "build_engine[fp8] (1)"]
    assert table_row(md, "same answer as `fp16_triton`") == ["same"] * 4


def test_smoke_answers_that_differ_are_flagged(tmp_path):
    fp8 = ", 2 deux, 3 trois, 4 quatre, 5 cinq,\n6 six"
    code, out, _ = run_report(tmp_path, make_seed_004_storage(tmp_path, answers={"fp8": fp8}))
    md = section((out / "report.md").read_text(), "Smoke runs")
    assert table_row(md, "answer") == [ANSWER, fp8.replace("\n", "<br>"), ANSWER, fp8.replace("\n", "<br>")]
    assert table_row(md, "same answer as `fp16_triton`") == ["same", "**DIFFERS**", "same", "**DIFFERS**"]
    smoke = json.loads((out / "report.json").read_text())["tables"]["smoke"]
    answer, = [r for r in smoke["rows"] if r["key"] == "output_text"]
    assert answer["cells"]["fp8_trtllm"]["value"] == fp8  # the JSON keeps the text as run.py printed it


def test_a_failed_smoke_run_fails_its_configurations(tmp_path):
    inputs = make_seed_004_storage(tmp_path)
    (artifact_of(tmp_path, "smoke_run[fp8]") / "manifest.json").unlink()
    code, out, _ = run_report(tmp_path, inputs)
    md = (out / "report.md").read_text()
    assert code == report.REPORT_INCOMPLETE
    assert table_row(section(md, "Smoke runs"), "answer") == [ANSWER, "failed at smoke_run", ANSWER,
                                                             "failed at smoke_run"]
    assert table_row(section(md, "Seed 004's table"), "Requests/Sec")[1] == "failed at smoke_run"


def test_seed_004_chart(seed_004):
    from PIL import Image

    assert seed_004["json"]["charts"] == ["seed_004.png"]
    with Image.open(seed_004["out"] / "seed_004.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] >= 600
    assert "](seed_004.png)" in seed_004["md"]


# --------------------------------------------------------------------------------------------------
# Load sweeps (jobs.load_sweep, its parser on a captured AIPerf 0.13.0 export)
# --------------------------------------------------------------------------------------------------
# tests/fixtures/aiperf/profile_export_aiperf.json: what aiperf==0.13.0 wrote for one point (concurrency 2, 4
# requests) of tests/jobs/test_load_sweep.py's sweep against the stand-in trtllm-serve. Each point below is that
# export with its output-token throughput, P50 ITL, P50 end-to-end latency and completed requests set.
AIPERF_EXPORT = REPO / "tests" / "fixtures" / "aiperf" / "profile_export_aiperf.json"
SWEEPS = {  # configuration: {concurrency: per repeat (output tokens/s, P50 ITL ms, P50 e2e ms, requests missing)}
    "trtllm_bf16": {1: [(190.0, 5.0, 1000.0, 0), (210.0, 5.0, 1000.0, 0)], 4: [(600.0, 8.0, 1500.0, 0)] * 2,
                    16: [(1200.0, 20.0, 3000.0, 0), (1200.0, 20.0, 3000.0, 1)]},  # one repeat of two valid
    # c=16 would beat every point, but one request of 16 did not complete: invalid, never a result.
    "vllm_fp8": {1: [(150.0, 4.0, 900.0, 0)], 4: [(400.0, 10.0, 2000.0, 0)], 16: [(5000.0, 1.0, 100.0, 1)]},
}
LOAD_CHAINS = {"trtllm_bf16": ["download_model", "build_engine[bf16]", "benchmark[trtllm_bf16]"],
               "vllm_fp8": ["download_model", "quantize_modelopt[fp8]", "benchmark[vllm_fp8]"],
               "sglang_fp8": ["download_model", "quantize_modelopt[fp8]", "benchmark[sglang_fp8]"]}
LOAD_ACCOUNTING = [  # (stage, job id, state, elapsed s, GPUs)
    ("download_model", "201", "COMPLETED", 600, 0), ("build_engine[bf16]", "202", "COMPLETED", 1800, 1),
    ("quantize_modelopt[fp8]", "203", "COMPLETED", 3600, 1), ("benchmark[trtllm_bf16]", "204", "COMPLETED", 5400, 2),
    ("benchmark[vllm_fp8]", "205", "COMPLETED", 3600, 1), ("benchmark[sglang_fp8]", "206", "FAILED", 900, 1)]


def sweep_results(tmp: Path, name: str) -> dict:
    """jobs.load_sweep.run_sweep's results, AIPerf replaced by a runner that leaves SWEEPS' export per point."""
    import subprocess

    from jobs import load_sweep

    def aiperf(argv, stdout, stderr, cwd):
        repeat, concurrency = int(Path(cwd).parent.name[1:]), int(Path(cwd).name[1:])
        throughput, itl, e2e, missing = SWEEPS[name][concurrency][repeat]
        export = json.loads(AIPERF_EXPORT.read_text())
        export["output_token_throughput"]["avg"] = throughput
        export["inter_token_latency"]["p50"], export["request_latency"]["p50"] = itl, e2e
        export["request_count"]["avg"] = float(int(argv[argv.index("--request-count") + 1]) - missing)
        (Path(cwd) / load_sweep.EXPORT_FILE).write_text(json.dumps(export))
        return subprocess.CompletedProcess(argv, 0)

    cfg = load_sweep.SweepConfig(url="http://127.0.0.1:8000", model="m", tokenizer="tok", input_file="p.jsonl",
                                 concurrencies=list(SWEEPS[name]), requests_per_user=1, min_requests=1,
                                 repeats=len(SWEEPS[name][1]))
    return load_sweep.run_sweep(cfg, str(tmp / name), run=aiperf)


def make_load_storage(root: Path) -> Path:
    """trtllm_bf16 (its manifest records 2 GPUs) and vllm_fp8 (1 GPU, known from accounting only) swept;
    sglang_fp8's benchmark failed."""
    for stage, job_id, *_ in LOAD_ACCOUNTING[:3]:
        publish(root, stage, job_id)
    publish(root, "benchmark[trtllm_bf16]", "204", outputs={"gpus": gpus_of("NVIDIA H100 80GB HBM3", 9.0, 2)},
            results=sweep_results(root / "sweeps", "trtllm_bf16"))
    publish(root, "benchmark[vllm_fp8]", "205", results=sweep_results(root / "sweeps", "vllm_fp8"))
    return write_inputs(root, LOAD_CHAINS, "trtllm_bf16")


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    code, out, exp = run_report(root, make_load_storage(root), write_accounting(root, LOAD_ACCOUNTING, []),
                                charts=True)
    return {"root": root, "code": code, "out": out, "md": (out / "report.md").read_text(),
            "json": json.loads((out / "report.json").read_text())}


def test_pareto_front_keeps_only_undominated_points():
    # (latency, throughput): (2, 10) is beaten by (1, 10) on latency; (3, 5) by everything; a tie stays.
    points = [(1.0, 10.0), (2.0, 10.0), (2.0, 20.0), (3.0, 5.0), (4.0, 30.0), (4.0, 30.0)]
    assert report.pareto_front(points) == [True, False, True, False, True, True]


def test_load_curves_pareto_front_over_every_configuration(load):
    curves = load["json"]["load_curves"]
    # Per GPU: trtllm_bf16 (2 GPUs) 100, 300, 600 at P50 ITL 5, 8, 20 ms; vllm_fp8 (1 GPU) 150, 400 at 4, 10 ms.
    # trtllm_bf16 at c=1 (5 ms, 100) is dominated by vllm_fp8 at c=1 (4 ms, 150).
    front = [(p["configuration"], p["concurrency"]) for p in curves["pareto_front"]["itl_ms.p50"]]
    assert front == [("vllm_fp8", 1), ("trtllm_bf16", 4), ("vllm_fp8", 4), ("trtllm_bf16", 16)]
    e2e_front = [(p["configuration"], p["concurrency"]) for p in curves["pareto_front"]["e2e_latency_ms.p50"]]
    assert ("trtllm_bf16", 1) not in e2e_front and len(e2e_front) == 4
    per_gpu = {(p["configuration"], p["concurrency"]): p["output_token_throughput_per_gpu"] for p in curves["points"]}
    assert per_gpu[("trtllm_bf16", 1)] == pytest.approx(100.0) and per_gpu[("vllm_fp8", 4)] == pytest.approx(400.0)
    assert load["md"].count("## Load sweeps") == 1 and load["md"].count("Pareto front on P50 ITL") == 1
    md = section(load["md"], "Load sweeps")
    assert ("Pareto front on P50 ITL (ms): `vllm_fp8` at c=1 (150.0 tok/s/GPU at 4.0 ms), `trtllm_bf16` at c=4 "
            "(300.0 tok/s/GPU at 8.0 ms), `vllm_fp8` at c=4") in md


def test_an_invalid_point_is_flagged_and_kept_out_of_curves_and_front(load):
    curves = load["json"]["load_curves"]
    invalid, = [p for p in curves["points"] if not p["valid"]]
    assert (invalid["configuration"], invalid["concurrency"]) == ("vllm_fp8", 16)
    assert invalid["invalid_reason"] == "15 of 16 requests completed"
    assert invalid["output_token_throughput_per_gpu"] is None  # its 5000 tok/s are no result
    assert all(("vllm_fp8", 16) != (p["configuration"], p["concurrency"])
               for front in curves["pareto_front"].values() for p in front)
    md = section(load["md"], "Load sweeps")
    assert "- `vllm_fp8` at concurrency 16: invalid (15 of 16 requests completed)" in md
    table = section(load["md"], "Load sweep: vllm_fp8")
    assert table_row(table, "valid repeats") == ["1/1", "1/1", "**invalid**: 15 of 16 requests completed"]
    assert table_row(table, "output tokens/s per GPU") == ["150.0", "400.0", "—"]
    assert table_row(table, "ITL P50 (ms)") == ["4.0", "10.0", "—"]


def test_a_table_per_swept_configuration_with_confidence_intervals(load):
    table = section(load["md"], "Load sweep: trtllm_bf16")
    assert table_row(table, "metric") == ["c=1", "c=4", "c=16"]
    assert table_row(table, "valid repeats") == ["2/2", "2/2", "1/2 (invalid: 15 of 16 requests completed)"]
    # c=1: 190 and 210 tok/s on 2 GPUs: 100 per GPU, 95% CI half width t(0.975, 1) x sd / sqrt(2) / 2 GPUs
    # = 12.706 x 14.142 / 1.414 / 2 = 63.5; c=16: its one valid repeat, no interval
    assert table_row(table, "output tokens/s per GPU") == ["100.0 ± 63.5", "300.0 ± 0.0", "600.0"]
    assert table_row(table, "output tokens/s") == ["200.0 ± 127.1", "600.0 ± 0.0", "1200.0"]
    assert table_row(table, "end-to-end latency P50 (ms)") == ["1000.0 ± 0.0", "1500.0 ± 0.0", "3000.0"]
    assert "On 2 GPU(s)" in table
    assert "acceptance" not in table  # no point measured one
    assert "Load sweep: sglang_fp8" not in load["md"]  # failed: no sweep to show
    assert "- `sglang_fp8`: failed at benchmark" in section(load["md"], "Load sweeps")


def test_load_sweep_gpu_hours_per_configuration(load):
    md = section(load["md"], "GPU-hours per configuration")
    # trtllm_bf16 = build 0.5 + benchmark 2 x 1.5 h; vllm_fp8 = quantize 1.0 + benchmark 1.0; sglang_fp8 =
    # quantize 1.0 + its failed benchmark 0.25 (download_model: no GPU)
    assert table_row(md, "GPU-hours, every stage it needs") == ["3.50", "2.00", "1.25"]
    assert table_row(md, "GPU-hours, its benchmark") == ["3.00", "1.00", "0.25"]
    assert load["code"] == report.REPORT_INCOMPLETE


def test_load_curves_chart_is_written_and_shown(load):
    from PIL import Image

    assert load["json"]["charts"] == ["load_curves.png"]
    with Image.open(load["out"] / "load_curves.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] >= 1200 and image.size[1] >= 400
    assert "](load_curves.png)" in section(load["md"], "Load sweeps")


def test_an_unknown_benchmark_protocol_is_bad_input(tmp_path):
    inputs = make_storage(tmp_path, configurations=("bf16",))
    results = artifact_of(tmp_path, "benchmark[bf16]") / "results.json"
    results.write_text(json.dumps({**json.loads(results.read_text()), "benchmark": "mlperf"}))
    code, out, _ = run_report(tmp_path, inputs)
    assert code == report.BAD_INPUT and not (out / "report.md").exists()


def test_the_report_w_and_b_run_has_the_new_tables_and_the_curves(load, tmp_path, monkeypatch):
    """The report as jobs.wandb_log logs it (offline), read back from the run's files."""
    pytest.importorskip("wandb")
    from jobs import wandb_log
    from tests.jobs.test_wandb_log import read_offline_run, stage_spec

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DISABLED", "WANDB_RUN_ID",
                 "WANDB_RUN_GROUP", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    spec = stage_spec(tmp_path, "report", "report", monkeypatch)  # the report job's spec, its staging directory
    for written in load["out"].iterdir():  # what the report command wrote there
        shutil.copy2(written, Path(spec.staging_dir) / written.name)
    run = read_offline_run(Path(wandb_log.log_stage_results(spec, {})))
    summary = run["summary"]
    assert summary["report/load_curves"]["_type"] == "image-file"
    assert {"report/load_sweep/trtllm_bf16", "report/load_sweep/vllm_fp8", "report/gpu_hours"} <= set(summary)
    assert (summary["configurations"], summary["configurations_finished"]) == (3, 2)
    run_dir = next((tmp_path / "wandb").rglob("offline-run-*"))
    hours = json.loads((run_dir / "files" / summary["report/gpu_hours"]["path"]).read_text())
    assert hours["columns"] == ["metric", "trtllm_bf16", "vllm_fp8", "sglang_fp8"]
    assert hours["data"][0] == ["GPU-hours, every stage it needs", "3.5", "2", "1.25"]
    sweep = json.loads((run_dir / "files" / summary["report/load_sweep/vllm_fp8"]["path"]).read_text())
    assert sweep["columns"] == ["metric", "c=1", "c=4", "c=16"]
    assert sweep["data"][0] == ["valid repeats", "1/1", "1/1", "invalid: 15 of 16 requests completed"]
