"""Standard load benchmark: NVIDIA AIPerf (``aiperf profile``, pinned 0.13.0) swept over concurrencies.

Runs inside the container against an OpenAI-compatible server (trtllm-serve, vLLM, SGLang). One AIPerf
process per (repeat, concurrency) point, each into its own artifact directory ``<out>/r<k>/c<C>/``: a point
that fails does not take the sweep down, and every point's raw AIPerf files stay next to its record.
Streamed requests over a fixed prompt set (AIPerf ``single_turn`` JSONL, written by
:func:`write_prompt_file` from the AIMO problems or a chat set); token counts come from the served model's
tokenizer (a local directory: nothing is downloaded).

Per point (:class:`PointRecord`): request and token throughput, TTFT, ITL (AIPerf's ITL is
(latency - TTFT) / (output tokens - 1), i.e. TPOT) and end-to-end latency as mean/P50/P90/P99 in ms, goodput
under ``--goodput`` SLOs as AIPerf computes it (requests/s meeting every SLO), and the speculative-decoding
acceptance from the server's own counters over the point (:class:`AcceptanceProbe`: vLLM's and SGLang's
Prometheus ``/metrics`` read before and after it, trtllm-serve's iteration stats polled through it).
A point that generated no tokens, had failed requests or completed fewer requests than asked is
``valid: false`` with the reason, and is left out of the summary. With repeats, the summary has the mean and
a 95% Student-t confidence interval of every metric per concurrency.

    python -m jobs.load_sweep --url http://127.0.0.1:8000 [--model NAME] --tokenizer DIR \\
        --problems conf/benchmark/problems/aime25_p1.jsonl --endpoint-type completions \\
        --concurrency 1,2,4,8 --repeats 3 --goodput time_to_first_token=2000 --out DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from jobs import jsonl
from jobs.calibration_data import PROMPTS, user_turn

AIPERF_VERSION = "0.13.0"
EXPORT_FILE = "profile_export_aiperf.json"  # aiperf/config/artifacts.py PROFILE_EXPORT_AIPERF_JSON_FILE
RECORDS_FILE = "profile_export.jsonl"  # one line per request; written even when every request failed
DEFAULT_CONCURRENCIES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENDPOINT_TYPES = ("completions", "chat")
# Per-request metric tags of AIPerf (aiperf/metrics/types/*.py) that a goodput SLO may name; values are in
# the metric's display unit (ms for latencies, tokens/s/user for the per-user rate).
GOODPUT_METRICS = ("time_to_first_token", "inter_token_latency", "request_latency", "time_to_second_token",
                   "output_token_throughput_per_user")
LATENCY_METRICS = {"ttft_ms": "time_to_first_token", "itl_ms": "inter_token_latency",
                   "e2e_latency_ms": "request_latency"}
LATENCY_STATS = ("avg", "p50", "p90", "p99")
RATE_METRICS = {"request_throughput": "request_throughput", "output_token_throughput": "output_token_throughput",
                "total_token_throughput": "total_token_throughput",
                "output_token_throughput_per_user": "output_token_throughput_per_user"}
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    url: str
    model: str
    tokenizer: str  # a local tokenizer directory: AIPerf counts tokens with it (offline)
    input_file: str  # AIPerf single_turn JSONL (write_prompt_file)
    endpoint_type: str = "completions"
    concurrencies: Sequence[int] = DEFAULT_CONCURRENCIES
    requests_per_user: int = 4  # requests per point = max(min_requests, requests_per_user * concurrency)
    min_requests: int = 8
    warmup_requests: int = 0
    repeats: int = 1
    goodput: Mapping[str, float] = dataclasses.field(default_factory=dict)
    output_tokens: Optional[int] = None  # AIPerf --osl: max_tokens of every request (the file's output_length wins)
    extra_inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # merged into every request body
    server_token_count: bool = False  # count tokens from the server's usage instead of the tokenizer
    streaming: bool = True  # streamed responses: without them AIPerf measures no TTFT or ITL
    request_timeout_s: float = 3600.0
    random_seed: int = 0
    aiperf: str = "aiperf"  # the CLI: its own venv in the image (its pins differ from the jobs')

    def __post_init__(self) -> None:
        if self.endpoint_type not in ENDPOINT_TYPES:
            raise ValueError(f"endpoint_type: {self.endpoint_type!r} is not supported; allowed: {list(ENDPOINT_TYPES)}")
        cs = list(self.concurrencies)
        if not cs or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in cs):
            raise ValueError(f"concurrencies: {cs!r} must be a non-empty list of positive integers")
        if len(set(cs)) != len(cs):
            raise ValueError(f"concurrencies: {cs!r} has duplicates")
        for key in ("requests_per_user", "min_requests", "repeats"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: {getattr(self, key)!r} must be at least 1")
        if self.warmup_requests < 0:
            raise ValueError(f"warmup_requests: {self.warmup_requests!r} must be 0 or more")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise ValueError(f"output_tokens: {self.output_tokens!r} must be at least 1 (or unset)")
        for tag, value in self.goodput.items():
            if tag not in GOODPUT_METRICS:
                raise ValueError(f"goodput: unknown SLO metric {tag!r}; allowed: {list(GOODPUT_METRICS)}")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"goodput.{tag}: {value!r} must be a positive number")

    def request_count(self, concurrency: int) -> int:
        return max(self.min_requests, self.requests_per_user * concurrency)


@dataclasses.dataclass
class PointRecord:
    concurrency: int
    repeat: int
    artifact_dir: str
    valid: bool
    invalid_reason: Optional[str]
    requests_asked: int
    requests_ok: int = 0
    requests_failed: int = 0
    errors: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # {"count", "type", "message"}
    input_tokens: int = 0
    output_tokens: int = 0
    duration_s: Optional[float] = None
    request_throughput: Optional[float] = None  # requests/s
    output_token_throughput: Optional[float] = None  # tokens/s
    total_token_throughput: Optional[float] = None  # tokens/s (input + output)
    output_token_throughput_per_user: Optional[float] = None  # tokens/s/user, mean over requests
    ttft_ms: Dict[str, float] = dataclasses.field(default_factory=dict)
    itl_ms: Dict[str, float] = dataclasses.field(default_factory=dict)
    e2e_latency_ms: Dict[str, float] = dataclasses.field(default_factory=dict)
    goodput: Optional[float] = None  # requests/s meeting every SLO
    good_requests: Optional[int] = None
    acceptance_length: Optional[float] = None  # tokens per drafting step, the bonus token included
    draft_acceptance_rate: Optional[float] = None  # accepted / drafted tokens
    spec_decode: Optional[Dict[str, Any]] = None  # the server's counts over the point (SpecDecodeCounts)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def scalars(self) -> Dict[str, float]:
        """The numeric metrics, flat (``ttft_ms.p90``...), for means and confidence intervals."""
        out: Dict[str, float] = {}
        for name in ("request_throughput", "output_token_throughput", "total_token_throughput",
                     "output_token_throughput_per_user", "goodput", "acceptance_length", "draft_acceptance_rate"):
            if getattr(self, name) is not None:
                out[name] = float(getattr(self, name))
        for name in LATENCY_METRICS:
            for stat, value in getattr(self, name).items():
                out[f"{name}.{stat}"] = float(value)
        return out


# ---- prompt sets --------------------------------------------------------------------------------------------
def user_messages(rows: Sequence[Mapping[str, Any]], source: str, prompt: str = "generic/math") -> List[str]:
    """The user turn of each row: an AIMO problem (``problem``) in the NeMo-Skills prompt, or a chat prompt
    (``prompt``) as it is."""
    if prompt not in PROMPTS:
        raise ValueError(f"prompt: {prompt!r} is unknown; allowed: {sorted(PROMPTS)}")
    key = "problem" if source == "aimo" else "prompt"
    if source not in ("aimo", "chat"):
        raise ValueError(f"prompt set source: {source!r}; allowed: ['aimo', 'chat']")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise ValueError(f"{source} prompt set row {i}: needs a non-empty string {key!r} (has {sorted(row)})")
        out.append(user_turn(prompt, row[key]) if source == "aimo" else row[key])
    return out


def write_prompt_file(messages: Sequence[str], out: str, endpoint_type: str, tokenizer: Any = None,
                      output_tokens: Optional[int] = None) -> str:
    """AIPerf ``single_turn`` JSONL (aiperf/dataset/loader/models.py ``SingleTurn``): one ``{"text"...}`` per
    prompt. For ``completions`` the text is the whole prompt, so the model's chat template is applied here (as the
    notebook protocol sends it); for ``chat`` the server applies it. ``output_length`` becomes the request's
    ``max_tokens``."""
    if endpoint_type not in ENDPOINT_TYPES:
        raise ValueError(f"endpoint_type: {endpoint_type!r} is not supported; allowed: {list(ENDPOINT_TYPES)}")
    if endpoint_type == "completions" and tokenizer is None:
        raise ValueError("completions prompts need the model's tokenizer (its chat template)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for msg in messages:
            text = msg
            if endpoint_type == "completions":
                text = tokenizer.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                                     add_generation_prompt=True)
            row: Dict[str, Any] = {"text": text}
            if output_tokens is not None:
                row["output_length"] = output_tokens
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


# ---- speculative decoding acceptance, from the server's own metrics ------------------------------------------
# Prometheus counters (sample names as exposed, summed over their label sets) of the servers that have them:
# vLLM 0.33.0 vllm/v1/spec_decode/metrics.py SpecDecodingProm (registered only when it speculates); SGLang 0.5.23
# srt/observability/metrics_collector.py TokenizerMetricsCollector (with --enable-metrics: one verify call per
# drafting step, both counted per finished request).
PROMETHEUS_COUNTERS = {
    "vllm": {"drafts": "vllm:spec_decode_num_drafts_total", "draft_tokens": "vllm:spec_decode_num_draft_tokens_total",
             "accepted_tokens": "vllm:spec_decode_num_accepted_tokens_total"},
    "sglang": {"drafts": "sglang:spec_verify_calls_total", "generated_tokens": "sglang:generation_tokens_total"},
}
# trtllm-serve: GET /metrics answers the IterationStats queued since the last call (and drains them); a drafting
# iteration's specDecodingStats (cpp/tensorrt_llm/executor/jsonSerialization.cpp) counts, over its requests:
ITERATION_COUNTERS = {"drafts": "numRequestsWithDraftTokens", "draft_tokens": "numDraftTokens",
                      "accepted_tokens": "numAcceptedTokens"}
TRTLLM_POLL_S = 1.0  # drained this often during a point, so that no bounded stats queue overflows
_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')


@dataclasses.dataclass
class SpecDecodeCounts:
    """What the server counted over one point. ``drafts``: drafting steps (vLLM drafts, SGLang verify calls,
    trtllm requests-with-drafts per iteration)."""
    source: str
    drafts: float = 0.0
    draft_tokens: Optional[float] = None
    accepted_tokens: Optional[float] = None
    generated_tokens: Optional[float] = None  # SGLang: its acceptance length is generated tokens per verify call

    COUNTS = ("drafts", "draft_tokens", "accepted_tokens", "generated_tokens")

    def add(self, other: "SpecDecodeCounts") -> None:
        for name in self.COUNTS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else mine + theirs)

    def minus(self, before: "SpecDecodeCounts") -> "SpecDecodeCounts":
        out = dataclasses.replace(self)
        for name in self.COUNTS:
            mine, earlier = getattr(self, name), getattr(before, name)
            setattr(out, name, None if mine is None else mine - (earlier or 0.0))
        return out

    def acceptance_length(self) -> Optional[float]:
        """Mean tokens per drafting step, the bonus token included: 1 + accepted / drafts (vLLM's and
        trtllm's definition), or generated tokens / verify calls (SGLang's own, which has no accepted count)."""
        if not self.drafts:
            return None
        if self.accepted_tokens is not None:
            return 1.0 + self.accepted_tokens / self.drafts
        return None if self.generated_tokens is None else self.generated_tokens / self.drafts

    def acceptance_rate(self) -> Optional[float]:
        return self.accepted_tokens / self.draft_tokens if self.drafts and self.draft_tokens else None


def fetch_metrics(url: str, timeout: float = 30.0) -> Optional[str]:
    """The body of the server's GET /metrics, or None where it has no such endpoint (404). Asked directly, never
    through a site's http_proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/metrics", timeout=timeout) as answer:
            return answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def prometheus_samples(text: str) -> Dict[str, float]:
    """Prometheus text exposition: each sample name's value, summed over its label sets (comments skipped)."""
    totals: Dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())  # "# HELP/TYPE" lines do not match
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[3])
    return totals


