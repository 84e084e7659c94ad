"""The comparison report of an experiment or sweep: the seeds' table and more, from the published artifacts.

    python -m jobs.report --inputs INPUTS.json --output_dir OUT --experiment_dir EXP [--accounting ACCOUNTING.psv]

INPUTS.json (launcher.contract.ReportInputs, written by the launcher) names the configurations in display order,
the baseline of the speed-ups and, per configuration, its chain of stages in dependency order: [{"kind", "name",
"artifact"}]. An artifact is complete iff it holds a manifest.json; the benchmark's results are <artifact>/results.json. ACCOUNTING.psv is
`sacct -X -P -n --format=JobIDRaw,JobName,State,ElapsedRaw,AllocTRES,Start,End` for the experiment's jobs
(named `launcher:<experiment>:<stage name>`); without it, hours come from the manifests' start and end times.

Each benchmark's results.json says which protocol measured it (its "benchmark" key, launcher.schema
BenchmarkKind; none: the notebook protocol of jobs.benchmark_client) and gets that protocol's section: the seeds'
AIMO tables (`notebook`), seed 004's table (`cnn_dailymail`, jobs.triton_benchmark) or the load curves, their
Pareto front and a table per configuration (`load_sweep`, jobs.load_sweep). Every report also has the engines'
sizes on disk, the smoke runs' answers side by side, and GPU-hours per configuration and per stage.

Writes report.md, report.json (every table, machine-readable) and PNG charts into OUT and copies them into EXP
(jobs.wandb_log logs report.json's tables and the charts as the report's W&B run).
A configuration that did not finish is shown as `failed at <stage kind>` (the first incomplete stage of its
chain), never dropped. Exit code: 0 when every configuration finished; 3 (REPORT_INCOMPLETE, what
jobs.run_stage expects) when the report was written but some did not, so that it is not published and the
next launch regenerates it; 1 on bad input.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from jobs.gpu_check import describe_recorded
from jobs import load_sweep
from launcher.contract import (ACCOUNTING_FIELDS, MANIFEST, REPORT_INCOMPLETE, RESULTS, ContractError, Manifest,
                               ReportInputs, ReportStage)

REPORT_COMPLETE, BAD_INPUT = 0, 1  # and REPORT_INCOMPLETE (launcher.contract): written, some did not finish
ENGINE_KINDS = {"build_engine": "engine on disk (GiB)", "build_drafter_engine": "engine with drafter on disk (GiB)"}
TOP1 = re.compile(r"^redrafter(\d+)_top1$")
GIB = 2 ** 30
# What a benchmark's results.json says it is (its "benchmark" key: launcher.schema BenchmarkKind). Results without
# the key are the notebook protocol's: jobs.benchmark_client writes none, nor did any benchmark before the key.
BENCHMARK_KEY, NOTEBOOK, SEED_004, LOAD_SWEEP = "benchmark", "notebook", "cnn_dailymail", "load_sweep"


class BadInput(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# What the report shows
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    fmt: str  # format spec of the value
    higher_is_better: Optional[bool] = None  # None: no speed-up column


SPEED_METRICS = (  # the seeds' table
    Metric("total_generation_time_s", "total generation time (s)", ".1f", higher_is_better=False),
    Metric("batch_throughput_tok_s", "batch throughput (tok/s)", ".1f", higher_is_better=True),
    Metric("avg_sample_throughput_tok_s", "average sample throughput (tok/s)", ".1f", higher_is_better=True),
)
LATENCY_METRICS = (
    *(Metric(f"{p}_latency_s", f"{p} latency (s)", ".2f") for p in ("avg", "p50", "p90", "p99")),
    *(Metric(f"{p}_ttft_s", f"{p} TTFT (s)", ".3f") for p in ("avg", "p50", "p90", "p99")),
    Metric("requests_per_s", "requests/s", ".3f"),
    Metric("output_tokens_per_s", "output tokens/s", ".1f"),
    # The rest of seed 004's (Triton identity_test) table.
    Metric("avg_input_tokens", "avg input tokens per request", ".1f"),
    Metric("avg_output_tokens", "avg output tokens per request", ".1f"),
    Metric("avg_inflight_requests", "avg in-flight requests", ".2f"),
)
ACCURACY = Metric("majority_vote_accuracy", "accuracy (majority vote)", ".1%")
# Seed 004's table (jobs.triton_benchmark) is shown with its own labels, in its order, as the seed prints it; its
# throughputs get speed-ups.
SEED_004_THROUGHPUTS = ("Requests/Sec", "OP tokens/sec")
# A load-sweep point's metrics (jobs.load_sweep summary: the mean and 95% interval over its valid repeats).
PER_GPU = Metric("output_token_throughput_per_gpu", "output tokens/s per GPU", ".1f")
LATENCY_LABELS = {"ttft_ms": "TTFT", "itl_ms": "ITL", "e2e_latency_ms": "end-to-end latency"}
STAT_LABELS = {"avg": "mean", "p50": "P50", "p90": "P90", "p99": "P99"}
LOAD_METRICS = (
    Metric("output_token_throughput", "output tokens/s", ".1f"),
    Metric("request_throughput", "requests/s", ".3f"),
    Metric("output_token_throughput_per_user", "output tokens/s per user", ".1f"),
    *(Metric(f"{name}.{stat}", f"{LATENCY_LABELS[name]} {STAT_LABELS[stat]} (ms)", ".1f")
      for name in load_sweep.LATENCY_METRICS for stat in load_sweep.LATENCY_STATS),
    Metric("goodput", "goodput (requests/s within the SLOs)", ".3f"),
    Metric("acceptance_length", "acceptance length", ".2f"),
    Metric("draft_acceptance_rate", "draft acceptance rate", ".3f"),
)
REPEATS = Metric("repeats", "valid repeats", "")
# The load curves: output tokens/s per GPU against these latencies, one panel each, each with its Pareto front.
CURVE_LATENCIES = (("itl_ms.p50", "P50 ITL (ms)"), ("e2e_latency_ms.p50", "P50 end-to-end latency (ms)"))
LOAD_CURVES_CHART = "load_curves.png"
GATE = Metric("drafter_gate_passed", "quality gate", "")


@dataclass(frozen=True)
class Cell:
    value: Any = None  # None: unknown or not applicable
    speedup: Optional[float] = None  # or the ratio to the baseline's (engine sizes)
    failed_at: Optional[str] = None  # the kind of the stage the configuration failed at, when value is missing
    ci: Optional[float] = None  # half width of the value's 95% confidence interval (repeats)
    invalid: Optional[str] = None  # why the measurement is not a result (a load-sweep point)


@dataclass(frozen=True)
class Row:
    metric: Metric
    cells: Dict[str, Cell]  # by configuration name


@dataclass(frozen=True)
class Table:
    title: str
    columns: List[str]
    rows: List[Row]
    note: str = ""  # shown under the title
    charts: Tuple[str, ...] = ()  # the charts that go with it, shown after it when drawn


@dataclass(frozen=True)
class StageState:
    kind: str
    name: str
    artifact: str
    manifest: Optional[Manifest]  # None: the artifact is not complete

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def outputs(self) -> dict:
        """What its stage kind measured (Manifest.outputs); empty while the artifact is not complete."""
        return self.manifest.outputs if self.manifest else {}

    @property
    def job_id(self) -> Optional[str]:
        """The job that published the artifact."""
        return self.manifest.job_id if self.manifest else None


@dataclass(frozen=True)
class Configuration:
    name: str
    stages: List[StageState]  # in dependency order
    results: Optional[dict]  # the benchmark's results.json; None when it has none

    @property
    def summary(self) -> Any:
        """The benchmark's results summary (the protocol's own shape); None when it has none."""
        return (self.results or {}).get("summary")

    @property
    def benchmark(self) -> Optional[str]:
        """The protocol that measured it (BENCHMARK_KEY of its results); None without results."""
        return None if self.results is None else self.results.get(BENCHMARK_KEY, NOTEBOOK)

    @property
    def failed_at(self) -> Optional[StageState]:
        """The first stage whose artifact is not complete (the benchmark if its results are missing)."""
        incomplete = next((s for s in self.stages if not s.complete), None)
        if incomplete is None and self.summary is None:
            return self.stage("benchmark")
        return incomplete

    @property
    def finished(self) -> bool:
        return self.failed_at is None

    def stage(self, kind: str) -> Optional[StageState]:
        return next((s for s in self.stages if s.kind == kind), None)

    @property
    def benchmark_gpus(self) -> Optional[str]:
        """`2 x NVIDIA H100 80GB HBM3 (9.0)`: what the benchmark ran on, from its manifest (None: unknown)."""
        stage = self.stage("benchmark")
        gpus = stage.outputs.get("gpus") if stage else None
        return describe_recorded(gpus) if gpus else None

    @property
    def benchmark_gpu_count(self) -> Optional[int]:
        """How many GPUs its benchmark's manifest records (None: not recorded)."""
        stage = self.stage("benchmark")
        return len(stage.outputs["gpus"]) if stage and stage.outputs.get("gpus") else None


