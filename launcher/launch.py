"""From a composed config to a validated plan, previewed or dispatched."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from hydra import compose
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape

from launcher import exit_codes
from launcher.dispatch.storage import code_snapshot_dir, damaged_artifacts, launched_records, snapshot_code
from launcher.plan import Plan, build_plan
from launcher.scripts import ExperimentDir, remove_stale_stage_files
from launcher.validation import (ConfigError, InvalidConfig, name_errors, redacted, redacted_overrides, storage_problem,
                                 umask_value, validate)

EXPERIMENT_OVERRIDE = re.compile(r"^\+{0,2}experiment=")


def compose_variants(cfg: DictConfig, overrides: List[str], prefix: str = "") -> Dict[str, DictConfig]:
    """A campaign composes each of its experiments with the user's other overrides; else just `cfg`."""
    if not cfg.launcher.campaign:
        return {cfg.launcher.experiment_name: cfg}
    # Each entry is composed as `+experiment=<entry>` and names stage files: checked before it is composed.
    bad_names = name_errors(cfg)
    if bad_names:
        raise InvalidConfig(bad_names)
    base = [*cfg.launcher.campaign_overrides, *(o for o in overrides if not EXPERIMENT_OVERRIDE.match(o))]
    return {prefix + name: compose("config", overrides=[*base, f"+experiment={name}"])
            for name in cfg.launcher.campaign}


class VariantChecks:
    """The validation of several configurations (validate_variants), one configuration at a time: a sweep checks
    each point as it composes it and keeps none of their configs. `add` each, then `raise_errors`."""

    def __init__(self) -> None:
        self.count = 0
        self.per_variant: Dict[str, List[ConfigError]] = {}
        # An override that changes nothing in every configuration it was applied to is an error: the first such
        # error of each key, and the keys some configuration uses.
        self.unused: Dict[str, ConfigError] = {}
        self.used: set = set()

    def add(self, name: str, variant: DictConfig, overrides: Sequence[str] = ()) -> bool:
        """Validate one configuration (the environment too, unless this is a dry run); `overrides`: the
        command-line overrides it was composed with. Whether it passed its own checks."""
        from launcher.schema_check import applied_settings, unused_override_errors

        self.count += 1
        unused = {e.key: e for e in unused_override_errors({name: variant}, {name: overrides})}
        for key, error in unused.items():
            self.unused.setdefault(key, error)
        self.used.update(key for key, _ in applied_settings(overrides) if key not in unused)
        try:
            validate(variant, submitting=not variant.launcher.dry_run)
        except InvalidConfig as invalid:
            self.per_variant[name] = invalid.errors
            return False
        return True

    def raise_errors(self) -> None:
        """Raise InvalidConfig with every problem found, all at once."""
        errors = [e for key, e in self.unused.items() if key not in self.used]
        # An error every configuration has (a mistyped `+key`) is said once; the others name their configuration.
        shared = set.intersection(*({str(e) for e in found} for found in self.per_variant.values())) \
            if len(self.per_variant) == self.count > 1 else set()
        for name, found in self.per_variant.items():
            prefix = f"[{name}] " if self.count > 1 else ""
            errors += [e if str(e) in shared else ConfigError(prefix + e.key, e.value, e.problem, e.allowed)
                       for e in found]
        if errors:
            raise InvalidConfig(list({str(e): e for e in errors}.values()))


def validate_variants(variants: Dict[str, DictConfig], overrides: Optional[Dict[str, List[str]]] = None) -> None:
    """Validate every composed config (the environment too, unless this is a dry run); report all at once.
    `overrides`: the command-line overrides each variant was composed with; one that changes nothing in all of
    them (a key the chosen options do not use) is an error."""
    checks = VariantChecks()
    for name, variant in variants.items():
        checks.add(name, variant, (overrides or {}).get(name, ()))
    checks.raise_errors()


def validated_plan(cfg: DictConfig, overrides: List[str]) -> Plan:
    """Compose, validate and plan."""
    variants = compose_variants(cfg, overrides)
    validate_variants(variants, {name: list(overrides) for name in variants})
    return build_plan(cfg.launcher.experiment_name, variants)


YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: a sweep saves hundreds of points' configs
PLAN_TABLE = "plan.txt"  # a big plan's whole table (launcher.preview.print_plan), beside its scripts
PREVIEW_DIR = "launcher_preview"  # in the working directory: a dry run's where the storage root is not usable


