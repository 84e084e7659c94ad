"""Shell completion for the `launcher` console script: `eval "$(launcher --completion bash)"`.

Hydra's own (`--shell-completion install=bash`) completes config keys only: not the subcommands, and it
offers the `*_schema` structured configs as options; each TAB pays for importing Hydra and composing the
config. This completes the subcommands, their flags, the groups and their options (the user's config
directories' too), and the common keys, from the file names alone: a TAB answers without loading Hydra.

The bash function hands the line up to the cursor to `launcher --complete LINE`, which prints one candidate
per line, each the whole word; the function trims what bash has already split off at `=`.
"""
from __future__ import annotations

import shlex
import sys
from typing import Dict, List, Sequence

from launcher.user_config import CONFIG_DIR_FLAGS, default_choices, env_config_dirs, group_options, pop_config_dirs

SUBCOMMANDS = ("status", "logs", "cancel", "report", "sync")
SUBCOMMAND_FLAGS: Dict[str, Sequence[str]] = {
    "status": ("--watch", "--interval"),
    "logs": ("--lines",),
    "cancel": (),
    "report": (),
    "sync": ("--dry-run",),
}
LAUNCH_FLAGS = ("-m", "--multirun", "--config-dir", "--cfg", "--help", "--hydra-help")
VALUES = {"launcher.dry_run": ("true", "false"), "--cfg": ("job", "hydra", "all")}
COMMON_KEYS = ("launcher.dry_run=", "launcher.experiment_name=", "cluster.storage_root=")

BASH = r"""# bash completion for the launcher console script: eval "$(launcher --completion bash)"
_launcher_complete() {
    local line=${COMP_LINE:0:$COMP_POINT}
    local cur=${line##*[[:space:]]}
    local prev=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $prev == --config-dir || $prev == -cd ]]; then
        COMPREPLY=($(compgen -d -- "${COMP_WORDS[COMP_CWORD]}"))
        return
    fi
    local IFS=$'\n'
    COMPREPLY=($("${COMP_WORDS[0]}" --complete "$line" 2>/dev/null))
    # bash splits words at `=` (COMP_WORDBREAKS): it replaces only what follows the last one.
    if [[ $cur == *=* && $COMP_WORDBREAKS == *=* ]]; then
        local prefix=${cur%=*}=
        COMPREPLY=("${COMPREPLY[@]#"$prefix"}")
    fi
    # `cluster=` wants its option next: no space after it.
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -o default -F _launcher_complete launcher
"""


def _words(line: str) -> List[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unclosed quote while typing
        return line.split()


def candidates(line: str) -> List[str]:
    """What may follow `line` (the command line up to the cursor), each the whole word."""
    words = _words(line)
    current = "" if not line or line[-1].isspace() else (words.pop() if words else "")
    args = words[1:]  # words[0] is the program
    try:
        config_dirs, args = pop_config_dirs(args)
    except SystemExit:
        config_dirs = []
    groups = group_options([*config_dirs, *env_config_dirs()])
    defaults = default_choices()

    def group_key(group: str) -> str:
        return group if group in defaults else "+" + group  # a group with no default is added: +experiment=

    if "=" in current:
        key, _, _ = current.partition("=")
        group = key.lstrip("+~")
        if group in groups:
            found = [f"{key}={option}" for option in groups[group]]
        else:
            found = [f"{key}={value}" for value in VALUES.get(key, ())]
    elif args and args[0] in SUBCOMMAND_FLAGS:
        found = [*SUBCOMMAND_FLAGS[args[0]], *CONFIG_DIR_FLAGS[:1], "--help", "cluster="]
    elif args and args[-1] in VALUES:
        found = list(VALUES[args[-1]])
    else:
        found = [*(SUBCOMMANDS if not args else ()), *(group_key(g) + "=" for g in groups), *COMMON_KEYS,
                 *LAUNCH_FLAGS]
    return [c for c in found if c.startswith(current)]


def main(argv: Sequence[str]) -> int:
    """`--completion bash` prints the function to eval; `--complete LINE` answers one TAB."""
    if argv[0] == "--complete":
        print("\n".join(candidates(argv[1] if len(argv) > 1 else "")))
        return 0
    shell = argv[1] if len(argv) > 1 else "bash"
    if shell != "bash":
        print(f"error: completion is written for bash only, not {shell!r}", file=sys.stderr)
        return 2
    print(BASH, end="")
    return 0
