"""Async, OpenAI-compatible, streaming benchmark client (the seeds' notebook protocol).

Runs inside the container on the GPU node against ``trtllm-serve`` (``/v1/completions``,
``/health``) and the NeMo-Skills code sandbox (``POST /execute``, ``DELETE /sessions/<id>``).

Protocol, per problem: ``num_generations`` concurrent streamed generations (``seed`` = index),
``temperature``, ``max_new_tokens``; once ``cancel_after`` have finished, the rest are cancelled by
closing their streams (the server sees the disconnect and stops). Tool calling: requests carry
``stop: ["</tool_call>"]``; a generation stopped inside an unclosed ``<tool_call>`` gets
``</tool_call>`` appended, its code runs in the sandbox (one session per generation), and
``"\\n```output\\n" + stdout + stderr + "```\\n"`` is appended before generating on, at most
``max_code_executions`` times.

Lengths: TensorRT-LLM refuses (HTTP 400) a request whose prompt tokens + ``max_tokens`` exceed the
served engine's ``build_config.max_seq_len`` (``--engine-dir``/config.json, or ``--max-seq-len``), so
every request asks for ``min(max_new_tokens left, max_seq_len - prompt tokens of this round)``, the
prompt of a round being the problem's prompt plus everything generated so far, tool outputs included;
a generation with no room left ends with ``finish_reason="length"`` without another request.

Metrics (see :func:`summarize`) follow the seeds' definitions: total generation time is the wall
time of the whole batch; batch throughput = sum(tokens of finished gens) / total time; average
sample throughput = mean over finished gens of tokens_i / total time.

Usage::

    python -m jobs.benchmark_client --server-url http://127.0.0.1:5000 --sandbox-url http://127.0.0.1:6000 \\
        --model NAME --tokenizer DIR --problems FILE.jsonl --num-generations 12 --cancel-after 10 \\
        --temperature 0.7 --max-new-tokens 20000 --max-code-executions 2 --sandbox-timeout 10 \\
        --engine-dir ENGINE_DIR --output results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, get_args

import httpx
import httpx_sse

from jobs import jsonl
from jobs.calibration_data import PROMPTS, user_turn

TOOL_START = "<tool_call>"
TOOL_END = "</tool_call>"
OUTPUT_BEGIN = "\n```output\n"
OUTPUT_END = "```\n"
OUTPUT_CUT = "<output cut>"

FINISHED, CANCELLED, ERROR = "finished", "cancelled", "error"

# The NeMo-Skills sandbox hands `traceback_verbosity` to IPython's FormattedTB.set_mode, which knows these
# modes only, capitalised (NeMo-Skills' own client sends `traceback_verbosity.capitalize()`).
TracebackVerbosity = Literal["Plain", "Context", "Verbose", "Minimal"]
TRACEBACK_VERBOSITIES: Tuple[str, ...] = get_args(TracebackVerbosity)


# --------------------------------------------------------------------------------------------------
# Configuration and records
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BenchmarkConfig:
    server_url: str
    sandbox_url: Optional[str]
    model: str
    num_generations: int = 12
    cancel_after: int = 10
    temperature: float = 0.7
    max_new_tokens: int = 20000
    max_code_executions: int = 2
    sandbox_timeout: float = 10.0
    max_output_characters: int = 1000
    prompt: str = "generic/math"  # a NeMo-Skills prompt config of jobs.calibration_data.PROMPTS
    traceback_verbosity: TracebackVerbosity = "Plain"
    request_timeout: float = 1800.0  # max seconds between two streamed chunks
    connect_timeout: float = 30.0
    # The served engine's build_config.max_seq_len: a request's prompt tokens + max_tokens must fit in it
    # (TensorRT-LLM answers 400 otherwise). None: no limit known, requests are not cut.
    max_seq_len: Optional[int] = None

    def __post_init__(self) -> None:
        if self.num_generations < 1:
            raise ValueError("num_generations must be >= 1")
        if not 1 <= self.cancel_after <= self.num_generations:
            raise ValueError("cancel_after must be in [1, num_generations]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.max_code_executions < 0:
            raise ValueError("max_code_executions must be >= 0")
        if self.max_code_executions > 0 and not self.sandbox_url:
            raise ValueError("max_code_executions > 0 needs a sandbox_url")
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt={self.prompt!r}: unknown; known: {', '.join(PROMPTS)}")
        if self.traceback_verbosity not in TRACEBACK_VERBOSITIES:
            raise ValueError(f"traceback_verbosity={self.traceback_verbosity!r}: IPython's FormattedTB accepts "
                             f"{', '.join(TRACEBACK_VERBOSITIES)}")
        if self.max_seq_len is not None and self.max_seq_len < 2:
            raise ValueError(f"max_seq_len={self.max_seq_len}: an engine's max_seq_len holds a prompt and at least "
                             "one new token (>= 2)")


@dataclasses.dataclass
class GenerationRecord:
    problem_index: int
    seed: int
    problem_id: Optional[str] = None
    expected_answer: Optional[str] = None
    status: str = "pending"  # finished | cancelled | error
    finish_reason: Optional[str] = None
    error: Optional[str] = None
    input_tokens: int = 0
    output_tokens: int = 0  # model-generated tokens only (tool outputs excluded)
    ttft_s: Optional[float] = None
    itl_s: List[float] = dataclasses.field(default_factory=list)  # per streamed chunk
    e2e_latency_s: Optional[float] = None
    start_s: Optional[float] = None  # offset from the batch start
    end_s: Optional[float] = None
    num_requests: int = 0
    num_code_executions: int = 0
    code_executions: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    answer: Optional[str] = None
    generation: str = ""  # everything after the prompt, tool outputs included

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------
def extract_boxed(text: Optional[str]) -> Optional[str]:
    """Content of the last ``\\boxed{...}`` (brace-matched, nested braces kept); None if absent/unclosed."""
    if not text:
        return None
    idx = text.rfind("\\boxed")
    while idx >= 0:
        j = idx + len("\\boxed")
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            for k in range(j, len(text)):
                if text[k] == "{":
                    depth += 1
                elif text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[j + 1:k]
            return None  # last \boxed{ never closes (truncated generation)
        idx = text.rfind("\\boxed", 0, idx)
    return None


def normalize_answer(ans: Optional[str]) -> Optional[str]:
    """Light normalisation for voting/comparison: strip spaces, ``$``, ``\\!``; numbers canonicalised."""
    if ans is None:
        return None
    s = str(ans).strip().strip("$").strip()
    s = s.replace("\\!", "").replace(" ", "")
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s)
    num = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s
    try:
        f = float(num)
        if math.isfinite(f):
            return str(int(f)) if f == int(f) else repr(f)
    except ValueError:
        pass
    return s


def percentile(values: Sequence[float], q: int) -> Optional[float]:
    """q-th percentile (1..99) with linear interpolation between closest ranks (numpy's default)."""
    if len(values) < 2:  # statistics.quantiles needs two points before Python 3.13
        return float(values[0]) if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _mean(values: Sequence[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def _pstd(values: Sequence[float]) -> Optional[float]:
    return statistics.pstdev(values) if values else None


def majority_vote(answers: Iterable[Optional[str]]) -> Optional[str]:
    """Most frequent normalised answer (None answers ignored); ties go to the earliest seen."""
    counts = Counter(a for a in (normalize_answer(x) for x in answers) if a is not None)
    return counts.most_common(1)[0][0] if counts else None


def _get(rec: Any, name: str, default: Any = None) -> Any:
    return rec.get(name, default) if isinstance(rec, dict) else getattr(rec, name, default)


def summarize(records: Sequence[Any], total_time_s: float) -> Dict[str, Any]:
    """Metrics of one configuration from its generation records and the batch wall time (pure).

    ``records``: GenerationRecord objects or their dicts. Only *finished* generations count for
    throughput, latency, TTFT, ITL and accuracy, except ``output_tokens_per_s``, which counts every
    generated token (cancelled and failed generations included) over the total time.
    """
    T = float(total_time_s)
    fin = [r for r in records if _get(r, "status") == FINISHED]
    toks = [int(_get(r, "output_tokens", 0) or 0) for r in fin]
    all_toks = sum(int(_get(r, "output_tokens", 0) or 0) for r in records)
    lat = [float(_get(r, "e2e_latency_s")) for r in fin if _get(r, "e2e_latency_s") is not None]
    ttft = [float(_get(r, "ttft_s")) for r in fin if _get(r, "ttft_s") is not None]
    itl = [float(x) for r in fin for x in (_get(r, "itl_s") or [])]
    every_latency = [float(_get(r, "e2e_latency_s")) for r in records if _get(r, "e2e_latency_s") is not None]
    sample_tp = [t / T for t in toks] if T > 0 else []

    # majority vote per problem
    problems: Dict[Any, Dict[str, Any]] = {}
    for r in records:
        p = problems.setdefault(_get(r, "problem_index"), {"expected": None, "answers": []})
        if _get(r, "expected_answer") is not None:
            p["expected"] = _get(r, "expected_answer")
        if _get(r, "status") == FINISHED:
            p["answers"].append(_get(r, "answer"))
    per_problem = []
    graded = correct = 0
    for idx, p in sorted(problems.items(), key=lambda kv: (kv[0] is None, kv[0])):
        maj = majority_vote(p["answers"])
        ok = None
        if p["expected"] is not None:
            graded += 1
            ok = maj is not None and maj == normalize_answer(p["expected"])
            correct += int(ok)
        per_problem.append({"problem_index": idx, "expected_answer": p["expected"], "majority_answer": maj,
                            "num_votes": len(p["answers"]), "correct": ok})

    return {
        "num_generations": len(records),
        "num_finished": len(fin),
        "num_cancelled": sum(1 for r in records if _get(r, "status") == CANCELLED),
        "num_errors": sum(1 for r in records if _get(r, "status") == ERROR),
        "total_generation_time_s": T,
        "total_output_tokens_finished": sum(toks),
        "total_output_tokens_all": all_toks,
        "batch_throughput_tok_s": sum(toks) / T if T > 0 else None,
        "avg_sample_throughput_tok_s": _mean(sample_tp),
        "std_sample_throughput_tok_s": _pstd(sample_tp),
        "requests_per_s": len(fin) / T if T > 0 else None,
        "output_tokens_per_s": all_toks / T if T > 0 else None,
        "avg_output_tokens": _mean(toks),
        "avg_input_tokens": _mean([int(_get(r, "input_tokens", 0) or 0) for r in fin]),
        # Seed 004's "Avg. InFlight requests", by Little's law: every request's time in flight over the wall
        # time (its table: 98 requests x 5131 ms avg latency / 9345 ms = 53.8, the 53.86 it printed).
        "avg_inflight_requests": sum(every_latency) / T if T > 0 else None,
        "avg_latency_s": _mean(lat),
        "p50_latency_s": percentile(lat, 50),
        "p90_latency_s": percentile(lat, 90),
        "p99_latency_s": percentile(lat, 99),
        "avg_ttft_s": _mean(ttft),
        "p50_ttft_s": percentile(ttft, 50),
        "p90_ttft_s": percentile(ttft, 90),
        "p99_ttft_s": percentile(ttft, 99),
        "mean_itl_s": _mean(itl),
        "total_code_executions": sum(int(_get(r, "num_code_executions", 0) or 0) for r in records),
        "majority_vote_accuracy": (correct / graded) if graded else None,
        "num_problems": len(problems),
        "per_problem": per_problem,
    }


# --------------------------------------------------------------------------------------------------
# Tokenizer / prompt
# --------------------------------------------------------------------------------------------------
def load_tokenizer(path: str):
    from transformers import AutoTokenizer  # heavy import: only when needed

    return AutoTokenizer.from_pretrained(path)


def build_prompt(tokenizer, prompt: str, problem: str) -> str:
    messages = [{"role": "user", "content": user_turn(prompt, problem)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def count_tokens(tokenizer, text: str) -> int:
    if not text:
        return 0
    return len(tokenizer.encode(text, add_special_tokens=False))


def prompt_tokens(tokenizer, prompt: str) -> int:
    """Tokens of ``prompt`` as trtllm-serve counts them: a completion request's ``add_special_tokens``
    defaults to true, so the tokenizer's BOS (Llama) is counted."""
    return len(tokenizer.encode(prompt, add_special_tokens=True))


def engine_max_seq_len(engine_dir: str) -> int:
    """``build_config.max_seq_len`` of a TensorRT-LLM engine directory: what trtllm-serve checks every request
    against (TensorRT-LLM 1.1 ``BaseLLM._check_arguments`` reads the same key of the same file). trtllm-build
    has already added the draft length of a speculative-decoding engine to it."""
    path = os.path.join(engine_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    try:
        return int(config["build_config"]["max_seq_len"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} has no build_config.max_seq_len: not a TensorRT-LLM engine config") from exc


def has_unclosed_tool_call(text: str) -> bool:
    return text.rfind(TOOL_START) > text.rfind(TOOL_END)


def extract_tool_code(text: str) -> str:
    """Code of the last ``<tool_call>...`` block of ``text`` (which ends with or lacks ``</tool_call>``)."""
    start = text.rfind(TOOL_START) + len(TOOL_START)
    body = text[start:]
    if body.endswith(TOOL_END):
        body = body[: -len(TOOL_END)]
    return body.strip("\n")


def format_tool_output(output: str) -> str:
    return OUTPUT_BEGIN + output + OUTPUT_END


def truncate_output(text: str, limit: int) -> str:
    if limit and limit > 0 and len(text) > limit:
        return text[:limit] + OUTPUT_CUT
    return text


# --------------------------------------------------------------------------------------------------
# Network pieces
# --------------------------------------------------------------------------------------------------
class StreamError(RuntimeError):
    pass


async def execute_code(client: httpx.AsyncClient, cfg: BenchmarkConfig, code: str, session_id: str) -> Dict[str, Any]:
    """Run ``code`` in the sandbox; never raises (except cancellation): failures become output text."""
    t0 = time.perf_counter()
    payload = {
        "generated_code": code,
        "timeout": cfg.sandbox_timeout,
        "language": "ipython",
        "max_output_characters": cfg.max_output_characters,
        "traceback_verbosity": cfg.traceback_verbosity,
    }
    try:
        resp = await client.post(
            f"{cfg.sandbox_url.rstrip('/')}/execute",
            json=payload,
            headers={"X-Session-ID": session_id},
            timeout=httpx.Timeout(cfg.sandbox_timeout + 30.0, connect=cfg.connect_timeout),
        )
        if resp.status_code != 200:
            raise StreamError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        status = str(data.get("process_status", "failed"))
        output = str(data.get("stdout") or "") + str(data.get("stderr") or "")
        if status == "timeout" and "timed out" not in output.lower():
            output += f"Timed out after {cfg.sandbox_timeout:g} seconds\n"
        elif status == "failed" and not output:
            output = "Execution failed\n"
    except httpx.TimeoutException as exc:
        status, output = "timeout", f"Sandbox request timed out ({type(exc).__name__})\n"
    except Exception as exc:  # unreachable sandbox, bad JSON, ...
        status, output = "sandbox_error", f"Sandbox error: {type(exc).__name__}: {exc}\n"
    return {"status": status, "output": truncate_output(output, cfg.max_output_characters),
            "duration_s": time.perf_counter() - t0}


async def delete_session(client: httpx.AsyncClient, cfg: BenchmarkConfig, session_id: str) -> None:
    with contextlib.suppress(Exception):
        await client.delete(f"{cfg.sandbox_url.rstrip('/')}/sessions/{session_id}", timeout=10.0)


async def _stream_round(client: httpx.AsyncClient, cfg: BenchmarkConfig, payload: Dict[str, Any],
                        rec: GenerationRecord, gen_t0: float, text_parts: List[str]) -> tuple:
    """One streamed ``/v1/completions`` call; returns (text, finish_reason, stop_reason).

    Text pieces are appended to ``text_parts`` as they arrive (so a cancelled or failed round
    still leaves its partial text to the caller).
    """
    url = f"{cfg.server_url.rstrip('/')}/v1/completions"
    finish_reason = stop_reason = None
    done = False
    last_chunk_t: Optional[float] = None
    rec.num_requests += 1
    async with httpx_sse.aconnect_sse(client, "POST", url, json=payload) as events:
        resp = events.response
        if resp.status_code != 200:
            body = (await resp.aread()).decode("utf-8", "replace")
            raise StreamError(f"HTTP {resp.status_code} from {url}: {body[:500]}")
        async for event in events.aiter_sse():
            data = event.data
            if data == "[DONE]":
                done = True
                break
            try:
                obj = json.loads(data)
            except json.JSONDecodeError as exc:
                raise StreamError(f"bad SSE payload: {data[:200]}") from exc
            if "error" in obj and not obj.get("choices"):
                raise StreamError(f"server error: {obj['error']}")
            choices = obj.get("choices") or []
            if not choices:
                continue
            ch = choices[0]
            piece = ch.get("text") or ""
            now = time.perf_counter()
            if piece:
                if rec.ttft_s is None:
                    rec.ttft_s = now - gen_t0
                if last_chunk_t is not None:
                    rec.itl_s.append(now - last_chunk_t)
                last_chunk_t = now
                text_parts.append(piece)
            if ch.get("finish_reason") is not None:
                finish_reason = ch.get("finish_reason")
                stop_reason = ch.get("stop_reason")
    if not done and finish_reason is None:
        raise StreamError("stream ended before [DONE] and without finish_reason")
    return "".join(text_parts), finish_reason, stop_reason


def round_max_tokens(tokenizer, cfg: BenchmarkConfig, rec: GenerationRecord, text: str) -> int:
    """What the next round may generate: the generation's budget left, within the engine's max_seq_len."""
    max_tokens = cfg.max_new_tokens - rec.output_tokens
    if cfg.max_seq_len is not None:  # the engine refuses prompt + max_tokens > max_seq_len
        max_tokens = min(max_tokens, cfg.max_seq_len - prompt_tokens(tokenizer, text))
    return max_tokens


def round_payload(cfg: BenchmarkConfig, rec: GenerationRecord, text: str, max_tokens: int,
                  allow_tool: bool) -> Dict[str, Any]:
    """The streamed completion request of one round; it stops at a tool call's end while tools are allowed."""
    payload: Dict[str, Any] = {
        "model": cfg.model,
        "prompt": text,
        "max_tokens": max_tokens,
        "temperature": cfg.temperature,
        "seed": rec.seed,
        "stream": True,
    }
    if allow_tool:
        payload["stop"] = [TOOL_END]
    return payload


def stopped_on_tool_call(allow_tool: bool, generated: str, seg: str, finish_reason: Optional[str],
                         stop_reason: Optional[str]) -> bool:
    """Whether the round `seg` stopped on the "</tool_call>" closing a tool call. The stop string is normally
    stripped from the text (kept by servers that include it); stop_reason names it (or is None on servers that
    omit it)."""
    body = seg[: -len(TOOL_END)] if seg.endswith(TOOL_END) else seg
    return (allow_tool and finish_reason == "stop" and stop_reason in (None, TOOL_END)
            and has_unclosed_tool_call(generated + body))


async def run_tool_call(sandbox: httpx.AsyncClient, cfg: BenchmarkConfig, rec: GenerationRecord, code: str,
                        session_id: str) -> str:
    """Run one tool call's code in the generation's sandbox session, record it; return its output as the
    model reads it."""
    result = await execute_code(sandbox, cfg, code, session_id)
    rec.num_code_executions += 1
    rec.code_executions.append({"status": result["status"], "duration_s": result["duration_s"]})
    return format_tool_output(result["output"])


def end_record(rec: GenerationRecord, tokenizer, generated: str, partial: str, batch_t0: float,
               gen_t0: float) -> None:
    """However the generation ended: its times, its text (with the partial text of a round cut short, counted
    too) and the answer in it."""
    end = time.perf_counter()
    if partial:
        generated += partial
        rec.output_tokens += count_tokens(tokenizer, partial)
    rec.end_s = end - batch_t0
    rec.e2e_latency_s = end - gen_t0
    rec.generation = generated
    rec.answer = extract_boxed(generated)


async def generate_one(client: httpx.AsyncClient, sandbox: Optional[httpx.AsyncClient], tokenizer,
                       cfg: BenchmarkConfig, prompt: str, rec: GenerationRecord, batch_t0: float,
                       session_id: str) -> GenerationRecord:
    """One generation: rounds of streamed text, each but the last ended by a tool call whose output is added to
    the text. Fills ``rec`` in place; re-raises cancellation."""
    gen_t0 = time.perf_counter()
    rec.start_s = gen_t0 - batch_t0
    generated = ""
    parts: List[str] = []  # text of the round in flight
    used_sandbox = False
    try:
        while True:
            max_tokens = round_max_tokens(tokenizer, cfg, rec, prompt + generated)
            if max_tokens <= 0:
                rec.finish_reason = "length"
                break
            allow_tool = sandbox is not None and rec.num_code_executions < cfg.max_code_executions
            payload = round_payload(cfg, rec, prompt + generated, max_tokens, allow_tool)
            parts = []
            seg, finish_reason, stop_reason = await _stream_round(client, cfg, payload, rec, gen_t0, parts)
            parts = []
            if not stopped_on_tool_call(allow_tool, generated, seg, finish_reason, stop_reason):
                generated += seg
                rec.output_tokens += count_tokens(tokenizer, seg)
                rec.finish_reason = finish_reason
                break
            if not seg.endswith(TOOL_END):
                seg += TOOL_END
            generated += seg
            rec.output_tokens += count_tokens(tokenizer, seg)
            rec.generation = generated
            code = extract_tool_code(generated)
            used_sandbox = True
            generated += await run_tool_call(sandbox, cfg, rec, code, session_id)
            rec.generation = generated
        rec.status = FINISHED
    except asyncio.CancelledError:
        rec.status = CANCELLED
        rec.error = None
        raise
    except Exception as exc:  # noqa: BLE001 - any failure becomes an error record
        rec.status = ERROR
        rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        end_record(rec, tokenizer, generated, "".join(parts), batch_t0, gen_t0)
        if used_sandbox and sandbox is not None:
            await delete_session(sandbox, cfg, session_id)
    return rec


async def run_problem(client: httpx.AsyncClient, sandbox: Optional[httpx.AsyncClient], tokenizer,
                      cfg: BenchmarkConfig, problem: Dict[str, Any], problem_index: int,
                      run_id: str = "") -> tuple:
    """One batch: N concurrent generations, cancel the rest once K finished. Returns (records, wall_s)."""
    prompt = build_prompt(tokenizer, cfg.prompt, problem["problem"])
    n_in = count_tokens(tokenizer, prompt)
    expected = problem.get("expected_answer")
    records = [
        GenerationRecord(problem_index=problem_index, seed=i, problem_id=problem.get("id"),
                         expected_answer=None if expected is None else str(expected), input_tokens=n_in)
        for i in range(cfg.num_generations)
    ]
    run_id = run_id or uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(generate_one(client, sandbox, tokenizer, cfg, prompt, rec, t0,
                                         f"{run_id}-p{problem_index}-g{rec.seed}"))
        for rec in records
    ]
    pending = set(tasks)
    try:
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if sum(r.status == FINISHED for r in records) >= cfg.cancel_after:
                for t in pending:
                    t.cancel()
                break
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for t in tasks:  # caller cancelled us: do not leave orphans behind
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - t0
    return records, wall


def _make_clients(cfg: BenchmarkConfig):
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=max(cfg.num_generations, 10))
    timeout = httpx.Timeout(connect=cfg.connect_timeout, read=cfg.request_timeout, write=60.0, pool=None)
    client = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)
    sandbox = None
    if cfg.max_code_executions > 0 and cfg.sandbox_url:
        sandbox = httpx.AsyncClient(timeout=httpx.Timeout(cfg.sandbox_timeout + 30.0), limits=limits,
                                    trust_env=False)
    return client, sandbox


async def run_benchmark(cfg: BenchmarkConfig, problems: Sequence[Dict[str, Any]], tokenizer) -> Dict[str, Any]:
    """Run every problem (sequentially, one batch each) and return config + summary + batches + records.

    ``tokenizer``: a transformers tokenizer or a path to load one from.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(str(tokenizer))
    if not problems:
        raise ValueError("no problems")
    run_id = uuid.uuid4().hex[:8]
    client, sandbox = _make_clients(cfg)
    all_records: List[GenerationRecord] = []
    batches = []
    total = 0.0
    try:
        for i, prob in enumerate(problems):
            records, wall = await run_problem(client, sandbox, tokenizer, cfg, prob, i, run_id)
            all_records.extend(records)
            total += wall
            summ = summarize(records, wall)
            batches.append({"problem_index": i, "problem_id": prob.get("id"), "wall_time_s": wall, "summary": summ})
            print(f"[benchmark_client] problem {i} ({prob.get('id')}): {wall:.1f}s, "
                  f"{summ['num_finished']} finished / {summ['num_cancelled']} cancelled / {summ['num_errors']} errors, "
                  f"batch {summ['batch_throughput_tok_s'] or 0:.1f} tok/s, "
                  f"majority={summ['per_problem'][0]['majority_answer']!r}", file=sys.stderr, flush=True)
    finally:
        await client.aclose()
        if sandbox is not None:
            await sandbox.aclose()
    return {
        "config": dataclasses.asdict(cfg),
        "summary": summarize(all_records, total),
        "batches": batches,
        "records": [r.to_dict() for r in all_records],
    }


def load_problems(path: str) -> List[Dict[str, Any]]:
    return jsonl.read_rows(path, "problems", ("problem",), remedy="each row is {problem, expected_answer?, id?}")


def write_results(results: Dict[str, Any], path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.benchmark_client", description=__doc__.split("\n\n")[0])
    p.add_argument("--server-url", required=True)
    p.add_argument("--sandbox-url", default=None)
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True, help="dir of the HF tokenizer (chat template + token counts)")
    p.add_argument("--problems", required=True, help="JSONL: {problem, expected_answer?, id?}")
    p.add_argument("--num-generations", type=int, default=12)
    p.add_argument("--cancel-after", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-new-tokens", type=int, default=20000)
    p.add_argument("--max-code-executions", type=int, default=2)
    p.add_argument("--sandbox-timeout", type=float, default=10.0)
    p.add_argument("--max-output-characters", type=int, default=1000)
    p.add_argument("--prompt", choices=list(PROMPTS), default="generic/math",
                   help="the NeMo-Skills prompt config each problem is put in (the user turn)")
    p.add_argument("--traceback-verbosity", choices=TRACEBACK_VERBOSITIES, default="Plain")
    p.add_argument("--engine-dir", help="the served TensorRT-LLM engine: its config.json's build_config.max_seq_len "
                   "bounds every request's prompt + max_tokens")
    p.add_argument("--max-seq-len", type=int, help="that bound given directly (the lower one wins when the engine's "
                   "config.json is read too); needed when there is no --engine-dir")
    p.add_argument("--request-timeout", type=float, default=1800.0, help="max seconds between streamed chunks")
    p.add_argument("--output", required=True)
    return p


def resolve_max_seq_len(engine_dir: Optional[str], explicit: Optional[int]) -> int:
    """The engine's build_config.max_seq_len, or ``explicit`` (the lower of both when both are there).
    An unreadable engine config is an error unless ``explicit`` is given."""
    if engine_dir is None and explicit is None:
        raise ValueError("the request length bound is unknown: give --engine-dir (the served engine) or --max-seq-len")
    if engine_dir is None:
        return explicit
    try:
        engine = engine_max_seq_len(engine_dir)
    except (OSError, ValueError) as exc:
        if explicit is None:
            raise ValueError(f"--engine-dir {engine_dir}: {exc}; give --max-seq-len to run without it") from exc
        print(f"[benchmark_client] {exc}; using --max-seq-len {explicit}", file=sys.stderr, flush=True)
        return explicit
    return engine if explicit is None else min(engine, explicit)


async def _amain(args: argparse.Namespace) -> Dict[str, Any]:
    cfg = BenchmarkConfig(
        server_url=args.server_url, sandbox_url=args.sandbox_url, model=args.model,
        num_generations=args.num_generations, cancel_after=args.cancel_after, temperature=args.temperature,
        max_new_tokens=args.max_new_tokens, max_code_executions=args.max_code_executions,
        sandbox_timeout=args.sandbox_timeout, max_output_characters=args.max_output_characters,
        prompt=args.prompt,
        traceback_verbosity=args.traceback_verbosity, request_timeout=args.request_timeout,
        max_seq_len=args.max_seq_len,
    )
    results = await run_benchmark(cfg, load_problems(args.problems), args.tokenizer)
    results["config"]["tokenizer"] = args.tokenizer
    results["config"]["problems_file"] = args.problems
    results["config"]["engine_dir"] = args.engine_dir
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.max_seq_len = resolve_max_seq_len(args.engine_dir, args.max_seq_len)
    except ValueError as exc:
        parser.error(str(exc))
    results = asyncio.run(_amain(args))
    write_results(results, args.output)
    s = results["summary"]
    print(json.dumps({k: v for k, v in s.items() if k != "per_problem"}, indent=2))
    return 0 if s["num_finished"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
