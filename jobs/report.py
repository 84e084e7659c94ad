"""The comparison report of an experiment or sweep: the seeds' table and more, from the published artifacts.

    python -m jobs.report --inputs INPUTS.json --output_dir OUT --experiment_dir EXP [--accounting ACCOUNTING.psv]

INPUTS.json (launcher.contract.ReportInputs, written by the launcher) names the configurations in display order,
the baseline of the speed-ups and, per configuration, its chain of stages in dependency order: [{"kind", "name",
"artifact"}]. An artifact is complete iff it holds a manifest.json; the benchmark's results are <artifact>/results.json. ACCOUNTING.psv is
`sacct -X -P -n --format=JobIDRaw,JobName,State,ElapsedRaw,AllocTRES,Start,End` for the experiment's jobs
(named `launcher:<experiment>:<stage name>`); without it, hours come from the manifests' start and end times.

Writes report.md, report.json (every table, machine-readable) and PNG charts into OUT and copies them into EXP.
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
from typing import Any, Dict, Iterable, List, Optional, Sequence

from jobs.gpu_check import describe_recorded
from launcher.contract import (MANIFEST, REPORT_INCOMPLETE, RESULTS, ContractError, Manifest, ReportInputs,
                               ReportStage)

REPORT_COMPLETE, BAD_INPUT = 0, 1  # and REPORT_INCOMPLETE (launcher.contract): written, some did not finish
ACCOUNTING_FIELDS = ("JobIDRaw", "JobName", "State", "ElapsedRaw", "AllocTRES", "Start", "End")
ENGINE_KINDS = {"build_engine": "engine (GiB)", "build_drafter_engine": "engine with drafter (GiB)"}
TOP1 = re.compile(r"^redrafter(\d+)_top1$")
GIB = 2 ** 30


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
GATE = Metric("drafter_gate_passed", "quality gate", "")


@dataclass(frozen=True)
class Cell:
    value: Any = None  # None: unknown or not applicable
    speedup: Optional[float] = None
    failed_at: Optional[str] = None  # the kind of the stage the configuration failed at, when value is missing


@dataclass(frozen=True)
class Row:
    metric: Metric
    cells: Dict[str, Cell]  # by configuration name


@dataclass(frozen=True)
class Table:
    title: str
    columns: List[str]
    rows: List[Row]


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
    summary: Optional[dict]  # the benchmark's results summary; None when it has none

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
    tables: Dict[str, Optional[Table]]  # speed, latency, drafter, engines (None: nothing to show)
    usage: Usage

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
    return Configuration(name=name, stages=stages, summary=(results or {}).get("summary"))


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
                 [summary_row(m, configurations, baseline) for m in SPEED_METRICS])


def latency_table(configurations: Sequence[Configuration]) -> Table:
    rows = [summary_row(m, configurations) for m in LATENCY_METRICS]
    accuracy = summary_row(ACCURACY, configurations)
    if any(cell.value is not None for cell in accuracy.cells.values()):
        rows.append(accuracy)
    return Table("Latency", [c.name for c in configurations], rows)


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


def engine_table(configurations: Sequence[Configuration]) -> Optional[Table]:
    """Engine sizes per engine-building stage kind; `—` where a configuration has no such stage."""
    kinds = [k for k in ENGINE_KINDS if any(c.stage(k) for c in configurations)]
    if not kinds:
        return None

    def cell(c: Configuration, kind: str) -> Cell:
        stage = c.stage(kind)
        if stage is None:
            return Cell()
        if not stage.complete:
            return failed_cell(c)
        size = stage.outputs.get("engine_size_bytes")
        return Cell(value=None if size is None else size / GIB)

    rows = [Row(Metric(kind, ENGINE_KINDS[kind], ".2f"), {c.name: cell(c, kind) for c in configurations})
            for kind in kinds]
    return Table("Engine sizes", [c.name for c in configurations], rows)


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


def gpu_usage(stages: Sequence[StageState], accounting: Optional[str], experiment: str) -> Usage:
    jobs = parse_accounting(accounting) if accounting is not None else []
    if any(stage_jobs(s, jobs, experiment) for s in stages):
        return Usage("accounting", "from Slurm accounting: GPUs (gres/gpu) x elapsed time, every attempt of a stage",
                     usage_from_accounting(stages, jobs, experiment))
    why = "accounting unavailable" if accounting is None else "accounting has no record of this experiment's jobs"
    return Usage("manifests", f"{why}: wall-clock hours from manifests (GPU count unknown)",
                 usage_from_manifests(stages))


def build_report(inputs: ReportInputs, configurations: List[Configuration], accounting: Optional[str]) -> Report:
    baseline = choose_baseline(configurations, inputs.baseline)
    tables = {"speed": speed_table(configurations, baseline), "latency": latency_table(configurations),
              "drafter": drafter_table(configurations), "engines": engine_table(configurations)}
    return Report(experiment=inputs.experiment, requested_baseline=inputs.baseline,
                  baseline=baseline.name if baseline else None, configurations=configurations, tables=tables,
                  usage=gpu_usage(unique_stages(configurations), accounting, inputs.experiment))


# --------------------------------------------------------------------------------------------------
# Rendering: JSON, markdown (pure), charts
# --------------------------------------------------------------------------------------------------
def cell_json(cell: Cell) -> dict:
    found = {"value": cell.value}
    if cell.speedup is not None:
        found["speedup"] = cell.speedup
    if cell.failed_at:
        found["failed_at"] = cell.failed_at
    return found


def table_json(table: Optional[Table]) -> Optional[dict]:
    if table is None:
        return None
    return {"title": table.title, "columns": table.columns,
            "rows": [{"key": r.metric.key, "label": r.metric.label,
                      "cells": {name: cell_json(cell) for name, cell in r.cells.items()}} for r in table.rows]}


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
        "gpu_usage": {"source": usage.source, "note": usage.note, "stages": [vars(r) for r in usage.rows],
                      "total_hours": usage.total_hours, "total_gpu_hours": usage.total_gpu_hours},
        "charts": list(charts),
    }


def format_cell(cell: Cell, fmt: str) -> str:
    if cell.failed_at and cell.value is None:
        return f"failed at {cell.failed_at}"
    if cell.value is None:
        return "—"
    if isinstance(cell.value, bool):
        return "passed" if cell.value else "below the gate"
    text = format(cell.value, fmt)
    return text if cell.speedup is None else f"{text} ({cell.speedup:.2f}x)"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

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
    sections = [("speed", ["throughput.png", "generation_time.png"]), ("latency", ["latency.png"]),
                ("drafter", []), ("engines", [])]
    for key, chart_names in sections:
        table = report.tables.get(key)
        if table is not None:
            parts += [f"## {table.title}", table_markdown(table), *(images[n] for n in chart_names if n in images)]
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


def write_charts(report: Report, out: Path) -> List[str]:
    """throughput.png, generation_time.png, latency.png; rendered with Agg through matplotlib's Figure API."""
    from matplotlib.figure import Figure  # lazily: the tables do not need matplotlib

    speed, latency = report.tables["speed"], report.tables["latency"]
    rows = {r.metric.key: r for r in [*speed.rows, *latency.rows]}
    percentiles = ("p50", "p90", "p99")
    charts = {  # file: panels of (title, y label, the rows drawn as bars)
        "throughput.png": [("Throughput", "tokens/s",
                            [rows["batch_throughput_tok_s"], rows["avg_sample_throughput_tok_s"]])],
        "generation_time.png": [("Total generation time", "seconds", [rows["total_generation_time_s"]])],
        "latency.png": [("End-to-end latency", "seconds", [rows[f"{p}_latency_s"] for p in percentiles]),
                        ("Time to first token", "seconds", [rows[f"{p}_ttft_s"] for p in percentiles])],
    }
    width = max(6.4, 1.6 * len(speed.columns))
    for name, panels in charts.items():
        fig = Figure(figsize=(width * len(panels), 4.8), layout="constrained")
        for ax, (title, ylabel, rows) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
            _bars(ax, speed.columns, rows, ylabel)
            ax.set_title(title)
        fig.suptitle(report.experiment, fontsize=9)
        fig.savefig(out / name, dpi=100)
    return list(charts)


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
