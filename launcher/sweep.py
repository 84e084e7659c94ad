"""Sweeps (`python -m launcher -m ...`): every point, and the experiment's baselines, in one plan.

Stages the points share (downloads, calibration, quantization, an engine) have one fingerprint, so they
are planned, submitted and run once and every point depends on that one job. Composition and validation stay
cheap for thousands of points: Hydra composes once per distinct set of config-group choices; a point's plain
`key=value` overrides are applied to a copy of that composition, where the structured config still checks
every key and type; the per-key checks read a plain copy made from the composition's (PointComposer.plain),
and the plan a typed copy made from the composition's likewise (PointComposer.typed_copy). A point's config is
dropped once it is checked: the plan keeps its typed copy, which shares all it does not change. A point's
interpolations are resolved where it has them (PointComposer.resolve), each text parsed once for the whole sweep
(interpolations_parsed_once), and the checks of a top-level section alone run once per section the points share
(launcher.validation.by_section).
"""
from __future__ import annotations

import functools
import hashlib
import pickle
import re
import time
from contextlib import contextmanager
from copy import copy as shallow_copy
from dataclasses import is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
import omegaconf.base
from omegaconf import Container, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from omegaconf._impl import _resolve_container_value  # OmegaConf.resolve's step for one key (omegaconf 2.3)

from launcher.launch import (EXPERIMENT_OVERRIDE, DumpedSections, VariantChecks, compose_variants, dry_run,
                             start_writing, write_config)
from launcher.plan import build_plan, typed_config
from launcher.preview import exit_invalid, make_console
from launcher.schema import GROUPS
from launcher.errors import config_error_from, restore_environment
from launcher.validation import (NAME_FORM, NAME_MAX, ConfigError, InvalidConfig, SharedSections, known_containers,
                                 name_errors, name_problem, shared_sections)

if TYPE_CHECKING:
    from launcher.schema import Config

STRUCTURAL_KEYS = set(GROUPS) | {"experiment"}
NAME_KEY = "launcher.experiment_name"  # set on each point after it is composed: its name
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


class Point(NamedTuple):
    cfg: DictConfig
    composition: Tuple[str, ...]  # its group choices and shared overrides: the key of PointComposer.compositions
    keys: List[str]  # the keys its plain overrides set


class Composition(NamedTuple):
    pickled: bytes  # the composed config (unpickling a copy is about 4x faster than copy.deepcopy of the config)
    resolved: dict  # as plain containers, every interpolation resolved
    unresolved: dict  # as plain containers, `${...}` as written
    interpolations: List[Place]


