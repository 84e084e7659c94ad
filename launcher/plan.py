"""The plan: which stages run, in what order, with what inputs, resources and artifact directories.

A stage's fingerprint hashes exactly the config values that change its output, its inputs'
fingerprints and its container image, so its artifact directory
`<storage root>/artifacts/<kind>/<fingerprint>` is shared by every experiment that needs it.
What each kind reads, hashes and runs is launcher.stages' table: the plan walks it and holds no per-kind code.
The plan knows nothing of Slurm: dispatch (launcher.dispatch) turns it into jobs.
"""
from __future__ import annotations

import graphlib
import hashlib
import json
import os
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from omegaconf import DictConfig, OmegaConf

from launcher.contract import REPORT_INPUTS, ReportInputs, ReportStage, StageResources, experiment_dir
from launcher.stages import KINDS, REPORT, STAGE_KINDS, Input, StageContext, StageKind, StoredFile, input_kind

if TYPE_CHECKING:
    from launcher.schema import Config

FINGERPRINT_LENGTH = 16


class Resources(StageResources):
    """A stage's Slurm resources (the fields its spec carries), and what they add up to."""

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
    cfg: Optional[Config] = field(default=None, repr=False)  # the config that defined it, typed (typed_config)
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


def container_image(cfg: Config, key: str) -> str:
    if cfg.cluster.container_runtime == "none":
        return "none"
    return cfg.cluster.containers.get(key, "")


def stage_resources(cfg: Config, kind: str, gpus: int) -> Resources:
    c = cfg.cluster
    nodes = max(1, -(-gpus // c.gpus_per_node)) if gpus else 1
    per_node = gpus // nodes if gpus else 0
    cpus = max(4, per_node * c.cpus_per_gpu)
    mem = max(32, per_node * c.mem_per_gpu_gb)
    time_min = KINDS[kind].time_limit(cfg)
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


class _Walk:
    """Adds stages to a plan by walking launcher.stages from the report down, each stage after its inputs."""

    def __init__(self, builder: _Builder, experiment_dir: str):
        self.b = builder
        self.experiment_dir = experiment_dir
        self.outputs: Dict[str, str] = {}  # artifact -> the path its dependents read (StageKind.output)

    def experiment(self, cfg: Config, variant: str) -> Dict[str, Stage]:
        """One experiment's stages; returns what the report reads of it: {role: stage}."""
        added: Dict[Tuple[str, Optional[str]], Stage] = {}  # (kind, subject): one stage each per experiment
        found = {spec.role: input_kind(spec, cfg) for spec in REPORT.inputs if spec.every_experiment}
        return {role: self.stage(cfg, variant, kind, None, added) for role, kind in found.items() if kind}

    def stage(self, cfg: Config, variant: str, kind: StageKind, spec: Optional[Input], added: dict) -> Stage:
        subject = spec.subject(cfg) if spec and spec.subject else None
        if (kind.name, subject) not in added:
            inputs: Dict[str, List[Stage]] = {}
            waits_on: List[Stage] = []
            for input_spec in kind.inputs:
                input_of_kind = input_kind(input_spec, cfg)
                if input_of_kind:
                    stage = self.stage(cfg, variant, input_of_kind, input_spec, added)
                    inputs[input_spec.role] = [stage]
                    waits_on += [stage] if input_spec.dependency else []
            added[(kind.name, subject)] = self.add(cfg, variant, kind, subject, inputs, waits_on)
        return added[(kind.name, subject)]

    def add(self, cfg: Config, variant: str, kind: StageKind, subject: Optional[str],
            inputs: Dict[str, List[Stage]], waits_on: List[Stage]) -> Stage:
        files = {f.role: self.stored_file(f.role, Path(f.path(cfg)).read_text(), f.suffix)
                 for f in kind.files if f.needed(cfg)}
        ctx = StageContext(cfg, subject, {role: tuple(self.outputs[s.artifact] for s in stages)
                                          for role, stages in inputs.items()},
                           {role: tuple(s.fingerprint for s in stages) for role, stages in inputs.items()},
                           files, self.experiment_dir)
        stage = self.b.add(cfg, variant, kind.name, kind.values(ctx), waits_on, kind.gpus(cfg),
                           lambda out: kind.commands(ctx, out), kind.containers(cfg))
        stage.after_any = kind.after_any
        stage.files.update({f.path: f.text for f in files.values()})
        self.outputs[stage.artifact] = kind.output(ctx, stage.artifact)
        return stage

    def stored_file(self, role: str, text: str, suffix: str) -> StoredFile:
        name = digest(text)
        return StoredFile(name, os.path.join(self.b.storage_root, "inputs", role, f"{name}{suffix}"), text)


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


def report_inputs(experiment: str, found: Dict[str, Dict[str, Stage]], baselines: List[str]) -> dict:
    """What the report job reads (launcher.contract.ReportInputs, as JSON): each configuration's chain of
    stages and artifacts, from every stage the report reads of it (its benchmark, its engine's smoke run)."""
    baseline = next((b for b in baselines if b in found), next(iter(found)))
    return ReportInputs(
        experiment=experiment, baseline=baseline,
        variants={name: [ReportStage(kind=s.kind, name=s.name, artifact=s.artifact)
                         for s in sorted({c.fingerprint + c.kind: c for root in roots.values() for c in _chain(root)}
                                         .values(), key=lambda c: STAGE_KINDS.index(c.kind))]
                  for name, roots in found.items()},
    ).to_json()


def typed_config(cfg: Union[DictConfig, Config]) -> Config:
    """A validated config as the schema's dataclasses (launcher.schema.Config), every interpolation resolved: the
    plan, the stage table, the command builders and the scripts read thousands of values per point, each at
    Python's attribute speed rather than a DictConfig node's. Already typed: as it is (launcher.sweep makes its
    points' typed copies cheaply)."""
    return cfg if is_dataclass(cfg) else OmegaConf.to_object(cfg)


def build_plan(experiment: str, variants: Mapping[str, Union[DictConfig, Config]]) -> Plan:
    """One plan for one experiment, a campaign or a sweep (several validated configs sharing stages)."""
    variants = {name: typed_config(cfg) for name, cfg in variants.items()}
    first = next(iter(variants.values()))
    storage_root = os.path.abspath(first.cluster.storage_root)
    b = _Builder(storage_root)
    exp_dir = str(experiment_dir(storage_root, experiment))
    walk = _Walk(b, exp_dir)
    results = {name: walk.experiment(cfg, name) for name, cfg in variants.items()}
    report = None
    if not first.launcher.serve_only:  # a served configuration measures nothing to report
        report_input = {spec.role: [found[spec.role] for found in results.values() if spec.role in found]
                        for spec in REPORT.inputs}
        report = walk.add(first, experiment, REPORT, None, report_input,
                          # once each: two configurations may share an engine, hence its smoke run
                          list({s.fingerprint: s for stages in report_input.values() for s in stages}.values()))
    _name_stages(b.stages)
    if report:
        report.files[os.path.join(exp_dir, REPORT_INPUTS)] = json.dumps(
            report_inputs(experiment, results, list(first.launcher.baselines)), indent=2)
    stages = {s.name: s for s in b.stages}
    order = graphlib.TopologicalSorter({n: s.deps for n, s in stages.items()}).static_order()
    return Plan(experiment=experiment, storage_root=storage_root, stages={n: stages[n] for n in order})
