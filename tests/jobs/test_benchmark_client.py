"""Tests of jobs/benchmark_client.py against the TEST STAND-IN servers (tests/standins/servers/).

The tokenizer is built here: WhitespaceSplit + WordLevel (every token unknown), so a text's token
count is its number of whitespace-separated words, and a simple ChatML-like chat template.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from jobs import benchmark_client as bc
from jobs.calibration_data import user_turn
from tests.standins.servers.openai_server import STANDIN_LABEL, OpenAIStandinServer
from tests.standins.servers.guarded_sandbox import GuardedSandbox

REPO = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROBLEM = "What is 6 times 7?"
TOOL_TOKENS = ["Let ", "me ", "compute.\n", "<tool_call>\n", "print(6*7)\n", "</tool_call>", "\nSo ", "\\boxed{42}"]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return bc.load_tokenizer(tokenizer_dir)


def expected_prompt(problem: str = PROBLEM) -> str:
    return ("<|im_start|>user\nSolve the following math problem. Make sure to put the answer (and only answer) "
            f"inside \\boxed{{}}.\n\n{problem}<|im_end|>\n<|im_start|>assistant\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cfg, tokenizer, problems=None):
    return asyncio.run(bc.run_benchmark(cfg, problems or [{"problem": PROBLEM, "expected_answer": "42"}], tokenizer))


def by_seed(results):
    return {r["seed"]: r for r in results["records"]}


def server_prompt_tokens(tokenizer, prompt: str) -> int:
    """A completion prompt's tokens as trtllm-serve counts them (add_special_tokens defaults to true)."""
    return len(tokenizer.encode(prompt, add_special_tokens=True))


