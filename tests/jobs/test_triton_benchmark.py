"""jobs/triton_benchmark.py: the seed's table formulas, and the OpenAI transport against the trtllm-serve stand-in.

The Triton transport runs against the tritonserver stand-in in tests/standins/test_triton_standins.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import triton_benchmark as tb
from tests.standins.servers.openai_server import OpenAIStandinServer

TOKENIZER = Path(__file__).resolve().parents[1] / "standins" / "data" / "tiny_tokenizer"


def test_seed_totals_give_the_seed_table():
    # seed 004, FP16: 98 requests, Total latency 9345.36 ms, Total request latencies 502845.798 ms, 41.49 OP/request
    figures = tb.throughput(98, 9345.36, 502845.798, 98 * 41.49)
    assert round(figures["Requests/Sec"], 2) == 10.49
    assert round(figures["OP tokens/sec"], 2) == 435.08
    assert figures["Avg. InFlight requests"] == pytest.approx(53.8, abs=0.05)  # the seed's sampled profile: 53.86


def test_nearest_rank_percentiles_as_identity_test():
    values = list(range(1, 99))  # 98 latencies
    assert tb.nearest_rank(values, 0.99) == 98  # ceil(97.02) = 98th
    assert tb.nearest_rank(values, 0.90) == 89  # ceil(88.2) = 89th


def test_table_from_request_timings():
    timings = [tb.RequestTiming(0, 10, 5, start_s=0.0, end_s=1.0, output_tokens=4),
               tb.RequestTiming(1, 20, 5, start_s=0.5, end_s=2.0, output_tokens=6),
               tb.RequestTiming(2, 30, 5, start_s=0.5, end_s=0.9, error="boom")]
    table = tb.seed_table(timings)
    assert list(table) == list(tb.TABLE_KEYS)
    assert table["Total requests"] == 2 and table["Total latency (ms)"] == pytest.approx(2000)
    assert table["Requests/Sec"] == pytest.approx(1.0) and table["OP tokens/sec"] == pytest.approx(5.0)
    assert table["Avg. latency (ms)"] == pytest.approx(1250) and table["P99 latency (ms)"] == pytest.approx(1500)
    assert table["Avg. InFlight requests"] == pytest.approx(1.25)
    assert table["Avg. IP tokens per request"] == 15 and table["Avg. OP tokens per request"] == 5
    with pytest.raises(ValueError, match="no request finished"):
        tb.seed_table(timings[2:])


def write_prompts(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_openai_transport_streams_all_prompts_and_counts_tokens(tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": f"story {i}", "input_tokens": 3, "max_tokens": 4 + i}
                                                   for i in range(6)])
    script = {"default": {"text": " ".join(f"t{i}" for i in range(40)), "delay": 0.01}}
    with OpenAIStandinServer(script) as server:
        rc = tb.main(["--protocol", "openai", "--url", server.url, "--model", "standin-model",
                      "--prompts", str(prompts), "--output", str(tmp_path / "r.json")])
        seen = server.snapshot()
    results = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and results["errors"] == 0
    assert [r["output_tokens"] for r in results["requests"]] == [4 + i for i in range(6)]
    assert results["table"]["Total requests"] == 6
    assert {r["max_tokens"] for r in seen} == {4 + i for i in range(6)}
    assert all(r["stream"] for r in seen)


def test_openai_refusal_fails_the_run_after_writing_results(tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": "short", "input_tokens": 2, "max_tokens": 3},
                                                   {"prompt": "word " * 80, "input_tokens": 80, "max_tokens": 3}])
    tokenizer = str(TOKENIZER)
    with OpenAIStandinServer(tokenizer=tokenizer, max_seq_len=50) as server:
        rc = tb.main(["--protocol", "openai", "--url", server.url, "--model", "m", "--prompts", str(prompts),
                      "--output", str(tmp_path / "r.json"), "--concurrency", "1"])
    results = json.loads((tmp_path / "r.json").read_text())
    assert rc == 1 and results["errors"] == 1
    assert "HTTP 400" in results["requests"][1]["error"] and "max_seq_len (50)" in results["requests"][1]["error"]
    assert results["table"]["Total requests"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "triton", "--model", "tensorrt_llm"], "--model must be one of ensemble, tensorrt_llm_bls"),
    (["--protocol", "openai", "--model", "m", "--concurrency", "-1"], "--concurrency must be >= 0"),
])
def test_bad_arguments_are_named(tmp_path, argv, message):
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": "x", "input_tokens": 1, "max_tokens": 1}])
    with pytest.raises(SystemExit, match=message):
        tb.main([*argv, "--url", "x", "--prompts", str(prompts), "--output", str(tmp_path / "r.json")])


def test_prompts_file_without_token_counts_is_refused(tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": "x"}])
    with pytest.raises(ValueError, match=r"p.jsonl:1: no \['input_tokens', 'max_tokens'\]"):
        tb.load_prompts(str(prompts))