@dataclass(frozen=True)
class UsageRow:
    stage: str
    job_id: Optional[str]
    state: str
    gpus: Optional[int]  # None: unknown
    hours: Optional[float]
    gpu_hours: Optional[float]


@dataclass(frozen=True)
class Usage:
    source: str  # "accounting" or "manifests"
    note: str
    rows: List[UsageRow]

    @property
    def total_hours(self) -> float:
        return sum(r.hours for r in self.rows if r.hours is not None)

    @property
    def total_gpu_hours(self) -> Optional[float]:
        known = [r.gpu_hours for r in self.rows if r.gpu_hours is not None]
        return sum(known) if known else None


@dataclass(frozen=True)
class Report:
    experiment: str
    requested_baseline: Optional[str]
    baseline: Optional[str]
    configurations: List[Configuration]
    tables: Dict[str, Table]  # in the order shown: the benchmarks' sections, drafter, engines, smoke runs, GPU-hours
    usage: Usage
    load_curves: Optional["LoadCurves"] = None  # None: no load sweep

    @property
    def complete(self) -> bool:
        return all(c.finished for c in self.configurations)

    @property
    def benchmark_gpus(self) -> List[str]:
        """The distinct GPUs the finished benchmarks ran on: more than one and the speed-ups mix hardware."""
        return sorted({c.benchmark_gpus for c in self.configurations if c.finished and c.benchmark_gpus})


# --------------------------------------------------------------------------------------------------
# Loading (the only part that reads files)
# --------------------------------------------------------------------------------------------------
def read_json(path: Path) -> Optional[dict]:
    """The file's JSON, None when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: {exc}") from exc


def read_inputs(path: Path) -> ReportInputs:
    try:
        inputs = ReportInputs.read(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing") from None
    except (OSError, ContractError) as exc:
        raise BadInput(str(exc)) from None
    if not inputs.variants:
        raise BadInput(f"{path}: 'variants' is empty: no configuration to report")
    for name, stages in inputs.variants.items():
        if not any(stage.kind == "benchmark" for stage in stages):
            raise BadInput(f"{path}: variant {name!r} has no benchmark stage")
    if inputs.baseline is not None and inputs.baseline not in inputs.variants:
        raise BadInput(f"{path}: baseline {inputs.baseline!r} is not one of the variants {list(inputs.variants)}")
    return inputs


def read_manifest(artifact: str) -> Optional[Manifest]:
    """The artifact's manifest, None when it has none (not complete)."""
    try:
        return Manifest.read(Path(artifact) / MANIFEST)
    except FileNotFoundError:
        return None
    except (OSError, ContractError) as exc:
        raise BadInput(str(exc)) from None