def write_engine(path: Path, max_seq_len: int, tp: int = 1) -> Path:
    """A stand-in TensorRT-LLM engine dir: config.json (pretrained_config mapping, build_config) and rank files."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "version": "1.1.0rc0", "pretrained_config": {"mapping": {"tp_size": tp, "pp_size": 1}},
        "build_config": {"max_seq_len": max_seq_len, "max_input_len": max_seq_len}}))
    for rank in range(tp):
        (path / f"rank{rank}.engine").write_text("stand-in engine")
    return path


# --------------------------------------------------------------------------------------------------
# Streaming and the protocol
# --------------------------------------------------------------------------------------------------
def test_prompt_uses_chat_template_and_generic_math_text(tokenizer):
    assert bc.build_prompt(tokenizer, "generic/math", PROBLEM) == expected_prompt()


def test_streaming_records_text_tokens_and_timings(tokenizer):
    script = {"default": {"text": "one two three four \\boxed{42}", "delay": 0.1, "first_token_delay": 0.3}}
    with OpenAIStandinServer(script) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=3,
                                 cancel_after=3, temperature=0.7, max_new_tokens=50, max_code_executions=0)
        res = run(cfg, tokenizer)
        assert srv.wait_idle()
        reqs = srv.snapshot()
    assert sorted(r["seed"] for r in reqs) == [0, 1, 2]
    for r in reqs:
        assert r["stream"] is True and r["prompt"] == expected_prompt() and r["model"] == "tiny"
        assert r["temperature"] == 0.7 and r["max_tokens"] == 50 and r["stop"] is None
        assert r["outcome"] == "completed"
    for seed, rec in by_seed(res).items():
        assert rec["status"] == "finished" and rec["finish_reason"] == "stop"
        assert rec["generation"] == "one two three four \\boxed{42}"
        assert rec["output_tokens"] == 5 and rec["answer"] == "42"
        specials_apart = expected_prompt().replace("<|im_start|>", " S ").replace("<|im_end|>", " E ")
        assert rec["input_tokens"] == len(specials_apart.split())
        # Bounds the server's script sets, whatever the load (a chunk cannot arrive before it is sent): the first
        # chunk is sent 0.3 s after the request, each next one 0.1 s later, the end (EOS) 0.1 s after the last.
        assert rec["ttft_s"] >= 0.3 - 0.01
        assert len(rec["itl_s"]) == 4  # one inter-chunk latency per chunk after the first
        last_chunk_s = rec["ttft_s"] + sum(rec["itl_s"])  # the record's own account of when the last text came
        assert last_chunk_s >= 0.3 + 4 * 0.1 - 0.01
        assert rec["e2e_latency_s"] >= max(last_chunk_s, 0.3 + 5 * 0.1 - 0.01)
        assert rec["e2e_latency_s"] == pytest.approx(rec["end_s"] - rec["start_s"])
        assert rec["num_code_executions"] == 0
    s = res["summary"]
    assert s["num_finished"] == 3 and s["total_output_tokens_finished"] == 15
    assert s["majority_vote_accuracy"] == 1.0
    assert s["batch_throughput_tok_s"] == pytest.approx(15 / s["total_generation_time_s"])


def test_cancel_after_k_closes_streams_and_server_sees_disconnects(tokenizer):
    slow = {"text": "slow " * 400, "delay": 0.02}
    script = {"default": {"text": "fast \\boxed{1}", "delay": 0.01}, "seeds": {"3": slow, "4": slow}}
    with OpenAIStandinServer(script) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=5,
                                 cancel_after=3, max_new_tokens=1000, max_code_executions=0)
        res = run(cfg, tokenizer)
        assert srv.wait_idle(5)
        disc = srv.disconnects()
        reqs = srv.snapshot()
    recs = by_seed(res)
    assert [recs[i]["status"] for i in range(5)] == ["finished"] * 3 + ["cancelled"] * 2
    assert sorted(r["seed"] for r in disc) == [3, 4]  # N-K disconnects, exactly the cancelled ones
    assert all(r["emitted_tokens"] < 400 for r in disc)
    assert sum(r["outcome"] == "completed" for r in reqs) == 3
    for i in (3, 4):  # partial text is kept and counted, but not as a finished generation
        assert recs[i]["output_tokens"] > 0 and recs[i]["generation"].startswith("slow ")
    s = res["summary"]
    assert (s["num_finished"], s["num_cancelled"], s["num_errors"]) == (3, 2, 0)
    assert s["total_output_tokens_finished"] == 6
    assert s["total_output_tokens_all"] == 6 + recs[3]["output_tokens"] + recs[4]["output_tokens"]


# --------------------------------------------------------------------------------------------------
# Tool calling
# --------------------------------------------------------------------------------------------------
def test_tool_call_round_trip(tokenizer):
    script = {"default": {"tokens": TOOL_TOKENS, "delay": 0.005}}
    with OpenAIStandinServer(script) as srv, GuardedSandbox() as sb:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=sb.url, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=100, max_code_executions=2, sandbox_timeout=5)
        res = run(cfg, tokenizer)
        assert srv.wait_idle()
        reqs = srv.snapshot()
        calls, deleted = list(sb.calls), list(sb.deleted_sessions)
    first_part = "Let me compute.\n<tool_call>\nprint(6*7)\n</tool_call>"
    tool_output = "\n```output\n42\n```\n"
    rec = res["records"][0]
    assert rec["generation"] == first_part + tool_output + "\nSo \\boxed{42}"
    assert rec["status"] == "finished" and rec["answer"] == "42"
    assert rec["num_code_executions"] == 1 and rec["code_executions"][0]["status"] == "completed"
    assert rec["num_requests"] == 2
    assert rec["output_tokens"] == 6 + 2  # tool output excluded
    # the continuation: same seed, prompt + everything so far, remaining budget
    assert len(reqs) == 2
    assert reqs[0]["stop"] == ["</tool_call>"] and reqs[1]["stop"] == ["</tool_call>"]
    assert reqs[1]["prompt"] == expected_prompt() + first_part + tool_output
    assert reqs[1]["seed"] == 0 and reqs[0]["max_tokens"] == 100 and reqs[1]["max_tokens"] == 100 - 6
    assert len(calls) == 1 and calls[0]["code"] == "print(6*7)" and calls[0]["language"] == "ipython"
    assert calls[0]["timeout"] == 5 and calls[0]["max_output_characters"] == 1000
    assert calls[0]["session_id"] and deleted == [calls[0]["session_id"]]
    assert res["summary"]["total_code_executions"] == 1


def test_max_code_executions_stops_tool_rounds(tokenizer):
    tokens = ["A\n", "<tool_call>\n", "print(1)\n", "</tool_call>", "\nB\n", "<tool_call>\n", "print(2)\n",
              "</tool_call>", "\n\\boxed{3}"]
    with OpenAIStandinServer({"default": {"tokens": tokens, "delay": 0.0}}) as srv, GuardedSandbox() as sb:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=sb.url, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=100, max_code_executions=1)
        res = run(cfg, tokenizer)
        reqs = srv.snapshot()
        calls = list(sb.calls)
    rec = res["records"][0]
    assert rec["num_code_executions"] == 1 and [c["code"] for c in calls] == ["print(1)"]
    assert [r["stop"] for r in reqs] == [["</tool_call>"], None]  # no stop after the last allowed round
    assert rec["generation"] == ("A\n<tool_call>\nprint(1)\n</tool_call>\n```output\n1\n```\n"
                                 "\nB\n<tool_call>\nprint(2)\n</tool_call>\n\\boxed{3}")
    assert rec["answer"] == "3" and rec["status"] == "finished"


def test_sandbox_timeout_is_fed_back_and_generation_continues(tokenizer):
    tokens = ["<tool_call>\n", "import time\ntime.sleep(30)\n", "</tool_call>", "\nfine ", "\\boxed{1}"]
    with OpenAIStandinServer({"default": {"tokens": tokens, "delay": 0.0}}) as srv, GuardedSandbox() as sb:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=sb.url, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=100, max_code_executions=2, sandbox_timeout=0.5)
        res = run(cfg, tokenizer)
        calls = list(sb.calls)
    rec = res["records"][0]
    assert rec["status"] == "finished" and rec["answer"] == "1"
    assert rec["code_executions"][0]["status"] == "timeout"
    assert [c["timeout"] for c in calls] == [0.5]  # the sandbox was told to cut the cell's 30 s sleep off
    assert "</tool_call>\n```output\nTimed out\n```\n\nfine \\boxed{1}" in rec["generation"]


def test_sandbox_error_unreachable_and_truncation_become_output_text(tokenizer):
    tokens = ["<tool_call>\n", "1/0\n", "</tool_call>", "\n<tool_call>\n", "print('x'*5000)\n", "</tool_call>",
              "\n\\boxed{2}"]
    script = {"default": {"tokens": tokens, "delay": 0.0}}
    with OpenAIStandinServer(script) as srv, GuardedSandbox() as sb:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=sb.url, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=100, max_code_executions=2,
                                 max_output_characters=200)
        res = run(cfg, tokenizer)
    rec = res["records"][0]
    assert [c["status"] for c in rec["code_executions"]] == ["error", "completed"]
    outputs = rec["generation"].split("```output\n")[1:]
    assert "ZeroDivisionError" in outputs[0]
    assert outputs[1].startswith("x" * 200 + "<output cut>") and "x" * 201 not in outputs[1]
    assert rec["status"] == "finished" and rec["answer"] == "2"

    # unreachable sandbox: fed back as text, the run goes on
    with OpenAIStandinServer(script) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=f"http://127.0.0.1:{free_port()}", model="tiny",
                                 num_generations=1, cancel_after=1, max_new_tokens=100, max_code_executions=2)
        res = run(cfg, tokenizer)
    rec = res["records"][0]
    assert rec["status"] == "finished" and rec["num_code_executions"] == 2
    assert [c["status"] for c in rec["code_executions"]] == ["sandbox_error"] * 2
    assert rec["generation"].count("```output\nSandbox error: ConnectError") == 2


# --------------------------------------------------------------------------------------------------
# Failures of the LLM server
# --------------------------------------------------------------------------------------------------
def test_server_death_mid_stream_gives_error_record_and_batch_completes(tokenizer):
    script = {"default": {"text": "a b \\boxed{5}", "delay": 0.01},
              "seeds": {"1": {"text": "d " * 50, "delay": 0.01, "die_after": 3}}}
    with OpenAIStandinServer(script) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=3,
                                 cancel_after=3, max_new_tokens=100, max_code_executions=0)
        res = run(cfg, tokenizer)
        outcomes = {r["seed"]: r["outcome"] for r in srv.snapshot()}
    recs = by_seed(res)
    assert outcomes == {0: "completed", 1: "died", 2: "completed"}
    assert recs[1]["status"] == "error" and recs[1]["error"]
    assert recs[1]["output_tokens"] == 3 and recs[1]["generation"] == "d d d "
    assert recs[0]["status"] == recs[2]["status"] == "finished"
    s = res["summary"]
    assert (s["num_finished"], s["num_errors"]) == (2, 1) and s["total_output_tokens_finished"] == 6


def test_unreachable_server_and_cli_writes_results(tokenizer_dir, tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "p1", "problem": PROBLEM, "expected_answer": "42"}) + "\n")
    out = tmp_path / "sub" / "results.json"
    rc = bc.main(["--server-url", f"http://127.0.0.1:{free_port()}", "--sandbox-url", "http://127.0.0.1:1",
                  "--model", "tiny", "--tokenizer", tokenizer_dir, "--problems", str(problems),
                  "--num-generations", "2", "--cancel-after", "1", "--max-code-executions", "0",
                  "--max-seq-len", "32000", "--output", str(out)])
    assert rc == 1  # nothing finished
    data = json.loads(out.read_text())
    assert [r["status"] for r in data["records"]] == ["error", "error"]
    assert data["summary"]["num_errors"] == 2 and data["summary"]["majority_vote_accuracy"] == 0.0

    engine = write_engine(tmp_path / "engine", 32000)
    with OpenAIStandinServer({"default": {"text": "so \\boxed{42}", "delay": 0.0}}, tokenizer=tokenizer_dir,
                             max_seq_len=32000) as srv:
        rc = bc.main(["--server-url", srv.url, "--sandbox-url", "http://127.0.0.1:1", "--model", "tiny",
                      "--tokenizer", tokenizer_dir, "--problems", str(problems), "--num-generations", "12",
                      "--cancel-after", "10", "--temperature", "0.7", "--max-new-tokens", "20000",
                      "--max-code-executions", "0", "--sandbox-timeout", "10", "--engine-dir", str(engine),
                      "--output", str(out)])
        assert {r["outcome"] for r in srv.snapshot()} <= {"completed", "disconnected"}
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) == {"config", "summary", "batches", "records"}
    assert data["config"]["num_generations"] == 12 and data["config"]["tokenizer"] == tokenizer_dir
    assert data["config"]["max_seq_len"] == 32000 and data["config"]["engine_dir"] == str(engine)
    assert data["summary"]["num_finished"] >= 10 and data["summary"]["majority_vote_accuracy"] == 1.0
    assert data["records"][0]["problem_id"] == "p1" and data["batches"][0]["problem_id"] == "p1"


SHIPPED_TOKENIZER = REPO / "tests" / "standins" / "data" / "tiny_tokenizer"


@pytest.mark.skipif(not (SHIPPED_TOKENIZER / "tokenizer_config.json").exists(), reason="no shipped tiny tokenizer")
def test_with_shipped_tiny_bpe_tokenizer():
    tok = bc.load_tokenizer(str(SHIPPED_TOKENIZER))
    text = "We compute 6*7 = 42, so the answer is \\boxed{42}."
    with OpenAIStandinServer({"default": {"text": text, "delay": 0.0}}) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=2,
                                 cancel_after=2, max_new_tokens=100, max_code_executions=0)
        res = run(cfg, str(SHIPPED_TOKENIZER))
        prompts = {r["prompt"] for r in srv.snapshot()}
    rendered = tok.apply_chat_template([{"role": "user", "content": user_turn("generic/math", PROBLEM)}],
                                       tokenize=False, add_generation_prompt=True)
    assert prompts == {rendered} and PROBLEM in rendered
    for rec in res["records"]:
        assert rec["generation"] == text and rec["answer"] == "42"
        assert rec["output_tokens"] == len(tok.encode(text, add_special_tokens=False)) > 0


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------
def _rec(problem, status, toks, e2e=None, ttft=None, itl=(), answer=None, expected=None, execs=0):
    return {"problem_index": problem, "status": status, "output_tokens": toks, "e2e_latency_s": e2e,
            "ttft_s": ttft, "itl_s": list(itl), "answer": answer, "expected_answer": expected,
            "num_code_executions": execs, "input_tokens": 10}


def test_summarize_against_hand_computed_values():
    records = [
        _rec(0, "finished", 100, 4.0, 0.5, [0.1, 0.2], "70", "70", execs=1),
        _rec(0, "finished", 200, 6.0, 1.0, [0.3], "70", "70"),
        _rec(0, "finished", 300, 8.0, 1.5, [], "69", "70", execs=2),
        _rec(0, "cancelled", 50, 9.0, 0.1, [5.0], "69", "70"),  # not finished: no vote, no latency
        _rec(0, "error", 10, 0.2, 0.05, [7.0], "69", "70"),
        _rec(1, "finished", 400, 10.0, 2.0, [0.4, 0.6], "5", "6"),
        _rec(1, "finished", 0, 2.0, None, [], None, "6"),
    ]
    s = bc.summarize(records, 10.0)
    assert (s["num_generations"], s["num_finished"], s["num_cancelled"], s["num_errors"]) == (7, 5, 1, 1)
    assert s["total_generation_time_s"] == 10.0
    assert s["total_output_tokens_finished"] == 1000 and s["total_output_tokens_all"] == 1060
    assert s["batch_throughput_tok_s"] == pytest.approx(100.0)  # 1000 / 10
    assert s["avg_sample_throughput_tok_s"] == pytest.approx(20.0)  # mean(10, 20, 30, 40, 0)
    assert s["std_sample_throughput_tok_s"] == pytest.approx(math.sqrt(200.0))
    assert s["requests_per_s"] == pytest.approx(0.5)
    assert s["output_tokens_per_s"] == pytest.approx(106.0)
    assert s["avg_output_tokens"] == pytest.approx(200.0)
    assert s["avg_input_tokens"] == pytest.approx(10.0)
    # every request in flight, cancelled and failed ones too: (4 + 6 + 8 + 9 + 0.2 + 10 + 2) s over 10 s
    assert s["avg_inflight_requests"] == pytest.approx(3.92)
    # latencies of finished gens: 2, 4, 6, 8, 10
    assert s["avg_latency_s"] == pytest.approx(6.0) and s["p50_latency_s"] == pytest.approx(6.0)
    assert s["p90_latency_s"] == pytest.approx(9.2) and s["p99_latency_s"] == pytest.approx(9.92)
    # TTFT of finished gens with text: 0.5, 1.0, 1.5, 2.0
    assert s["avg_ttft_s"] == pytest.approx(1.25) and s["p50_ttft_s"] == pytest.approx(1.25)
    assert s["p90_ttft_s"] == pytest.approx(1.85) and s["p99_ttft_s"] == pytest.approx(1.985)
    assert s["mean_itl_s"] == pytest.approx(0.32)  # pooled 0.1 0.2 0.3 0.4 0.6
    assert s["total_code_executions"] == 3
    # majority: problem 0 -> 70 (right; counting cancelled/error votes would give 69), problem 1 -> 5 (wrong)
    assert s["majority_vote_accuracy"] == pytest.approx(0.5)
    assert [(p["majority_answer"], p["correct"], p["num_votes"]) for p in s["per_problem"]] == [
        ("70", True, 3), ("5", False, 2)]

    # the seeds' table: 10 finished gens, avg sample throughput = batch throughput / 10
    seeds_like = [_rec(0, "finished", 4225, 30.0, 0.1) for _ in range(10)] + [_rec(0, "cancelled", 3000)] * 2
    s2 = bc.summarize(seeds_like, 30.5)
    assert s2["batch_throughput_tok_s"] == pytest.approx(42250 / 30.5)
    assert s2["avg_sample_throughput_tok_s"] == pytest.approx(42250 / 30.5 / 10)
    assert s2["majority_vote_accuracy"] is None  # no expected answers

    empty = bc.summarize([_rec(0, "error", 0)], 1.0)
    assert empty["num_finished"] == 0 and empty["avg_sample_throughput_tok_s"] is None
    assert empty["p90_latency_s"] is None and empty["batch_throughput_tok_s"] == 0.0


def test_summarize_accepts_generation_records():
    r = bc.GenerationRecord(problem_index=0, seed=0, status="finished", output_tokens=30, e2e_latency_s=3.0,
                            ttft_s=0.3, itl_s=[0.1], answer="1", expected_answer="1")
    s = bc.summarize([r], 3.0)
    assert s["batch_throughput_tok_s"] == pytest.approx(10.0) and s["majority_vote_accuracy"] == 1.0


@pytest.mark.parametrize("text,expected", [
    ("so \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{a{b{c}}d} and \\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}"),
    ("first \\boxed{1} then \\boxed {2}", "2"),
    ("\\boxed{1} then an unclosed \\boxed{2", None),
    ("no answer", None),
    ("", None),
])
def test_extract_boxed(text, expected):
    assert bc.extract_boxed(text) == expected


def test_percentile_majority_and_normalisation():
    assert bc.percentile([], 50) is None
    assert bc.percentile([3.0], 99) == 3.0
    assert bc.percentile([4, 1, 3, 2], 50) == pytest.approx(2.5)
    assert bc.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)
    assert bc.majority_vote(["70", " 70 ", "$70$", "70.0", "69", "69", None, None, None]) == "70"
    assert bc.majority_vote(["b", "a", "a", "b"]) == "b"  # tie: first seen
    assert bc.majority_vote([None]) is None
    assert bc.normalize_answer("1,000") == "1000" and bc.normalize_answer("\\frac{1}{2}") == "\\frac{1}{2}"


def test_percentiles_are_numpys_linear_interpolation():
    numpy = pytest.importorskip("numpy")
    samples = [[0.5, 0.25], [4, 1, 3, 2], [float(x * x % 17) for x in range(1, 40)], [2.0] * 7 + [9.0]]
    for values in samples:
        for q in (50, 90, 99):
            assert bc.percentile(values, q) == pytest.approx(numpy.percentile(values, q), rel=1e-12)
    assert bc.summarize([], 1.0)["p99_latency_s"] is None


# --------------------------------------------------------------------------------------------------
# The completion stream as trtllm-serve writes it: server-sent events, [DONE], error objects
# --------------------------------------------------------------------------------------------------
def stream_one(tokenizer, *events: str, content_type: str = "text/event-stream; charset=utf-8"):
    """One generation (no tools) against a server answering `events`, each one `data:` event."""
    def server(request: httpx.Request) -> httpx.Response:
        body = "".join(f"data: {event}\n\n" for event in events) + ": keep-alive comment\n\n"
        return httpx.Response(200, headers={"content-type": content_type}, content=body.encode())

    async def generate():
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:
            rec = bc.GenerationRecord(problem_index=0, seed=0)
            return await bc.generate_one(client, None, tokenizer, cfg, "prompt ", rec, time.perf_counter(), "s")

    cfg = bc.BenchmarkConfig(server_url="http://llm", sandbox_url=None, model="m", num_generations=1,
                             cancel_after=1, max_code_executions=0)
    return asyncio.run(generate())


def chunk(text: str, finish_reason=None) -> str:
    return json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "stop_reason": None}]})


def test_a_stream_ends_at_done_with_every_piece(tokenizer):
    rec = stream_one(tokenizer, chunk("So "), chunk("\\boxed{42}"), chunk("", "stop"), "[DONE]",
                     chunk("after done "))
    assert (rec.status, rec.finish_reason, rec.generation, rec.answer) == ("finished", "stop", "So \\boxed{42}", "42")
    assert rec.output_tokens == 2 and len(rec.itl_s) == 1


def test_an_error_object_in_the_stream_is_an_error_record_that_keeps_the_partial_text(tokenizer):
    rec = stream_one(tokenizer, chunk("half "), chunk("way "),
                     json.dumps({"error": {"message": "engine failed", "code": 500}}))
    assert rec.status == "error" and rec.error == "StreamError: server error: {'message': 'engine failed', 'code': 500}"
    assert rec.generation == "half way " and rec.output_tokens == 2


@pytest.mark.parametrize("events, error", [
    ([chunk("cut ")], "StreamError: stream ended before [DONE] and without finish_reason"),
    ([chunk("a "), "not json"], "StreamError: bad SSE payload: not json"),
])
def test_a_broken_stream_is_an_error_record(tokenizer, events, error):
    rec = stream_one(tokenizer, *events)
    assert (rec.status, rec.error) == ("error", error)


def test_tool_call_helpers():
    assert bc.has_unclosed_tool_call("x <tool_call>\ncode")
    assert not bc.has_unclosed_tool_call("x <tool_call>\ncode</tool_call>")
    assert bc.extract_tool_code("a <tool_call>\nold</tool_call> <tool_call>\nprint(1)\n</tool_call>") == "print(1)"
    assert bc.format_tool_output("42\n") == "\n```output\n42\n```\n"
    with pytest.raises(ValueError):
        bc.BenchmarkConfig(server_url="u", sandbox_url=None, model="m", num_generations=2, cancel_after=3)
    with pytest.raises(ValueError):
        bc.BenchmarkConfig(server_url="u", sandbox_url=None, model="m", max_code_executions=2)


# --------------------------------------------------------------------------------------------------
# The stand-ins run as programs too
# --------------------------------------------------------------------------------------------------
def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "exited"
        try:
            return httpx.get(url, timeout=1.0, trust_env=False)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_standin_servers_run_as_modules(tmp_path):
    port, port_file = free_port(), tmp_path / "sandbox.port"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.standins.servers.openai_server", "--port", str(port)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
             # the sandbox as the job starts it: the guard, its workers importing the stand-in NeMo-Skills module
             subprocess.Popen([sys.executable, "-m", "jobs.sandbox_guard", "--base-port", str(free_port()),
                               "--port-file", str(port_file), "--memory-limit-mb", "2048", "--timeout-s", "10"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": f"{REPO / 'tests/standins/python'}:{REPO}"})]
    try:
        models = _wait_http(f"http://127.0.0.1:{port}/v1/models", procs[0]).json()
        assert models["data"][0]["owned_by"] == STANDIN_LABEL and "TEST STAND-IN" in STANDIN_LABEL
        assert _wait_http(f"http://127.0.0.1:{port}/health", procs[0]).status_code == 200
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", trust_env=False,
                          json={"model": "m", "prompt": "p", "max_tokens": 3, "stream": True, "seed": 0}) as r:
            lines = [ln for ln in r.iter_lines() if ln.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(ln[5:]) for ln in lines[:-1]]
        # trtllm-serve: the third token's text and finish_reason="length" in one chunk, no empty chunk after it
        assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
        assert chunks[-1]["choices"][0]["text"] != ""
        deadline = time.monotonic() + 60
        while not port_file.is_file() and procs[1].poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        sport = int(port_file.read_text())  # the port the guard chose and listens on
        _wait_http(f"http://127.0.0.1:{sport}/health", procs[1])
        ans = httpx.post(f"http://127.0.0.1:{sport}/execute", headers={"X-Session-ID": "s1"}, trust_env=False,
                         json={"generated_code": "x = 2\nx * 21", "timeout": 5, "language": "ipython",
                               "max_output_characters": 1000, "traceback_verbosity": "Plain"}, timeout=10).json()
        assert ans == {"process_status": "completed", "stdout": "42\n", "stderr": "", "new_session_created": True}
        assert httpx.delete(f"http://127.0.0.1:{sport}/sessions/s1", trust_env=False).status_code == 200
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


# --------------------------------------------------------------------------------------------------
# The sandbox request's traceback_verbosity: a mode IPython's FormattedTB knows
# --------------------------------------------------------------------------------------------------
def test_sandbox_request_names_an_ipython_traceback_mode():
    """The NeMo-Skills sandbox passes traceback_verbosity to IPython's FormattedTB.set_mode, which refuses "plain"."""
    seen = []

    def sandbox(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"process_status": "completed", "stdout": "1\n", "stderr": ""})

    async def execute():
        async with httpx.AsyncClient(transport=httpx.MockTransport(sandbox)) as client:
            return await bc.execute_code(client, cfg, "print(1)", "s1")

    cfg = bc.BenchmarkConfig(server_url="http://llm", sandbox_url="http://sandbox", model="m")
    assert asyncio.run(execute())["status"] == "completed"
    assert seen[0]["traceback_verbosity"] == "Plain"
    ultratb = pytest.importorskip("IPython.core.ultratb")
    ultratb.FormattedTB().set_mode(seen[0]["traceback_verbosity"])  # ValueError: Unrecognized mode ... <plain>
    assert set(bc.TRACEBACK_VERBOSITIES) <= set(ultratb.FormattedTB().valid_modes)


