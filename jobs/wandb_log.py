"""A finished stage's results as a Weights & Biases run, beside the artifact (called by jobs.run_stage).

    train_drafter: a run `<experiment>/<stage>/final` whose summary holds every `redrafter*` metric as the mean
                   of its last drafter.gate_window logged values (e.g. redrafter2_top1), the gated statistic
                   with its window and spread (drafter_gate_value, _window, _min, _max, _std, _last) and
                   drafter_gate_passed: whether it passes this launch's drafter.min_top1 (the decision itself
                   is taken where the drafter is used: the convert_drafter job and the launcher).
    benchmark:     a run `<experiment>/<stage>` with every numeric field of the benchmark summary as summary
                   metrics, a `benchmark` table (one row: this configuration) and histograms of the finished
                   generations' end-to-end latency and time to first token (from <staging>/results.json).
    report:        a run `<experiment>/report` with every table of the comparison report (jobs.report's
                   report.json: one column per configuration, failed ones as `failed at <stage>`) and its
                   charts as images; logged also when some configurations failed.

The job's environment (launcher.scripts.stage_env) names the project, group, job type and WANDB_DIR (the
experiment's `wandb/` on shared storage), and sets WANDB_MODE=offline where compute nodes have no internet:
`python -m launcher sync` uploads those runs from the login node. wandb is imported here only, lazily; without
it, or with WANDB_MODE=disabled, nothing is logged. A failure to log never fails the stage.

Nothing from the environment is recorded: wandb's system metadata (program, args, host details, executable),
system metrics, console capture, requirements.txt, code and git state are all switched off, the host name
left empty, and every value of a secret the spec names (and WANDB_API_KEY) is redacted from what is logged.
The drafter trainer's own run (HF Trainer's WandbCallback calls wandb.init itself) gets the same settings as
environment variables (TRAINER_ENV), set for its torchrun process only.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from launcher.contract import RESULTS, WANDB_SUBDIR, StageSpec, experiment_dir

LOGGED_KINDS = ("train_drafter", "benchmark", "report")
TABLE_NAME = "benchmark"
# (column, key of the benchmark summary); the first column is the configuration's name.
TABLE_COLUMNS = (
    ("experiment", None),
    ("total generation time (s)", "total_generation_time_s"),
    ("batch throughput (tok/s)", "batch_throughput_tok_s"),
    ("average sample throughput (tok/s)", "avg_sample_throughput_tok_s"),
    ("p50 latency (s)", "p50_latency_s"),
    ("p90 latency (s)", "p90_latency_s"),
    ("p99 latency (s)", "p99_latency_s"),
    ("avg TTFT (s)", "avg_ttft_s"),
    ("accuracy", "majority_vote_accuracy"),
)
LATENCY_HISTOGRAM, TTFT_HISTOGRAM = "generation_latency_s", "generation_ttft_s"
# wandb.Settings that keep the environment out of the run: no system metadata record (program, args,
# executable, host, cwd), no system metrics, no console capture, no requirements.txt, no code, no git.
PRIVATE_SETTINGS = {
    "x_disable_meta": True,
    "x_disable_stats": True,
    "x_disable_machine_info": True,
    "x_save_requirements": False,
    "save_code": False,
    "disable_code": True,
    "disable_git": True,
    "console": "off",
    "silent": True,
    "host": "",  # else socket.gethostname(), recorded in the run record (wandb_settings.py, update_from_system_environment)
}
# The same for a run wandb.init starts from the environment (the trainer's WandbCallback): wandb 0.31
# Settings.update_from_env_vars maps WANDB_<NAME> to the setting <name> and WANDB__<NAME> to x_<name> (older
# wandb: _<name>, so the WANDB__ spelling of a private setting works on both; a name a version lacks is skipped).
# WANDB_SAVE_CODE/WANDB_DISABLE_CODE also go through wandb/env.py should_save_code. WANDB_LOG_MODEL and
# WANDB_WATCH are transformers' (integration_utils.py WandbCallback; "false" is their default, kept explicit:
# "end" would upload the checkpoint).
TRAINER_ENV = {
    "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_SAVE_CODE": "false",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_HOST": "",
    "WANDB__DISABLE_META": "true",
    "WANDB__DISABLE_STATS": "true",
    "WANDB__DISABLE_MACHINE_INFO": "true",
    "WANDB__SAVE_REQUIREMENTS": "false",
    "WANDB_X_DISABLE_META": "true",
    "WANDB_X_DISABLE_STATS": "true",
    "WANDB_X_DISABLE_MACHINE_INFO": "true",
    "WANDB_X_SAVE_REQUIREMENTS": "false",
    "WANDB_LOG_MODEL": "false",
    "WANDB_WATCH": "false",
}
ALWAYS_SECRET = ("WANDB_API_KEY",)
REDACTED = "<redacted>"


def _log(message: str) -> None:
    print(f"[launcher {time.strftime('%H:%M:%S')}] wandb: {message}", flush=True)


def wandb_dir(spec: StageSpec) -> Path:
    """WANDB_DIR from the job's environment, else where stage_env puts it: <storage_root>/experiments/<exp>/wandb."""
    if os.environ.get("WANDB_DIR"):
        return Path(os.environ["WANDB_DIR"])
    storage_root = Path(spec.artifact).parents[2]  # <storage_root>/artifacts/<kind>/<fingerprint>
    return experiment_dir(storage_root, spec.experiment) / WANDB_SUBDIR


