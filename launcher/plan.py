"""The plan: which stages run, in what order, with what inputs, resources and artifact directories.

A stage's fingerprint hashes exactly the config values that change its output, its inputs'
fingerprints and its container image, so its artifact directory
`<storage root>/artifacts/<kind>/<fingerprint>` is shared by every experiment that needs it.
The plan knows nothing of Slurm: dispatch (launcher.dispatch) turns it into jobs.
"""
from __future__ import annotations

import graphlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from launcher import commands

# Time limits in minutes per stage kind, unless the cluster sets its own (cluster.time_limits).
DEFAULT_TIME_LIMITS_MIN = {
    "download_model": 120,
    "download_dataset": 120,
    "calibration_data": 60,
    "quantize": 120,
    "build_engine": 90,
    "train_drafter": 480,
    "convert_drafter": 30,
    "build_drafter_engine": 90,
    "benchmark": 90,
    "report": 15,
}
STAGE_KINDS = tuple(DEFAULT_TIME_LIMITS_MIN)
FINGERPRINT_LENGTH = 16
COMPLETE_MARKER = "manifest.json"  # published last, atomically: its presence means complete
# Slurm accounting of an experiment's jobs, written on the host before the report job's container starts
# (sacct is not visible inside containers).
ACCOUNTING = "accounting.psv"
# TensorRT-LLM loads every data file of --calib_dataset: the parquet lives apart from the manifest.
CALIBRATION_SUBDIR = "calib"


@dataclass(frozen=True)
class Resources:
    gpus_per_node: int
    nodes: int
    cpus_per_task: int
    mem_gb: int
    time_min: int

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.time_min / 60


@dataclass
class Stage:
    name: str  # unique in the plan
    kind: str
    variant: str  # the experiment (campaign entry) that first needed it
    deps: Tuple[str, ...]  # stage names, set once the whole plan is named
    fingerprint: str
    artifact: str
    resources: Resources
    containers: Tuple[str, ...]  # container keys: the stage's own first, then helpers (the sandbox)
    commands: Dict[str, List[str]]  # named argv lists, run by the stage's job
    config_subset: dict
    variants: List[str] = field(default_factory=list)
    inputs: List["Stage"] = field(default_factory=list, repr=False)
    # Files the stage reads that the launcher writes onto shared storage at submission: {path: content}.
    files: Dict[str, str] = field(default_factory=dict)
    cfg: Optional[DictConfig] = field(default=None, repr=False)  # the composed config that defined it
    # Runs once its inputs ended, well or not (`afterany`): the report shows failed points as failed.
    after_any: bool = False

    @property
    def dependency_kind(self) -> str:
        return "afterany" if self.after_any else "afterok"

    def dependency(self, job_ids) -> Optional[str]:
        """The sbatch --dependency value on these jobs, or None without any."""
        return f"{self.dependency_kind}:" + ":".join(job_ids) if job_ids else None

    @property
    def staging_dir(self) -> str:
        """Where the stage writes before its artifact is published (atomically renamed)."""
        return self.artifact + ".partial"


@dataclass
class Plan:
    experiment: str
    storage_root: str
    stages: Dict[str, Stage]  # topological order

    @property
    def gpu_hours(self) -> float:
        return sum(s.resources.gpu_hours for s in self.stages.values())

    def critical_path(self) -> Tuple[List[str], int]:
        """The chain of dependent stages with the longest total time limit, and that total (minutes)."""
        best: Dict[str, Tuple[int, Optional[str]]] = {}
        for name, stage in self.stages.items():
            prev = max(stage.deps, key=lambda d: best[d][0], default=None)
            best[name] = (stage.resources.time_min + (best[prev][0] if prev else 0), prev)
        if not best:
            return [], 0
        end = max(best, key=lambda n: best[n][0])
        path, node = [], end
        while node:
            path.append(node)
            node = best[node][1]
        return path[::-1], best[end][0]


