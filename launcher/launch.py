"""From a composed config to a validated plan, previewed or dispatched."""
from __future__ import annotations

import re
from typing import Dict, List

from hydra import compose
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from launcher.dispatch.storage import damaged_artifacts, snapshot_code
from launcher.plan import Plan, build_plan
from launcher.scripts import ExperimentDir, write_stage_files
from launcher.validation import ConfigError, InvalidConfig, validate

EXPERIMENT_OVERRIDE = re.compile(r"^\+{0,2}experiment=")


def compose_variants(cfg: DictConfig, overrides: List[str], prefix: str = "") -> Dict[str, DictConfig]:
    """A campaign composes each of its experiments with the user's other overrides; else just `cfg`."""
    if not cfg.launcher.campaign:
        return {cfg.launcher.experiment_name: cfg}
    base = [o for o in overrides if not EXPERIMENT_OVERRIDE.match(o)]
    return {prefix + name: compose("config", overrides=[*base, f"+experiment={name}"])
            for name in cfg.launcher.campaign}


def validate_variants(variants: Dict[str, DictConfig]) -> None:
    """Validate every composed config (the environment too, unless this is a dry run); report all at once."""
    errors: List[ConfigError] = []
    for name, variant in variants.items():
        needed = ("trtllm", "sandbox") if variant.serving.sandbox.enabled else ("trtllm",)
        try:
            validate(variant, needed, submitting=not variant.launcher.dry_run)
        except InvalidConfig as invalid:
            prefix = f"[{name}] " if len(variants) > 1 else ""
            errors += [ConfigError(prefix + e.key, e.value, e.problem, e.allowed) for e in invalid.errors]
    if errors:
        raise InvalidConfig(list({str(e): e for e in errors}.values()))


def validated_plan(cfg: DictConfig, overrides: List[str]) -> Plan:
    """Compose, validate and plan."""
    variants = compose_variants(cfg, overrides)
    validate_variants(variants)
    return build_plan(cfg.launcher.experiment_name, variants)


def dry_run(plan: Plan, console: Console) -> ExperimentDir:
    """Write every stage's spec and batch script; submit nothing."""
    from launcher.preview import print_plan

    exp = ExperimentDir(plan.storage_root, plan.experiment)
    # The scripts name the code snapshot as their workdir and PYTHONPATH: taking it (content-addressed, the
    # same one the launch would take) makes each script submittable by hand; pyxis fails on a missing workdir.
    code_dir = snapshot_code(plan.storage_root)
    for stage in plan.stages.values():
        write_stage_files(plan, stage, exp, stage.dependency([f"<{d}>" for d in stage.deps]), code_dir)
    print_plan(plan, console)
    for name, problem in damaged_artifacts(plan).items():  # reported only: moving it is the launch's, under its lock
        console.print(f"[yellow]{escape(name)}: artifact {escape(plan.stages[name].artifact)} is damaged: "
                      f"{escape(problem)}; a launch moves it aside and rebuilds it (this dry run leaves it)"
                      "[/yellow]", highlight=False, soft_wrap=True)
    console.print(f"batch scripts: {exp.root / 'scripts'}")
    console.print("dry run: nothing was submitted")
    return exp
