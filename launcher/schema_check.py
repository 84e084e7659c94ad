"""Every key and value of a config checked against the schema (launcher.schema), whatever set it.

Hydra's structured configs refuse an unknown key or a wrong type given without `+`, but `+key=value` adds any key
(and Hydra suggests `+` for a mistyped one), and a YAML file can hold any: the launcher would read none of them, so
the mistake would be silent. Here every key of a composed config is one of the schema's (the closest is suggested),
every number is finite and within the Range its field declares, every string non-empty and of its Form; and an
override of a key that the chosen options do not use (UsedWhen) is refused, as it changes nothing.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, DictConfig, OmegaConf

from launcher.schema import GROUPS, Choice, Config, Form, Range, UsedWhen
from launcher.validation import REDACTED, ConfigError, by_section, plain_config, secret_value

# Command-line words that choose options of config groups, or address Hydra's own config: not keys of ours.
GROUP_NAMES = (*GROUPS, "experiment")
UNKNOWN = "not a key of the launcher's config (launcher/schema.py): nothing reads it, so it would change nothing"


def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


@functools.lru_cache(maxsize=None)
def _fields(dc: type) -> Dict[str, Tuple[Any, dict]]:
    """{field: (its type, Optional removed; its metadata)} of a schema dataclass."""
    hints = typing.get_type_hints(dc)
    return {f.name: (_unwrap(hints[f.name]), dict(f.metadata, optional=_unwrap(hints[f.name]) is not hints[f.name]))
            for f in dataclasses.fields(dc)}


def _is_node(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_of(key: str) -> Optional[Tuple[Any, dict]]:
    """(type, metadata) of a dotted key of the schema (an entry of a Dict field: its value type and the field's
    metadata); None if the schema has no such key."""
    tp: Any = Config
    meta: dict = {}
    for part in key.split("."):
        if _is_node(tp):
            if part not in _fields(tp):
                return None
            tp, meta = _fields(tp)[part]
        elif typing.get_origin(tp) is dict and (meta.get("keys") is None or part in meta["keys"]):
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp, meta


@functools.lru_cache(maxsize=None)
def schema_keys() -> Tuple[str, ...]:
    """Every dotted key of the schema (a time limit's stage kinds too): what a mistyped key is compared with."""
    keys: List[str] = []

    def visit(dc: type, prefix: str) -> None:
        for name, (tp, meta) in _fields(dc).items():
            if _is_node(tp):
                visit(tp, f"{prefix}{name}.")
            else:
                keys.append(prefix + name)
                keys.extend(f"{prefix}{name}.{k}" for k in meta.get("keys", ()))
    visit(Config, "")
    return tuple(keys)


def closest(key: str, candidates: Sequence[str]) -> List[str]:
    """The candidates nearest to a mistyped `key`, best first: by the whole dotted key, and by its last part
    alone (`+dry_run` is `launcher.dry_run`)."""
    last = key.rsplit(".", 1)[-1]

    def score(candidate: str) -> float:
        whole = difflib.SequenceMatcher(None, key, candidate).ratio()
        tail = difflib.SequenceMatcher(None, last, candidate.rsplit(".", 1)[-1]).ratio()
        return max(whole, tail - 0.05)
    scored = sorted(((score(c), c) for c in candidates), key=lambda sc: -sc[0])
    if not scored or scored[0][0] < 0.6:
        return []
    return [c for s, c in scored[:3] if s >= scored[0][0] - 0.05]


def _unknown(key: str, value: Any, candidates: Sequence[str], what: str = UNKNOWN) -> ConfigError:
    near = closest(key, candidates)
    allowed = f"did you mean {' or '.join(near)}?" if near else "a key of launcher/schema.py"
    return ConfigError(key, _shown(key, value), what, allowed)


def _shown(key: str, value: Any) -> Any:
    return REDACTED if secret_value(key, value) else value


def _leaves(value: Any, key: str) -> Iterator[Tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}")
    else:
        yield key, value


def config_errors(cfg: DictConfig) -> List[ConfigError]:
    """Unknown keys, required keys without a value, and every value outside its field's Range or Form."""
    data = dict(plain_config(cfg))  # a shallow copy: a sweep point's plain config is shared (validation)
    data.pop("hydra", None)  # Hydra's own node, when a config is composed with it: Hydra checks it
    return by_section(_config_node_errors, data)


def _config_node_errors(data: dict) -> List[ConfigError]:
    errors: List[ConfigError] = []
    _check_node(data, Config, "", errors)
    return errors


def _check_node(data: dict, dc: type, prefix: str, errors: List[ConfigError]) -> None:
    fields = _fields(dc)
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            errors += [_unknown(k, v, schema_keys()) for k, v in _leaves(value, key)]
            continue
        tp, meta = fields[name]
        if _is_node(tp):
            if isinstance(value, dict):
                _check_node(value, tp, key + ".", errors)
        elif typing.get_origin(tp) is dict and isinstance(value, dict):
            kinds = meta.get("keys")
            for k, v in value.items():
                if kinds is not None and k not in kinds:
                    errors.append(_unknown(f"{key}.{k}", v, [f"{key}.{kind}" for kind in kinds],
                                           f"names no stage kind: {key} would apply to no stage"))
                else:
                    _check_value(f"{key}.{k}", v, typing.get_args(tp)[1], meta, errors, empty_ok=True)
        elif typing.get_origin(tp) is list and isinstance(value, list):
            for i, v in enumerate(value):
                _check_value(f"{key}[{i}]", v, typing.get_args(tp)[0], meta, errors)
        else:
            _check_value(key, value, tp, meta, errors)


def _check_value(key: str, value: Any, tp: Any, meta: dict, errors: List[ConfigError], empty_ok: bool = False) -> None:
    name = key.rsplit(".", 1)[-1].split("[")[0]
    if value == MISSING:
        form = meta.get("form")
        errors.append(ConfigError(key, None, "is required and has no value (???)",
                                  form.allowed if form else getattr(tp, "__name__", str(tp))))
        return
    if value is None or tp is bool or (isinstance(tp, type) and issubclass(tp, Choice)):
        return  # OmegaConf checked them: None only where Optional, a bool, one of the choices
    if tp in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        rng: Optional[Range] = meta.get("range")
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(ConfigError(key, value, "not a finite number",
                                      rng.allowed(name) if rng else "a finite number"))
        elif rng is not None and value not in rng:
            low = rng.low < value if rng.above else rng.low <= value
            problem = ("must be positive" if not low and rng.low in (0, 1) and (rng.above or rng.low == 1) else
                       f"below {'or equal to ' if rng.above else ''}{rng.low}" if not low else f"above {rng.high}")
            errors.append(ConfigError(key, value, problem + (f": {rng.why}" if rng.why else ""), rng.allowed(name)))
    elif tp is str and isinstance(value, str):
        form: Optional[Form] = meta.get("form")
        if not value and not empty_ok:
            errors.append(ConfigError(key, value, "is empty", (form.allowed if form else "a non-empty string")
                                      + ("; or null (unset)" if meta.get("optional") else "")))
        elif value and form is not None and not form.matches(value):
            errors.append(ConfigError(key, _shown(key, value), f"not {form.what}", form.allowed))


@functools.lru_cache(maxsize=None)
def _parse_override(line: str):
    """One override line parsed, once: a sweep's points repeat most of theirs (the cluster's settings)."""
    override, = OverridesParser.create().parse_overrides([line])
    return override


def _parsed(overrides: Sequence[str]):
    """The overrides that set or delete keys of ours (not group choices, not Hydra's own), each with its key."""
    for override in map(_parse_override, overrides):
        key = override.key_or_group
        if "/" in key or override.package is not None or key.split(".")[0] == "hydra" or key in GROUP_NAMES:
            continue
        yield override, key, override.input_line.partition("=")[2]


def override_errors(overrides: Sequence[str]) -> List[ConfigError]:
    """Command-line keys that are not the schema's, checked before Hydra composes anything: Hydra would add an
    unknown `+key` silently, and fails with a traceback on a key that indexes a list by name
    (`cluster.env_vars.HF_TOKEN=...`)."""
    errors: List[ConfigError] = []
    for _, key, value in _parsed(overrides):
        dc: Any = Config
        parts = key.split(".")
        for i, part in enumerate(parts):
            here = ".".join(parts[:i + 1])
            fields = _fields(dc)
            if part not in fields:
                errors.append(_unknown(key, value, schema_keys()))
                break
            tp, meta = fields[part]
            rest = parts[i + 1:]
            if _is_node(tp):
                dc = tp
                continue
            if not rest:
                break
            if typing.get_origin(tp) is dict:
                kinds = meta.get("keys")
                if kinds is not None and rest[0] not in kinds:
                    errors.append(_unknown(key, value, [f"{here}.{kind}" for kind in kinds],
                                           f"names no stage kind: {here} would apply to no stage"))
                elif len(rest) > 1:
                    errors.append(ConfigError(key, _shown(key, value), f"{here}.{rest[0]} is a single value: it has "
                                              "no keys", f"{here}.{rest[0]}=VALUE"))
            elif typing.get_origin(tp) is list:
                if not rest[0].isdigit() or len(rest) > 1:
                    errors.append(ConfigError(key, _shown(key, value), f"{here} is a list, not a mapping: "
                                              f"`{rest[0]}` names no entry of it", f"the whole list, {here}=[A,B]"))
            else:
                errors.append(ConfigError(key, _shown(key, value), f"{here} is a single value: it has no keys",
                                          f"{here}=VALUE"))
            break
    return errors


def _gate(cfg: DictConfig, key: str) -> Optional[Tuple[str, Any, UsedWhen]]:
    """The setting of `cfg` under which `key` is not used, as (its key, its value, the UsedWhen); None if used."""
    dc: Any = Config
    prefix = ""
    for part in key.split("."):
        if not _is_node(dc) or part not in _fields(dc):
            return None
        for used in getattr(dc, "USED_WHEN", ()):
            if used.governs(part):
                actual = OmegaConf.select(cfg, prefix + used.gate)
                if actual not in used.values:
                    return prefix + used.gate, actual, used
        dc = _fields(dc)[part][0]
        prefix += part + "."
    return None


def _word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def applied_settings(overrides: Sequence[str]) -> Iterator[Tuple[str, str]]:
    """(key, value as written) of each override that sets a key of ours to something: removing or clearing an
    unused key (`cluster.mounts=[]` where there are no containers) expects nothing of it, no mistake."""
    for override, key, value in _parsed(overrides):
        if not (override.is_delete() or (not override.is_sweep_override()
                                         and override.value() in (None, "", [], {}))):
            yield key, value


def unused_override_errors(variants: Dict[str, DictConfig], applied: Dict[str, Sequence[str]]) -> List[ConfigError]:
    """Overrides of keys that no variant they were applied to uses (`applied`: variant -> its overrides): a
    campaign's or a sweep's override counts when one of its configurations uses it."""
    unused: Dict[str, Tuple[str, Any, Tuple[str, Any, UsedWhen]]] = {}
    used = set()
    for name, cfg in variants.items():
        for key, value in applied_settings(applied.get(name, ())):
            gate = _gate(cfg, key)
            if gate is None:
                used.add(key)
            else:
                unused.setdefault(key, (key, value, gate))
    errors = []
    for key, value, (gate_key, actual, rule) in (unused[k] for k in unused if k not in used):
        wanted = " or ".join(_word(v) for v in rule.values)
        why = f": {rule.why}" if rule.why else ""
        remedy = rule.remedy or f"{gate_key}={_word(rule.values[0])}"
        errors.append(ConfigError(key, _shown(key, value), f"this override changes nothing, {gate_key}="
                                  f"{_word(actual)}{why}; {key} is used only when {gate_key} is {wanted}",
                                  f"{remedy} for it to matter, or no override of {key}"))
    return errors