def fingerprint(kind: str, values: dict, inputs: Sequence[str], image: str) -> str:
    payload = json.dumps({"kind": kind, "values": values, "inputs": sorted(inputs), "image": image}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def container_image(cfg: DictConfig, key: str) -> str:
    if cfg.cluster.container_runtime == "none":
        return "none"
    return cfg.cluster.containers.get(key, "")


def stage_resources(cfg: DictConfig, kind: str, gpus: int) -> Resources:
    c = cfg.cluster
    nodes = max(1, -(-gpus // c.gpus_per_node)) if gpus else 1
    per_node = gpus // nodes if gpus else 0
    cpus = max(4, per_node * c.cpus_per_gpu)
    mem = max(32, per_node * c.mem_per_gpu_gb)
    time_min = int(c.time_limits.get(kind, DEFAULT_TIME_LIMITS_MIN[kind]))
    return Resources(per_node, nodes, cpus, mem, time_min)


class _Builder:
    """Adds one experiment's stages to a plan, reusing stages whose fingerprint is already there."""

    def __init__(self, storage_root: str):
        self.storage_root = storage_root
        self.by_fingerprint: Dict[Tuple[str, str], Stage] = {}
        self.stages: List[Stage] = []

    def artifact(self, kind: str, fp: str) -> str:
        return os.path.join(self.storage_root, "artifacts", kind, fp)

    def add(self, cfg, variant, kind, values, deps: Sequence[Stage], gpus, make_commands, containers=("trtllm",)):
        image = "|".join(container_image(cfg, k) for k in containers)
        # The commands themselves (output and storage paths blanked) are hashed too: a change to how a
        # stage's tools are called, or to the layout it writes, never reuses an artifact made the old way.
        command_shape = json.dumps(make_commands("<out>")).replace(self.storage_root + "/", "<storage>/")
        fp = fingerprint(kind, {**values, "commands": command_shape}, [d.fingerprint for d in deps], image)
        existing = self.by_fingerprint.get((kind, fp))
        if existing:
            existing.variants.append(variant)
            return existing
        artifact = self.artifact(kind, fp)
        stage = Stage(
            name=kind, kind=kind, variant=variant, deps=(), inputs=list(deps), fingerprint=fp,
            artifact=artifact, resources=stage_resources(cfg, kind, gpus), containers=tuple(containers),
            commands=make_commands(artifact + ".partial"), config_subset=values, variants=[variant], cfg=cfg,
        )
        self.by_fingerprint[(kind, fp)] = stage
        self.stages.append(stage)
        return stage


def _add_experiment(b: _Builder, cfg: DictConfig, variant: str) -> Stage:
    """The stages one experiment needs; returns its benchmark stage."""
    m, q, d = cfg.model, cfg.quantization, cfg.drafter
    model_gpus = m.tensor_parallel * m.pipeline_parallel
    tool_values = {"python": cfg.cluster.python, "examples": cfg.cluster.trtllm_examples_dir}

    model_values = {"hf_id": m.hf_id, "revision": m.revision}
    model = b.add(cfg, variant, "download_model", model_values, [], 0, lambda out: {
        "download": commands.download_command(m.hf_id, f"{out}/{commands.model_dir_name(m.hf_id)}", revision=m.revision),
        "check": commands.check_download_command(cfg, "model", f"{out}/{commands.model_dir_name(m.hf_id)}")})
    model_dir = f"{model.artifact}/{commands.model_dir_name(m.hf_id)}"

    def download_dataset(repo_id: str) -> Tuple[Stage, str]:
        stage = b.add(cfg, variant, "download_dataset", {"repo_id": repo_id}, [], 0, lambda out: {
            "download": commands.download_command(repo_id, f"{out}/{commands.model_dir_name(repo_id)}", "dataset"),
            "check": commands.check_download_command(cfg, "dataset", f"{out}/{commands.model_dir_name(repo_id)}")})
        return stage, f"{stage.artifact}/{commands.model_dir_name(repo_id)}"

    quantize_deps, calib_dir = [model], None
    if q.calibrate:
        dataset, dataset_dir = download_dataset(q.calib_dataset)
        calib_values = {k: q[k] for k in ("calib_split", "calib_size", "calib_prompt", "calib_max_seq_length")}
        calib = b.add(cfg, variant, "calibration_data", {**calib_values, **tool_values}, [model, dataset], 0,
                      lambda out: {"calibration_data": commands.calibration_data_command(cfg, model_dir, dataset_dir,
                                                                                         f"{out}/{CALIBRATION_SUBDIR}")})
        calib_dir = f"{calib.artifact}/{CALIBRATION_SUBDIR}"
        quantize_deps.append(calib)

    quantize_values = {
        "qformat": q.qformat, "kv_cache_dtype": q.kv_cache_dtype, "dtype": m.dtype,
        "tp": m.tensor_parallel, "pp": m.pipeline_parallel, "tool": m.checkpoint_tool,
        "convert_script": m.convert_script, "trust_remote_code": m.trust_remote_code, **tool_values,
    }
    if q.calibrate:
        quantize_values.update({k: q[k] for k in ("calib_size", "calib_batch_size", "calib_max_seq_length")})
    quantize = b.add(cfg, variant, "quantize", quantize_values, quantize_deps, model_gpus,
                     lambda out: {"quantize": commands.quantize_command(cfg, model_dir, calib_dir, out)})

    if d.enabled:
        dataset, dataset_dir = download_dataset(d.dataset)
        train_keys = ("dataset_split", "dataset_nrows", "num_gpus", "num_train_epochs", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "save_strategy", "learning_rate", "weight_decay", "warmup_ratio",
                      "lr_scheduler_type", "bf16", "tf32", "model_max_length", "predict_n_tokens", "num_layers", "rnn")
        train = b.add(cfg, variant, "train_drafter", {k: d[k] for k in train_keys}, [model, dataset], d.num_gpus,
                      lambda out: {"train": commands.train_drafter_command(cfg, model_dir, dataset_dir, f"{out}/redrafter_output")})
        drafter_dir = commands.drafter_output_dir(cfg, f"{train.artifact}/redrafter_output", model_dir)
        convert_values = {k: d[k] for k in ("dtype", "tensor_parallel", "num_beams", "draft_len_per_beam", "greedy_search")}
        convert = b.add(cfg, variant, "convert_drafter", {**convert_values, **tool_values}, [quantize, train], 1,
                        lambda out: {"convert": commands.convert_drafter_command(cfg, quantize.artifact, drafter_dir, out)})
        engine_values = {k: d[k] for k in ("engine_max_batch_size", "engine_max_input_len", "engine_max_seq_len",
                                           "engine_max_num_tokens", "engine_kv_cache_type", "num_beams")}
        engine_values["gemm_plugin"] = commands.drafter_gemm_plugin(cfg)
        engine = b.add(cfg, variant, "build_drafter_engine", engine_values, [convert, model], 1, lambda out: {
            "build": commands.build_drafter_engine_command(cfg, convert.artifact, out),
            "copy_tokenizer": commands.copy_tokenizer_command(cfg, model_dir, out)})
    else:
        engine_values = {k: m[k] for k in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens",
                                           "gemm_plugin", "kv_cache_type", "use_paged_context_fmha")}
        engine = b.add(cfg, variant, "build_engine", engine_values, [quantize, model], 1, lambda out: {
            "build": commands.build_engine_command(cfg, quantize.artifact, out),
            "copy_tokenizer": commands.copy_tokenizer_command(cfg, model_dir, out)})

    s, bench = cfg.serving, cfg.benchmark
    problems_text = Path(bench.problems_file).read_text()
    bench_values = {
        "serving": OmegaConf.to_container(s, resolve=True),
        "benchmark": {**OmegaConf.to_container(bench, resolve=True), "problems_file": digest(problems_text)},
        "tp": m.tensor_parallel, "pp": m.pipeline_parallel, "python": cfg.cluster.python,
    }
    containers = ("trtllm", "sandbox") if s.sandbox.enabled else ("trtllm",)

    problems = os.path.join(b.storage_root, "inputs", "problems", f"{bench_values['benchmark']['problems_file']}.jsonl")

    def bench_commands(out):
        cmds = {"server": commands.serve_command(cfg, engine.artifact, model_dir),
                "client": commands.benchmark_client_command(cfg, engine.artifact, model_dir, problems,
                                                                     f"{out}/results.json")}
        if s.sandbox.enabled:
            cmds["sandbox"] = commands.sandbox_command(cfg)
        return cmds

    stage = b.add(cfg, variant, "benchmark", bench_values, [engine], model_gpus, bench_commands, containers)
    stage.files[problems] = problems_text
    return stage


def _label(stage: Stage, differing: List[str]) -> str:
    if "repo_id" in stage.config_subset:
        return stage.config_subset["repo_id"].split("/")[-1]
    return ",".join(f"{k}={stage.config_subset[k]}" for k in differing) or stage.variant


def _name_stages(stages: List[Stage]) -> None:
    """A kind that appears once keeps its name; repeated kinds say what sets them apart: the config values
    that differ between them (`quantize[qformat=fp8]`), else the experiment that first needed them."""
    by_kind: Dict[str, List[Stage]] = {}
    for s in stages:
        by_kind.setdefault(s.kind, []).append(s)
    for same_kind in by_kind.values():
        if len(same_kind) == 1:
            continue
        common = set.intersection(*(set(s.config_subset) for s in same_kind)) - {"commands"}
        differing = sorted(k for k in common if not isinstance(same_kind[0].config_subset[k], (dict, list))
                           and len({json.dumps(s.config_subset[k]) for s in same_kind}) > 1)
        labels = [_label(s, differing) for s in same_kind]
        if len(set(labels)) < len(labels):
            labels = [s.variant for s in same_kind]
        if len(set(labels)) < len(labels):
            labels = [f"{s.variant}:{s.fingerprint[:6]}" for s in same_kind]
        for stage, label in zip(same_kind, labels):
            stage.name = f"{stage.kind}[{label}]"
    for s in stages:
        s.deps = tuple(d.name for d in s.inputs)


def _chain(stage: Stage) -> List[Stage]:
    """The stage and everything it needs, in stage-kind order."""
    seen: Dict[str, Stage] = {}
    todo = [stage]
    while todo:
        current = todo.pop()
        if current.fingerprint not in seen:
            seen[current.fingerprint] = current
            todo.extend(current.inputs)
    return sorted(seen.values(), key=lambda s: STAGE_KINDS.index(s.kind))


def report_inputs(experiment: str, benchmarks: Dict[str, Stage], baselines: List[str]) -> dict:
    """What the report job reads: each configuration's chain of stages and artifacts."""
    baseline = next((b for b in baselines if b in benchmarks), next(iter(benchmarks)))
    return {
        "experiment": experiment,
        "baseline": baseline,
        "variants": {name: {"stages": {s.name: {"kind": s.kind, "name": s.name, "artifact": s.artifact}
                                       for s in _chain(bench)}}
                     for name, bench in benchmarks.items()},
    }


def build_plan(experiment: str, variants: Dict[str, DictConfig]) -> Plan:
    """One plan for one experiment, a campaign or a sweep (several composed configs sharing stages)."""
    first = next(iter(variants.values()))
    storage_root = os.path.abspath(first.cluster.storage_root)
    b = _Builder(storage_root)
    benchmarks = {name: _add_experiment(b, cfg, name) for name, cfg in variants.items()}
    experiment_dir = os.path.join(storage_root, "experiments", experiment)
    inputs_path = os.path.join(experiment_dir, "report_inputs.json")
    report = b.add(first, experiment, "report", {"benchmarks": [s.fingerprint for s in benchmarks.values()]},
                   list(benchmarks.values()), 0, lambda out: {"report": [
                       first.cluster.python, "-m", "jobs.report", "--inputs", inputs_path, "--output_dir", out,
                       "--experiment_dir", experiment_dir, "--accounting", os.path.join(experiment_dir, ACCOUNTING)]})
    report.after_any = True
    _name_stages(b.stages)
    baselines = list(first.launcher.baselines)
    report.files[inputs_path] = json.dumps(report_inputs(experiment, benchmarks, baselines), indent=2)
    stages = {s.name: s for s in b.stages}
    order = graphlib.TopologicalSorter({n: s.deps for n, s in stages.items()}).static_order()
    return Plan(experiment=experiment, storage_root=storage_root, stages={n: stages[n] for n in order})