@pytest.mark.parametrize("mode", ["plain", "PLAIN", "Docs", ""])
def test_a_traceback_verbosity_ipython_does_not_know_is_refused(mode):
    with pytest.raises(ValueError, match="FormattedTB accepts Plain, Context, Verbose, Minimal"):
        bc.BenchmarkConfig(server_url="u", sandbox_url="s", model="m", traceback_verbosity=mode)
    assert bc.BenchmarkConfig(server_url="u", sandbox_url="s", model="m", traceback_verbosity="Minimal")


# --------------------------------------------------------------------------------------------------
# Request length: prompt tokens + max_tokens must fit in the engine's max_seq_len
# --------------------------------------------------------------------------------------------------
def test_standin_refuses_a_request_longer_than_the_engine_as_trtllm_serve_does(tokenizer_dir, tokenizer):
    prompt = expected_prompt()
    n = server_prompt_tokens(tokenizer, prompt)
    with OpenAIStandinServer({"default": {"text": "a b c"}}, tokenizer=tokenizer_dir, max_seq_len=n + 10) as srv:
        ok = httpx.post(f"{srv.url}/v1/completions", trust_env=False, timeout=10,
                        json={"model": "m", "prompt": prompt, "max_tokens": 10, "stream": True, "seed": 0})
        refused = httpx.post(f"{srv.url}/v1/completions", trust_env=False, timeout=10,
                             json={"model": "m", "prompt": prompt, "max_tokens": 11, "stream": True, "seed": 0})
        outcomes = [r["outcome"] for r in srv.snapshot()]
    assert ok.status_code == 200 and ok.text.endswith("data: [DONE]\n\n")
    # TensorRT-LLM 1.1.0rc0: llmapi/llm.py _check_arguments' ValueError, as serve/openai_server.py's ErrorResponse
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
    assert refused.content == (
        b'{"object":"error","message":"The sum of prompt length (' + f"{n}.0".encode() + b') and query length (0) '
        b'max_tokens (11) should not exceed max_seq_len (' + f"{n + 10}".encode() + b')","type":"BadRequestError",'
        b'"param":null,"code":400}')
    assert outcomes == ["completed", "rejected"]