def read_accounting(path: Optional[str]) -> Optional[str]:
    """The accounting text; None when there is none (the launcher leaves an empty file where sacct failed)."""
    text = Path(path).read_text() if path and Path(path).is_file() else ""
    return text if text.strip() else None


def load_stage(stage: ReportStage) -> StageState:
    return StageState(kind=stage.kind, name=stage.name, artifact=stage.artifact, manifest=read_manifest(stage.artifact))


def load_configuration(name: str, stages: List[ReportStage]) -> Configuration:
    stages = [load_stage(stage) for stage in stages]
    benchmark = next(s for s in stages if s.kind == "benchmark")
    results = read_json(Path(benchmark.artifact) / RESULTS) if benchmark.complete else None
    return Configuration(name=name, stages=stages, results=results)


# --------------------------------------------------------------------------------------------------
# Tables (pure)
# --------------------------------------------------------------------------------------------------
def choose_baseline(configurations: Sequence[Configuration], requested: Optional[str]) -> Optional[Configuration]:
    """The requested baseline if it finished, else the first configuration that did."""
    finished = [c for c in configurations if c.finished]
    return next((c for c in finished if c.name == requested), finished[0] if finished else None)


def speedup(value: Optional[float], baseline: Optional[float], higher_is_better: bool) -> Optional[float]:
    if not value or not baseline:
        return None
    return value / baseline if higher_is_better else baseline / value


def failed_cell(configuration: Configuration) -> Cell:
    return Cell(failed_at=configuration.failed_at.kind)


def summary_row(metric: Metric, configurations: Sequence[Configuration],
                baseline: Optional[Configuration] = None) -> Row:
    base = baseline.summary.get(metric.key) if baseline and metric.higher_is_better is not None else None
    cells = {}
    for c in configurations:
        if not c.finished:
            cells[c.name] = failed_cell(c)
            continue
        value = c.summary.get(metric.key)
        gain = speedup(value, base, metric.higher_is_better) if base is not None else None
        cells[c.name] = Cell(value=value, speedup=gain)
    return Row(metric, cells)


def speed_table(configurations: Sequence[Configuration], baseline: Optional[Configuration]) -> Table:
    return Table("Speed (the seeds' table)", [c.name for c in configurations],
                 [summary_row(m, configurations, baseline) for m in SPEED_METRICS],
                 charts=("throughput.png", "generation_time.png"))


def latency_table(configurations: Sequence[Configuration]) -> Table:
    rows = [summary_row(m, configurations) for m in LATENCY_METRICS]
    accuracy = summary_row(ACCURACY, configurations)
    if any(cell.value is not None for cell in accuracy.cells.values()):
        rows.append(accuracy)
    return Table("Latency", [c.name for c in configurations], rows, charts=("latency.png",))


def notebook_tables(configurations: Sequence[Configuration], baseline: Optional[Configuration]) -> Dict[str, Table]:
    """The notebook protocol (jobs.benchmark_client): the seeds' table and the latencies."""
    return {"speed": speed_table(configurations, baseline), "latency": latency_table(configurations)}


def seed_004_tables(configurations: Sequence[Configuration], baseline: Optional[Configuration]) -> Dict[str, Table]:
    """Seed 004's protocol (jobs.triton_benchmark): its table, one column per configuration, its throughputs
    against the baseline."""
    keys = list(dict.fromkeys(k for c in configurations if c.finished for k in c.summary))
    metrics = [Metric(k, k, ".2f", higher_is_better=True if k in SEED_004_THROUGHPUTS else None) for k in keys]
    against = f"Speed-ups are against `{baseline.name}`." if baseline else ""
    return {"seed_004": Table("Seed 004's table (CNN/DailyMail prompts, all at once)", [c.name for c in configurations],
                              [summary_row(m, configurations, baseline) for m in metrics], note=against,
                              charts=("seed_004.png",))}


def drafter_table(configurations: Sequence[Configuration]) -> Optional[Table]:
    """Every final redrafter{i}_top1 of the trained drafters, and the quality gate; None without drafters."""
    drafted = [c for c in configurations if c.stage("train_drafter")]
    if not drafted:
        return None
    trained = {c.name: c.stage("train_drafter") for c in drafted}
    metrics = {k for t in trained.values() for k in t.outputs.get("drafter_metrics", {}) if TOP1.match(k)}
    keys = sorted(metrics, key=lambda k: int(TOP1.match(k).group(1)))

    def row(metric: Metric, value_of) -> Row:
        return Row(metric, {c.name: Cell(value=value_of(trained[c.name].outputs)) if trained[c.name].complete
                            else failed_cell(c) for c in drafted})

    rows = [row(Metric(k, f"{k} (final)", ".3f"), lambda m, k=k: m.get("drafter_metrics", {}).get(k)) for k in keys]
    # The gate is decided where the drafter is used, by convert_drafter (older train manifests recorded it).
    def gate(c: Configuration) -> Cell:
        convert = c.stage("convert_drafter")
        decided, older = convert.outputs if convert else {}, trained[c.name].outputs
        if GATE.key in decided or GATE.key in older:
            return Cell(value=decided.get(GATE.key, older.get(GATE.key)))
        return failed_cell(c) if c.failed_at else Cell()

    rows.append(Row(GATE, {c.name: gate(c) for c in drafted}))
    return Table("Drafter", [c.name for c in drafted], rows)


def engine_stage(c: Configuration) -> Optional[StageState]:
    """The engine its benchmark serves (None: a stack that loads checkpoints, no engine)."""
    return next((s for s in c.stages if s.kind in ENGINE_KINDS), None)