def start_writing(plan: Plan, cfg: DictConfig, console: Console) -> Optional[Path]:
    """Once the whole launch is validated, before its first write (Hydra writes nothing: conf/config.yaml):
    the cluster's umask for everything the launch writes and the processes it starts, and where a dry run
    writes. A dry run on a machine that cannot write the storage root (not mounted here, read-only) previews
    in PREVIEW_DIR/<experiment> and says so; a launch never gets here then (validation's storage check).
    Returns that local directory, or None for the storage root."""
    exit_codes.mark_dispatch_started()  # an error from here on is not the config's (launcher.app.run)
    os.umask(umask_value(cfg.cluster.umask))
    problem = storage_problem(plan.storage_root) if cfg.launcher.dry_run else None
    if not problem:
        return None
    preview = Path(PREVIEW_DIR).resolve() / plan.experiment
    console.print(f"[yellow]cluster.storage_root={escape(plan.storage_root)}: {escape(problem)}; this dry run "
                  f"writes its preview to {escape(str(preview))} instead (a launch from here is refused)[/yellow]",
                  highlight=False, soft_wrap=True)
    return preview


def save_config(root: Path, cfg: DictConfig, overrides: List[str], resolve: bool = True) -> None:
    """The launch's composed config and command line, beside its scripts: with every value that validation
    takes for a secret replaced by <redacted> (validation refused any it saw; this keeps it so). `resolve`:
    the values used; unresolved, `${...}` stay as written (an `${oc.env:...}` is never looked up)."""
    write_config(root, OmegaConf.to_container(cfg, resolve=resolve), overrides)


# {(top-level key, id(section)): (section, its YAML)}: kept with the section, so that an id is never another's.
DumpedSections = Dict[Tuple[str, int], Tuple[Any, str]]


def write_config(root: Path, config: dict, overrides: Sequence[str], dumped: Optional[DumpedSections] = None) -> None:
    """save_config's files from the config as plain containers. `dumped`: the YAML of top-level sections written
    before, filled as it goes: a sweep's points share their composition's unchanged sections (launcher.sweep),
    each then dumped once (a block mapping's YAML is its keys' YAML one after another)."""
    dumped = {} if dumped is None else dumped
    parts = []
    for key, section in config.items():
        known = dumped.get((key, id(section)))
        if known is None or known[0] is not section:
            known = dumped[(key, id(section))] = (
                section, yaml.dump(redacted({key: section}), Dumper=YAML_DUMPER, sort_keys=False))
        parts.append(known[1])
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("".join(parts) if parts else yaml.dump({}, Dumper=YAML_DUMPER))
    (root / "overrides.yaml").write_text(yaml.dump(redacted_overrides(list(overrides)), Dumper=YAML_DUMPER))


def dry_run(plan: Plan, console: Console, preview: Optional[Path] = None) -> ExperimentDir:
    """Write every stage's spec and batch script; submit nothing. `preview`: write them there instead of the
    experiment's directory (start_writing), the scripts unchanged: they name the storage root's paths."""
    from launcher.preview import print_plan, write_dry_run_files

    exit_codes.mark_dispatch_started()  # an error from here on is not the config's (launcher.app.run)
    target = ExperimentDir(plan.storage_root, plan.experiment)
    exp = ExperimentDir(plan.storage_root, plan.experiment, root=preview) if preview else target
    # The scripts name the code snapshot as their workdir and PYTHONPATH: taking it (content-addressed, the
    # same one the launch would take) makes each script submittable by hand; pyxis fails on a missing workdir.
    # A local preview only names it: nothing is written at a storage root this machine cannot write.
    code_dir = code_snapshot_dir(plan.storage_root) if preview else snapshot_code(plan.storage_root)
    write_dry_run_files(plan, target, code_dir, into=exp)
    # A dry run asks Slurm nothing: the specs of what the last launch submitted stay, a job may still read them.
    stale = remove_stale_stage_files(plan, exp, keep_specs=list(launched_records(exp.state)))
    damaged = damaged_artifacts(plan)
    print_plan(plan, console, damaged, exp.root / PLAN_TABLE)
    for name, problem in damaged.items():  # reported only: moving it is the launch's, under its lock
        console.print(f"[yellow]{escape(name)}: artifact {escape(plan.stages[name].artifact)} is damaged: "
                      f"{escape(problem)}; a launch moves it aside and rebuilds it (this dry run leaves it)"
                      "[/yellow]", highlight=False, soft_wrap=True)
    if stale:
        console.print(f"removed the scripts of stages no longer in the plan: {escape(', '.join(stale))}")
    console.print(f"batch scripts: {exp.root / 'scripts'}")
    console.print("dry run: nothing was submitted")
    return exp
