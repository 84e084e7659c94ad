"""Serving benchmark of seed 004: every prompt of a prompt set streamed at once, the seed's table from our timings.

The seed ran tensorrtllm_backend's ``identity_test.py``: all prompts sent back to back, each request timed from
its send to its last response, then (``utils.extract_print_stats``) Requests/Sec and OP tokens/sec over the
total time (first send to last answer), average/P99/P90 request latency (nearest rank:
``sorted[ceil(n*q) - 1]``), average input/output tokens per request and the average number of requests in
flight. We keep that protocol and those definitions, with two differences: requests stream (one response per
generated token, so output tokens are counted as the responses that carry text), and "Avg. InFlight requests"
is computed exactly as sum(request latencies) / total time (the seed's sampled profile approximates it: 53.86
against 502845.8 / 9345.36 = 53.81).

Two transports, one protocol (``--protocol``):

* ``triton``: ``tritonclient.grpc`` decoupled streaming to the ``ensemble`` or ``tensorrt_llm_bls`` model
  (inputs ``text_input`` BYTES, ``max_tokens`` INT32, ``stream`` BOOL, each ``[1, 1]``: the templates' dims
  ``[1]`` under ``max_batch_size``); the client asks for the empty final response, which is how a decoupled
  ensemble/BLS stream tells a request is over (``triton_final_response``);
* ``openai``: trtllm-serve's ``/v1/completions`` with ``stream: true`` (httpx + httpx-sse, as
  jobs/benchmark_client.py reads it).

``--concurrency N`` caps the requests in flight (0: all at once, as the seed's client). Any failed request
fails the run (exit 1), as identity_test.py does, after the results JSON is written.

Usage::

    python -m jobs.triton_benchmark --protocol triton --url 127.0.0.1:8001 --model ensemble \\
        --prompts prompts.jsonl --output results.json [--concurrency 0]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from jobs import jsonl
from jobs.benchmark_client import write_results

PROTOCOLS = ("triton", "openai")
# The decoupled text models of the inflight_batcher_llm repository (both take text_input/max_tokens/stream).
STREAMING_ENTRY_MODELS = ("ensemble", "tensorrt_llm_bls")
TABLE_KEYS = ("Requests/Sec", "OP tokens/sec", "Avg. latency (ms)", "P99 latency (ms)", "P90 latency (ms)",
              "Avg. IP tokens per request", "Avg. OP tokens per request", "Avg. InFlight requests",
              "Total latency (ms)", "Total requests")


@dataclasses.dataclass
class RequestTiming:
    index: int
    input_tokens: int
    max_tokens: int
    start_s: Optional[float] = None
    first_token_s: Optional[float] = None
    end_s: Optional[float] = None
    output_tokens: int = 0
    text: str = ""
    error: Optional[str] = None

    @property
    def latency_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0


# --------------------------------------------------------------------------------------------------
# The seed's table
# --------------------------------------------------------------------------------------------------
def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """identity_test's percentile: ``sorted[ceil(n * q) - 1]``."""
    return sorted_values[math.ceil(len(sorted_values) * q) - 1]


def throughput(total_requests: int, total_latency_ms: float, request_latencies_ms: float,
               total_output_tokens: float) -> Dict[str, float]:
    """Requests/Sec, OP tokens/sec and the average in flight from run totals."""
    if total_requests < 1 or total_latency_ms <= 0:
        raise ValueError(f"need >= 1 request over a positive time, got {total_requests} in {total_latency_ms} ms")
    total_s = total_latency_ms / 1000.0
    return {"Requests/Sec": total_requests / total_s, "OP tokens/sec": total_output_tokens / total_s,
            "Avg. InFlight requests": request_latencies_ms / total_latency_ms}