def engine_table(configurations: Sequence[Configuration], baseline: Optional[Configuration]) -> Optional[Table]:
    """Each engine's size on disk (every file of its artifact, as its manifest lists them: seed 004 compares 13 GB
    of FP16 with 6.6 GB of FP8) and its ratio to the baseline's engine; `—` where a configuration has no such stage."""
    kinds = [k for k in ENGINE_KINDS if any(c.stage(k) for c in configurations)]
    if not kinds:
        return None
    base_engine = engine_stage(baseline) if baseline else None
    base_size = base_engine.manifest.size_bytes if base_engine and base_engine.complete else None

    def cell(c: Configuration, kind: str) -> Cell:
        stage = c.stage(kind)
        if stage is None:
            return Cell()
        if not stage.complete:
            return failed_cell(c)
        size = stage.manifest.size_bytes
        return Cell(value=size / GIB, speedup=size / base_size if base_size else None)

    rows = [Row(Metric(kind, ENGINE_KINDS[kind], ".2f"), {c.name: cell(c, kind) for c in configurations})
            for kind in kinds]
    note = f"In brackets: the ratio to `{baseline.name}`'s engine." if base_size else ""
    return Table("Engine sizes", [c.name for c in configurations], rows, note=note)


def smoke_table(configurations: Sequence[Configuration], baseline: Optional[Configuration]) -> Optional[Table]:
    """Each engine's answer to the smoke prompt (examples/run.py, jobs.smoke_run) side by side, flagged where it
    differs from the baseline's (or, without one, the first answer): seed 004's FP16 and FP8 engines answer alike."""
    smoked = [c for c in configurations if c.stage("smoke_run")]
    if not smoked:
        return None
    runs = {c.name: c.stage("smoke_run") for c in smoked}
    answers = {name: run.outputs["output_text"] for name, run in runs.items() if run.complete}
    reference = next((name for name in [baseline.name if baseline else None, *answers] if name in answers), None)

    def row(metric: Metric, value_of) -> Row:
        return Row(metric, {c.name: Cell(value=value_of(runs[c.name].outputs)) if runs[c.name].complete
                            else failed_cell(c) for c in smoked})

    rows = [row(Metric("engine", "engine (MPI ranks)", ""), lambda o: f"{o['engine']['stage']} ({o['world_size']})"),
            row(Metric("output_text", "answer", ""), lambda o: o["output_text"])]
    if reference is not None:
        rows.append(row(Metric("same_answer", f"same answer as `{reference}`", ""),
                        lambda o: "same" if o["output_text"] == answers[reference] else "**DIFFERS**"))
    prompts = sorted({run.outputs["prompt"] for run in runs.values() if run.complete})
    note = "Prompt: " + "; ".join(f"`{p}`" for p in prompts) if prompts else ""
    return Table("Smoke runs", [c.name for c in smoked], rows, note=note)


# --------------------------------------------------------------------------------------------------
# Load sweeps (pure)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadPoint:
    """One concurrency of a configuration's sweep (jobs.load_sweep's summary entry)."""
    configuration: str
    concurrency: int
    invalid_reason: Optional[str]  # None: valid (some repeat of it was)
    repeats: str  # `valid/all`, and why the others are not
    metrics: Dict[str, dict]  # {name: {"mean", "ci_half_width", ...}} over its valid repeats
    gpus: Optional[int]  # the benchmark's GPUs; None: unknown

    def mean(self, name: str) -> Optional[float]:
        return self.metrics[name]["mean"] if name in self.metrics else None

    def per_gpu(self) -> Optional[float]:
        throughput = self.mean("output_token_throughput")
        return None if throughput is None or not self.gpus else throughput / self.gpus

    def cell(self, metric: Metric) -> Cell:
        if self.invalid_reason:
            return Cell()  # an invalid point is no result: its reason is in the repeats row
        if metric is PER_GPU:
            found = self.metrics.get("output_token_throughput", {})
            half = found.get("ci_half_width")
            return Cell(value=self.per_gpu(), ci=half / self.gpus if half is not None and self.gpus else None)
        found = self.metrics.get(metric.key, {})
        return Cell(value=found.get("mean"), ci=found.get("ci_half_width"))


@dataclass(frozen=True)
class LoadCurves:
    points: List[LoadPoint]  # every point of every sweep, invalid ones too
    fronts: Dict[str, List[LoadPoint]]  # by curve latency: the Pareto-optimal points, by latency
    left_off: List[str]  # what is not on the curves, and why


def load_points(c: Configuration, gpus: Optional[int]) -> List[LoadPoint]:
    points = []
    for entry in c.summary:
        valid, reasons = entry["valid"], "; ".join(entry["invalid_reasons"])
        repeats = f"{entry['repeats_valid']}/{entry['repeats_valid'] + entry['repeats_invalid']}"
        points.append(LoadPoint(
            configuration=c.name, concurrency=entry["concurrency"],
            invalid_reason=None if valid else reasons or "no valid repeat",
            repeats=f"{repeats} (invalid: {reasons})" if valid and reasons else repeats,
            metrics=entry["metrics"], gpus=gpus))
    return points


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[bool]:
    """Whether each (latency, throughput) point is Pareto-optimal: no other point has a latency as low and a
    throughput as high, one of them strictly."""
    return [not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for x2, y2 in points) for x, y in points]


def load_sweep_table(name: str, points: Sequence[LoadPoint]) -> Table:
    """One configuration's sweep: a column per concurrency, invalid points flagged, rows that no point has left out."""
    columns = [f"c={p.concurrency}" for p in points]
    rows = [Row(REPEATS, {col: Cell(invalid=p.invalid_reason) if p.invalid_reason else Cell(value=p.repeats)
                          for col, p in zip(columns, points)})]
    for metric in (PER_GPU, *LOAD_METRICS):
        row = Row(metric, {col: p.cell(metric) for col, p in zip(columns, points)})
        if any(cell.value is not None for cell in row.cells.values()):
            rows.append(row)
    gpus = points[0].gpus if points else None
    note = (f"On {gpus} GPU(s); means over the valid repeats, ± the 95% confidence interval." if gpus else
            "GPU count unknown (no GPUs in the benchmark's manifest or accounting): no per-GPU throughput.")
    return Table(f"Load sweep: {name}", columns, rows, note=note)


