"""The contract's documents are written as json.dumps(document.to_json(), indent=2) would write them, byte for
byte, by a faster path (launcher.contract.indented_json, Document.to_json): what a job reads is unchanged."""
import dataclasses
import json
from collections import OrderedDict, namedtuple
from enum import Enum, IntEnum

import pytest

from launcher.contract import StageSpec, indented_json
from launcher.scripts import stage_spec
from tests.helpers import example_slurm_plan, plan_for


class Color(str, Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


Pair = namedtuple("Pair", "left right")

EDGE_CASES = [
    {}, [], (), "", 0, -7, 2 ** 70, 1.5, -0.0, 1e300, 1e-7, float("nan"), float("inf"), float("-inf"), True, False,
    None, "é \u2603 \U0001F600 \" \\ \n \t \x00 \x7f </script>", [[], {}, [[]], {"a": {}}],
    {"a": [1, 2.5, None, True, "x"], "b": {"c": {"d": []}}, "": ()},
    {1: "int key", 2.5: "float key", True: "true key", None: "null key", "s": "str key"},
    {float("nan"): 1, float("inf"): 2}, OrderedDict(b=1, a=2), Color.RED, {"level": Level.HIGH, Color.RED: [Color.RED]},
    Pair(1, [2, {"x": 3}]), [1.0, 10.0, 0.1, 123456789.123456789],
]


@pytest.mark.parametrize("data", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_indented_json_is_json_dumps_with_an_indent_of_two(data):
    assert indented_json(data) == json.dumps(data, indent=2)


@pytest.mark.parametrize("data", [{"a": object()}, [b"bytes"], {(1, 2): "tuple key"}, {1j}])
def test_what_json_refuses_it_refuses_alike(data):
    with pytest.raises(TypeError) as expected:
        json.dumps(data, indent=2)
    with pytest.raises(TypeError) as raised:
        indented_json(data)
    assert type(raised.value) is type(expected.value)


@pytest.mark.parametrize("plan", [plan_for("+experiment=fp8_redrafter"), plan_for("+experiment=bf16"),
                                  "slurm"], ids=["fp8_redrafter", "bf16", "slurm"])
def test_every_spec_is_written_as_before(plan, tmp_path):
    plan = example_slurm_plan(str(tmp_path)) if plan == "slurm" else plan
    for stage in plan.stages.values():
        spec = stage_spec(plan, stage)
        assert spec.to_json() == dataclasses.asdict(spec)
        spec.write(tmp_path / "spec.json")
        assert (tmp_path / "spec.json").read_text() == json.dumps(dataclasses.asdict(spec), indent=2)
        assert StageSpec.read(tmp_path / "spec.json") == spec
