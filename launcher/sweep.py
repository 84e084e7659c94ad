"""Sweeps (`python -m launcher -m ...`): every point, and the experiment's baselines, in one plan.

Stages the points share (downloads, calibration, quantization, an engine) have one fingerprint, so they
are planned, submitted and run once and every point depends on that one job. Composition stays cheap for
hundreds of points: Hydra composes once per distinct set of config-group choices; a point's plain
`key=value` overrides are applied to a copy of that composition, where the structured config still checks
every key and type.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import time
from pathlib import Path
from typing import Collection, Dict, List, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from launcher.launch import (EXPERIMENT_OVERRIDE, compose_variants, dry_run, save_config, start_writing,
                             validate_variants)
from launcher.plan import build_plan
from launcher.preview import exit_invalid, make_console
from launcher.schema import GROUPS
from launcher.errors import config_error_from, restore_environment
from launcher.validation import NAME_FORM, NAME_MAX, ConfigError, InvalidConfig, name_errors, name_problem

STRUCTURAL_KEYS = set(GROUPS) | {"experiment"}
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class PointComposer:
    def __init__(self, config_loader, master_config: DictConfig):
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create()
        # Each composition pickled: unpickling a copy is about 4x faster than copy.deepcopy of the config.
        self.compositions: Dict[Tuple[str, ...], bytes] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        plain = [o for o in parsed if o.key_or_group not in STRUCTURAL_KEYS and not (o.is_add() or o.is_delete()
                                                                                     or o.is_force_add())]
        structural = tuple(o.input_line for o in parsed if o not in plain)
        if structural not in self.compositions:
            composed = self.loader.load_sweep_config(self.master, list(structural))
            with open_dict(composed):
                del composed["hydra"]  # the launcher's points need none of it, and copies get cheaper
            self.compositions[structural] = pickle.dumps(composed, protocol=pickle.HIGHEST_PROTOCOL)
        cfg = pickle.loads(self.compositions[structural])
        for override in plain:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        return cfg


def point_name(base: str, varying: Sequence[str], taken: Collection[str] = ()) -> str:
    """`fp8_redrafter.num_layers=1.learning_rate=0.5`: the experiment plus what this point changes, each override
    as its key's last part and its whole value, made one safe path component. A point is a variant of the plan
    under this name: two points must never share one (the second would replace the first). A name already
    `taken` (values that differ only in characters made safe) or too long for a file name gets a digest of the
    point's overrides."""
    parts = []
    for override in varying:
        key, eq, value = override.lstrip("+~").partition("=")
        last = key.rsplit(".", 1)[-1]
        parts.append(NAME_UNSAFE.sub("_", f"{last}={value}" if eq else f"without_{last}"))
    name = ".".join([base, *parts])
    if name in taken or len(name) > NAME_MAX:
        digest = hashlib.sha256("\0".join(varying).encode()).hexdigest()[:8]
        name = f"{name[:NAME_MAX - len(digest) - 1]}.{digest}"
    return name


def launch_sweep(master: DictConfig, config_loader, job_overrides: Sequence[Sequence[str]],
                 initial_job_idx: int) -> List[JobReturn]:
    restore_environment()  # composed: the launch's processes get the user's environment (launcher.app.run)
    console = make_console()
    started = time.perf_counter()
    points = [list(o) for o in job_overrides]
    common = [o for o in points[0] if all(o in p for p in points)]
    composer = PointComposer(config_loader, master)
    variants: Dict[str, DictConfig] = {}
    returns: List[JobReturn] = []
    saved: List[Tuple[str, List[str], DictConfig]] = []  # (sweep directory entry, overrides, config) per point
    sweep_dir = Path(str(master.hydra.sweep.dir))
    failed: List[ConfigError] = []  # points Hydra cannot compose (a value of the wrong type): all said at once
    names: set = set()
    for index, overrides in enumerate(points, start=initial_job_idx):
        try:
            cfg = composer.compose(overrides)
        except Exception as error:
            found = config_error_from(error, overrides)
            if found is None:
                raise
            failed.append(found)
            continue
        name = point_name(cfg.launcher.experiment_name, [o for o in overrides if o not in common], names)
        names.add(name)
        with open_dict(cfg):
            cfg.launcher.experiment_name = name
        entry = f"{index}-{name}"
        saved.append((entry, overrides, cfg))
        returns.append(JobReturn(overrides=overrides, cfg=cfg, working_dir=str(sweep_dir / entry),
                                 task_name="launcher", status=JobStatus.COMPLETED, _return_value=name))
    sweep_name = f"{master.launcher.experiment_name}-sweep-{sweep_dir.name}"
    applied: Dict[str, List[str]] = {}  # each variant's overrides: one no variant uses is an error
    try:
        if failed:
            raise InvalidConfig(list({str(e): e for e in failed}.values()))
        for entry, overrides, cfg in saved:
            point = (compose_variants(cfg, overrides, prefix=f"{cfg.launcher.experiment_name}.")
                     if cfg.launcher.campaign else {cfg.launcher.experiment_name: cfg})
            variants.update(point)
            applied.update({name: overrides for name in point})
        first = next(iter(variants.values()))
        base = [o for o in common if not EXPERIMENT_OVERRIDE.match(o)]
        bad_names = [e for e in name_errors(first) if e.key.startswith("launcher.baselines")]
        if bad_names:  # each is composed as `+experiment=<name>`
            raise InvalidConfig(bad_names)
        for baseline in first.launcher.baselines:
            if baseline not in variants:
                variants[baseline] = composer.compose([*base, f"+experiment={baseline}"])
                applied[baseline] = base
        validate_variants(variants, applied)
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
        save_config(sweep_dir / entry / ".hydra", cfg, overrides, resolve=False)  # as Hydra saved them: cheaper
    (sweep_dir / "experiment.txt").write_text(f"{sweep_name}\n{plan.storage_root}/experiments/{sweep_name}\n")
    console.print(f"{len(points)} point(s) and {len(first.launcher.baselines)} baseline(s) planned in "
                  f"{time.perf_counter() - started:.2f} s: {len(plan.stages)} distinct stages")
    if first.launcher.dry_run:
        dry_run(plan, console, preview)
    else:
        from launcher.dispatch import submit

        submit(plan, console)
    return returns