def seed_table(timings: Sequence[RequestTiming]) -> Dict[str, float]:
    done = [t for t in timings if t.error is None and t.end_s is not None]
    if not done:
        raise ValueError("no request finished: nothing to measure")
    latencies = sorted(t.latency_ms for t in done)
    total_ms = (max(t.end_s for t in done) - min(t.start_s for t in done)) * 1000.0
    n = len(done)
    table = {"Avg. latency (ms)": sum(latencies) / n, "P99 latency (ms)": nearest_rank(latencies, 0.99),
             "P90 latency (ms)": nearest_rank(latencies, 0.90),
             "Avg. IP tokens per request": sum(t.input_tokens for t in done) / n,
             "Avg. OP tokens per request": sum(t.output_tokens for t in done) / n,
             "Total latency (ms)": total_ms, "Total requests": float(n)}
    table.update(throughput(n, total_ms, sum(latencies), sum(t.output_tokens for t in done)))
    return {key: table[key] for key in TABLE_KEYS}


def format_table(table: Dict[str, float]) -> str:
    width = max(len(k) for k in TABLE_KEYS)
    lines = [f"| {'Stat':^{width}} | {'Value':^9} |"]
    lines += [f"| {key:^{width}} | {table[key]:^9.2f} |" for key in TABLE_KEYS]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Triton gRPC (decoupled streaming)
# --------------------------------------------------------------------------------------------------
def triton_inputs(prompt: str, max_tokens: int):
    import numpy as np
    import tritonclient.grpc as grpcclient

    text = grpcclient.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=object))
    tokens = grpcclient.InferInput("max_tokens", [1, 1], "INT32")
    tokens.set_data_from_numpy(np.array([[max_tokens]], dtype=np.int32))
    stream = grpcclient.InferInput("stream", [1, 1], "BOOL")
    stream.set_data_from_numpy(np.array([[True]], dtype=bool))
    return [text, tokens, stream]


def run_triton(url: str, model: str, prompts: Sequence[Dict[str, Any]], concurrency: int,
               timeout_s: float) -> List[RequestTiming]:
    import tritonclient.grpc as grpcclient

    timings = [RequestTiming(i, p["input_tokens"], p["max_tokens"]) for i, p in enumerate(prompts)]
    slots = threading.BoundedSemaphore(concurrency or len(prompts))
    lock, all_done = threading.Lock(), threading.Event()
    remaining = [len(prompts)]
    stream_errors: List[str] = []

    def one_less() -> None:
        slots.release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                all_done.set()

    def callback(result, error) -> None:
        if error is not None:
            # tritonclient turns a stream response's error_message into an exception without the request id:
            # the request it ended is known only as the one that never gets its final response.
            stream_errors.append(str(error))
            one_less()
            return
        response = result.get_response()
        timing = timings[int(response.id)]
        now = time.perf_counter()
        if response.outputs:
            piece = result.as_numpy("text_output")
            timing.output_tokens += 1
            timing.text += b"".join(piece.reshape(-1)).decode("utf-8", "replace")
            if timing.first_token_s is None:
                timing.first_token_s = now
        final = response.parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            timing.end_s = now
            one_less()

    client = grpcclient.InferenceServerClient(url=url)
    if not client.is_model_ready(model):
        raise RuntimeError(f"model {model!r} is not ready on the Triton server at {url}")
    client.start_stream(callback=callback)
    try:
        for timing, prompt in zip(timings, prompts):
            slots.acquire()
            timing.start_s = time.perf_counter()
            client.async_stream_infer(model, triton_inputs(prompt["prompt"], prompt["max_tokens"]),
                                      request_id=str(timing.index), enable_empty_final_response=True)
        all_done.wait(timeout_s)
        for timing in timings:
            if timing.end_s is None:
                timing.error = (f"stream error(s), request unknown: {'; '.join(stream_errors)}" if stream_errors
                                else f"no final response within {timeout_s} s")
    finally:
        client.stop_stream(cancel_requests=not all_done.is_set())
        client.close()
    return timings