class PointComposer:
    """Composes sweep points: Hydra composes once per distinct set of config-group choices, and a point's plain
    `key=value` overrides are applied to a copy of that composition (the structured config checks each). Each
    composition is also kept converted to plain containers, resolved and not, and to the schema's dataclasses:
    a point's copies in these forms (`plain`, `typed`) are the composition's with what the point changes read
    from its config (its overrides' keys and every interpolation), what leads there copied and the rest shared,
    so that a point's config need not be kept once checked."""

    def __init__(self, config_loader, master_config: DictConfig):
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create()
        self.parsed: Dict[str, Override] = {}  # {override: as Hydra parses it}: points share most of theirs
        self.compositions: Dict[Tuple[str, ...], Composition] = {}
        self.shared: set = set()  # plain overrides applied to the compositions (`share`)
        # Each composition typed (OmegaConf.to_object), made on first use; None: it does not convert alone.
        self.typed_compositions: Dict[Tuple[str, ...], Optional[Config]] = {}
        # The compositions' resolved top-level sections, which the points' plain copies share where they do not
        # change them: the checks of a section alone check each once (launcher.validation.by_section).
        self.sections = SharedSections()

    def share(self, points: Sequence[Sequence[str]]) -> None:
        """Apply the plain overrides that every one of `points` has to the compositions, once, rather than to each
        point (a sweep's cluster settings: a score of keys): those whose key no other plain override of a point
        sets, nor a key within it or one it is within, so that the order they are applied in changes nothing."""
        plain = {line: self._plain(line) for overrides in points for line in overrides}
        common = [line for line in points[0] if plain[line] and all(line in overrides for overrides in points)]
        others = {plain[line].key_or_group for line in plain if plain[line] and line not in common}
        self.shared = {line for line in common if not any(_overlap(plain[line].key_or_group, key) for key in others)}

    def _plain(self, line: str) -> Optional[Override]:
        """The override `line` as Hydra parses it when it sets a plain key (not a group, not added or deleted)."""
        if line not in self.parsed:
            self.parsed[line], = self.parser.parse_overrides([line])
        o = self.parsed[line]
        return None if o.key_or_group in STRUCTURAL_KEYS or o.is_add() or o.is_delete() or o.is_force_add() else o

    def compose_point(self, overrides: Sequence[str]) -> Point:
        """A point's config, with what its copies need (`plain`, `typed_copy`, `resolve`); not kept here."""
        plain = [o for o in map(self._plain, overrides) if o is not None and o.input_line not in self.shared]
        own = {o.input_line for o in plain}
        composition = tuple(line for line in overrides if line not in own)
        if composition not in self.compositions:
            composed = self.loader.load_sweep_config(self.master, [line for line in composition if line not in
                                                                   self.shared])
            with open_dict(composed):
                del composed["hydra"]  # the launcher's points need none of it, and copies get cheaper
            for line in composition:
                if line in self.shared:
                    OmegaConf.update(composed, self.parsed[line].key_or_group, self.parsed[line].value(), merge=False)
            unresolved = OmegaConf.to_container(composed, resolve=False)
            self.compositions[composition] = Composition(pickle.dumps(composed, protocol=pickle.HIGHEST_PROTOCOL),
                                                         OmegaConf.to_container(composed, resolve=True), unresolved,
                                                         list(_interpolated(unresolved)))
            self.sections.add(self.compositions[composition].resolved.values())
        cfg = pickle.loads(self.compositions[composition].pickled)
        for override in plain:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        return Point(cfg, composition, [o.key_or_group for o in plain])

    def plain(self, point: Point, changed: Sequence[str] = (), resolve: bool = True) -> Optional[dict]:
        """The point's config as plain containers (OmegaConf.to_container), resolved or not, or None where a
        place it changes is not in its composition (it is then converted whole). `changed`: keys set on the
        point after it was composed."""
        composition = self.compositions[point.composition]
        if resolve:
            return _with_values(composition.resolved, point.cfg, self._changed_places(point, changed), typed=False)
        return _with_values(composition.unresolved, point.cfg, [tuple(key.split(".")) for key in
                                                                [*point.keys, *changed]], typed=False, resolve=False)

    def typed_copy(self, point: Point, changed: Sequence[str] = ()) -> Optional[Config]:
        """The point's typed copy, as launcher.plan.typed_config gives it, made as `plain` makes plain copies:
        its composition converted once (OmegaConf.to_object takes tens of ms a config). None for a point whose
        composition does not convert alone (a mandatory value only the point's overrides give) or that `plain`
        leaves out: the plan converts it whole."""
        if point.composition not in self.typed_compositions:
            try:
                composition = OmegaConf.to_object(pickle.loads(self.compositions[point.composition].pickled))
            except OmegaConfBaseException:
                composition = None
            self.typed_compositions[point.composition] = composition
        composition = self.typed_compositions[point.composition]
        if composition is None:
            return None
        return _with_values(composition, point.cfg, self._changed_places(point, changed), typed=True)

    def resolve(self, point: Point, changed: Sequence[str] = ()) -> None:
        """OmegaConf.resolve(point.cfg), done only where the point can hold an interpolation (`_changed_places`):
        the rest of its composition has none, and resolving the whole config walks its ~200 nodes (~15 ms). Where
        a place is not there (an override replaced what led to it), the whole config is resolved."""
        cfg = point.cfg
        try:
            parents = [(_node_at(cfg, place[:-1]), place[-1]) for place in self._changed_places(point, changed)]
            if any(parent._get_node(key) is None for parent, key in parents):
                raise KeyError("a place that is not there")
        except (KeyError, IndexError, TypeError, AttributeError, OmegaConfBaseException):
            OmegaConf.resolve(cfg)
            return
        for parent, key in parents:
            _resolve_container_value(parent, key)

    def _changed_places(self, point: Point, changed: Sequence[str]) -> List[Place]:
        """Where a point may differ from its composition: the keys it set, `changed`, every interpolation."""
        return ([tuple(key.split(".")) for key in [*point.keys, *changed]]
                + self.compositions[point.composition].interpolations)