def load_sweep_tables(curves: LoadCurves) -> Dict[str, Table]:
    """A table per swept configuration, from the curves' points."""
    names = dict.fromkeys(p.configuration for p in curves.points)
    return {f"{LOAD_SWEEP}/{name}": load_sweep_table(name, [p for p in curves.points if p.configuration == name])
            for name in names}


def load_curves(configurations: Sequence[Configuration], gpus: Dict[str, Optional[int]]) -> LoadCurves:
    """Every valid point with a known GPU count on the curves, and each latency's Pareto front over all of them."""
    points, left_off = [], []
    for c in configurations:
        if not c.finished:
            left_off.append(f"`{c.name}`: failed at {c.failed_at.kind}")
            continue
        mine = load_points(c, gpus[c.name])
        points += mine
        if gpus[c.name] is None:
            left_off.append(f"`{c.name}`: GPU count unknown")
        left_off += [f"`{c.name}` at concurrency {p.concurrency}: invalid ({p.invalid_reason})"
                     for p in mine if p.invalid_reason]
    fronts = {}
    for latency, _ in CURVE_LATENCIES:
        drawn = curve_points(points, latency)
        on_front = pareto_front([(p.mean(latency), p.per_gpu()) for p in drawn])
        fronts[latency] = sorted((p for p, front in zip(drawn, on_front) if front), key=lambda p: p.mean(latency))
    return LoadCurves(points=points, fronts=fronts, left_off=left_off)


def curve_points(points: Sequence[LoadPoint], latency: str) -> List[LoadPoint]:
    """The points a curve draws: valid, with a per-GPU throughput and the latency."""
    return [p for p in points if not p.invalid_reason and p.per_gpu() is not None and p.mean(latency) is not None]


# --------------------------------------------------------------------------------------------------
# GPU-hours (pure)
# --------------------------------------------------------------------------------------------------
def unique_stages(configurations: Sequence[Configuration]) -> List[StageState]:
    """Every stage once (shared stages too), in the order the configurations first need them."""
    by_name: Dict[str, StageState] = {}
    for c in configurations:
        for s in c.stages:
            by_name.setdefault(s.name, s)
    return list(by_name.values())


def gpu_count(alloc_tres: str) -> int:
    """GPUs of an AllocTRES such as `billing=4,cpu=4,gres/gpu=2,mem=32G,node=1`; typed counts (`gres/gpu:h100=2`)
    are summed when the untyped total is absent."""
    tres = dict(item.split("=", 1) for item in alloc_tres.split(",") if "=" in item)
    if "gres/gpu" in tres:
        return int(tres["gres/gpu"])
    return sum(int(v) for k, v in tres.items() if k.startswith("gres/gpu:"))


def parse_accounting(text: str) -> List[dict]:
    """The rows of `sacct -X -P -n --format=<ACCOUNTING_FIELDS>`, with `gpus` and `elapsed_s` added."""
    jobs = []
    reader = csv.DictReader(text.splitlines(), fieldnames=ACCOUNTING_FIELDS, delimiter="|", quoting=csv.QUOTE_NONE)
    for row in reader:
        if None in row or None in row.values():
            raise BadInput(f"accounting line {reader.line_num}: expected the fields {'|'.join(ACCOUNTING_FIELDS)}")
        try:
            jobs.append({**row, "gpus": gpu_count(row["AllocTRES"]), "elapsed_s": int(row["ElapsedRaw"] or 0)})
        except ValueError as exc:
            raise BadInput(f"accounting line {reader.line_num}: {exc}") from exc
    return jobs


def stage_jobs(stage: StageState, jobs: Iterable[dict], experiment: str) -> List[dict]:
    """The stage's jobs in this experiment (every attempt), and the job that published its artifact."""
    job_name = f"launcher:{experiment}:{stage.name}"
    published_by = stage.job_id
    return [j for j in jobs if j["JobName"] == job_name or (published_by and j["JobIDRaw"] == str(published_by))]


def usage_from_accounting(stages: Sequence[StageState], jobs: Sequence[dict], experiment: str) -> List[UsageRow]:
    rows = []
    for stage in stages:
        found = stage_jobs(stage, jobs, experiment)
        rows += [UsageRow(stage.name, j["JobIDRaw"], j["State"], j["gpus"], j["elapsed_s"] / 3600,
                          j["gpus"] * j["elapsed_s"] / 3600) for j in found]
        if not found:
            rows.append(UsageRow(stage.name, stage.job_id, "no accounting record", None, None, None))
    return rows


def usage_from_manifests(stages: Sequence[StageState]) -> List[UsageRow]:
    rows = []
    for stage in stages:
        m = stage.manifest
        if m is None:
            rows.append(UsageRow(stage.name, None, "incomplete", None, None, None))
        else:
            rows.append(UsageRow(stage.name, m.job_id, "complete", None, (m.ended - m.started) / 3600, None))
    return rows


def gpu_usage(stages: Sequence[StageState], jobs: Sequence[dict], accounting_read: bool, experiment: str) -> Usage:
    if any(stage_jobs(s, jobs, experiment) for s in stages):
        return Usage("accounting", "from Slurm accounting: GPUs (gres/gpu) x elapsed time, every attempt of a stage",
                     usage_from_accounting(stages, jobs, experiment))
    why = "accounting has no record of this experiment's jobs" if accounting_read else "accounting unavailable"
    return Usage("manifests", f"{why}: wall-clock hours from manifests (GPU count unknown)",
                 usage_from_manifests(stages))


