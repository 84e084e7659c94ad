"""The plan and status tables fit a 120-column terminal and never split a name (`build_drafter_engin|e`)."""
from collections import Counter

import pytest
from rich.console import Console

from launcher.preview import plan_table
from launcher.status import status_view
from tests.helpers import plan_for

WIDTH = 120


def rendered(renderable, width=WIDTH):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def assert_names_whole(lines, plan, width=WIDTH):
    assert max(len(line) for line in lines) <= width
    cells = Counter(cell.strip().rstrip(",") for line in lines for cell in line.split("│") for cell in cell.split(", "))
    for stage in plan.stages.values():
        assert any(stage.name in line for line in lines), f"{stage.name} is split"
        if cells[stage.name] == 0:  # the name is on a line, but not as a cell of its own: split across cells
            pytest.fail(f"{stage.name} is not one cell: {[line for line in lines if stage.name in line]}")


def dependents(plan, name):
    return sum(name in stage.deps for stage in plan.stages.values())


@pytest.mark.parametrize("experiment", ["fp8_redrafter", "aimo2_campaign"])
def test_the_plan_fits_120_columns_with_every_name_whole(experiment, tmp_path):
    plan = plan_for(f"+experiment={experiment}", f"cluster.storage_root={tmp_path}")
    assert "build_drafter_engine" in plan.stages
    lines = rendered(plan_table(plan))
    assert_names_whole(lines, plan)
    text = "\n".join(lines)
    for name in plan.stages:  # in the stage column once, and whole in each dependent's "depends on" cell
        assert text.count(name + " ") + text.count(name + ",") >= 1 + dependents(plan, name), name


def test_a_wide_terminal_keeps_the_artifacts_paths(tmp_path):
    plan = plan_for("+experiment=fp8_redrafter", f"cluster.storage_root={tmp_path}")
    text = "\n".join(rendered(plan_table(plan), width=200))
    stage = plan.stages["build_drafter_engine"]
    assert f"artifacts/build_drafter_engine/{stage.fingerprint}" in text


@pytest.mark.parametrize("experiment", ["fp8_redrafter", "aimo2_campaign"])
def test_the_status_table_fits_120_columns_with_every_name_whole(experiment, tmp_path):
    plan = plan_for(f"+experiment={experiment}", f"cluster.storage_root={tmp_path}")
    state = {"experiment": experiment, "executor": "slurm", "storage_root": str(tmp_path),
             "stages": {name: {"job_id": str(1000000 + i), "action": "submitted", "artifact": stage.artifact,
                               "log": None} for i, (name, stage) in enumerate(plan.stages.items())}}
    words = ["COMPLETED", "RUNNING", "PENDING", "UNKNOWN (no completion marker)", "CANCELLED"]
    states = {name: (words[i % len(words)], "1-02:03:04") for i, name in enumerate(plan.stages)}
    lines = rendered(status_view(state, states))
    assert_names_whole(lines, plan)