def iteration_counts(stats: Sequence[Mapping[str, Any]]) -> SpecDecodeCounts:
    counts = SpecDecodeCounts("trtllm-serve /metrics", draft_tokens=0.0, accepted_tokens=0.0)
    for it in stats:
        spec = it.get("specDecodingStats") if isinstance(it, Mapping) else None
        if isinstance(spec, Mapping):
            counts.add(SpecDecodeCounts(counts.source, **{k: float(spec.get(key) or 0)
                                                          for k, key in ITERATION_COUNTERS.items()}))
    return counts


class AcceptanceProbe:
    """Counts the server's speculative-decoding steps over a window (one point): ``open()`` before, ``close()``
    after, which returns the counts (or None and says why in ``note``)."""

    def __init__(self, url: str, style: str):
        self.url, self.style = url, style
        self.note: Optional[str] = None
        self._before: Optional[SpecDecodeCounts] = None
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._polled: Optional[SpecDecodeCounts] = None
        self._poll_error: Optional[str] = None

    def _read(self) -> SpecDecodeCounts:
        body = fetch_metrics(self.url)
        if body is None:
            raise OSError(f"{self.url}/metrics answered 404")
        if self.style == "trtllm":
            return iteration_counts(json.loads(body))
        samples = prometheus_samples(body)
        counts = SpecDecodeCounts(f"{self.style} /metrics")
        for field, name in PROMETHEUS_COUNTERS[self.style].items():
            setattr(counts, field, samples.get(name))
        counts.drafts = counts.drafts or 0.0
        return counts

    def _poll(self) -> None:
        while not self._stop.wait(TRTLLM_POLL_S):
            try:
                self._polled.add(self._read())
            except (OSError, ValueError) as exc:
                self._poll_error = f"{type(exc).__name__}: {exc}"

    def open(self) -> None:
        self.note, self._poll_error = None, None
        try:
            self._before = self._read()  # trtllm: drains what came before the point
        except (OSError, ValueError) as exc:
            self._before, self.note = None, f"server metrics unreadable before the point ({type(exc).__name__}: {exc})"
            return
        if self.style == "trtllm":
            self._polled = iteration_counts([])
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, name="trtllm-iteration-stats", daemon=True)
            self._poller.start()

    def close(self) -> Optional[SpecDecodeCounts]:
        if self._before is None:
            return None
        try:
            if self._poller is not None:
                self._stop.set()
                self._poller.join()
                self._poller = None
                self._polled.add(self._read())
                if self._poll_error:
                    raise OSError(self._poll_error)
                return self._polled
            return self._read().minus(self._before)
        except (OSError, ValueError) as exc:
            self.note = f"server metrics unreadable after the point ({type(exc).__name__}: {exc})"
            return None


