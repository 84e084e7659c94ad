"""The plan as a person reads it: a table of stages, GPU-hours requested and the critical path."""
from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobs import artifacts
from launcher.plan import COMPLETE_MARKER, Plan
from launcher.scripts import format_time_limit


# Where output goes to a file or a pipe (CI logs, `| tee`), tables keep their width instead of rich's 80 columns.
LOG_WIDTH = 200


def make_console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=LOG_WIDTH)


def exit_invalid(invalid: Exception, console: Console) -> None:
    """A config error is the user's to fix: the message alone, no traceback, exit code 2 (as argparse)."""
    console.print(f"[red]error:[/red] {escape(str(invalid))}", highlight=False)
    sys.exit(2)


def is_complete(artifact: str) -> bool:
    return os.path.isfile(os.path.join(artifact, COMPLETE_MARKER))


def plan_table(plan: Plan) -> Table:
    table = Table(title=f"plan of {plan.experiment}", title_justify="left")
    for column in ("stage", "depends on", "GPUs x nodes", "time limit", "container", "artifact", "state"):
        table.add_column(column, overflow="fold")
    for stage in plan.stages.values():
        r = stage.resources
        complete = is_complete(stage.artifact)
        damaged = complete and artifacts.problem(stage.artifact, stage.kind, stage.fingerprint)
        table.add_row(  # names such as quantize[qformat=fp8] would read as rich markup: escaped
            escape(stage.name), escape(", ".join(stage.deps)) or "-", f"{r.gpus_per_node} x {r.nodes}",
            format_time_limit(r.time_min), "+".join(stage.containers),
            os.path.relpath(stage.artifact, plan.storage_root),
            "[red]damaged: to rebuild[/red]" if damaged else "[green]complete[/green]" if complete else "to run",
        )
    return table


def print_requests(plan: Plan, console: Console) -> None:
    """What the plan asks of the cluster, shared stages counted once."""
    path, minutes = plan.critical_path()
    console.print(f"GPU-hours requested: {plan.gpu_hours:.1f} (GPUs x time limit, each stage counted once)")
    console.print(f"critical path: {escape(' -> '.join(path))} ({format_time_limit(minutes)} of time limits)")


def print_plan(plan: Plan, console: Console) -> None:
    console.print(plan_table(plan))
    print_requests(plan, console)
