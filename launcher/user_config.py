"""Where the config groups come from: the package's conf/ and the user's own config directories.

A user's cluster (or model, experiment, ...) lives outside the package, in a directory laid out as conf/ is
(`~/.config/launcher/cluster/mycluster.yaml`), named by `--config-dir DIR` (Hydra's flag; every subcommand
takes it too), `hydra.searchpath=[file://DIR]`, or `LAUNCHER_CONFIG_DIR=DIR[:DIR...]` for every command.

Standard library only: `--help` and shell completion read the groups from here without importing Hydra.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# The Hydra config tree beside the package (kept with the code in snapshots, so jobs see the same).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
ENV_VAR = "LAUNCHER_CONFIG_DIR"
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")  # Hydra's spelling, so one habit works for launch and subcommands


def env_config_dirs() -> List[Path]:
    """LAUNCHER_CONFIG_DIR's directories, in order (os.pathsep-separated, as PATH)."""
    value = os.environ.get(ENV_VAR, "")
    return [Path(os.path.expanduser(part)).absolute() for part in value.split(os.pathsep) if part.strip()]


def config_error(message: str) -> None:
    """A wrong directory is the command line's (or the environment's) mistake: its message, no traceback."""
    from launcher.exit_codes import CONFIG_ERROR

    print(f"error: {message}", file=sys.stderr)
    sys.exit(CONFIG_ERROR)


def check_env_dirs() -> None:
    """Every command checks LAUNCHER_CONFIG_DIR first: a mistyped directory would otherwise only show as
    `Could not find 'cluster/mycluster'`, which does not say where it was looked for."""
    missing = [str(d) for d in env_config_dirs() if not d.is_dir()]
    if missing:
        config_error(f"{ENV_VAR}: no such directory: {', '.join(missing)}")


def pop_config_dirs(argv: Sequence[str]) -> Tuple[List[Path], List[str]]:
    """(the --config-dir/-cd directories given, the other words), in order."""
    dirs: List[Path] = []
    rest: List[str] = []
    words = iter(argv)
    for word in words:
        flag, eq, value = word.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            if not eq:
                value = next(words, "")
            if not value:
                config_error(f"{flag} needs a directory")
            dirs += config_dir_paths([value])
        else:
            rest.append(word)
    return dirs, rest


def add_config_dir_argument(parser) -> None:
    """The subcommands take Hydra's --config-dir (and -cd), as the launch does; several may be given."""
    parser.add_argument(*CONFIG_DIR_FLAGS, dest="config_dir", action="append", default=[], metavar="DIR",
                        help=f"also read config groups from DIR (DIR/cluster/NAME.yaml); {ENV_VAR} as well")


def config_dir_paths(dirs: Sequence[str]) -> List[Path]:
    return [Path(os.path.expanduser(d)).absolute() for d in dirs]


def searchpath_overrides(config_dirs: Sequence[Path], overrides: Sequence[str]) -> List[str]:
    """`overrides` with the --config-dir directories added to Hydra's search path: the compose API takes one
    config dir, so the others go in as `hydra.searchpath` (merged with one the user gave)."""
    for directory in config_dirs:
        if not directory.is_dir():
            config_error(f"--config-dir {directory}: no such directory")
    if not config_dirs:
        return list(overrides)
    given: List[str] = []
    rest = []
    for override in overrides:
        if override.startswith("hydra.searchpath="):
            from hydra.core.override_parser.overrides_parser import OverridesParser

            value = OverridesParser.create().parse_override(override).value()
            given += list(value) if isinstance(value, list) else [str(value)]
        else:
            rest.append(override)
    # Hydra's order for the launch: --config-dir before hydra.searchpath's entries (the first to have a name wins).
    paths = [f"file://{d}" for d in config_dirs] + given
    quoted = ",".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in paths)
    return rest + [f"hydra.searchpath=[{quoted}]"]


def group_options(extra_dirs: Sequence[Path] = ()) -> Dict[str, Dict[str, Path]]:
    """{group: {option: the directory it comes from}}, for the package's conf/ then each user directory (the
    package's wins a name both have, as in Hydra's search path). `*_schema` options are the structured
    configs the YAML files extend, not choices."""
    groups: Dict[str, Dict[str, Path]] = {}
    for root in [CONF_DIR, *extra_dirs]:
        if not root.is_dir():
            continue
        for group in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            for option in sorted(f.stem for f in group.glob("*.yaml") if not f.stem.endswith("_schema")):
                groups.setdefault(group.name, {}).setdefault(option, root)
    return {g: opts for g, opts in sorted(groups.items()) if opts}


DEFAULT_LINE = re.compile(r"^\s*-\s*([\w/]+)\s*:\s*([\w.-]+)\s*(?:#.*)?$")


def default_choices() -> Dict[str, str]:
    """{group: option} of conf/config.yaml's defaults list (read by line: no YAML parser needed for it)."""
    choices = {}
    for line in (CONF_DIR / "config.yaml").read_text().splitlines():
        match = DEFAULT_LINE.match(line)
        if match and "/" not in match.group(1) and not line.lstrip("- ").startswith("override"):
            choices[match.group(1)] = match.group(2)
    return choices