def configuration_hours_table(configurations: Sequence[Configuration], usage: Usage) -> Table:
    """What each configuration cost: every attempt of every stage it needs, and of its benchmark alone. A failed
    configuration's hours are shown too: they were spent (the status lines say where it failed)."""
    by_accounting = usage.source == "accounting"
    what = "GPU-hours" if by_accounting else "wall-clock hours"
    rows_of: Dict[str, List[UsageRow]] = {}
    for r in usage.rows:
        rows_of.setdefault(r.stage, []).append(r)

    def total(stages: Iterable[StageState]) -> Optional[float]:
        known = [r.gpu_hours if by_accounting else r.hours for s in stages for r in rows_of.get(s.name, [])]
        known = [h for h in known if h is not None]
        return sum(known) if known else None

    def row(metric: Metric, stages_of) -> Row:
        return Row(metric, {c.name: Cell(value=total(stages_of(c))) for c in configurations})

    rows = [row(Metric("all_stages", f"{what}, every stage it needs", ".2f"), lambda c: c.stages),
            row(Metric("benchmark", f"{what}, its benchmark", ".2f"), lambda c: [c.stage("benchmark")])]
    note = ("A stage shared by several configurations counts in each of them: the columns add up to more than "
            "the total of the stages.")
    return Table("GPU-hours per configuration", [c.name for c in configurations], rows, note=note)


def benchmark_gpus(c: Configuration, jobs: Sequence[dict]) -> Optional[int]:
    """The GPUs its benchmark ran on: as its manifest records them, else as the job that published it held them."""
    if c.benchmark_gpu_count:
        return c.benchmark_gpu_count
    published_by = c.stage("benchmark").job_id
    held = [j["gpus"] for j in jobs if published_by and j["JobIDRaw"] == str(published_by) and j["gpus"]]
    return held[0] if held else None


def section_tables(protocol: str, configurations: Sequence[Configuration], requested_baseline: Optional[str],
                   curves: Optional[LoadCurves]) -> Dict[str, Table]:
    """A protocol's tables over the configurations it measured and those without results (failed: shown in every
    section, as `failed at <stage kind>`)."""
    if protocol == LOAD_SWEEP:
        return load_sweep_tables(curves)
    mine = [c for c in configurations if c.benchmark in (protocol, None)]
    tables_of = notebook_tables if protocol == NOTEBOOK else seed_004_tables
    return tables_of(mine, choose_baseline(mine, requested_baseline))


PROTOCOLS = (NOTEBOOK, SEED_004, LOAD_SWEEP)  # the benchmarks' sections, in the report's order


def build_report(inputs: ReportInputs, configurations: List[Configuration], accounting: Optional[str]) -> Report:
    protocols = {c.benchmark for c in configurations if c.finished}
    unknown = sorted(protocols - set(PROTOCOLS))
    if unknown:
        raise BadInput(f"a results.json says {BENCHMARK_KEY} {unknown}: the report has no section for it "
                       f"(known: {list(PROTOCOLS)})")
    baseline = choose_baseline(configurations, inputs.baseline)
    jobs = parse_accounting(accounting) if accounting is not None else []
    usage = gpu_usage(unique_stages(configurations), jobs, accounting is not None, inputs.experiment)
    swept = [c for c in configurations if c.benchmark in (LOAD_SWEEP, None)]
    curves = (load_curves(swept, {c.name: benchmark_gpus(c, jobs) for c in swept if c.finished})
              if LOAD_SWEEP in protocols else None)
    tables: Dict[str, Table] = {}
    for protocol in (p for p in PROTOCOLS if p in protocols):
        tables.update(section_tables(protocol, configurations, inputs.baseline, curves))
    optional = {"drafter": drafter_table(configurations), "engines": engine_table(configurations, baseline),
                "smoke": smoke_table(configurations, baseline)}
    tables.update({key: table for key, table in optional.items() if table is not None})
    tables["gpu_hours"] = configuration_hours_table(configurations, usage)
    return Report(experiment=inputs.experiment, requested_baseline=inputs.baseline,
                  baseline=baseline.name if baseline else None, configurations=configurations, tables=tables,
                  usage=usage, load_curves=curves)


# --------------------------------------------------------------------------------------------------
# Rendering: JSON, markdown (pure), charts
# --------------------------------------------------------------------------------------------------
def cell_json(cell: Cell) -> dict:
    found = {"value": cell.value}
    for key in ("speedup", "failed_at", "ci", "invalid"):
        if getattr(cell, key) is not None:
            found[key] = getattr(cell, key)
    return found


def table_json(table: Table) -> dict:
    return {"title": table.title, "columns": table.columns, "note": table.note,
            "rows": [{"key": r.metric.key, "label": r.metric.label,
                      "cells": {name: cell_json(cell) for name, cell in r.cells.items()}} for r in table.rows]}


def point_json(p: LoadPoint) -> dict:
    return {"configuration": p.configuration, "concurrency": p.concurrency, "valid": p.invalid_reason is None,
            "invalid_reason": p.invalid_reason, "gpus": p.gpus, "output_token_throughput_per_gpu": p.per_gpu(),
            **{latency: p.mean(latency) for latency, _ in CURVE_LATENCIES}}


def curves_json(curves: Optional[LoadCurves]) -> Optional[dict]:
    if curves is None:
        return None
    return {"y": PER_GPU.key, "points": [point_json(p) for p in curves.points],
            "pareto_front": {latency: [{"configuration": p.configuration, "concurrency": p.concurrency}
                                       for p in front] for latency, front in curves.fronts.items()},
            "left_off": curves.left_off}