def detect_metrics(url: str) -> Tuple[Optional[str], str]:
    """Whose metrics the server at `url` answers (a style of :data:`PROMETHEUS_COUNTERS`, or ``trtllm``), and
    what was found. trtllm-serve's /metrics is a JSON list; vLLM's and SGLang's Prometheus text names its own."""
    try:
        body = fetch_metrics(url)
    except (OSError, ValueError) as exc:
        return None, f"{url}/metrics unreadable ({type(exc).__name__}: {exc})"
    if body is None:
        return None, f"{url} has no /metrics (404)"
    if body.lstrip().startswith("["):
        return "trtllm", "trtllm-serve iteration stats (GET /metrics)"
    # A counter with labels has no sample before its first increment, only its "# TYPE name counter" line.
    names = {*prometheus_samples(body), *re.findall(r"^# TYPE (\S+)", body, re.M)}
    for style in PROMETHEUS_COUNTERS:
        if any(name.startswith(f"{style}:") for name in names):
            return style, f"{style} Prometheus counters (GET /metrics)"
    return None, f"{url}/metrics names no counters of {sorted(PROMETHEUS_COUNTERS)} and is not trtllm-serve's"


def measure_acceptance(rec: PointRecord, counts: Optional[SpecDecodeCounts]) -> None:
    if counts is None:
        return
    rec.spec_decode = dataclasses.asdict(counts)
    rec.acceptance_length, rec.draft_acceptance_rate = counts.acceptance_length(), counts.acceptance_rate()