def _overlap(key: str, other: str) -> bool:
    """Whether setting one of these dotted keys sets the other, or a part of it."""
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def _with_values(copy: Any, cfg: DictConfig, places: Sequence[Place], typed: bool, resolve: bool = True) -> Any:
    """`copy` (a plain copy of `cfg`'s composition, or its typed copy: the schema's dataclasses, their dict and
    list fields plain) with the value of `cfg` at each of `places`, converted alike; what leads to them is copied,
    the rest shared (read, never changed). A place whose value is already there (an interpolation that resolves
    as in the composition) is left shared. None where a place is not there in both."""
    try:
        for place in places:
            value = _value_at(cfg, place, typed, resolve)
            if not _same_at(copy, place, value):
                copy = _replaced(copy, place, value)
    except (KeyError, IndexError, TypeError, AttributeError, OmegaConfBaseException):
        return None
    return copy


def _node_at(cfg: DictConfig, place: Place) -> Container:
    """The container at `place` in `cfg`, not resolving an interpolation on the way; KeyError where none is."""
    node: Any = cfg
    for part in place:
        node = node._get_node(part)
    if not isinstance(node, Container):
        raise KeyError(place)
    return node


def _value_at(cfg: DictConfig, place: Place, typed: bool, resolve: bool) -> Any:
    node: Any = cfg
    for part in place:
        node = node[part] if resolve else node._get_node(part)  # node[part] resolves an interpolation
    if isinstance(node, Container):
        return OmegaConf.to_object(node) if typed else OmegaConf.to_container(node, resolve=resolve)
    return node if resolve else node._value()


def _same_at(copy: Any, place: Place, value: Any) -> bool:
    """Whether a plain or typed copy holds `value` at `place` already: equal, and of the same types all the way
    down (1, 1.0 and True are equal, a copy keeps each as it is); a dataclass is never taken for the same."""
    try:
        for part in place:
            copy = getattr(copy, part) if is_dataclass(copy) else copy[part]
    except (KeyError, IndexError, TypeError, AttributeError):
        return False
    return _same(copy, value)


def _same(value: Any, other: Any) -> bool:
    if type(value) is not type(other) or is_dataclass(value):
        return False
    if isinstance(value, dict):
        return list(value) == list(other) and all(_same(v, other[k]) for k, v in value.items())
    if isinstance(value, list):
        return len(value) == len(other) and all(_same(v, o) for v, o in zip(value, other))
    return value == other


def _replaced(copy: Any, place: Place, value: Any) -> Any:
    """A shallow copy of `copy` with `value` at `place`, each container on the way copied likewise."""
    part, rest = place[0], place[1:]
    if is_dataclass(copy):
        here = getattr(copy, part)  # a field that is there
        new = shallow_copy(copy)
        setattr(new, part, _replaced(here, rest, value) if rest else value)
        return new
    if isinstance(copy, list) or rest:
        copy[part]  # noqa: B018  (an index, or a key on the way, that is there; a dict takes a new last key)
    new = copy.copy()
    new[part] = _replaced(copy[part], rest, value) if rest else value
    return new


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


@contextmanager
def interpolations_parsed_once() -> Iterator[None]:
    """Within it, OmegaConf parses each interpolation's text once: it parses the text with its ANTLR grammar at
    every resolution (omegaconf 2.3: omegaconf.base's `parse`, about 1 ms a text, three texts a point), and a
    sweep's points hold the same few texts. The resolution only reads a parse tree (GrammarVisitor), whose
    tokens keep their own text."""
    parse = omegaconf.base.parse
    omegaconf.base.parse = functools.lru_cache(maxsize=None)(parse)
    try:
        yield
    finally:
        omegaconf.base.parse = parse


