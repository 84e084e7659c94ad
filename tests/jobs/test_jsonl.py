"""jobs.jsonl: the one reader of the benchmarks' JSONL inputs (jobs.benchmark_client's problems,
jobs.triton_benchmark's prompts): each bad line named by file and number, with how to write the file."""
import json

import pytest

from jobs import benchmark_client, jsonl, triton_benchmark


def write(path, *lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_rows_are_read_in_order_and_blank_lines_skipped(tmp_path):
    path = write(tmp_path / "p.jsonl", json.dumps({"problem": "a"}), "", "   ", json.dumps({"problem": "b", "id": 2}))
    assert benchmark_client.load_problems(path) == [{"problem": "a"}, {"problem": "b", "id": 2}]


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = write(tmp_path / "p.jsonl", json.dumps({"problem": "a"}), "{'problem': 'b'}")
    with pytest.raises(ValueError, match=r"p.jsonl:2: not JSON \(Expecting property name enclosed in double quotes\)"):
        benchmark_client.load_problems(path)


def test_a_row_without_a_required_field_says_how_to_write_the_file(tmp_path):
    path = write(tmp_path / "p.jsonl", json.dumps({"problem": "a"}), json.dumps({"question": "b"}))
    with pytest.raises(ValueError, match=r"p.jsonl:2: no \['problem'\] \(each row is \{problem, expected_answer\?, "
                                         r"id\?\}\)"):
        benchmark_client.load_problems(path)
    prompts = write(tmp_path / "q.jsonl", json.dumps({"prompt": "x", "max_tokens": 1}))
    with pytest.raises(ValueError, match=r"q.jsonl:1: no \['input_tokens'\] \(write the set with python -m "
                                         r"jobs.prompt_set\)"):
        triton_benchmark.load_prompts(prompts)


@pytest.mark.parametrize("load, what", [(benchmark_client.load_problems, "problems"),
                                        (triton_benchmark.load_prompts, "prompts")])
def test_a_file_of_no_rows_is_refused(tmp_path, load, what):
    with pytest.raises(ValueError, match=f"e.jsonl: no {what}$"):
        load(write(tmp_path / "e.jsonl", "", " "))


def test_a_row_that_is_no_object_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"r.jsonl:2: not a JSON object, a list"):
        jsonl.read_rows(write(tmp_path / "r.jsonl", "{}", "[1, 2]"), "rows")


def test_without_required_fields_any_object_row_is_kept(tmp_path):
    assert jsonl.read_rows(write(tmp_path / "r.jsonl", "{}", '{"x": 1}'), "rows") == [{}, {"x": 1}]