# ---- one point ------------------------------------------------------------------------------------------------
def build_argv(cfg: SweepConfig, concurrency: int, artifact_dir: str) -> List[str]:
    """``aiperf profile`` for one point (flags of aiperf 0.13.0 ``aiperf/config/flags/cli_config.py``)."""
    argv = [cfg.aiperf, "profile", "--model", cfg.model, "--url", cfg.url, "--endpoint-type", cfg.endpoint_type,
            *(["--streaming"] if cfg.streaming else []), "--tokenizer", cfg.tokenizer, "--input-file", cfg.input_file,
            "--custom-dataset-type", "single_turn", "--concurrency", str(concurrency),
            "--request-count", str(cfg.request_count(concurrency)), "--request-timeout-seconds",
            str(cfg.request_timeout_s), "--random-seed", str(cfg.random_seed), "--artifact-dir", artifact_dir,
            # No live dashboard in a batch log; trtllm-serve's /metrics is not Prometheus text, and the GPUs
            # are the server's: AIPerf's scrapers would only add noise.
            "--ui", "none", "--no-server-metrics", "--no-gpu-telemetry"]
    if cfg.warmup_requests:
        argv += ["--warmup-request-count", str(cfg.warmup_requests)]
    if cfg.goodput:
        argv += ["--goodput", " ".join(f"{tag}:{value:g}" for tag, value in cfg.goodput.items())]
    if cfg.output_tokens is not None:
        argv += ["--osl", str(cfg.output_tokens)]
    if cfg.extra_inputs:
        argv += ["--extra-inputs", json.dumps(dict(cfg.extra_inputs))]
    if cfg.server_token_count:
        argv.append("--use-server-token-count")
    return argv