def _disabled() -> bool:
    return (os.environ.get("WANDB_MODE", "").lower() == "disabled"
            or os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"))


def _secret_values(spec: StageSpec) -> List[str]:
    names = set(spec.secret_env_vars) | set(ALWAYS_SECRET)
    return sorted({os.environ[n] for n in names if len(os.environ.get(n, "")) >= 4}, key=len, reverse=True)


def _redact(value, secrets: List[str]):
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _settings(wandb):
    """PRIVATE_SETTINGS, less those this wandb version does not know."""
    known = getattr(wandb.Settings, "model_fields", None)
    kwargs = {k: v for k, v in PRIVATE_SETTINGS.items() if known is None or k in known}
    return wandb.Settings(**kwargs)


@contextlib.contextmanager
def _data_dirs(root: Path) -> Iterator[None]:
    """wandb stages logged tables under WANDB_DATA_DIR (default ~/.local/share/wandb) and an offline run refers
    to them there until `wandb sync` uploads them: keep them on shared storage beside the runs, where the
    login node finds them (a container's home is not kept)."""
    wanted = {"WANDB_DATA_DIR": root / "data", "WANDB_CACHE_DIR": root / "cache"}
    saved = {name: os.environ.get(name) for name in wanted}
    for name, path in wanted.items():
        if not saved[name]:
            os.environ[name] = str(path)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def configuration_name(spec: StageSpec) -> str:
    """A campaign's benchmark stages are named `benchmark[VARIANT]`; a single experiment's is its own name."""
    match = re.fullmatch(r"[^\[]*\[(.+)\]", spec.name)
    return match.group(1) if match else spec.experiment


def benchmark_table_row(spec: StageSpec, summary: dict) -> list:
    return [configuration_name(spec) if key is None else summary.get(key) for _, key in TABLE_COLUMNS]


def finished_generations(staging: Path) -> List[dict]:
    path = staging / RESULTS
    if not path.is_file():
        return []
    records = json.loads(path.read_text()).get("records") or []
    return [r for r in records if r.get("status") == "finished"]


def _run_dir(run) -> Optional[str]:
    sync_dir = getattr(getattr(run, "settings", None), "sync_dir", None)
    return str(sync_dir) if sync_dir else (str(Path(run.dir).parent) if getattr(run, "dir", None) else None)


def _drafter_summary(spec: StageSpec, manifest_extra: dict) -> Dict[str, object]:
    metrics = {k: float(v) for k, v in (manifest_extra.get("drafter_metrics") or {}).items()
               if str(k).startswith("redrafter") and _is_number(v)}
    gate = manifest_extra.get("drafter_gate") or {}
    stats = {f"drafter_gate_{k}": gate[k] for k in ("value", "window", "min", "max", "std", "last")
             if _is_number(gate.get(k))}
    if gate.get("metric"):
        stats["drafter_gate_metric"] = str(gate["metric"])
    passed = manifest_extra.get("drafter_gate_passed")
    if passed is None and _is_number(gate.get("value")) and spec.drafter is not None:
        passed = gate["value"] >= spec.drafter.min_top1
        stats["drafter_gate_min_top1"] = spec.drafter.min_top1
    return {**metrics, **stats, "drafter_gate_passed": bool(passed)}


def _log_benchmark(wandb, run, spec: StageSpec, manifest_extra: dict, secrets: List[str]) -> None:
    summary = manifest_extra.get("benchmark_summary") or {}
    numeric = {k: v for k, v in summary.items() if _is_number(v)}
    if _is_number(manifest_extra.get("server_startup_s")):
        numeric["server_startup_s"] = manifest_extra["server_startup_s"]
    table = wandb.Table(columns=[c for c, _ in TABLE_COLUMNS], data=[_redact(benchmark_table_row(spec, summary), secrets)])
    logged = {TABLE_NAME: table}
    finished = finished_generations(Path(spec.staging_dir))
    for key, field in ((LATENCY_HISTOGRAM, "e2e_latency_s"), (TTFT_HISTOGRAM, "ttft_s")):
        values = [float(r[field]) for r in finished if _is_number(r.get(field))]
        if values:
            logged[key] = wandb.Histogram(values)
    run.log(logged)
    run.summary.update(numeric)


def report_cell(cell: dict) -> str:
    if cell.get("invalid"):
        return f"invalid: {cell['invalid']}"
    if cell.get("failed_at"):
        return f"failed at {cell['failed_at']}"
    value = cell.get("value")
    text = f"{value:.4g}" if _is_number(value) else str(value)
    if _is_number(cell.get("ci")):
        text += f" ± {cell['ci']:.2g}"
    return text + (f" ({cell['speedup']:.2f}x)" if _is_number(cell.get("speedup")) else "")


def _log_report(wandb, run, spec: StageSpec, secrets: List[str]) -> None:
    staging = Path(spec.staging_dir)
    report = json.loads((staging / "report.json").read_text())
    logged = {}
    for key, table in (report.get("tables") or {}).items():
        if table:
            names = table["columns"]  # the configurations, or a load sweep's concurrencies
            rows = [[row["label"], *(report_cell(row["cells"].get(n, {})) for n in names)] for row in table["rows"]]
            logged[f"report/{key}"] = wandb.Table(columns=["metric", *names], data=_redact(rows, secrets))
    for chart in report.get("charts") or []:
        if (staging / chart).is_file():
            logged[f"report/{Path(chart).stem}"] = wandb.Image(str(staging / chart))
    run.log(logged)
    run.summary.update({"configurations_finished": sum(c["finished"] for c in report["configurations"]),
                        "configurations": len(report["configurations"])})


def log_stage_results(spec: StageSpec, manifest_extra: dict) -> Optional[str]:
    """Log a finished train_drafter, benchmark or report stage as a W&B run; return the run's local directory.

    Returns None (having logged why) when wandb is absent or disabled, for other stage kinds, and when
    logging fails: W&B is a view of the results, the artifact and its manifest are the record.
    """
    kind = spec.kind
    if kind not in LOGGED_KINDS:
        return None
    if _disabled():
        _log(f"WANDB_MODE=disabled: {spec.name} results not logged")
        return None
    try:
        import wandb
    except ImportError:
        _log(f"wandb is not installed: {spec.name} results not logged (pip install 'launcher[wandb]')")
        return None
    secrets = _secret_values(spec)
    experiment = spec.experiment
    name = os.environ.get("WANDB_NAME") or f"{experiment}/{spec.name}"
    if kind == "train_drafter":
        name += "/final"
    root = wandb_dir(spec)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _data_dirs(root):
            run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or None,
                group=os.environ.get("WANDB_RUN_GROUP") or experiment,
                job_type=os.environ.get("WANDB_JOB_TYPE") or kind,
                name=_redact(name, secrets),
                dir=str(root),
                config=_redact({"stage": spec.name, "kind": kind, "fingerprint": spec.fingerprint,
                                "stage_config": spec.config}, secrets),
                save_code=False,
                settings=_settings(wandb),
            )
            run_dir = _run_dir(run)
            try:
                if kind == "train_drafter":
                    run.summary.update(_drafter_summary(spec, manifest_extra))
                elif kind == "report":
                    _log_report(wandb, run, spec, secrets)
                else:
                    _log_benchmark(wandb, run, spec, manifest_extra, secrets)
            finally:
                run.finish()
    except Exception as error:  # noqa: BLE001 - logging never fails a stage that succeeded
        _log(f"could not log {spec.name} results: {type(error).__name__}: {error}")
        return None
    _log(f"{spec.name} results logged as run {name!r} in {run_dir}")
    return run_dir
