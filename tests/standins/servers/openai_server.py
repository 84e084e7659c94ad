"""TEST STAND-IN for ``trtllm-serve``: a scripted OpenAI-compatible streaming completions server.

NOT a model server. It answers ``/health``, ``/v1/models`` and ``/v1/completions`` with deterministic
outputs chosen by the request's ``seed`` from a script given at startup, in the shapes TensorRT-LLM
1.1.0rc0's ``trtllm-serve`` answers in (see tests/standins/README.md, "bin/trtllm-serve"):

* streamed: one ``data: {...}`` chunk per generated token (``CompletionStreamResponse`` as
  ``model_dump_json``: compact JSON, every field, nulls included), the chunk of the last token carrying
  its text *and* the ``finish_reason`` (``length``, or ``stop`` with the stop string as ``stop_reason``
  and the text cut before it); a generation that ends on the model's EOS token ends with a chunk whose
  text is empty (EOS detokenizes to nothing); then ``data: [DONE]``. One JSON answer when ``stream`` is
  false. With ``stream_options`` (AIPerf sends ``{"include_usage": true}``), cumulative ``usage`` on every chunk
  (``continuous_usage_stats`` defaulted to true then) and a last ``choices: []`` usage chunk before ``[DONE]``.
* with an engine limit (``max_seq_len``, what ``bin/trtllm-serve`` reads from the engine's config.json),
  a request whose prompt tokens + ``max_tokens`` exceed it is refused before anything is generated:
  HTTP 400, ``{"object":"error","message":"The sum of prompt length (P.0) and query length (0) max_tokens
  (M) should not exceed max_seq_len (L)","type":"BadRequestError","param":null,"code":400}``.

It records every request (with the ``(text, finish_reason)`` of each chunk it sent), including the ones
whose client went away before the end (``outcome == "disconnected"``) and the refused ones (``outcome ==
"rejected"``), so tests can check what reached it.

Script (JSON-able)::

    {"default": BEHAVIOUR, "seeds": {"3": BEHAVIOUR, ...}}
    BEHAVIOUR = {"tokens": [str, ...]  (or "text": str, split after whitespace),
                 "delay": 0.01,             # seconds before each token after the first
                 "first_token_delay": 0.0,  # seconds before the first token
                 "die_after": null}         # abort the connection after emitting this many tokens

After the script's last token comes the EOS token (``finish_reason="stop"``, ``stop_reason`` null), if
``max_tokens`` leaves room for it. ``stop`` strings are honoured. A continuation request (its prompt
holds k tool outputs, i.e. k occurrences of "```output") resumes the script right after the k-th
``</tool_call>``; ``max_tokens`` counts one token per script token.

Speculative decoding (``draft_tokens=K``, what the served configuration drafts per step): the first token of
a request comes from its prefill, then each step drafts K tokens and accepts the next entry of the script's
``"accepted_per_step": [a, ...]`` (cycled, each capped at K; default :data:`DEFAULT_ACCEPTED`), producing a+1
tokens, streamed as ONE chunk as the real servers stream a step (the last step is cut by the end of the
generation: it accepted what it emitted less one). The server's own metrics count those steps, at ``/metrics``
in the shape of the server it stands in for (``metrics=``; without it ``/metrics`` is a 404):

* ``"vllm"`` (vLLM 0.33.0 ``vllm/v1/spec_decode/metrics.py`` SpecDecodingProm, ``v1/metrics/loggers.py``):
  Prometheus text, counters ``vllm:spec_decode_num_drafts_total``, ``..._num_draft_tokens_total``,
  ``..._num_accepted_tokens_total``, ``..._num_accepted_tokens_per_pos_total{position}`` (only with speculative
  decoding, as vLLM registers them), ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``; labels
  ``model_name``, ``engine="0"``.
* ``"sglang"`` (SGLang 0.5.23 ``srt/observability/metrics_collector.py`` TokenizerMetricsCollector, served only
  with ``--enable-metrics``): ``sglang:prompt_tokens_total`` and ``sglang:generation_tokens_total`` (label
  ``is_streaming``), ``sglang:spec_verify_calls_total`` (one per verify step, incremented per finished request);
  labels ``model_name``, ``engine_type="unified"``.
* ``"trtllm"`` (trtllm-serve ``GET /metrics`` = ``get_iteration_stats``): a JSON list of the iteration stats
  queued since the last call (the call drains them), each ``IterationStats`` as its ``to_json_str`` writes it
  (cpp/tensorrt_llm/executor/jsonSerialization.cpp), ``specDecodingStats`` {``numDraftTokens``,
  ``numAcceptedTokens``, ``numRequestsWithDraftTokens``, ``acceptanceLength``, ``iterLatencyMS``,
  ``draftOverhead``} on drafting iterations, null otherwise. One iteration per step of one request (the stand-in
  batches nothing). With ``iteration_stats=False`` (the PyTorch backend without ``enable_iter_perf_stats``)
  nothing is queued: ``[]``.

Run: ``python -m tests.standins.servers.openai_server --port 5000 [--script FILE.json]
[--tokenizer DIR --max-seq-len N] [--metrics vllm|sglang|trtllm] [--draft-tokens K]``; in tests:
``with OpenAIStandinServer(script) as srv: srv.url ...`` (runs in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from aiohttp import web

from tests.standins.servers.threaded import ThreadedServer

STANDIN_LABEL = "TEST STAND-IN (scripted, not a model server)"
TOOL_END = "</tool_call>"
OUTPUT_MARK = "```output"

METRICS_STYLES = ("vllm", "sglang", "trtllm")
DEFAULT_ACCEPTED = (2, 0, 3, 1)  # accepted drafts of successive verify steps (cycled, capped at the draft length)

DEFAULT_TEXT = (
    "TEST STAND-IN output. Let us think step by step about the problem . "
    "After careful consideration the answer is \\boxed{42} ."
)


def split_text(text: str) -> List[str]:
    """Split into 'tokens' each ending with its trailing whitespace (joins back to ``text``)."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def _behaviour(raw: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    raw = dict(raw or {})
    if "tokens" in raw:
        tokens = [str(t) for t in raw["tokens"]]
    else:
        tokens = split_text(str(raw.get("text", DEFAULT_TEXT)))
    return {
        "tokens": tokens,
        "delay": float(raw.get("delay", 0.01)),
        "first_token_delay": float(raw.get("first_token_delay", 0.0)),
        "die_after": raw.get("die_after"),
    }