def report_json(report: Report, charts: Sequence[str]) -> dict:
    usage = report.usage
    return {
        "experiment": report.experiment,
        "complete": report.complete,
        "requested_baseline": report.requested_baseline,
        "baseline": report.baseline,
        "configurations": [{
            "name": c.name, "finished": c.finished, "benchmark_gpus": c.benchmark_gpus,
            "failed_at": c.failed_at and {"kind": c.failed_at.kind, "name": c.failed_at.name,
                                          "artifact": c.failed_at.artifact},
            "stages": {s.kind: {"name": s.name, "artifact": s.artifact, "complete": s.complete} for s in c.stages},
        } for c in report.configurations],
        "benchmark_gpus": report.benchmark_gpus,
        "tables": {key: table_json(table) for key, table in report.tables.items()},
        "load_curves": curves_json(report.load_curves),
        "gpu_usage": {"source": usage.source, "note": usage.note, "stages": [vars(r) for r in usage.rows],
                      "total_hours": usage.total_hours, "total_gpu_hours": usage.total_gpu_hours},
        "charts": list(charts),
    }


def format_cell(cell: Cell, fmt: str) -> str:
    if cell.invalid:
        return f"**invalid**: {cell.invalid}"
    if cell.failed_at and cell.value is None:
        return f"failed at {cell.failed_at}"
    if cell.value is None:
        return "—"
    if isinstance(cell.value, bool):
        return "passed" if cell.value else "below the gate"
    text = format(cell.value, fmt)
    if cell.ci is not None:
        text += f" ± {format(cell.ci, fmt)}"
    return text if cell.speedup is None else f"{text} ({cell.speedup:.2f}x)"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:  # a cell on one line: a smoke answer may span several
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", "<br>") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def table_markdown(table: Table) -> str:
    rows = ([r.metric.label, *(format_cell(r.cells[name], r.metric.fmt) for name in table.columns)]
            for r in table.rows)
    return markdown_table(["metric", *table.columns], rows)


def hours(value: Optional[float], unknown: str = "—") -> str:
    return unknown if value is None else f"{value:.2f}"


def usage_markdown(usage: Usage) -> str:
    by_accounting = usage.source == "accounting"
    unknown = "—" if by_accounting else "unknown"
    rows = [[r.stage, r.job_id or "—", r.state, unknown if r.gpus is None else str(r.gpus), hours(r.hours),
             hours(r.gpu_hours, unknown)] for r in usage.rows]
    rows.append(["**total**", "", "", "", hours(usage.total_hours), hours(usage.total_gpu_hours, unknown)])
    header = ["stage", "job id", "state", "GPUs", "elapsed (h)" if by_accounting else "wall-clock (h)", "GPU-hours"]
    return f"{usage.note}.\n\n" + markdown_table(header, rows)


def status_line(c: Configuration) -> str:
    if c.finished:
        return f"- `{c.name}`: finished" + (f" on {c.benchmark_gpus}" if c.benchmark_gpus else "")
    stage = c.failed_at
    return (f"- `{c.name}`: **failed at {stage.kind}** "
            f"(stage `{stage.name}`, no complete artifact at `{stage.artifact}`)")


def curves_markdown(curves: LoadCurves, images: Dict[str, str]) -> List[str]:
    """The load curves' chart, each latency's Pareto front and what the curves leave out."""
    parts = ["## Load sweeps",
             "Output tokens/s per GPU against latency, every configuration on one chart, one point per concurrency "
             "(the mean over its valid repeats); the Pareto front joins the points no other point beats on both."]
    if LOAD_CURVES_CHART in images:
        parts.append(images[LOAD_CURVES_CHART])
    for latency, label in CURVE_LATENCIES:
        front = curves.fronts[latency]
        parts.append(f"Pareto front on {label}: " + (", ".join(
            f"`{p.configuration}` at c={p.concurrency} ({p.per_gpu():.1f} tok/s/GPU at {p.mean(latency):.1f} ms)"
            for p in front) if front else "no point to draw."))
    if curves.left_off:
        parts.append("Left off the curves and the fronts:\n" + "\n".join(f"- {why}" for why in curves.left_off))
    return parts


def report_markdown(report: Report, charts: Sequence[str], charts_note: str = "") -> str:
    configs = report.configurations
    if report.baseline is None:
        against = "No configuration finished: no speed-ups."
    elif report.baseline == report.requested_baseline or report.requested_baseline is None:
        against = f"Speed-ups are against `{report.baseline}`."
    else:
        against = (f"Speed-ups are against `{report.baseline}`: "
                   f"the baseline `{report.requested_baseline}` did not finish.")
    images = {name: f"![{Path(name).stem.replace('_', ' ')}]({name})" for name in charts}
    parts = [
        f"# Benchmark report: {report.experiment}",
        f"{sum(c.finished for c in configs)} of {len(configs)} configuration(s) finished. {against}",
        "\n".join(status_line(c) for c in configs),
    ]
    if len(report.benchmark_gpus) > 1:
        parts.append("**Not like for like:** the benchmarks ran on different GPUs "
                     f"({'; '.join(report.benchmark_gpus)}), "
                     "so speed-ups mix hardware with configuration. Pin them with `cluster.partition` or a constraint.")
    first_sweep = next((key for key in report.tables if key.startswith(f"{LOAD_SWEEP}/")), None)
    for key, table in report.tables.items():
        swept = key.startswith(f"{LOAD_SWEEP}/")
        if key == first_sweep:  # the curves head the sweeps' tables
            parts += curves_markdown(report.load_curves, images)
        parts += [f"{'###' if swept else '##'} {table.title}", *([table.note] if table.note else []),
                  table_markdown(table), *(images[n] for n in table.charts if n in images)]
    parts += ["## GPU-hours per stage", usage_markdown(report.usage)]
    if charts_note:
        parts.append(f"_{charts_note}_")
    return "\n\n".join(parts) + "\n"