# --------------------------------------------------------------------------------------------------
# OpenAI /v1/completions (trtllm-serve)
# --------------------------------------------------------------------------------------------------
async def _openai_one(client, url: str, model: str, prompt: Dict[str, Any], timing: RequestTiming,
                      slots: asyncio.Semaphore) -> None:
    import httpx_sse

    payload = {"model": model, "prompt": prompt["prompt"], "max_tokens": prompt["max_tokens"], "stream": True}
    async with slots:
        timing.start_s = time.perf_counter()
        try:
            async with httpx_sse.aconnect_sse(client, "POST", url, json=payload) as events:
                if events.response.status_code != 200:
                    body = (await events.response.aread()).decode("utf-8", "replace")
                    raise RuntimeError(f"HTTP {events.response.status_code}: {body[:500]}")
                async for event in events.aiter_sse():
                    if event.data == "[DONE]":
                        break
                    choices = json.loads(event.data).get("choices") or []
                    if choices and choices[0].get("text"):
                        timing.output_tokens += 1
                        timing.text += choices[0]["text"]
                        if timing.first_token_s is None:
                            timing.first_token_s = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - any failure is this request's error, reported in the results
            timing.error = f"{type(exc).__name__}: {exc}"
        timing.end_s = time.perf_counter()


async def _openai_all(base_url: str, model: str, prompts, concurrency: int, timeout_s: float):
    import httpx

    timings = [RequestTiming(i, p["input_tokens"], p["max_tokens"]) for i, p in enumerate(prompts)]
    slots = asyncio.Semaphore(concurrency or len(prompts))
    url = f"{base_url.rstrip('/')}/v1/completions"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits, trust_env=False) as client:
        await asyncio.gather(*(_openai_one(client, url, model, p, t, slots) for p, t in zip(prompts, timings)))
    return timings


def run_openai(url: str, model: str, prompts, concurrency: int, timeout_s: float) -> List[RequestTiming]:
    return asyncio.run(_openai_all(url, model, prompts, concurrency, timeout_s))


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def load_prompts(path: str) -> List[Dict[str, Any]]:
    return jsonl.read_rows(path, "prompts", ("prompt", "input_tokens", "max_tokens"),
                           remedy="write the set with python -m jobs.prompt_set")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.triton_benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=PROTOCOLS, required=True)
    p.add_argument("--url", required=True, help="triton: HOST:GRPC_PORT; openai: http://HOST:PORT")
    p.add_argument("--model", required=True, help="triton: ensemble or tensorrt_llm_bls; openai: the served name")
    p.add_argument("--prompts", required=True, help="JSONL from jobs.prompt_set")
    p.add_argument("--output", required=True, help="results JSON")
    p.add_argument("--concurrency", type=int, default=0, help="requests in flight at most (0: all at once)")
    p.add_argument("--request-timeout", type=float, default=3600.0, help="seconds for the whole run")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency < 0:
        raise SystemExit(f"--concurrency must be >= 0 (0: all at once), got {args.concurrency}")
    if args.protocol == "triton" and args.model not in STREAMING_ENTRY_MODELS:
        raise SystemExit(f"--model must be one of {', '.join(STREAMING_ENTRY_MODELS)} for --protocol triton "
                         f"(the decoupled text models), got {args.model!r}")
    prompts = load_prompts(args.prompts)
    run = run_triton if args.protocol == "triton" else run_openai
    timings = run(args.url, args.model, prompts, args.concurrency, args.request_timeout)
    errors = [t for t in timings if t.error is not None]
    table = seed_table(timings) if len(errors) < len(timings) else None
    # `summary`: what every benchmark's results give the report (jobs.report; null: nothing finished).
    # `benchmark`: which protocol's results these are (launcher.schema BenchmarkKind), what jobs.report keys on.
    write_results({"benchmark": "cnn_dailymail", "protocol": args.protocol, "url": args.url, "model": args.model,
                   "concurrency": args.concurrency, "prompts": args.prompts, "table": table, "summary": table,
                   "errors": len(errors), "requests": [dataclasses.asdict(t) for t in timings]}, args.output)
    if table is not None:
        print(format_table(table), flush=True)
    for t in errors[:5]:
        print(f"request {t.index} failed: {t.error}", file=sys.stderr, flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