def _stats(metric: Any) -> Dict[str, float]:
    if not isinstance(metric, dict):
        return {}
    return {s: float(metric[s]) for s in LATENCY_STATS if metric.get(s) is not None}


def _value(export: Mapping[str, Any], tag: str) -> Optional[float]:
    metric = export.get(tag)
    return float(metric["avg"]) if isinstance(metric, dict) and metric.get("avg") is not None else None


def parse_export(export: Mapping[str, Any], concurrency: int, repeat: int, artifact_dir: str,
                 requests_asked: int) -> PointRecord:
    """Our record from AIPerf's ``profile_export_aiperf.json`` (schema 1.4): every metric is
    ``{"unit", "avg", "p50"...}`` under its tag; tags without a value are left out (``exclude_none``)."""
    rec = PointRecord(concurrency=concurrency, repeat=repeat, artifact_dir=artifact_dir, valid=False,
                      invalid_reason=None, requests_asked=requests_asked)
    rec.requests_ok = int(_value(export, "request_count") or 0)
    rec.requests_failed = int(_value(export, "error_request_count") or 0)
    for item in export.get("error_summary") or []:
        details = item.get("error_details") or {}
        rec.errors.append({"count": int(item.get("count") or 0), "type": details.get("type") or details.get("code"),
                           "message": details.get("message")})
    rec.input_tokens = int(_value(export, "total_isl") or 0)
    rec.output_tokens = int(_value(export, "total_osl") or 0)
    rec.duration_s = _value(export, "benchmark_duration")
    for name, tag in RATE_METRICS.items():
        setattr(rec, name, _value(export, tag))
    for name, tag in LATENCY_METRICS.items():
        setattr(rec, name, _stats(export.get(tag)))
    rec.goodput = _value(export, "goodput")
    good = _value(export, "good_request_count")
    rec.good_requests = None if good is None else int(good)
    rec.invalid_reason = invalid_reason(rec, export)
    rec.valid = rec.invalid_reason is None
    return rec


