"""The plan as a person reads it: a table of stages, GPU-hours requested and the critical path; the batch
scripts a dry run writes."""
from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from rich.console import Console, ConsoleOptions
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from launcher.contract import MANIFEST as COMPLETE_MARKER
from launcher.dispatch.storage import ExperimentDir
from launcher.exit_codes import CONFIG_ERROR

if TYPE_CHECKING:  # `status` uses this module's tables, and must not pay for the plan's imports (Hydra, jinja2)
    from launcher.plan import Plan


# Where output goes to a file or a pipe (CI logs, `| tee`), tables keep their width instead of rich's 80 columns.
LOG_WIDTH = 200
Rows = List[List[str]]  # a table's cells, as rich markup


def make_console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=LOG_WIDTH)


def exit_invalid(invalid: Exception, console: Console) -> None:
    """A config error is the user's to fix: the message alone, no traceback, exit code 2 (as argparse)."""
    console.print(f"[red]error:[/red] {escape(str(invalid))}", highlight=False)
    sys.exit(CONFIG_ERROR)


def is_complete(artifact: str) -> bool:
    return os.path.isfile(os.path.join(artifact, COMPLETE_MARKER))


# The artifact column's forms, longest first: its full path under the storage root, `<kind>/<fingerprint[:8]>`,
# or the fingerprint's first 8 characters alone (the stage's name says its kind). A path is one long word, and
# rich splits words, names included (`build_drafter_engin|e` at 120 columns), when a table's words do not fit.
ARTIFACT_FORMS = ("path", "short", "fingerprint")


def artifact_label(artifact: str, storage_root: str, form: str) -> str:
    if form == "path":
        return os.path.relpath(artifact, storage_root)
    path = Path(artifact)
    return f"{path.parent.name}/{path.name[:8]}" if form == "short" else path.name[:8]


class FittedTable:
    """A table laid out when it is printed, for the width it is printed at: the first artifact form whose rows
    fit unwrapped; else the first whose longest words fit, its columns given widths here (rich's own shrinking
    narrows the widest column first, below its longest word); else the last form, as rich lays it out. The
    `whole` columns (stage names) are never wrapped."""

    def __init__(self, title: str, headers: Sequence[str], rows_for: Callable[[str], Rows],
                 whole: Sequence[str] = ("stage",), forms: Sequence[str] = ARTIFACT_FORMS):
        self.title, self.headers, self.rows_for, self.whole, self.forms = title, headers, rows_for, whole, forms

    def table(self, rows: Rows, widths: Optional[List[int]] = None) -> Table:
        table = Table(title=self.title, title_justify="left")
        for i, header in enumerate(self.headers):
            table.add_column(header, overflow="fold", no_wrap=header in self.whole,
                             width=widths[i] if widths else None)
        for row in rows:
            table.add_row(*row)
        return table

    def fitted(self, console: Console, width: int) -> Table:
        options = console.options.update_width(1 << 20)  # a cell's own widths, not clamped to the console's

        def ranges(rows: Rows) -> List[Tuple[int, int]]:
            result = []
            for i, header in enumerate(self.headers):
                cells = [Measurement.get(console, options, Text.from_markup(cell))
                         for cell in (escape(header), *(row[i] for row in rows))]
                longest = max(m.maximum for m in cells)
                result.append((longest if header in self.whole else max(m.minimum for m in cells), longest))
            return result

        room = width - (3 * len(self.headers) + 1)  # the borders, and a space either side of each cell
        candidates = []
        for form in self.forms:
            rows = self.rows_for(form)
            candidates.append((rows, ranges(rows)))
            if sum(most for _, most in candidates[-1][1]) <= room:
                return self.table(rows)
        for rows, widths in candidates:
            if sum(least for least, _ in widths) <= room:
                return self.table(rows, _share(widths, room))
        return self.table(candidates[-1][0])

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        yield self.fitted(console, options.max_width)


def _share(ranges: List[Tuple[int, int]], room: int) -> List[int]:
    """Every column its longest word, then what is left to the columns that need least to be whole."""
    widths = [least for least, _ in ranges]
    left = room - sum(widths)
    for i in sorted(range(len(ranges)), key=lambda i: ranges[i][1] - ranges[i][0]):
        more = min(ranges[i][1] - ranges[i][0], left)
        widths[i] += more
        left -= more
    return widths


PLAN_COLUMNS = ("stage", "depends on", "GPUs x nodes", "time limit", "container", "artifact", "state")


# Past this many stages a table printed is a summary, one row per stage kind, and the whole table goes to a file:
# rich lays out a thousand rows in seconds (12 s for 1100), and no one reads them in a terminal.
SUMMARY_ROWS = 60
PLAN_STATE_COLORS = {"damaged: to rebuild": "red", "complete": "green"}


def plan_states(plan: Plan, damaged: Dict[str, str]) -> Dict[str, str]:
    return {name: "damaged: to rebuild" if name in damaged else "complete" if is_complete(stage.artifact) else "to run"
            for name, stage in plan.stages.items()}


