"""Input errors raised before the launcher's own validation, said in one paragraph instead of a traceback.

Hydra composes the config before the launcher sees it; what goes wrong there is the user's input (a mistyped
option or key, a value of the wrong type, a YAML file that does not parse, a path that cannot be a directory),
but Hydra and YAML raise it as an exception, some with 40 lines of traceback before the key. Here each one
becomes a message naming the key (or file and line), the value and what is allowed. Any other exception is a
bug, and keeps its traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import yaml
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from launcher.validation import REDACTED, ConfigError, InvalidConfig, secret_value

FULL_ERROR = "HYDRA_FULL_ERROR"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def allowed_for(key: str) -> str:
    """What the schema allows for a dotted key, in words."""
    from launcher.schema import Choice
    from launcher.schema_check import closest, field_of, schema_keys

    found = field_of(key)
    if found is None:
        near = closest(key, schema_keys())
        return f"did you mean {' or '.join(near)}?" if near else "a key of launcher/schema.py"
    tp, meta = found
    rng, form = meta.get("range"), meta.get("form")
    if isinstance(tp, type) and issubclass(tp, Choice):
        return ", ".join(member.value for member in tp)
    words = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(tp, str(tp))
    if rng is not None:
        words += f", {rng.allowed(key.rsplit('.', 1)[-1])}"
    if form is not None:
        words = form.allowed
    return words + (", or null" if meta.get("optional") else "")


def _value_of(key: str, overrides: Sequence[str]) -> Any:
    for override in overrides:
        name, eq, value = override.partition("=")
        if eq and name.lstrip("+~") == key:
            return value
    return None


def _paragraph(text: str) -> str:
    """Hydra's multi-line message in one paragraph: its tab-indented lists joined, the search path dropped, and
    the config groups' `*_schema` entries (the structured configs behind them, no options) left out."""
    parts: List[str] = []
    for line in text.split("Config search path:")[0].splitlines():
        if line.startswith("\t"):
            item = line.strip()
            if parts and not item.endswith("_schema"):
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + item
        elif line.strip():
            parts.append(line.strip())
    return "; ".join(parts)


def _yaml_message(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a config file"
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def _os_message(error: OSError) -> str:
    path = Path(str(error.filename))
    message = f"cannot use {path}: {error.strerror}"
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        blocking = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            message += f": {blocking} is a file, not a directory"
    return message


def _keyed(error: BaseException, overrides: Sequence[str]) -> Optional[ConfigError]:
    """A compose error that names a key (OmegaConf's full_key) as the ConfigError validation would give."""
    from launcher.schema_check import UNKNOWN

    missing = next((e for e in _chain(error) if isinstance(e, MissingConfigException)), None)
    if missing is not None and missing.options is not None and "/" in str(missing.missing_cfg_file):
        group, option = str(missing.missing_cfg_file).rsplit("/", 1)
        options = [o for o in missing.options if not o.endswith("_schema")]  # the schema behind a group is no option
        return ConfigError(group, option, f"no such option of the config group {group}", ", ".join(options))
    keyed = next((e for e in _chain(error) if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None)),
                 None)
    if keyed is None:
        return None
    key = keyed.full_key
    unknown = isinstance(keyed, (ConfigAttributeError, ConfigKeyError))
    problem = UNKNOWN if unknown else (getattr(keyed, "msg", None) or str(keyed)).splitlines()[0]
    value = _value_of(key, overrides)
    return ConfigError(key, REDACTED if secret_value(key, value) else value, problem, allowed_for(key))


def input_error_message(error: BaseException, overrides: Sequence[str] = ()) -> Optional[str]:
    """One paragraph saying what is wrong with the input, for an error of the input; None for any other."""
    found_yaml = next((e for e in _chain(error) if isinstance(e, yaml.YAMLError)), None)
    if found_yaml is not None:
        return _yaml_message(found_yaml)
    if isinstance(error, (HydraException, OmegaConfBaseException)):
        keyed = _keyed(error, overrides)
        return str(InvalidConfig([keyed])) if keyed else _paragraph(str(error))
    if isinstance(error, OSError) and error.filename:
        return _os_message(error)
    return None


def config_error_from(error: BaseException, overrides: Sequence[str]) -> Optional[ConfigError]:
    """A compose error of one point of a sweep as a ConfigError (the key it names, else the point's overrides),
    to be reported with every other point's; None for an error that is not the input's."""
    keyed = _keyed(error, overrides) if isinstance(error, (HydraException, OmegaConfBaseException)) else None
    if keyed is not None:
        return keyed
    message = input_error_message(error, overrides)
    return None if message is None else ConfigError("overrides", " ".join(overrides), message, "a config Hydra "
                                                    "can compose")


# Set by hydra_raises: whether HYDRA_FULL_ERROR=1 was the launcher's doing (restore_environment takes it back).
_set_by_us = False


def hydra_raises() -> bool:
    """Make Hydra raise its errors (instead of printing them, some with a traceback, and exiting 1), so that
    launcher.app.run says them in one paragraph; True when the user had asked for that already (then the
    traceback is printed too)."""
    global _set_by_us
    asked = os.environ.get(FULL_ERROR) == "1"
    _set_by_us = not asked
    os.environ[FULL_ERROR] = "1"
    return asked


def restore_environment() -> None:
    """Once the config is composed: the environment as the user had it, for the processes the launch starts."""
    global _set_by_us
    if _set_by_us:
        os.environ.pop(FULL_ERROR, None)
        _set_by_us = False