def invalid_reason(rec: PointRecord, export: Mapping[str, Any]) -> Optional[str]:
    if export.get("was_cancelled"):
        return "AIPerf cancelled the run"
    if rec.requests_failed:
        return f"{rec.requests_failed} failed request(s){describe_first_error(rec.errors)}"
    if rec.requests_ok < rec.requests_asked:
        return f"{rec.requests_ok} of {rec.requests_asked} requests completed"
    if rec.output_tokens <= 0:
        return "no output tokens generated"
    return None


def record_errors(path: Path) -> List[Dict[str, Any]]:
    """The errors of AIPerf's per-request records (``{"error": {"type", "message"}}`` on failed lines), counted
    as ``error_summary`` counts them."""
    counts: Dict[tuple, int] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                error = json.loads(line).get("error") if line.strip() else None
                if error:
                    key = (error.get("type") or error.get("code"), error.get("message"))
                    counts[key] = counts.get(key, 0) + 1
    return [{"count": n, "type": kind, "message": message} for (kind, message), n in counts.items()]


def describe_first_error(errors: Sequence[Mapping[str, Any]]) -> str:
    return f" ({errors[0]['count']} x {errors[0]['type']}: {errors[0]['message']})" if errors else ""


Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


def run_point(cfg: SweepConfig, concurrency: int, repeat: int, artifact_dir: str,
              run: Runner = subprocess.run, probe: Optional[AcceptanceProbe] = None) -> PointRecord:
    """Runs AIPerf for one point (its output in ``artifact_dir/aiperf.log``) and reads its export; with a probe,
    the server's speculative-decoding counts over the point too (an invalid point keeps them, as a clue)."""
    out = Path(artifact_dir)
    out.mkdir(parents=True, exist_ok=True)
    argv = build_argv(cfg, concurrency, str(out))
    asked = cfg.request_count(concurrency)
    with open(out / "aiperf.log", "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(argv) + "\n")
        log.flush()
        if probe is not None:
            probe.open()
        proc = run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(out))
        counts = probe.close() if probe is not None else None
        if probe is not None and probe.note:
            log.write(f"[load_sweep] no acceptance for this point: {probe.note}\n")
    export_path = out / EXPORT_FILE
    if not export_path.is_file():  # AIPerf writes no summary when no request succeeded
        rec = PointRecord(concurrency=concurrency, repeat=repeat, artifact_dir=str(out), valid=False,
                          invalid_reason=None, requests_asked=asked)
        rec.errors = record_errors(out / RECORDS_FILE)
        rec.requests_failed = sum(e["count"] for e in rec.errors)
        failed = f": {rec.requests_failed} failed request(s){describe_first_error(rec.errors)}" if rec.errors else ""
        rec.invalid_reason = f"aiperf exited {proc.returncode} without {EXPORT_FILE}{failed} (see {out / 'aiperf.log'})"
    else:
        rec = parse_export(json.loads(export_path.read_text(encoding="utf-8")), concurrency, repeat, str(out), asked)
        if proc.returncode != 0 and rec.valid:
            rec.valid, rec.invalid_reason = False, f"aiperf exited {proc.returncode} (see {out / 'aiperf.log'})"
    measure_acceptance(rec, counts)
    return rec


