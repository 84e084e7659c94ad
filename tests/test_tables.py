"""The plan and status tables fit a 120-column terminal and never split a name (`build_drafter_engin|e`)."""
import re
from pathlib import Path

import pytest
from rich.console import Console

from launcher.dispatch.storage import damaged_artifacts
from launcher.plan import build_plan
from launcher.preview import SUMMARY_ROWS, plan_table, print_plan
from launcher.contract import ExperimentState, StageRecord
from launcher.status import status_view
from launcher.stages import KINDS
from tests.helpers import compose_config, plan_for

WIDTH = 120
BORDERS = re.compile(r"[\s│┃━─┏┓┗┛┡┩└┘┌┐┳┻╇┼┴┬╋,]+")


def rendered(renderable, width=WIDTH):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def words(lines):
    return {word for line in lines for word in BORDERS.split(line) if word}


def assert_fits_with_no_word_split(renderable, plan):
    """Every word of the table at 120 columns is a whole word of its cells (as a terminal wide enough for
    all of them shows them, or an artifact's shorter form): a name folded over two lines is two fragments
    that are neither. And every stage's name is whole on one line."""
    lines = rendered(renderable)
    assert max(len(line) for line in lines) <= WIDTH
    whole = words(rendered(renderable, width=1000))
    for stage in plan.stages.values():
        fingerprint = Path(stage.artifact).name
        whole |= {fingerprint[:8], f"{stage.kind}/{fingerprint[:8]}"}
        assert any(stage.name in BORDERS.split(line) for line in lines), f"{stage.name} is not whole"
    assert words(lines) <= whole, f"split: {sorted(words(lines) - whole)}"


@pytest.mark.parametrize("experiment", ["fp8_redrafter", "aimo2_campaign"])
def test_the_plan_fits_120_columns_with_every_name_whole(experiment, tmp_path):
    plan = plan_for(f"+experiment={experiment}", f"cluster.storage_root={tmp_path}")
    assert "build_drafter_engine" in plan.stages
    assert_fits_with_no_word_split(plan_table(plan, damaged_artifacts(plan)), plan)
    # A terminal (or log) wide enough keeps each artifact's whole path.
    stage = plan.stages["build_drafter_engine"]
    assert f"artifacts/build_drafter_engine/{stage.fingerprint}" in "\n".join(rendered(plan_table(plan, damaged_artifacts(plan)), 200))


@pytest.mark.parametrize("experiment", ["fp8_redrafter", "aimo2_campaign"])
def test_the_status_table_fits_120_columns_with_every_name_whole(experiment, tmp_path):
    plan = plan_for(f"+experiment={experiment}", f"cluster.storage_root={tmp_path}")
    state = ExperimentState(
        experiment=experiment, executor="slurm", storage_root=str(tmp_path), code="", submitted_at=0, umask="027",
        stages={name: StageRecord(kind=stage.kind, fingerprint=stage.fingerprint, artifact=stage.artifact,
                                  action="submitted", job_id=f"{4711000 + i}_{i}", log=None)
                for i, (name, stage) in enumerate(plan.stages.items())})
    said = ["COMPLETED", "RUNNING", "PENDING", "UNKNOWN (no completion marker)", "CANCELLED"]
    states = {name: (said[i % len(said)], "1-02:03:04") for i, name in enumerate(plan.stages)}
    assert_fits_with_no_word_split(status_view(state, states), plan)


def big_plan(storage_root):
    """16 points, each with its own drafter, conversion, engine and benchmark: past preview.SUMMARY_ROWS stages."""
    common = ["+experiment=fp8_redrafter", f"cluster.storage_root={storage_root}"]
    plan = build_plan("sweep", {f"point{i}": compose_config(*common, f"drafter.learning_rate={0.0001 * (i + 1):.4f}")
                                for i in range(16)})
    assert len(plan.stages) > SUMMARY_ROWS
    return plan


def kind_rows(lines):
    """{stage kind: its cells} of a summary table."""
    return {cells[0]: cells[1:] for line in lines for cells in [[c for c in BORDERS.split(line) if c]]
            if cells and cells[0] in KINDS}


def assert_every_stage_in(path, names):
    lines = path.read_text().splitlines()
    assert {line.split()[0] for line in lines[2:]} == set(names)


def test_a_big_plan_prints_one_row_per_stage_kind_and_writes_every_stage_to_a_file(tmp_path):
    plan = big_plan(tmp_path)
    console = Console(width=WIDTH, record=True, color_system=None)
    print_plan(plan, console, {}, tmp_path / "plan.txt")
    shown = console.export_text()
    rows = kind_rows(shown.splitlines())
    stages_per_kind = {kind: sum(s.kind == kind for s in plan.stages.values()) for kind in rows}
    assert rows["train_drafter"][:2] == ["16", "16"]  # stages, to run
    assert {kind: int(cells[0]) for kind, cells in rows.items()} == stages_per_kind
    assert sum(stages_per_kind.values()) == len(plan.stages)
    assert "train_drafter_" not in shown.replace("16 train_drafter stage(s)", "")  # no stage is listed
    assert_every_stage_in(tmp_path / "plan.txt", plan.stages)
    assert f"{len(plan.stages)} stages, each in {tmp_path / 'plan.txt'}" in shown


def test_a_big_experiments_status_counts_states_per_kind_and_writes_every_stage_to_a_file(tmp_path):
    plan = big_plan(tmp_path)
    state = ExperimentState(
        experiment="sweep", executor="slurm", storage_root=str(tmp_path), code="", submitted_at=0, umask="027",
        stages={name: StageRecord(kind=stage.kind, fingerprint=stage.fingerprint, artifact=stage.artifact,
                                  action="submitted", job_id=str(4711000 + i), log=None)
                for i, (name, stage) in enumerate(plan.stages.items())})
    states = {name: ("COMPLETED" if stage.kind == "train_drafter" else "PENDING", "0:00:01")
              for name, stage in plan.stages.items()}
    rows = kind_rows(rendered(status_view(state, states, tmp_path / "status.txt")))
    assert rows["train_drafter"] == ["16", "0", "16"]  # stages, PENDING, COMPLETED (the states in order seen)
    assert rows["benchmark"] == ["16", "16", "0"]
    assert_every_stage_in(tmp_path / "status.txt", plan.stages)