def test_client_cuts_each_request_to_the_room_its_prompt_leaves(tokenizer_dir, tokenizer):
    n = server_prompt_tokens(tokenizer, expected_prompt())
    script = {"default": {"text": "w " * 100, "delay": 0.0}}
    with OpenAIStandinServer(script, tokenizer=tokenizer_dir, max_seq_len=n + 7) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=2,
                                 cancel_after=2, max_new_tokens=20000, max_code_executions=0, max_seq_len=n + 7)
        res = run(cfg, tokenizer)
        reqs = srv.snapshot()
    assert [(r["outcome"], r["prompt_tokens"], r["max_tokens"]) for r in reqs] == [("completed", n, 7)] * 2
    for rec in res["records"]:
        assert (rec["status"], rec["finish_reason"], rec["output_tokens"]) == ("finished", "length", 7)
        assert rec["generation"] == "w " * 7


def test_without_the_cut_the_engine_refuses_every_request(tokenizer_dir, tokenizer):
    """What the client did before it knew the engine's max_seq_len: max_tokens = max_new_tokens, refused."""
    n = server_prompt_tokens(tokenizer, expected_prompt())
    with OpenAIStandinServer({"default": {"text": "w " * 100}}, tokenizer=tokenizer_dir, max_seq_len=n + 7) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=None, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=20000, max_code_executions=0)
        res = run(cfg, tokenizer)
        assert [r["outcome"] for r in srv.snapshot()] == ["rejected"]
    rec = res["records"][0]
    assert rec["status"] == "error" and "HTTP 400" in rec["error"]
    assert (f"The sum of prompt length ({n}.0) and query length (0) max_tokens (20000) should not exceed "
            f"max_seq_len ({n + 7})") in rec["error"]


