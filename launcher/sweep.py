"""Sweeps (`python -m launcher -m ...`): every point, and the experiment's baselines, in one plan.

Stages the points share (downloads, calibration, quantization, an engine) have one fingerprint, so they
are planned, submitted and run once and every point depends on that one job. Composition stays cheap for
hundreds of points: Hydra composes once per distinct set of config-group choices; a point's plain
`key=value` overrides are applied to a copy of that composition, where the structured config still checks
every key and type.
"""
from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from launcher.launch import (EXPERIMENT_OVERRIDE, compose_variants, dry_run, save_config, start_writing,
                             validate_variants)
from launcher.plan import build_plan
from launcher.preview import exit_invalid, make_console
from launcher.schema import GROUPS
from launcher.validation import NAME_FORM, ConfigError, InvalidConfig, name_errors, name_problem

STRUCTURAL_KEYS = set(GROUPS) | {"experiment"}
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class PointComposer:
    def __init__(self, config_loader, master_config: DictConfig):
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create()
        self.compositions: Dict[Tuple[str, ...], DictConfig] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        plain = [o for o in parsed if o.key_or_group not in STRUCTURAL_KEYS and not (o.is_add() or o.is_delete()
                                                                                     or o.is_force_add())]
        structural = tuple(o.input_line for o in parsed if o not in plain)
        if structural not in self.compositions:
            composed = self.loader.load_sweep_config(self.master, list(structural))
            with open_dict(composed):
                del composed["hydra"]  # the launcher's points need none of it, and copies get cheaper
            self.compositions[structural] = composed
        cfg = copy.deepcopy(self.compositions[structural])
        for override in plain:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        return cfg


def point_name(base: str, varying: Sequence[str]) -> str:
    """`fp8_redrafter.num_layers=1.draft_len_per_beam=2`: the experiment plus what this point changes."""
    parts = [NAME_UNSAFE.sub("_", o.lstrip("+~").split(".")[-1]) for o in varying]
    return ".".join([base, *parts])


def launch_sweep(master: DictConfig, config_loader, job_overrides: Sequence[Sequence[str]],
                 initial_job_idx: int) -> List[JobReturn]:
    console = make_console()
    started = time.perf_counter()
    points = [list(o) for o in job_overrides]
    common = [o for o in points[0] if all(o in p for p in points)]
    composer = PointComposer(config_loader, master)
    variants: Dict[str, DictConfig] = {}
    returns: List[JobReturn] = []
    saved: List[Tuple[str, List[str], DictConfig]] = []  # (sweep directory entry, overrides, config) per point
    sweep_dir = Path(str(master.hydra.sweep.dir))
    for index, overrides in enumerate(points, start=initial_job_idx):
        cfg = composer.compose(overrides)
        name = point_name(cfg.launcher.experiment_name, [o for o in overrides if o not in common])
        with open_dict(cfg):
            cfg.launcher.experiment_name = name
        entry = f"{index}-{name}"
        saved.append((entry, overrides, cfg))
        returns.append(JobReturn(overrides=overrides, cfg=cfg, working_dir=str(sweep_dir / entry),
                                 task_name="launcher", status=JobStatus.COMPLETED, _return_value=name))
    sweep_name = f"{master.launcher.experiment_name}-sweep-{sweep_dir.name}"
    try:
        for entry, overrides, cfg in saved:
            variants.update(compose_variants(cfg, overrides, prefix=f"{cfg.launcher.experiment_name}.")
                            if cfg.launcher.campaign else {cfg.launcher.experiment_name: cfg})
        first = next(iter(variants.values()))
        base = [o for o in common if not EXPERIMENT_OVERRIDE.match(o)]
        bad_names = [e for e in name_errors(first) if e.key.startswith("launcher.baselines")]
        if bad_names:  # each is composed as `+experiment=<name>`
            raise InvalidConfig(bad_names)
        for baseline in first.launcher.baselines:
            variants.setdefault(baseline, composer.compose([*base, f"+experiment={baseline}"]))
        validate_variants(variants)
        problem = name_problem(sweep_name)
        if problem:
            raise InvalidConfig([ConfigError("hydra.sweep.dir", str(sweep_dir), f"its last part names the sweep's "
                                             f"experiment {sweep_name!r}, {problem}", NAME_FORM)])
    except InvalidConfig as invalid:
        exit_invalid(invalid, console)
    plan = build_plan(sweep_name, variants)
    # Nothing was written before: now the sweep's directory (locally, for a dry run's preview where this machine
    # cannot write the storage root), each point's config and overrides redacted (launcher.launch.save_config).
    preview = start_writing(plan, first, console)
    if preview:
        sweep_dir = preview / "sweep"
    for entry, overrides, cfg in saved:
        save_config(sweep_dir / entry / ".hydra", cfg, overrides)
    (sweep_dir / "experiment.txt").write_text(f"{sweep_name}\n{plan.storage_root}/experiments/{sweep_name}\n")
    console.print(f"{len(points)} point(s) and {len(first.launcher.baselines)} baseline(s) planned in "
                  f"{time.perf_counter() - started:.2f} s: {len(plan.stages)} distinct stages")
    if first.launcher.dry_run:
        dry_run(plan, console, preview)
    else:
        from launcher.dispatch import submit

        submit(plan, console)
    return returns