def run_sweep(cfg: SweepConfig, out_dir: str, run: Runner = subprocess.run) -> Dict[str, Any]:
    """Every repeat sweeps every concurrency (a repeat is a whole sweep, so slow drift spreads over all points).
    The server's metrics are looked at once, first: whose they are decides how acceptance is counted."""
    style, found = detect_metrics(cfg.url)
    print(f"[load_sweep] speculative-decoding acceptance: {found}", file=sys.stderr, flush=True)
    probe = AcceptanceProbe(cfg.url, style) if style else None
    points = []
    for repeat in range(cfg.repeats):
        for c in cfg.concurrencies:
            rec = run_point(cfg, c, repeat, os.path.join(out_dir, f"r{repeat}", f"c{c}"), run, probe)
            status = "ok" if rec.valid else f"INVALID: {rec.invalid_reason}"
            print(f"[load_sweep] repeat {repeat} concurrency {c}: {status}", file=sys.stderr, flush=True)
            points.append(rec)
    return {"benchmark": "load_sweep", "aiperf_version": AIPERF_VERSION, "config": config_dict(cfg),
            "server_metrics": {"style": style, "found": found},
            "points": [p.to_dict() for p in points], "summary": summarize(points, cfg.concurrencies)}


def config_dict(cfg: SweepConfig) -> Dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["concurrencies"] = list(cfg.concurrencies)
    d["goodput"], d["extra_inputs"] = dict(cfg.goodput), dict(cfg.extra_inputs)
    return d


# ---- repeats: mean and confidence interval --------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """Student-t CDF: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The Student-t quantile (bisection on the CDF: monotone, so exact to the tolerance)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1 (got p={p}, df={df})")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Dict[str, Any]:
    """Mean and the two-sided Student-t confidence interval of the mean (none with a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "n": n, "ci_low": None, "ci_high": None, "ci_half_width": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "n": n, "ci_low": mean - half, "ci_high": mean + half, "ci_half_width": half}


def summarize(points: Sequence[PointRecord], concurrencies: Sequence[int]) -> List[Dict[str, Any]]:
    """Per concurrency, over its valid repeats only: every metric's mean and 95% CI. Invalid points are counted
    and their reasons listed, never averaged in."""
    out = []
    for c in concurrencies:
        mine = [p for p in points if p.concurrency == c]
        valid = [p for p in mine if p.valid]
        metrics: Dict[str, Dict[str, Any]] = {}
        if valid:
            names = sorted(set.intersection(*(set(p.scalars()) for p in valid)))
            metrics = {name: mean_ci([p.scalars()[name] for p in valid]) for name in names}
        out.append({"concurrency": c, "valid": bool(valid), "repeats_valid": len(valid), "repeats_invalid":
                    len(mine) - len(valid), "invalid_reasons": [p.invalid_reason for p in mine if not p.valid],
                    "metrics": metrics})
    return out


def served_model(url: str) -> str:
    """The name the OpenAI-compatible server at `url` serves its model under (GET /v1/models: trtllm-serve,
    vLLM and SGLang list the one model they serve), asked directly, never through a site's http_proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url.rstrip("/") + "/v1/models", timeout=30) as answer:
        listed = [m.get("id") for m in json.load(answer).get("data") or []]
    if len(listed) != 1 or not isinstance(listed[0], str):
        raise SystemExit(f"{url}/v1/models lists {listed!r}, not one model: name the one to load with --model")
    return listed[0]