TOOL_THEN_WORDS = ["<tool_call>\n", "print(('w\\n')*30)\n", "</tool_call>"] + ["x "] * 100


@pytest.mark.parametrize("room_after_tool", [5, 0])
def test_tool_outputs_count_against_the_engine_length(tokenizer_dir, tokenizer, room_after_tool):
    """Round 2's prompt is the prompt + 3 generated tokens + the tool output (32 tokens): its max_tokens is what
    that leaves; with no room left the generation ends as `length` without another request."""
    n = server_prompt_tokens(tokenizer, expected_prompt())
    max_seq_len = n + 3 + 32 + room_after_tool
    with OpenAIStandinServer({"default": {"tokens": TOOL_THEN_WORDS, "delay": 0.0}}, tokenizer=tokenizer_dir,
                             max_seq_len=max_seq_len) as srv, GuardedSandbox() as sb:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=sb.url, model="tiny", num_generations=1,
                                 cancel_after=1, max_new_tokens=1000, max_code_executions=2, max_seq_len=max_seq_len)
        res = run(cfg, tokenizer)
        reqs = srv.snapshot()
    rec = res["records"][0]
    tool_output = "\n```output\n" + "w\n" * 30 + "```\n"  # NeMo-Skills strips the output's trailing newlines but one
    assert rec["num_code_executions"] == 1 and tool_output in rec["generation"]
    assert server_prompt_tokens(tokenizer, tool_output) == bc.prompt_tokens(tokenizer, tool_output) == 32
    assert [r["outcome"] for r in reqs] == ["completed"] * len(reqs)
    assert [r["max_tokens"] for r in reqs] == [max_seq_len - n] + ([room_after_tool] if room_after_tool else [])
    assert all(r["prompt_tokens"] + r["max_tokens"] == max_seq_len for r in reqs)
    assert (rec["status"], rec["finish_reason"], rec["num_requests"]) == ("finished", "length", len(reqs))
    assert rec["output_tokens"] == 3 + room_after_tool
    assert rec["generation"].endswith(tool_output + "x " * room_after_tool)