def _bars(ax, columns: Sequence[str], rows: Sequence[Row], ylabel: str) -> None:
    """Grouped bars, one group per configuration, one bar per row; failed configurations say where they failed."""
    width = 0.8 / len(rows)
    positions = range(len(columns))
    for i, row in enumerate(rows):
        cells = [row.cells[name] for name in columns]
        offset = (i - (len(rows) - 1) / 2) * width
        bars = ax.bar([x + offset for x in positions], [c.value or 0 for c in cells], width, label=row.metric.label)
        ax.bar_label(bars, labels=["" if c.value is None else format_cell(c, row.metric.fmt) for c in cells],
                     fontsize=7)
    for x, name in zip(positions, columns):
        failed_at = rows[0].cells[name].failed_at
        if failed_at:
            ax.text(x, 0, f"failed at {failed_at}", rotation=90, ha="center", va="bottom", color="tab:red")
    ax.set_xticks(list(positions), columns, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if len(rows) > 1:
        ax.legend(fontsize=8)


def bar_charts(report: Report) -> Dict[str, List[tuple]]:
    """{file: panels of (title, y label, table, the rows drawn as bars)} for the sections the report has."""
    charts = {}
    speed, latency, seed = (report.tables.get(k) for k in ("speed", "latency", "seed_004"))
    if speed and latency:
        rows = {r.metric.key: r for r in [*speed.rows, *latency.rows]}
        percentiles = ("p50", "p90", "p99")
        charts.update({
            "throughput.png": [("Throughput", "tokens/s", speed,
                                [rows["batch_throughput_tok_s"], rows["avg_sample_throughput_tok_s"]])],
            "generation_time.png": [("Total generation time", "seconds", speed, [rows["total_generation_time_s"]])],
            "latency.png": [("End-to-end latency", "seconds", speed, [rows[f"{p}_latency_s"] for p in percentiles]),
                            ("Time to first token", "seconds", speed, [rows[f"{p}_ttft_s"] for p in percentiles])],
        })
    if seed:
        rows = {r.metric.key: r for r in seed.rows}
        panels = [("Output tokens/s", "tokens/s", seed, [rows[k] for k in ("OP tokens/sec",) if k in rows]),
                  ("Request latency", "ms", seed, [rows[k] for k in ("Avg. latency (ms)", "P90 latency (ms)",
                                                                      "P99 latency (ms)") if k in rows])]
        charts["seed_004.png"] = [panel for panel in panels if panel[-1]]
    return {name: panels for name, panels in charts.items() if panels}


def draw_load_curves(fig, curves: LoadCurves, title: str) -> None:
    """One panel per curve latency: each configuration's points by concurrency, its Pareto front dashed."""
    names = list(dict.fromkeys(p.configuration for p in curves.points))
    for ax, (latency, label) in zip(fig.subplots(1, len(CURVE_LATENCIES), squeeze=False)[0], CURVE_LATENCIES):
        drawn = curve_points(curves.points, latency)
        for name in names:
            mine = sorted((p for p in drawn if p.configuration == name), key=lambda p: p.concurrency)
            if mine:
                ax.plot([p.mean(latency) for p in mine], [p.per_gpu() for p in mine], marker="o", label=name)
                for p in mine:
                    ax.annotate(str(p.concurrency), (p.mean(latency), p.per_gpu()), fontsize=6,
                                textcoords="offset points", xytext=(3, 3))
        front = curves.fronts[latency]
        if front:
            ax.plot([p.mean(latency) for p in front], [p.per_gpu() for p in front], linestyle="--", color="black",
                    marker="s", markerfacecolor="none", markersize=10, label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel(PER_GPU.label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: load curves (labels: concurrency)", fontsize=9)


def write_charts(report: Report, out: Path) -> List[str]:
    """The sections' bar charts and the load curves; rendered with Agg through matplotlib's Figure API."""
    from matplotlib.figure import Figure  # lazily: the tables do not need matplotlib

    written = []
    for name, panels in bar_charts(report).items():
        width = max(6.4, 1.6 * len(panels[0][2].columns))
        fig = Figure(figsize=(width * len(panels), 4.8), layout="constrained")
        for ax, (title, ylabel, table, rows) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            _bars(ax, table.columns, rows, ylabel)
            ax.set_title(title)
        fig.suptitle(report.experiment, fontsize=9)
        fig.savefig(out / name, dpi=100)
        written.append(name)
    curves = report.load_curves
    if curves and any(curve_points(curves.points, latency) for latency, _ in CURVE_LATENCIES):
        fig = Figure(figsize=(6.4 * len(CURVE_LATENCIES), 4.8), layout="constrained")
        draw_load_curves(fig, curves, report.experiment)
        fig.savefig(out / LOAD_CURVES_CHART, dpi=100)
        written.append(LOAD_CURVES_CHART)
    return written


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def write_report(report: Report, out: Path, experiment_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    try:
        charts, charts_note = write_charts(report, out), ""
    except ImportError as exc:
        charts, charts_note = [], f"charts skipped: {exc}"
        print(f"[report] {charts_note}", file=sys.stderr)
    (out / "report.md").write_text(report_markdown(report, charts, charts_note))
    (out / "report.json").write_text(json.dumps(report_json(report, charts), indent=2))
    experiment_dir.mkdir(parents=True, exist_ok=True)
    if experiment_dir.resolve() != out.resolve():
        for name in ("report.md", "report.json", *charts):
            shutil.copy2(out / name, experiment_dir / name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", required=True, help="the launcher's report inputs (JSON)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--experiment_dir", required=True)
    parser.add_argument("--accounting", help="sacct output (pipe-separated); absent: hours from the manifests")
    args = parser.parse_args(argv)
    try:
        inputs = read_inputs(Path(args.inputs))
        configurations = [load_configuration(name, stages) for name, stages in inputs.variants.items()]
        report = build_report(inputs, configurations, read_accounting(args.accounting))
    except BadInput as exc:
        print(f"[report] bad input: {exc}", file=sys.stderr)
        return BAD_INPUT
    out = Path(args.output_dir)
    write_report(report, out, Path(args.experiment_dir))
    print((out / "report.md").read_text())
    return REPORT_COMPLETE if report.complete else REPORT_INCOMPLETE


if __name__ == "__main__":
    raise SystemExit(main())