# ---- CLI ------------------------------------------------------------------------------------------------------
def parse_goodput(items: Sequence[str]) -> Dict[str, float]:
    out = {}
    for item in items:
        tag, sep, value = item.partition("=")
        try:
            out[tag] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--goodput {item!r}: expected METRIC=VALUE, e.g. time_to_first_token=2000 (ms)")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.load_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="server base URL (AIPerf appends /v1/completions or /v1/chat/...)")
    p.add_argument("--model", help="model name the server answers to (default: the one its /v1/models lists)")
    p.add_argument("--tokenizer", required=True, help="local tokenizer dir (token counts, chat template)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--problems", help="AIMO problems JSONL (a 'problem' per line)")
    src.add_argument("--chat-prompts", help="chat set JSONL (a 'prompt' per line)")
    p.add_argument("--prompt", default="generic/math", choices=sorted(PROMPTS), help="user turn of AIMO problems")
    p.add_argument("--endpoint-type", default="completions", choices=ENDPOINT_TYPES)
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCIES)),
                   help="comma list of concurrencies")
    p.add_argument("--requests-per-user", type=int, default=4)
    p.add_argument("--min-requests", type=int, default=8)
    p.add_argument("--warmup-requests", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--goodput", action="append", default=[], metavar="METRIC=VALUE",
                   help=f"an SLO, in ms for latencies; metrics: {', '.join(GOODPUT_METRICS)}")
    p.add_argument("--output-tokens", type=int, help="max_tokens of every request")
    p.add_argument("--extra-inputs", default="{}", help="JSON object merged into every request body")
    p.add_argument("--server-token-count", action="store_true", help="token counts from the server's usage")
    p.add_argument("--no-streaming", dest="streaming", action="store_false", help="whole answers (no TTFT, ITL)")
    p.add_argument("--request-timeout", type=float, default=3600.0, help="seconds per request")
    p.add_argument("--aiperf", default=os.environ.get("AIPERF_BIN", "aiperf"), help="the aiperf executable")
    p.add_argument("--out", required=True, help="directory for the prompt file, the points and results.json")
    return p


def sweep_config(args: argparse.Namespace, input_file: str, model: str) -> SweepConfig:
    """The sweep the command line asks for, against `model`, with the prompts of `input_file`."""
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency {args.concurrency!r}: expected a comma list of integers, e.g. 1,2,4")
    extra = json.loads(args.extra_inputs)
    if not isinstance(extra, dict):
        raise SystemExit(f"--extra-inputs {args.extra_inputs!r}: expected a JSON object")
    return SweepConfig(url=args.url, model=model, tokenizer=args.tokenizer, input_file=input_file,
                       endpoint_type=args.endpoint_type, concurrencies=concurrencies,
                       requests_per_user=args.requests_per_user, min_requests=args.min_requests,
                       warmup_requests=args.warmup_requests, repeats=args.repeats,
                       goodput=parse_goodput(args.goodput), output_tokens=args.output_tokens, extra_inputs=extra,
                       server_token_count=args.server_token_count, streaming=args.streaming,
                       request_timeout_s=args.request_timeout, aiperf=args.aiperf)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    source, path = ("aimo", args.problems) if args.problems else ("chat", args.chat_prompts)
    tokenizer = None
    if args.endpoint_type == "completions":
        from transformers import AutoTokenizer  # heavy import: only when a chat template must be applied here

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    prompt_file = write_prompt_file(user_messages(jsonl.read_rows(path, "prompts"), source, args.prompt),
                                    os.path.join(args.out, "prompts.jsonl"), args.endpoint_type, tokenizer,
                                    args.output_tokens)
    cfg = sweep_config(args, prompt_file, args.model or served_model(args.url))
    results = run_sweep(cfg, args.out)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return 0 if any(s["valid"] for s in results["summary"]) else 1


if __name__ == "__main__":
    sys.exit(main())