def test_max_seq_len_comes_from_the_engine_config(tmp_path, tokenizer_dir):
    engine = write_engine(tmp_path / "engine", 2560)
    assert bc.engine_max_seq_len(str(engine)) == 2560
    assert bc.resolve_max_seq_len(str(engine), None) == 2560
    assert bc.resolve_max_seq_len(str(engine), 1000) == 1000 and bc.resolve_max_seq_len(str(engine), 4000) == 2560
    assert bc.resolve_max_seq_len(str(tmp_path / "absent"), 1000) == 1000  # tolerated only when given explicitly
    with pytest.raises(ValueError, match="--engine-dir"):
        bc.resolve_max_seq_len(str(tmp_path / "absent"), None)
    (tmp_path / "no_build").mkdir()
    (tmp_path / "no_build" / "config.json").write_text(json.dumps({"pretrained_config": {}}))
    with pytest.raises(ValueError, match="build_config.max_seq_len"):
        bc.resolve_max_seq_len(str(tmp_path / "no_build"), None)
    with pytest.raises(SystemExit) as usage:  # neither: a usage error before anything is sent
        bc.main(["--server-url", "http://127.0.0.1:1", "--model", "m", "--tokenizer", tokenizer_dir,
                 "--problems", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "out.json")])
    assert usage.value.code == 2