def plan_cells(plan: Plan, states: Dict[str, str], artifact_form: str) -> Rows:
    """The plan table's cells as plain text (PLAN_COLUMNS)."""
    from launcher.scripts import format_time_limit  # here: a plan is there, so are its imports

    return [[stage.name, ", ".join(stage.deps) or "-", f"{stage.resources.gpus_per_node} x {stage.resources.nodes}",
             format_time_limit(stage.resources.time_min), "+".join(stage.containers),
             artifact_label(stage.artifact, plan.storage_root, artifact_form), states[stage.name]]
            for stage in plan.stages.values()]


def colored(text: str, color: Optional[str]) -> str:
    return f"[{color}]{escape(text)}[/{color}]" if color else escape(text)


def plan_table(plan: Plan, damaged: Dict[str, str]) -> FittedTable:
    """The plan's stages, fitted to the width they are printed at. `damaged`: {stage: problem}, from
    launcher.dispatch.storage.damaged_artifacts, which the caller reports too (it stats every file once)."""
    states = plan_states(plan, damaged)

    def rows(artifact_form: str) -> Rows:  # names such as quantize[qformat=fp8] would read as rich markup: escaped
        return [[*map(escape, cells[:-1]), colored(cells[-1], PLAN_STATE_COLORS.get(cells[-1]))]
                for cells in plan_cells(plan, states, artifact_form)]

    return FittedTable(f"plan of {escape(plan.experiment)}", PLAN_COLUMNS, rows)


WIDEST_CELL = 80