@interpolations_parsed_once()
def launch_sweep(master: DictConfig, config_loader, job_overrides: Sequence[Sequence[str]],
                 initial_job_idx: int) -> List[JobReturn]:
    """Compose, check and plan every point, and the experiment's baselines, then preview or submit the one plan.
    Each point is checked as it is composed and kept only as the plan reads it (its typed copy) and as its saved
    config (plain containers): a config held per point would take about 150 KB each."""
    restore_environment()  # composed: the launch's processes get the user's environment (launcher.app.run)
    console = make_console()
    started = time.perf_counter()
    points = [list(o) for o in job_overrides]
    common = [o for o in points[0] if all(o in p for p in points)]
    composer = PointComposer(config_loader, master)
    composer.share(points)
    checks = VariantChecks()
    typed: Dict[str, Optional[Config]] = {}  # every variant as the plan reads it; None: it did not pass
    returns: List[JobReturn] = []
    saved: List[Tuple[str, List[str], dict]] = []  # (sweep directory entry, overrides, config unresolved) per point
    sweep_dir = Path(str(master.hydra.sweep.dir))
    failed: List[ConfigError] = []  # points Hydra cannot compose (a value of the wrong type): all said at once
    campaign_invalid: List[InvalidConfig] = []  # a point whose campaign names entries badly
    first: Optional[DictConfig] = None  # the first variant: the launch's settings (baselines, dry run, umask)

    def check(name: str, variant: DictConfig, overrides: List[str], point: Optional[Point]) -> None:
        known = composer.plain(point, changed=[NAME_KEY]) if point else None
        with known_containers({id(variant): (variant, known)} if known is not None else {}), \
                shared_sections(composer.sections):
            passed = checks.add(name, variant, overrides)
        typed[name] = None if not passed else (
            (composer.typed_copy(point, changed=[NAME_KEY]) if point else None) or typed_config(variant))

    names: set = set()
    for index, overrides in enumerate(points, start=initial_job_idx):
        try:
            point = composer.compose_point(overrides)
        except Exception as error:
            found = config_error_from(error, overrides)
            if found is None:
                raise
            failed.append(found)
            continue
        cfg = point.cfg
        name = point_name(cfg.launcher.experiment_name, [o for o in overrides if o not in common], names)
        names.add(name)
        with open_dict(cfg):
            cfg.launcher.experiment_name = name
        entry = f"{index}-{name}"
        unresolved = composer.plain(point, changed=[NAME_KEY], resolve=False)
        saved.append((entry, overrides, OmegaConf.to_container(cfg, resolve=False) if unresolved is None
                      else unresolved))
        # Saved as written: now every `${...}` is resolved once, where the checks and the copies would resolve
        # each again at every read (about 1 ms each).
        composer.resolve(point, changed=[NAME_KEY])
        returns.append(JobReturn(overrides=overrides, cfg=None, working_dir=str(sweep_dir / entry),
                                 task_name="launcher", status=JobStatus.COMPLETED, _return_value=name))
        if failed or campaign_invalid:
            continue  # only the compose errors are said then: the other points need not be checked
        try:
            variants = (compose_variants(cfg, overrides, prefix=f"{name}.") if cfg.launcher.campaign else {name: cfg})
        except InvalidConfig as invalid:
            campaign_invalid.append(invalid)
            continue
        first = first or next(iter(variants.values()))
        for variant_name, variant in variants.items():
            check(variant_name, variant, overrides, point if variant is cfg else None)
    sweep_name = f"{master.launcher.experiment_name}-sweep-{sweep_dir.name}"
    try:
        if failed:
            raise InvalidConfig(list({str(e): e for e in failed}.values()))
        if campaign_invalid:
            raise campaign_invalid[0]
        base = [o for o in common if not EXPERIMENT_OVERRIDE.match(o)]
        bad_names = [e for e in name_errors(first) if e.key.startswith("launcher.baselines")]
        if bad_names:  # each is composed as `+experiment=<name>`
            raise InvalidConfig(bad_names)
        for baseline in first.launcher.baselines:
            if baseline not in typed:
                point = composer.compose_point([*base, f"+experiment={baseline}"])
                check(baseline, point.cfg, base, point)
        checks.raise_errors()
        problem = name_problem(sweep_name)
        if problem:
            raise InvalidConfig([ConfigError("hydra.sweep.dir", str(sweep_dir), f"its last part names the sweep's "
                                             f"experiment {sweep_name!r}, {problem}", NAME_FORM)])
    except InvalidConfig as invalid:
        exit_invalid(invalid, console)
    plan = build_plan(sweep_name, typed)
    # Nothing was written before: now the sweep's directory (locally, for a dry run's preview where this machine
    # cannot write the storage root), each point's config and overrides redacted (launcher.launch.save_config).
    preview = start_writing(plan, first, console)
    if preview:
        sweep_dir = preview / "sweep"
    dumped: DumpedSections = {}  # the points share their composition's unchanged sections: each dumped once
    for entry, overrides, config in saved:
        write_config(sweep_dir / entry / ".hydra", config, overrides, dumped)  # unresolved, as Hydra saves them
    (sweep_dir / "experiment.txt").write_text(f"{sweep_name}\n{plan.storage_root}/experiments/{sweep_name}\n")
    console.print(f"{len(points)} point(s) and {len(first.launcher.baselines)} baseline(s) planned in "
                  f"{time.perf_counter() - started:.2f} s: {len(plan.stages)} distinct stages")
    if first.launcher.dry_run:
        dry_run(plan, console, preview)
    else:
        from launcher.dispatch import submit

        submit(plan, console)
    return returns