def test_trtllm_serve_standin_reads_max_seq_len_from_the_engine_it_serves(tmp_path, tokenizer_dir, tokenizer):
    n = server_prompt_tokens(tokenizer, "p q r")
    engine = write_engine(tmp_path / "engine", n + 4)
    port = free_port()
    serve = [sys.executable, str(REPO / "tests" / "standins" / "bin" / "trtllm-serve"), "serve", str(engine),
             "--tokenizer", tokenizer_dir, "--backend", "trt", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(serve, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=60)
        ask = lambda k: httpx.post(f"http://127.0.0.1:{port}/v1/completions", trust_env=False, timeout=10,  # noqa: E731
                                   json={"model": str(engine), "prompt": "p q r", "max_tokens": k, "stream": True})
        assert ask(4).status_code == 200
        refused = ask(5)
        assert refused.status_code == 400
        assert refused.json()["message"].endswith(f"max_tokens (5) should not exceed max_seq_len ({n + 4})")
    finally:
        proc.terminate()
        proc.wait(10)
    (engine / "config.json").write_text(json.dumps({"pretrained_config": {"mapping": {"tp_size": 1, "pp_size": 1}}}))
    ended = subprocess.run(serve, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ended.returncode == 1 and "build_config.max_seq_len" in ended.stderr


# --------------------------------------------------------------------------------------------------
# The stream's last piece: trtllm-serve sends the last token's text and finish_reason in one chunk
# --------------------------------------------------------------------------------------------------
def _stream(url: str, **body) -> list:
    with httpx.stream("POST", f"{url}/v1/completions", trust_env=False, timeout=10,
                      json={"model": "m", "prompt": "p", "stream": True, "seed": 0, **body}) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(ln[len("data: "):]) for ln in lines[:-1]]


def test_standin_stream_ends_as_trtllm_serve_streams_do():
    script = {"default": {"tokens": ["one ", "two ", "three ", "four"], "delay": 0.0},
              "seeds": {"1": {"tokens": ["a ", "b</tool_call>", " c"], "delay": 0.0}}}
    with OpenAIStandinServer(script) as srv:
        length = _stream(srv.url, max_tokens=3)
        stop = _stream(srv.url, max_tokens=10, seed=1, stop=["</tool_call>"])
        eos = _stream(srv.url, max_tokens=10)
    pieces = lambda chunks: [(c["choices"][0]["text"], c["choices"][0]["finish_reason"],  # noqa: E731
                              c["choices"][0]["stop_reason"]) for c in chunks]
    assert pieces(length) == [("one ", None, None), ("two ", None, None), ("three ", "length", None)]
    assert pieces(stop) == [("a ", None, None), ("b", "stop", "</tool_call>")]
    # the EOS token ends the stream with an empty piece: it detokenizes to nothing
    assert pieces(eos) == [("one ", None, None), ("two ", None, None), ("three ", None, None), ("four", None, None),
                           ("", "stop", None)]
    # CompletionStreamResponse.model_dump_json(): every field, nulls included
    assert set(length[-1]) == {"id", "object", "created", "model", "choices", "usage"}
    assert length[-1]["object"] == "text_completion" and length[-1]["model"] == "m" and length[-1]["usage"] is None
    assert set(length[-1]["choices"][0]) == {"index", "text", "token_ids", "logprobs", "finish_reason", "stop_reason",
                                             "avg_decoded_tokens_per_iter"}


@pytest.mark.parametrize("tokens,max_new_tokens,text,n_tokens,finish", [
    (["one ", "two ", "three ", "four ", "five"], 3, "one two three ", 3, "length"),
    (["a ", "b</tool_call>", " c"], 100, "a b", 2, "stop"),
])
def test_the_last_piece_is_counted(tokenizer, tokens, max_new_tokens, text, n_tokens, finish):
    """The chunk that ends a round carries text ("three ", "b"): it is part of the generation and of its tokens."""
    with OpenAIStandinServer({"default": {"tokens": tokens, "delay": 0.0}}) as srv:
        cfg = bc.BenchmarkConfig(server_url=srv.url, sandbox_url=f"http://127.0.0.1:{free_port()}", model="tiny",
                                 num_generations=1, cancel_after=1, max_new_tokens=max_new_tokens,
                                 max_code_executions=1)
        rec = run(cfg, tokenizer)["records"][0]
        sent = srv.snapshot()[0]["chunks"]
    assert sent[-1] == (text.split()[-1] + " " * (finish == "length"), finish)  # the stream ended on text
    assert (rec["status"], rec["finish_reason"], rec["generation"], rec["output_tokens"]) == (
        "finished", finish, text, n_tokens)
