"""Sweeps (`python -m launcher -m ...`): every point, and the experiment's baselines, in one plan.

Stages the points share (downloads, calibration, quantization, an engine) have one fingerprint, so they
are planned, submitted and run once and every point depends on that one job. Composition and validation stay
cheap for thousands of points: Hydra composes once per distinct set of config-group choices; a point's plain
`key=value` overrides are applied to a copy of that composition, where the structured config still checks
every key and type; the per-key checks read a plain copy made from the composition's (PointComposer.known),
and the plan a typed copy made from the composition's likewise (PointComposer.typed).
"""
from __future__ import annotations

import hashlib
import pickle
import re
import time
from dataclasses import is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import Container, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from launcher.launch import (EXPERIMENT_OVERRIDE, compose_variants, dry_run, save_config, start_writing,
                             validate_variants)
from launcher.plan import build_plan
from launcher.preview import exit_invalid, make_console
from launcher.schema import GROUPS
from launcher.errors import config_error_from, restore_environment
from launcher.validation import (NAME_FORM, NAME_MAX, ConfigError, InvalidConfig, known_containers, name_errors,
                                 name_problem)

if TYPE_CHECKING:
    from launcher.schema import Config

STRUCTURAL_KEYS = set(GROUPS) | {"experiment"}
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


Place = Tuple[Union[str, int], ...]  # a leaf's place in a config: its keys and list indices


def _interpolated(node: Any, at: Place = ()) -> Iterator[Place]:
    """Where an unresolved config container holds an interpolation (`${...}`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _interpolated(value, (*at, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _interpolated(value, (*at, index))
    elif isinstance(node, str) and "${" in node:
        yield at


class PointComposer:
    """Composes sweep points: Hydra composes once per distinct set of config-group choices, and a point's plain
    `key=value` overrides are applied to a copy of that composition (the structured config checks each). Each
    composition is also kept converted to plain containers, so that a point's plain copy (`known`, for the
    per-key checks of launcher.validation) is that copy with only what the point changes read from its config:
    its overrides' keys and every interpolation."""

    def __init__(self, config_loader, master_config: DictConfig):
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create()
        # Each composition pickled (unpickling a copy is about 4x faster than copy.deepcopy of the config), its plain
        # resolved container pickled, and where it interpolates.
        self.compositions: Dict[Tuple[str, ...], Tuple[bytes, bytes, List[Place]]] = {}
        self.points: List[Tuple[DictConfig, Tuple[str, ...], List[str]]] = []  # (config, composition, keys set)
        # Each composition typed (OmegaConf.to_object, pickled), made on first use by `typed`; None: not alone.
        self.typed_compositions: Dict[Tuple[str, ...], Optional[bytes]] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        plain = [o for o in parsed if o.key_or_group not in STRUCTURAL_KEYS and not (o.is_add() or o.is_delete()
                                                                                     or o.is_force_add())]
        structural = tuple(o.input_line for o in parsed if o not in plain)
        if structural not in self.compositions:
            composed = self.loader.load_sweep_config(self.master, list(structural))
            with open_dict(composed):
                del composed["hydra"]  # the launcher's points need none of it, and copies get cheaper
            self.compositions[structural] = (
                pickle.dumps(composed, protocol=pickle.HIGHEST_PROTOCOL),
                pickle.dumps(OmegaConf.to_container(composed, resolve=True), protocol=pickle.HIGHEST_PROTOCOL),
                list(_interpolated(OmegaConf.to_container(composed, resolve=False))))
        cfg = pickle.loads(self.compositions[structural][0])
        for override in plain:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        self.points.append((cfg, structural, [o.key_or_group for o in plain]))
        return cfg

    def known(self, changed: Sequence[str] = ()) -> Dict[int, Tuple[DictConfig, dict]]:
        """{id(config): (config, its plain resolved copy)} of every point composed, for
        launcher.validation.known_containers; `changed`: keys set on every point after it was composed."""
        known = {}
        for cfg, structural, keys in self.points:
            container = pickle.loads(self.compositions[structural][1])
            if all(_copy_value(container, cfg, place) for place in self._changed_places(structural, keys, changed)):
                known[id(cfg)] = (cfg, container)
        return known

    def typed(self, changed: Sequence[str] = ()) -> Dict[int, Config]:
        """{id(config): its typed copy, as launcher.plan.typed_config gives it} of every point composed, made as
        `known` makes plain copies: its composition converted once (OmegaConf.to_object takes tens of ms a config),
        what the point changes set from its config. A point whose composition does not convert alone (a mandatory
        value only the point's overrides give) is left out: the plan converts it whole."""
        typed = {}
        for cfg, structural, keys in self.points:
            if structural not in self.typed_compositions:
                try:
                    composition = OmegaConf.to_object(pickle.loads(self.compositions[structural][0]))
                except OmegaConfBaseException:
                    composition = None
                self.typed_compositions[structural] = (
                    None if composition is None else pickle.dumps(composition, protocol=pickle.HIGHEST_PROTOCOL))
            composition_bytes = self.typed_compositions[structural]
            if composition_bytes is None:
                continue
            copy = pickle.loads(composition_bytes)
            if all(_copy_value(copy, cfg, place) for place in self._changed_places(structural, keys, changed)):
                typed[id(cfg)] = copy
        return typed

    def _changed_places(self, structural: Tuple[str, ...], keys: List[str], changed: Sequence[str]) -> List[Place]:
        """Where a point may differ from its composition: the keys it set, `changed`, every interpolation."""
        return [tuple(key.split(".")) for key in [*keys, *changed]] + self.compositions[structural][2]


def _copy_value(copy: Any, cfg: DictConfig, place: Place) -> bool:
    """Set the value at `place` of `cfg`, resolved, at the same place of `copy`: its plain copy, or its typed copy
    (the schema's dataclasses, their dict and list fields plain), the value converted alike; False where that
    place is not there in both (the config is then converted whole)."""
    typed = is_dataclass(copy)
    node: Any = cfg
    try:
        for part in place:
            node = node[part]  # DictConfig and ListConfig resolve an interpolation as they return it
        for part in place[:-1]:
            copy = getattr(copy, part) if is_dataclass(copy) else copy[part]
        if isinstance(node, Container):
            node = OmegaConf.to_object(node) if typed else OmegaConf.to_container(node, resolve=True)
        if is_dataclass(copy):
            getattr(copy, place[-1])  # a field that is there
            setattr(copy, place[-1], node)
            return True
        if isinstance(copy, list):
            copy[place[-1]]  # noqa: B018  (an index that is there; a dict takes a new key)
        copy[place[-1]] = node
    except (KeyError, IndexError, TypeError, AttributeError, OmegaConfBaseException):
        return False
    return True


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
        with known_containers(composer.known(changed=["launcher.experiment_name"])):
            validate_variants(variants, applied)
        problem = name_problem(sweep_name)
        if problem:
            raise InvalidConfig([ConfigError("hydra.sweep.dir", str(sweep_dir), f"its last part names the sweep's "
                                             f"experiment {sweep_name!r}, {problem}", NAME_FORM)])
    except InvalidConfig as invalid:
        exit_invalid(invalid, console)
    typed = composer.typed(changed=["launcher.experiment_name"])  # validated: each point as the plan reads it
    plan = build_plan(sweep_name, {name: typed.get(id(cfg), cfg) for name, cfg in variants.items()})
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