def _resume_index(tokens: List[str], n_outputs: int) -> int:
    """Index of the script token right after the n-th completed ``</tool_call>``."""
    if n_outputs <= 0:
        return 0
    acc, seen = "", 0
    for i, tok in enumerate(tokens):
        before = acc.count(TOOL_END)
        acc += tok
        seen += acc.count(TOOL_END) - before
        if seen >= n_outputs:
            return i + 1
    return len(tokens)


class _Disconnected(Exception):
    pass


def compact_json(obj: Any) -> str:
    """JSON as pydantic's ``model_dump_json`` and Starlette's ``JSONResponse`` write it (no spaces, UTF-8 kept)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def length_error(prompt_len: int, max_tokens: Any, max_seq_len: int) -> Dict[str, Any]:
    """The 400 answer trtllm-serve gives a request longer than the engine (TensorRT-LLM 1.1.0rc0: the ValueError of
    llmapi/llm.py ``BaseLLM._check_arguments``, turned into ``ErrorResponse`` by serve/openai_server.py
    ``create_error_response``). ``prompt_len / cp_size`` is a float there, hence ``(120.0)``."""
    message = (f"The sum of prompt length ({prompt_len / 1}) and query length (0) max_tokens ({max_tokens}) "
               f"should not exceed max_seq_len ({max_seq_len})")
    return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}


def step_sizes(n_tokens: int, draft_tokens: Optional[int], accepted: List[int]) -> List[int]:
    """Tokens produced by each step of a generation of ``n_tokens``: the prefill's one, then a+1 per verify step
    (the last cut to what is left). Without speculative decoding, one per step."""
    if not draft_tokens:
        return [1] * n_tokens
    sizes, left, i = [], n_tokens, 0
    if left:
        sizes.append(1)
        left -= 1
    while left:
        size = min(min(accepted[i % len(accepted)], draft_tokens) + 1, left)
        sizes.append(size)
        left -= size
        i += 1
    return sizes


class ServerMetrics:
    """What the stood-in server counts of its generations, rendered as its ``/metrics`` answers (module docstring)."""

    def __init__(self, style: str, model: str, draft_tokens: Optional[int], iteration_stats: bool = True):
        if style not in METRICS_STYLES:
            raise ValueError(f"metrics: {style!r}; allowed: {list(METRICS_STYLES)}")
        from prometheus_client import CollectorRegistry, Counter

        self.style, self.draft_tokens, self.iteration_stats = style, draft_tokens, iteration_stats
        self.registry = CollectorRegistry()
        self.iterations: List[Dict[str, Any]] = []  # trtllm: queued until the next GET /metrics
        self._iter = 0
        self._lock = threading.Lock()
        if style == "vllm":
            labels = {"model_name": model, "engine": "0"}

            def counter(name: str, doc: str, extra=()):
                return Counter(name, doc, [*labels, *extra], registry=self.registry)

            self.prompt = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(**labels)
            self.generation = counter("vllm:generation_tokens",
                                      "Number of generation tokens processed.").labels(**labels)
            if draft_tokens:
                self.drafts = counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.").labels(**labels)
                self.draft_tok = counter("vllm:spec_decode_num_draft_tokens",
                                         "Number of draft tokens.").labels(**labels)
                self.accepted = counter("vllm:spec_decode_num_accepted_tokens",
                                        "Number of accepted tokens.").labels(**labels)
                per_pos = counter("vllm:spec_decode_num_accepted_tokens_per_pos", "Accepted tokens per draft position.",
                                  ["position"])
                self.per_pos = [per_pos.labels(**labels, position=str(j)) for j in range(draft_tokens)]
        elif style == "sglang":
            self.labels = {"model_name": model, "engine_type": "unified"}
            names = [*self.labels, "is_streaming"]
            self.prompt = Counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", names,
                                  registry=self.registry)
            self.generation = Counter("sglang:generation_tokens_total", "Number of generation tokens processed.",
                                      names, registry=self.registry)
            self.verify = Counter("sglang:spec_verify_calls_total",
                                  "Number of speculative decoding verification calls.", list(self.labels),
                                  registry=self.registry)

    def observe(self, prompt_tokens: int, sizes: List[int], streaming: bool) -> None:
        """One finished (or abandoned) request: its prompt and the tokens of each of its steps."""
        verify = sizes[1:] if self.draft_tokens else []  # the prefill's token is drafted by nobody
        with self._lock:
            if self.style == "vllm":
                self.prompt.inc(prompt_tokens)
                self.generation.inc(sum(sizes))
                if self.draft_tokens and verify:
                    self.drafts.inc(len(verify))
                    self.draft_tok.inc(len(verify) * self.draft_tokens)
                    self.accepted.inc(sum(size - 1 for size in verify))
                    for size in verify:
                        for j in range(size - 1):
                            self.per_pos[j].inc()
            elif self.style == "sglang":
                stream = {**self.labels, "is_streaming": "true" if streaming else "false"}
                self.prompt.labels(**stream).inc(prompt_tokens)
                self.generation.labels(**stream).inc(sum(sizes))
                if verify:
                    self.verify.labels(**self.labels).inc(len(verify))
            elif self.iteration_stats:
                for i, size in enumerate(sizes):
                    self.iterations.append(self._iteration(size, drafting=bool(self.draft_tokens) and i > 0))

    def _iteration(self, size: int, drafting: bool) -> Dict[str, Any]:
        self._iter += 1
        spec = None
        if self.draft_tokens is not None:  # a speculating executor fills it every iteration (prefill: zeros)
            spec = {"numDraftTokens": self.draft_tokens, "numAcceptedTokens": size - 1,
                    "numRequestsWithDraftTokens": 1, "acceptanceLength": float(size), "iterLatencyMS": 0.0,
                    "draftOverhead": 0.0}
            if not drafting:
                spec.update(numDraftTokens=0, numAcceptedTokens=0, numRequestsWithDraftTokens=0, acceptanceLength=0.0)
        return {"timestamp": time.strftime("%m-%d-%Y %H:%M:%S"), "iter": self._iter, "iterLatencyMS": 1.0,
                "newActiveRequestsQueueLatencyMS": 0.0, "numNewActiveRequests": 0, "numActiveRequests": 1,
                "numQueuedRequests": 0, "numCompletedRequests": 0, "maxNumActiveRequests": 2048,
                "gpuMemUsage": 0, "cpuMemUsage": 0, "pinnedMemUsage": 0, "kvCacheStats": None,
                "inflightBatchingStats": None, "specDecodingStats": spec}

    def render(self) -> web.Response:
        if self.style == "trtllm":
            with self._lock:
                drained, self.iterations = self.iterations, []
            return web.Response(body=compact_json(drained).encode(), content_type="application/json")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with self._lock:
            body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class OpenAIStandinServer(ThreadedServer):
    """TEST STAND-IN OpenAI completions server (aiohttp), usable in-process (thread) or from the CLI.

    ``max_seq_len``: the served engine's ``build_config.max_seq_len``; with it, ``tokenizer`` (a dir or a loaded
    tokenizer) counts each prompt's tokens as the real server does, and longer requests are refused.
    ``chunked_prefill``: the LLM API's ``enable_chunked_prefill``, which turns that check off.
    ``draft_tokens``: speculative decoding's draft length (None: none); ``metrics``: whose ``/metrics`` to answer
    (:data:`METRICS_STYLES`; None: no such endpoint); ``iteration_stats``: trtllm's stats queue is filled.
    """

    thread_name = "openai-standin"

    def __init__(self, script: Optional[Dict[str, Any]] = None, host: str = "127.0.0.1", port: int = 0,
                 model: str = "standin-model", tokenizer: Any = None, max_seq_len: Optional[int] = None,
                 chunked_prefill: bool = False, draft_tokens: Optional[int] = None, metrics: Optional[str] = None,
                 iteration_stats: bool = True):
        script = script or {}
        if draft_tokens is not None and draft_tokens < 1:
            raise ValueError(f"draft_tokens: {draft_tokens!r} must be at least 1 (or None: no speculative decoding)")
        self.draft_tokens = draft_tokens
        self.accepted_per_step = [int(a) for a in script.get("accepted_per_step") or DEFAULT_ACCEPTED]
        if any(a < 0 for a in self.accepted_per_step):
            raise ValueError(f"accepted_per_step: {self.accepted_per_step!r} must be counts (0 or more)")
        self.default = _behaviour(script.get("default"))
        self.seeds = {int(k): _behaviour(v) for k, v in (script.get("seeds") or {}).items()}
        super().__init__(host, port)
        self.model = model
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if max_seq_len is not None and tokenizer is None:
            raise ValueError("max_seq_len needs a tokenizer to count prompt tokens")
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.chunked_prefill = chunked_prefill
        self.metrics = ServerMetrics(metrics, model, draft_tokens, iteration_stats) if metrics else None
        self.requests: List[Dict[str, Any]] = []  # one dict per /v1/completions request
        self._lock = threading.Lock()

    # ---- app -------------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        if self.metrics is not None:
            app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return self.metrics.render()

    def step_sizes(self, n_tokens: int) -> List[int]:
        return step_sizes(n_tokens, self.draft_tokens, self.accepted_per_step)

    def _observe(self, rec: Dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.observe(rec["prompt_tokens"] or 0, self.step_sizes(rec["emitted_tokens"]), rec["stream"])

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": int(time.time()), "owned_by": STANDIN_LABEL}]})

    def behaviour_for(self, seed: Optional[int]) -> Dict[str, Any]:
        return self.seeds.get(seed, self.default) if seed is not None else self.default

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "bad JSON"}}, status=400)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return web.json_response({"error": {"message": "prompt must be a string"}}, status=400)
        seed = body.get("seed")
        stop = body.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        max_tokens = int(body.get("max_tokens") or 16)
        beh = self.behaviour_for(seed)
        prompt_len = len(self.tokenizer.encode(prompt, add_special_tokens=True)) if self.tokenizer is not None else None
        rec = {"id": f"cmpl-{uuid.uuid4().hex}", "seed": seed, "prompt": prompt, "prompt_tokens": prompt_len,
               "stop": body.get("stop"), "max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
               "stream": bool(body.get("stream")), "model": body.get("model"), "emitted_tokens": 0, "text": "",
               "outcome": "running", "finish_reason": None, "error": None, "chunks": [], "start": time.time(),
               "end": None}
        with self._lock:
            self.requests.append(rec)
        # The LLM API checks the request against the engine before anything is generated (or streamed):
        # prompt_len / cp_size + query_len + (max_tokens or 0) > max_seq_len, unless chunked prefill is on.
        if (self.max_seq_len is not None and not self.chunked_prefill
                and prompt_len + (body.get("max_tokens") or 0) > self.max_seq_len):
            error = length_error(prompt_len, body.get("max_tokens"), self.max_seq_len)
            rec.update(outcome="rejected", error=error["message"], end=time.time())
            return web.Response(body=compact_json(error).encode(), status=400, content_type="application/json")
        tokens = beh["tokens"][_resume_index(beh["tokens"], prompt.count(OUTPUT_MARK)):]
        # openai_protocol.py StreamOptions (1.1.0rc0 era): include_usage and continuous_usage_stats both default
        # to true once stream_options is given, so {"include_usage": true} puts usage on every chunk too.
        stream_options = body.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage", True)) if stream_options else False
        continuous_usage = include_usage and bool(stream_options.get("continuous_usage_stats", True))

        def usage() -> Dict[str, int]:
            prompt_tokens = prompt_len or 0
            return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + rec["emitted_tokens"],
                    "completion_tokens": rec["emitted_tokens"]}

        if not rec["stream"]:
            return await self._complete_plain(rec, beh, tokens, stop, max_tokens)

        # Starlette's StreamingResponse(media_type="text/event-stream") adds the charset.
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)

        async def send(obj: Any) -> None:
            if request.transport is None or request.transport.is_closing():
                raise _Disconnected()
            data = obj if isinstance(obj, str) else compact_json(obj)
            try:
                await resp.write(f"data: {data}\n\n".encode())
            except (ConnectionError, RuntimeError) as exc:  # aiohttp: ClientConnectionResetError
                raise _Disconnected() from exc

        async def sleep_watching(seconds: float) -> None:
            end = time.monotonic() + seconds
            while True:
                if request.transport is None or request.transport.is_closing():
                    raise _Disconnected()
                left = end - time.monotonic()
                if left <= 0:
                    return
                await asyncio.sleep(min(left, 0.01))

        def chunk(text: str, finish: Optional[str] = None, stop_reason: Optional[str] = None) -> Dict[str, Any]:
            # serve/postprocess_handlers.py completion_stream_post_processor: a new CompletionStreamResponse (new id,
            # new created) per chunk, for the request's model, dumped with every field.
            rec["chunks"].append((text, finish))
            return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                    "model": rec["model"],
                    "choices": [{"index": 0, "text": text, "token_ids": None, "logprobs": None,
                                 "finish_reason": finish, "stop_reason": stop_reason,
                                 "avg_decoded_tokens_per_iter": 1.0}],
                    "usage": usage() if continuous_usage else None}

        # A step's tokens go out in one chunk: the emitted-token counts at which a step ends.
        step_ends = set(itertools.accumulate(self.step_sizes(len(tokens))))
        try:
            finish = None
            acc = pending = ""  # the text so far; the part of it not sent yet (this step's)
            for i, tok in enumerate(tokens):
                if not pending:  # a new step: the model's time for it
                    await sleep_watching(beh["first_token_delay"] if i == 0 else beh["delay"])
                if beh["die_after"] is not None and rec["emitted_tokens"] >= int(beh["die_after"]):
                    rec["outcome"] = "died"
                    request.transport.abort()  # simulate the server dying mid-stream
                    return resp
                rec["emitted_tokens"] += 1
                hit = self._find_stop(acc, tok, stop)
                if hit is not None:  # the text up to the stop string, and the end, in one chunk
                    cut, s = hit
                    finish = "stop"
                    await send(chunk(pending + cut, finish, s))
                    acc += cut
                    break
                finish = "length" if rec["emitted_tokens"] >= max_tokens else None
                pending += tok
                acc += tok
                rec["text"] = acc
                if finish or rec["emitted_tokens"] in step_ends:  # the last token's text comes with "length"
                    await send(chunk(pending, finish))
                    pending = ""
                if finish:
                    break
            else:  # script exhausted: the model's EOS token (it detokenizes to nothing), in the step it ends
                if not pending:
                    await sleep_watching(beh["first_token_delay"] if not tokens else beh["delay"])
                finish = "stop"
                await send(chunk(pending, finish))
            rec["text"] = acc
            if include_usage:  # the final usage chunk: a ChatCompletionStreamResponse, even for completions
                await send({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": rec["model"], "choices": [], "usage": usage()})
            await send("[DONE]")
            rec["outcome"], rec["finish_reason"] = "completed", finish
            await resp.write_eof()
        except _Disconnected:
            rec["outcome"] = "disconnected"
        except asyncio.CancelledError:
            rec["outcome"] = "disconnected"
            raise
        finally:
            rec["end"] = time.time()
            self._observe(rec)  # what it generated counts, even for a client that went away
        return resp

    @staticmethod
    def _find_stop(acc: str, tok: str, stop: List[str]):
        """If appending ``tok`` completes a stop string: (part of tok before it, the string)."""
        best = None
        for s in stop:
            if not s:
                continue
            window = acc[-(len(s) - 1):] if len(s) > 1 else ""
            pos = (window + tok).find(s)
            if pos >= 0:
                cut_at = pos - len(window)  # may be negative: stop began in earlier text
                if best is None or cut_at < best[0]:
                    best = (cut_at, s)
        if best is None:
            return None
        return tok[:max(best[0], 0)], best[1]

    async def _complete_plain(self, rec, beh, tokens, stop, max_tokens) -> web.Response:
        acc, finish, stop_reason = "", "stop", None
        for i, tok in enumerate(tokens):
            if i >= max_tokens:
                finish = "length"
                break
            hit = self._find_stop(acc, tok, stop)
            if hit is not None:
                acc += hit[0]
                finish, stop_reason = "stop", hit[1]
                break
            acc += tok
        else:  # the EOS token after the script needs a token of the budget too
            finish = "stop" if len(tokens) < max_tokens else "length"
        rec.update(text=acc, emitted_tokens=min(len(tokens), max_tokens), outcome="completed",
                   finish_reason=finish, end=time.time())
        self._observe(rec)
        return web.json_response({"id": rec["id"], "object": "text_completion", "model": self.model,
                                  "choices": [{"index": 0, "text": acc, "finish_reason": finish,
                                               "stop_reason": stop_reason}]})

    # ---- introspection for tests -----------------------------------------------------------------
    def snapshot(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.requests]

    def disconnects(self) -> List[Dict[str, Any]]:
        return [r for r in self.snapshot() if r["outcome"] == "disconnected"]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is still running; True if so within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r["outcome"] != "running" for r in self.snapshot()):
                return True
            time.sleep(0.01)
        return False


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="TEST STAND-IN OpenAI-compatible completions server (scripted)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--script", help="JSON script file (see module docstring)")
    p.add_argument("--model", default="standin-model")
    p.add_argument("--tokenizer", help="dir of the tokenizer that counts prompt tokens (with --max-seq-len)")
    p.add_argument("--max-seq-len", type=int, help="refuse requests whose prompt tokens + max_tokens exceed this")
    p.add_argument("--enable-chunked-prefill", action="store_true", help="no max_seq_len check (LLM API option)")
    p.add_argument("--draft-tokens", type=int, help="speculative decoding: tokens drafted per step")
    p.add_argument("--metrics", choices=METRICS_STYLES, help="answer /metrics as this server does")
    p.add_argument("--no-iteration-stats", dest="iteration_stats", action="store_false",
                   help="trtllm: queue no iteration stats (PyTorch backend without enable_iter_perf_stats)")
    args = p.parse_args(argv)
    script = None
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    srv = OpenAIStandinServer(script, host=args.host, port=args.port, model=args.model, tokenizer=args.tokenizer,
                              max_seq_len=args.max_seq_len, chunked_prefill=args.enable_chunked_prefill,
                              draft_tokens=args.draft_tokens, metrics=args.metrics,
                              iteration_stats=args.iteration_stats)
    print(f"{STANDIN_LABEL} listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(srv.make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
