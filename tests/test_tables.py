"""The plan and status tables fit a 120-column terminal and never split a name (`build_drafter_engin|e`)."""
import re
from pathlib import Path

import pytest
from rich.console import Console

from launcher.dispatch.storage import damaged_artifacts
from launcher.preview import plan_table
from launcher.contract import ExperimentState, StageRecord
from launcher.status import status_view
from tests.helpers import plan_for

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
