"""Tests of jobs/load_sweep.py: the real AIPerf (aiperf==0.13.0, its own worker processes) against the TEST
STAND-IN trtllm-serve (tests/standins/servers/openai_server.py), token counts by the tiny tokenizer.

Each AIPerf run takes 10-40 s on the 2-core machine (process start-up, not requests): four runs in all.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from jobs import jsonl
from jobs import load_sweep as ls
from tests.standins.servers.openai_server import OpenAIStandinServer

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "standins" / "data" / "tiny_tokenizer")
AIME = str(REPO / "conf" / "benchmark" / "problems" / "aime25_p1.jsonl")
ANSWER = ["The ", "answer ", "is ", "\\boxed{70}", " ."]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY)


def sweep_config(srv, prompt_file, **kw):
    return ls.SweepConfig(url=srv.url, model="standin-model", tokenizer=TINY, input_file=prompt_file, **kw)


def test_sweep_records_what_the_server_did(tmp_path, tok):
    messages = ls.user_messages(jsonl.read_rows(AIME, "prompts"), "aimo")
    prompt_file = ls.write_prompt_file(messages, str(tmp_path / "prompts.jsonl"), "completions", tok, output_tokens=16)
    prompt = json.loads(Path(prompt_file).read_text())["text"]
    assert prompt == tok.apply_chat_template([{"role": "user", "content": messages[0]}], tokenize=False,
                                             add_generation_prompt=True)
    script = {"default": {"tokens": ANSWER, "delay": 0.002, "first_token_delay": 0.05}}
    with OpenAIStandinServer(script, tokenizer=tok) as srv:
        cfg = sweep_config(srv, prompt_file, concurrencies=[1, 4], requests_per_user=2, min_requests=4,
                           goodput={"time_to_first_token": 30000})
        results = ls.run_sweep(cfg, str(tmp_path / "sweep"))
        seen = srv.snapshot()

    # The server saw every request of both points, streamed, as prepared, and finished each on EOS.
    assert len(seen) == 4 + 8
    assert all(r["prompt"] == prompt and r["max_tokens"] == 16 and r["stream"] and r["model"] == "standin-model"
               and r["outcome"] == "completed" and r["finish_reason"] == "stop" for r in seen)
    points = {p["concurrency"]: p for p in results["points"]}
    out_per_request = len(tok.encode("".join(ANSWER), add_special_tokens=False))
    in_per_request = len(tok.encode(prompt, add_special_tokens=False))
    for c, n in ((1, 4), (4, 8)):
        p = points[c]
        assert p["valid"] and p["invalid_reason"] is None, p
        assert (p["requests_asked"], p["requests_ok"], p["requests_failed"]) == (n, n, 0)
        assert p["output_tokens"] == n * out_per_request
        assert p["input_tokens"] == n * in_per_request
        assert p["ttft_ms"]["p50"] >= 50.0  # the stand-in waits 50 ms before every first token
        assert p["e2e_latency_ms"]["p99"] >= p["ttft_ms"]["p99"]
        assert set(p["itl_ms"]) == set(ls.LATENCY_STATS)
        assert p["good_requests"] == n and p["goodput"] > 0  # every TTFT is far under the 30 s SLO
        assert Path(p["artifact_dir"], ls.EXPORT_FILE).is_file()
    assert points[1]["artifact_dir"] != points[4]["artifact_dir"]
    summary = {s["concurrency"]: s for s in results["summary"]}
    assert all(s["valid"] and s["repeats_valid"] == 1 for s in summary.values())
    ttft = summary[4]["metrics"]["ttft_ms.p50"]
    assert ttft["mean"] == points[4]["ttft_ms"]["p50"] and ttft["ci_half_width"] is None  # one repeat: no CI
    json.dumps(results)  # what the report reads


def test_failed_requests_make_the_point_invalid(tmp_path, tok):
    # The long prompt does not fit the engine: trtllm-serve refuses it with HTTP 400, the short one is served.
    messages = ["What is two plus two?", "Explain every step of long division in detail. " * 20]
    prompt_file = ls.write_prompt_file(messages, str(tmp_path / "prompts.jsonl"), "completions", tok, output_tokens=8)
    with OpenAIStandinServer({"default": {"tokens": ANSWER, "delay": 0.002}}, tokenizer=tok, max_seq_len=120) as srv:
        # Token counts from the server's stream usage this time (stream_options, as trtllm-serve answers it).
        results = ls.run_sweep(sweep_config(srv, prompt_file, concurrencies=[2], requests_per_user=2,
                                            min_requests=4, server_token_count=True), str(tmp_path / "sweep"))
        outcomes = sorted(r["outcome"] for r in srv.snapshot())
        served = [r for r in srv.snapshot() if r["outcome"] == "completed"]
    assert outcomes == ["completed", "completed", "rejected", "rejected"]
    (point,) = results["points"]
    assert not point["valid"]
    assert (point["requests_ok"], point["requests_failed"]) == (2, 2)
    assert point["invalid_reason"].startswith("2 failed request(s)")
    assert "should not exceed max_seq_len (120)" in point["invalid_reason"]
    assert point["errors"][0]["count"] == 2
    assert point["output_tokens"] == sum(r["emitted_tokens"] for r in served) == 2 * len(ANSWER)
    assert point["input_tokens"] == sum(r["prompt_tokens"] for r in served)
    (summary,) = results["summary"]
    assert not summary["valid"] and summary["metrics"] == {} and summary["invalid_reasons"] == [point["invalid_reason"]]


def test_a_server_generating_nothing_is_invalid(tmp_path, tok):
    prompt_file = ls.write_prompt_file(["What is two plus two?"], str(tmp_path / "prompts.jsonl"), "completions", tok)
    with OpenAIStandinServer({"default": {"tokens": []}}, tokenizer=tok) as srv:  # EOS at once: no text at all
        results = ls.run_sweep(sweep_config(srv, prompt_file, concurrencies=[2], requests_per_user=1,
                                            min_requests=3), str(tmp_path / "sweep"))
        assert [r["emitted_tokens"] for r in srv.snapshot()] == [0, 0, 0]
    (point,) = results["points"]
    # AIPerf counts a response without content as a failed request and, none having succeeded, writes no summary.
    assert not point["valid"] and point["requests_failed"] == 3 and point["output_tokens"] == 0
    assert "without profile_export_aiperf.json" in point["invalid_reason"]
    assert "No responses with actual content" in point["invalid_reason"]
    assert results["summary"][0]["valid"] is False


def test_argv_of_one_point():
    cfg = ls.SweepConfig(url="http://h:8000", model="m", tokenizer="/tok", input_file="/p.jsonl",
                         concurrencies=[1, 64], requests_per_user=4, min_requests=10, warmup_requests=2,
                         goodput={"time_to_first_token": 500, "inter_token_latency": 12.5}, output_tokens=256,
                         extra_inputs={"ignore_eos": True})
    argv = ls.build_argv(cfg, 64, "/out/r0/c64")
    opts = dict(zip(argv[2::1], argv[3::1]))
    assert argv[:2] == ["aiperf", "profile"]
    assert opts["--concurrency"] == "64" and opts["--request-count"] == "256"
    assert ls.build_argv(cfg, 1, "/o")[ls.build_argv(cfg, 1, "/o").index("--request-count") + 1] == "10"
    assert opts["--goodput"] == "time_to_first_token:500 inter_token_latency:12.5"
    assert opts["--custom-dataset-type"] == "single_turn" and opts["--input-file"] == "/p.jsonl"
    assert opts["--warmup-request-count"] == "2" and opts["--osl"] == "256"
    assert json.loads(opts["--extra-inputs"]) == {"ignore_eos": True}
    assert "--streaming" in argv and "--use-server-token-count" not in argv


@pytest.mark.parametrize("kw, words", [
    ({"goodput": {"ttft": 100}}, ["goodput", "'ttft'", "time_to_first_token"]),
    ({"goodput": {"request_latency": 0}}, ["goodput.request_latency", "positive"]),
    ({"concurrencies": [1, 0]}, ["concurrencies", "positive"]),
    ({"concurrencies": [4, 4]}, ["concurrencies", "duplicates"]),
    ({"endpoint_type": "embeddings"}, ["endpoint_type", "'embeddings'", "completions"]),
    ({"repeats": 0}, ["repeats", "at least 1"]),
])
def test_bad_config_is_refused_naming_the_key(kw, words):
    with pytest.raises(ValueError) as err:
        ls.SweepConfig(url="u", model="m", tokenizer="t", input_file="f", **kw)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_prompt_rows_need_their_field(tmp_path):
    with pytest.raises(ValueError, match="row 1: needs a non-empty string 'problem'"):
        ls.user_messages([{"problem": "1+1?"}, {"question": "2+2?"}], "aimo")
    assert ls.user_messages([{"prompt": "Hi there"}], "chat") == ["Hi there"]
    out = ls.write_prompt_file(["Hi there"], str(tmp_path / "chat.jsonl"), "chat")  # the server templates chat
    assert json.loads(Path(out).read_text()) == {"text": "Hi there"}


def test_t_quantiles_and_confidence_interval():
    assert ls.t_quantile(0.975, 2) == pytest.approx(4.303, abs=5e-4)  # n = 3 repeats
    assert ls.t_quantile(0.975, 1) == pytest.approx(12.706, abs=5e-4)
    assert ls.t_quantile(0.975, 4) == pytest.approx(2.776, abs=5e-4)
    assert ls.t_quantile(0.975, 10_000) == pytest.approx(1.960, abs=5e-4)
    assert ls.t_quantile(0.025, 2) == pytest.approx(-4.303, abs=5e-4)
    ci = ls.mean_ci([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["ci_half_width"] == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((2.0 - ci["ci_half_width"], 2.0 + ci["ci_half_width"]))


def test_summary_averages_valid_repeats_only():
    def point(repeat, rate, valid=True):
        return ls.PointRecord(concurrency=8, repeat=repeat, artifact_dir=f"r{repeat}", valid=valid,
                              invalid_reason=None if valid else "1 failed request(s)", requests_asked=32,
                              request_throughput=rate, ttft_ms={"p50": 10.0 * rate})

    (s,) = ls.summarize([point(0, 1.0), point(1, 2.0), point(2, 1000.0, valid=False), point(3, 3.0)], [8])
    assert s["valid"] and (s["repeats_valid"], s["repeats_invalid"]) == (3, 1)
    assert s["invalid_reasons"] == ["1 failed request(s)"]
    assert s["metrics"]["request_throughput"]["mean"] == 2.0
    assert s["metrics"]["ttft_ms.p50"]["ci_half_width"] == pytest.approx(10 * 4.3027 / math.sqrt(3), rel=1e-4)


def test_the_benchmark_stage_sweeps_the_server_it_started(tmp_path):
    """benchmark=load_sweep on cluster=local: the job starts the stand-in trtllm-serve on the engine it built, runs
    `python -m jobs.load_sweep` (real AIPerf, the model's name asked of /v1/models) and publishes results.json;
    no code sandbox is started."""
    import os
    import subprocess
    import sys

    standins = REPO / "tests" / "standins"
    env = {**os.environ, "PATH": f"{standins / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(standins / "python"),
           "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-m", "launcher", "+experiment=bf16", "benchmark=load_sweep", "cluster=local",
         f"cluster.storage_root={tmp_path}", f"cluster.python={sys.executable}",
         f"cluster.trtllm_examples_dir={standins / 'trtllm_examples'}", "benchmark.concurrency=[1,2]",
         "benchmark.requests_per_user=2", "benchmark.min_requests=2", "benchmark.output_tokens=16",
         "benchmark.goodput.inter_token_latency=null"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert "benchmark: COMPLETED" in result.stdout, result.stdout + result.stderr
    state = json.loads((tmp_path / "experiments" / "bf16" / "state.json").read_text())
    artifact = Path(state["stages"]["benchmark"]["artifact"])
    results = json.loads((artifact / "results.json").read_text())
    assert results["benchmark"] == "load_sweep" and results["config"]["model"].endswith(
        state["stages"]["build_engine"]["artifact"].rsplit("/", 1)[-1])  # trtllm-serve names it after the engine
    assert [(p["concurrency"], p["valid"], p["requests_ok"]) for p in results["points"]] == [(1, True, 2), (2, True, 4)]
    assert results["config"]["goodput"] == {"time_to_first_token": 2000.0}
    assert all(p["good_requests"] is not None for p in results["points"])
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert [s["concurrency"] for s in manifest["load_sweep_summary"]] == [1, 2]
    assert manifest["ports"]["sandbox"] is None and not (artifact / "sandbox.log").exists()
    assert (artifact / "r0" / "c2" / ls.EXPORT_FILE).is_file()


@pytest.mark.parametrize("overrides, words", [
    (["benchmark.prompt_set=chat"], ["benchmark.problems_file", "row 0 has no non-empty 'prompt'",
                                     "benchmark.prompt_set=chat"]),
    (["benchmark.concurrency=[1,4,4]"], ["benchmark.concurrency", "given twice"]),
    (["benchmark.streaming=false"], ["benchmark.goodput.time_to_first_token=2000.0", "not streamed"]),
    (["benchmark.output_tokens=40000"], ["benchmark.output_tokens=40000", "leaves no room for a prompt",
                                         "model.max_seq_len"]),
    (["benchmark.num_generations=4"], ["benchmark.num_generations", "changes nothing", "benchmark=aimo_notebook"]),
])
def test_the_launcher_refuses_a_sweep_that_cannot_run(overrides, words):
    from launcher.validation import InvalidConfig
    from tests.helpers import plan_for

    with pytest.raises(InvalidConfig) as refused:
        plan_for("+experiment=fp8", "benchmark=load_sweep", *overrides)
    assert all(w in str(refused.value) for w in words), str(refused.value)


def test_the_chat_set_is_a_prompt_set_the_launcher_accepts():
    from tests.helpers import plan_for

    chat = str(REPO / "conf" / "benchmark" / "prompts" / "chat.jsonl")
    bench = plan_for("+experiment=fp8", "benchmark=load_sweep", "benchmark.prompt_set=chat",
                     f"benchmark.problems_file={chat}", "benchmark.endpoint=chat").stages["benchmark"]
    client = bench.commands["client"]
    assert client[client.index("--chat-prompts") + 1].endswith(".jsonl") and "--problems" not in client
    assert client[client.index("--endpoint-type") + 1] == "chat" and "--prompt" not in client
    assert len(ls.user_messages(jsonl.read_rows(chat, "prompts"), "chat")) == 16


# ---- speculative-decoding acceptance, from the server's own metrics ---------------------------------------------
SPEC_SCRIPT = {"default": {"text": "one two three four five six seven eight nine ten eleven twelve", "delay": 0.002},
               "accepted_per_step": [2, 0, 3, 1]}


def steps_of(srv, requests):
    """(drafting steps, accepted drafts, generated tokens) of `requests`, from what the stand-in emitted."""
    verify = [size for r in requests for size in srv.step_sizes(r["emitted_tokens"])[1:]]
    return len(verify), sum(size - 1 for size in verify), sum(r["emitted_tokens"] for r in requests)


def complete(url, stream=False, max_tokens=40):
    import urllib.request

    body = json.dumps({"prompt": "What is two plus two?", "max_tokens": max_tokens, "stream": stream}).encode()
    request = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


@pytest.mark.parametrize("style", ["sglang", "trtllm"])  # vLLM's counters go the way of SGLang's (differenced)
def test_acceptance_per_point_is_the_servers_own_count(tmp_path, tok, style):
    """Real AIPerf against a stand-in drafting 3 tokens per step: each point's acceptance is what the server's
    /metrics counted over that point alone (SGLang's counters differenced, trtllm-serve's iteration stats
    drained and polled), not the request made before the sweep."""
    prompt_file = ls.write_prompt_file(["What is two plus two?"], str(tmp_path / "prompts.jsonl"), "completions",
                                       tok, output_tokens=40)
    with OpenAIStandinServer(SPEC_SCRIPT, tokenizer=tok, draft_tokens=3, metrics=style) as srv:
        complete(srv.url)  # counted by the server, before the sweep
        results = ls.run_sweep(sweep_config(srv, prompt_file, concurrencies=[2], requests_per_user=2,
                                            min_requests=4), str(tmp_path / "sweep"))
        swept = srv.snapshot()[1:]
    assert len(swept) == 4 and all(r["emitted_tokens"] == 12 for r in swept)
    # a step's tokens reach the client in one chunk: the prefill's token, then accepted + 1 per step
    assert [len(text.split()) for text, _ in swept[0]["chunks"]] == [1, 3, 1, 4, 2, 1, 0]  # 0: EOS
    drafts, accepted, generated = steps_of(srv, swept)
    assert (drafts, accepted) == (20, 24)
    assert results["server_metrics"]["style"] == style
    (point,) = results["points"]
    assert point["valid"] and point["spec_decode"]["drafts"] == drafts
    if style == "sglang":  # no accepted count: its acceptance length is generated tokens per verify call
        assert point["spec_decode"]["generated_tokens"] == generated
        assert point["acceptance_length"] == pytest.approx(generated / drafts)
        assert point["draft_acceptance_rate"] is None
    else:
        assert (point["spec_decode"]["draft_tokens"], point["spec_decode"]["accepted_tokens"]) == (3 * drafts, accepted)
        assert point["acceptance_length"] == pytest.approx(1 + accepted / drafts)  # 2.2
        assert point["draft_acceptance_rate"] == pytest.approx(accepted / (3 * drafts))  # 0.4
    (summary,) = results["summary"]
    assert summary["metrics"]["acceptance_length"]["mean"] == point["acceptance_length"]


def test_prometheus_samples_read_as_prometheus_client_reads_them():
    from prometheus_client.parser import text_string_to_metric_families

    from tests.standins.servers.openai_server import ServerMetrics

    metrics = ServerMetrics("vllm", 'odd "model} name', draft_tokens=4)
    metrics.observe(7, [1, 5, 1, 3, 2], streaming=True)
    metrics.observe(3, [1, 4], streaming=False)
    text = metrics.render().body.decode()
    theirs = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            theirs[sample.name] = theirs.get(sample.name, 0.0) + sample.value
    assert ls.prometheus_samples(text) == theirs
    assert theirs["vllm:spec_decode_num_drafts_total"] == 5  # five drafting steps, accepting 4, 0, 2, 1 and 3
    assert theirs["vllm:spec_decode_num_accepted_tokens_total"] == 10
    assert theirs["vllm:generation_tokens_total"] == 17 and theirs["vllm:prompt_tokens_total"] == 10


@pytest.mark.parametrize("kw, style, found", [
    ({}, None, "no /metrics (404)"),  # trtllm-serve 1.1 / SGLang without --enable-metrics: no such endpoint
    ({"metrics": "vllm"}, "vllm", "vllm Prometheus"),  # vLLM not speculating: no spec_decode counters
    ({"metrics": "trtllm", "draft_tokens": 3, "iteration_stats": False}, "trtllm", "iteration stats"),
])
def test_no_acceptance_where_the_server_counts_no_drafts(kw, style, found):
    """A server without metrics, one not speculating, and trtllm-serve's PyTorch backend without
    enable_iter_perf_stats (its /metrics stays []): no acceptance, never a zero."""
    with OpenAIStandinServer(SPEC_SCRIPT, **kw) as srv:
        assert ls.detect_metrics(srv.url)[0] == style and found in ls.detect_metrics(srv.url)[1]
        if style is None:
            return
        rec = ls.PointRecord(concurrency=1, repeat=0, artifact_dir="a", valid=True, invalid_reason=None,
                             requests_asked=1)
        probe = ls.AcceptanceProbe(srv.url, style)
        probe.open()
        complete(srv.url, stream=True)
        ls.measure_acceptance(rec, probe.close())
    assert rec.spec_decode["drafts"] == 0 and rec.acceptance_length is None and rec.draft_acceptance_rate is None


def test_trtllm_iteration_stats_are_summed_over_every_poll(monkeypatch):
    """trtllm-serve drains its stats queue at every GET /metrics: the probe drains it when the point starts
    (earlier requests are not the point's) and sums what each poll during the point drained."""
    import time

    monkeypatch.setattr(ls, "TRTLLM_POLL_S", 0.05)
    with OpenAIStandinServer(SPEC_SCRIPT, draft_tokens=3, metrics="trtllm") as srv:
        complete(srv.url)
        probe = ls.AcceptanceProbe(srv.url, "trtllm")
        probe.open()
        for _ in range(3):
            complete(srv.url, stream=True)
            time.sleep(0.2)  # a poll or more between requests
        counts = probe.close()
        drafts, accepted, _ = steps_of(srv, srv.snapshot()[1:])
    counted = (counts.drafts, counts.draft_tokens, counts.accepted_tokens)
    assert counted == (drafts, 3 * drafts, accepted) == (15, 45, 18)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One streamed request of the 12-token script: the prefill's token, then 5 drafting steps accepting the script's
# 2, 0, 3, 1 (capped at the draft length K), the last cut short. vLLM, K=4: 6 of 20 drafted tokens accepted;
# trtllm, K=2: 6 of 10; SGLang: 12 tokens in 5 verify calls.
@pytest.mark.parametrize("stack, args, options, style, draft_tokens, length, rate", [
    ("vllm", ["--speculative-config", '{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3}'],
     None, "vllm", 4, 1 + 6 / 5, 6 / 20),
    ("sglang", ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "5", "--enable-metrics"],
     None, "sglang", None, 12 / 5, None),
    ("sglang", ["--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "5"], None, None, None, None,
     None),
    ("trtllm_pytorch", [], {"speculative_config": {"decoding_type": "NGram", "max_draft_len": 2,
                                                   "max_matching_ngram_size": 2}, "enable_iter_perf_stats": True},
     "trtllm", 2, 1 + 6 / 5, 6 / 10),
])
def test_each_serving_standin_answers_metrics_as_its_server(tmp_path, stack, args, options, style, draft_tokens,
                                                            length, rate):
    """The stand-in servers as the launcher starts them: each drafts what its speculative configuration says
    and answers /metrics where and as its real server does (SGLang: only with --enable-metrics); the probe
    turns what it counted into each server's own acceptance length and rate."""
    import os
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    standins = REPO / "tests" / "standins"
    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    (model / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    port = _free_port()
    argv = {"vllm": [str(standins / "bin" / "vllm"), "serve", str(model), "--port", str(port)],
            "sglang": [sys.executable, "-m", "sglang.launch_server", "--model-path", str(model), "--port", str(port)],
            "trtllm_pytorch": [str(standins / "bin" / "trtllm-serve"), "serve", str(model), "--backend", "pytorch",
                               "--port", str(port)]}[stack] + args
    if options:
        (tmp_path / "options.yaml").write_text(json.dumps(options))
        argv += ["--extra_llm_api_options", str(tmp_path / "options.yaml")]
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SPEC_SCRIPT))
    env = {**os.environ, "PYTHONPATH": f"{standins / 'python'}:{REPO}", "STANDIN_SERVE_SCRIPT": str(script)}
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        found_style, found = ls.detect_metrics(url)
        assert found_style == style, found
        if style is None:
            return
        probe = ls.AcceptanceProbe(url, style)
        probe.open()
        chunks = [line for line in complete(url, stream=True).decode().splitlines() if line.startswith("data: {")]
        counts = probe.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert counts.drafts == 5 and len(chunks) == 1 + 5 + 1  # the prefill's token, 5 drafting steps, EOS
    if draft_tokens:
        assert counts.draft_tokens == draft_tokens * counts.drafts
    assert counts.acceptance_length() == pytest.approx(length)
    assert counts.acceptance_rate() == (None if rate is None else pytest.approx(rate))