def write_text_table(path: Path, title: str, headers: Sequence[str], rows: Rows) -> None:
    """A table as plain fixed-width text, for a file: SUMMARY_ROWS' whole table. A column is as wide as its
    longest cell of at most WIDEST_CELL characters: a longer one (the report depends on every stage) shifts only
    its own line, where padding every line to it would grow the file with the square of the stages."""
    widths = [max(len(cell) for cell in column if len(cell) <= WIDEST_CELL) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (headers, *rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([title, *lines]) + "\n")


def summary_table(title: str, stages: Sequence[Tuple[str, str]], gpu_hours: Optional[Dict[str, float]] = None) -> Table:
    """One row per stage kind of `stages` ((kind, state) each): how many stages, how many in each state, and
    the GPU-hours the kind requests when given."""
    counts: Dict[str, Dict[str, int]] = {}
    for kind, state in stages:
        counted = counts.setdefault(kind, {})
        counted[state] = counted.get(state, 0) + 1
    states = list(dict.fromkeys(state for _, state in stages))
    table = Table(title=title, title_justify="left")
    table.add_column("stage kind", no_wrap=True)
    for header in ("stages", *states, *(["GPU-hours"] if gpu_hours else [])):
        table.add_column(escape(header), justify="right")
    for kind, counted in counts.items():
        table.add_row(escape(kind), str(sum(counted.values())), *(str(counted.get(s, 0)) for s in states),
                      *([f"{gpu_hours[kind]:.1f}"] if gpu_hours else []))
    return table


def print_requests(plan: Plan, console: Console) -> None:
    """What the plan asks of the cluster, shared stages counted once."""
    from launcher.scripts import format_time_limit  # here: a plan is there, so are its imports

    path, minutes = plan.critical_path()
    console.print(f"GPU-hours requested: {plan.gpu_hours:.1f} (GPUs x time limit, each stage counted once)")
    many = len(plan.stages) > SUMMARY_ROWS  # one line per kind (and setting), not one per stage
    savings = sizing_savings(plan)
    if savings and many:
        savings = savings_by_kind(plan, savings)
    if savings:
        naive_total = plan.gpu_hours + sum(naive - requested for _, _, requested, naive in savings)
        console.print("  sized to each stage, against every stage on the serving GPUs with fixed time limits:")
        for name, naive_request, requested, naive in savings:
            console.print(f"    {escape(name)}: {requested:.1f} instead of {naive:.1f} ({naive_request}), "
                          f"saves {naive - requested:.1f}")
        console.print(f"  total: {plan.gpu_hours:.1f} instead of {naive_total:.1f}, "
                      f"saves {naive_total - plan.gpu_hours:.1f} ({1 - plan.gpu_hours / naive_total:.0%})")
    drafters = [(stage.name, drafter_gpus_choice(stage.cfg)) for stage in plan.stages.values()
                if stage.kind == "train_drafter"]
    if many:
        counts = Counter(choice for _, choice in drafters)
        drafters = [(f"{count} train_drafter stage(s)", choice) for choice, count in counts.items()]
    for name, choice in drafters:
        console.print(f"  {escape(name)}: {choice}")
    console.print(f"critical path: {escape(' -> '.join(path))} ({format_time_limit(minutes)} of time limits)")


def drafter_gpus_choice(cfg) -> str:
    """What twice the drafter's GPUs would change: the data-parallel trainer splits the same GPU-hours
    (launcher.stages.train_drafter_time_limit_min), so its time, and the critical path through it, halve;
    drafter.scale_out_gpus keeps the global batch (launcher.commands.drafter_data_parallel)."""
    from launcher.commands import drafter_data_parallel
    from launcher.scripts import format_time_limit
    from launcher.stages import train_drafter_time_limit_min

    gpus, accumulation = drafter_data_parallel(cfg)
    chosen = (f"drafter.scale_out_gpus={cfg.drafter.scale_out_gpus}: {gpus} GPUs x accumulation {accumulation}"
              if cfg.drafter.scale_out_gpus is not None else f"drafter.num_gpus={gpus} (your choice)")
    return (f"{chosen} needs {format_time_limit(train_drafter_time_limit_min(cfg))}; "
            f"{2 * gpus} would need {format_time_limit(train_drafter_time_limit_min(cfg, 2 * gpus))} "
            f"for the same GPU-hours (drafter.scale_out_gpus={2 * gpus} keeps the global batch)")


def sizing_savings(plan: Plan) -> List[Tuple[str, str, float, float]]:
    """(stage, what a one-size setting asks, GPU-hours requested, GPU-hours that setting would request) for each
    stage its kind sizes below the one-size setting (launcher.stages.StageKind.naive_gpus and
    naive_time_limit_min): fewer GPUs than the serving ones, none for the CPU stages, a time limit from the work."""
    from launcher.scripts import format_time_limit
    from launcher.stages import KINDS

    rows = []
    for stage in plan.stages.values():
        kind, r, cfg = KINDS[stage.kind], stage.resources, stage.cfg
        gpus = kind.naive_gpus(cfg)
        minutes = int(cfg.cluster.time_limits.get(kind.name, kind.naive_time_limit_min or r.time_min))
        naive = gpus * minutes / 60
        if naive > r.gpu_hours:
            rows.append((stage.name, f"{gpus} GPUs x {format_time_limit(minutes)}", r.gpu_hours, naive))
    return rows


def savings_by_kind(plan: Plan, savings: List[Tuple[str, str, float, float]]) -> List[Tuple[str, str, float, float]]:
    """sizing_savings summed over the stages of each kind and one-size setting."""
    groups: Dict[Tuple[str, str], List[float]] = {}
    for name, naive_request, requested, naive in savings:
        group = groups.setdefault((plan.stages[name].kind, naive_request), [0, 0.0, 0.0])
        group[0] += 1
        group[1] += requested
        group[2] += naive
    return [(f"{count} {kind} stage(s)", f"{naive_request} each", requested, naive)
            for (kind, naive_request), (count, requested, naive) in groups.items()]


def print_plan(plan: Plan, console: Console, damaged: Dict[str, str], table_file: Path) -> None:
    """The plan's table, or past SUMMARY_ROWS stages its summary by kind and the whole table in `table_file`."""
    if len(plan.stages) <= SUMMARY_ROWS:
        console.print(plan_table(plan, damaged))
    else:
        states = plan_states(plan, damaged)
        write_text_table(table_file, f"plan of {plan.experiment}", PLAN_COLUMNS, plan_cells(plan, states, "path"))
        gpu_hours: Dict[str, float] = {}
        for stage in plan.stages.values():
            gpu_hours[stage.kind] = gpu_hours.get(stage.kind, 0.0) + stage.resources.gpu_hours
        console.print(summary_table(f"plan of {escape(plan.experiment)}",
                                    [(stage.kind, states[name]) for name, stage in plan.stages.items()], gpu_hours))
        console.print(f"{len(plan.stages)} stages, each in {escape(str(table_file))}", highlight=False, soft_wrap=True)
    print_requests(plan, console)


def job_id_placeholder(stage: str) -> str:
    """What a dry run's script says where the launch's says the job id of `stage` (in --dependency, and in the
    report's sacct): a dry run submits nothing."""
    return f"<{stage}>"


def array_placeholder(stages) -> str:
    """What a dry run's script says where the launch's says the job id of the array job of `stages` (aftercorr)."""
    return job_id_placeholder(f"array:{stages[0].name}")


def write_dry_run_files(plan: Plan, exp: ExperimentDir, code_dir: Path, into: Optional[ExperimentDir] = None) -> None:
    """Every stage's spec and batch script, each script the text a launch of the whole plan gives sbatch but
    for the job ids (job_id_placeholder, array_placeholder): the stages go into jobs and arrays wave by wave as
    the launch groups them (launcher.dispatch.core.job_groups); the report's accounting names every other
    stage's job. `into`: as write_stage_files'."""
    from launcher.dispatch import core, local, slurm  # here: launcher.dispatch imports this module

    executor = next(iter(plan.stages.values())).cfg.cluster.executor
    backend = (slurm.SlurmBackend if executor == "slurm" else local.LocalBackend)(plan, exp, code_dir)
    job_ids = {name: job_id_placeholder(name) for name in plan.stages}
    others = [job_ids[name] for name, stage in plan.stages.items() if stage.kind != "report"]
    arrays: Dict[str, Tuple[str, int]] = {}
    for wave in core.waves(plan, list(plan.stages)):
        for group in core.job_groups(plan, backend, wave, job_ids, arrays):
            core.write_group_files(plan, group, exp, code_dir, others if group.stages[0].kind == "report" else [],
                                   into=into)
            if len(group.stages) > 1:
                arrays.update({stage.name: (array_placeholder(group.stages), i) for i, stage in
                               enumerate(group.stages)})
