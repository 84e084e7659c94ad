"""`launcher --help`: the subcommands, the config groups and their options, the keys most launches set.

Printed before Hydra is imported (Hydra's page took longer than a dry run, and listed the `*_schema`
structured configs as choices). `--hydra-help` is still Hydra's; `--cfg job` prints the composed config.
"""
from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path
from typing import List, Sequence

from launcher.user_config import CONF_DIR, ENV_VAR, default_choices, env_config_dirs, group_options, pop_config_dirs

SUBCOMMANDS = {
    "status": "what an experiment's jobs are doing, and why a stage failed (--watch refreshes)",
    "logs": "a stage's log: launcher logs [EXPERIMENT] STAGE [--lines N]",
    "cancel": "cancel an experiment's jobs that have not ended",
    "report": "regenerate report.md and the charts from the results on disk",
    "sync": "upload an experiment's offline W&B runs (--dry-run lists them)",
}

COMMON_KEYS = [
    ("cluster=NAME", "where to run: conf/cluster/NAME.yaml, or your own (--config-dir below)"),
    ("+experiment=NAME", "a whole experiment: several groups and keys at once"),
    ("launcher.dry_run=true", "plan and write the batch scripts; submit nothing"),
    ("-m KEY=A,B ...", "a sweep: every point in one plan, shared stages submitted once"),
    ("--config-dir DIR", "also read config groups from DIR, laid out as conf/ (DIR/cluster/NAME.yaml);"
                         " subcommands take it too"),
    ("hydra.searchpath=[file://DIR]", "the same, as an override"),
    (f"{ENV_VAR}=DIR[:DIR]", "(environment) the same for every command"),
    ("GROUP.KEY=VALUE", "any key, e.g. drafter.num_layers=4 cluster.partition=batch"),
    ("--cfg job", "print the composed config instead of launching (Hydra's)"),
    ("--hydra-help", "Hydra's own options"),
]


def _home(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def exit_code_lines() -> List[str]:
    """The exit codes table of launcher.exit_codes' docstring, when that module is there."""
    if importlib.util.find_spec("launcher.exit_codes") is None:
        return []
    from launcher import exit_codes

    doc = textwrap.dedent((exit_codes.__doc__ or "").split("\n", 1)[-1]).strip("\n")
    return doc.splitlines()


def help_text(argv: Sequence[str] = ()) -> str:
    try:
        config_dirs, _ = pop_config_dirs(argv)
    except SystemExit:
        config_dirs = []
    user_dirs = [*config_dirs, *env_config_dirs()]
    groups = group_options(user_dirs)
    defaults = default_choices()
    lines = [
        "usage: launcher [GROUP=OPTION | KEY=VALUE ...] [-m] [--config-dir DIR]",
        "       launcher SUBCOMMAND [EXPERIMENT] [ARGS] [cluster=NAME] [--config-dir DIR]",
        "(`python -m launcher ...` is the same.)",
        "",
        "Plans the stages of an experiment (download, quantize, build engines, train a drafter, benchmark, report)",
        "and submits each as a containerized Slurm job, or runs them here with cluster=local.",
        "",
        "subcommands (launcher SUBCOMMAND --help for each one's options):",
    ]
    width = max(map(len, SUBCOMMANDS))
    lines += [f"  {name:<{width}}  {what}" for name, what in SUBCOMMANDS.items()]
    lines += ["", "config groups (GROUP=OPTION; * marks the default):"]
    width = max(len(g) for g in groups) + 1
    for group, options in groups.items():
        words = []
        for option, source in options.items():
            word = option + ("*" if defaults.get(group) == option else "")
            words.append(word if source == CONF_DIR else f"{word} ({_home(source)})")
        prefix = f"  {('+' if group not in defaults else '') + group + ':':<{width + 1}} "
        lines += textwrap.wrap(", ".join(words), width=110, initial_indent=prefix,
                               subsequent_indent=" " * len(prefix), break_on_hyphens=False, break_long_words=False)
    lines += ["", "common keys:"]
    width = max(len(key) for key, _ in COMMON_KEYS)
    for key, what in COMMON_KEYS:
        lines += textwrap.wrap(what, width=110, initial_indent=f"  {key:<{width}}  ",
                               subsequent_indent=" " * (width + 4), break_on_hyphens=False, break_long_words=False)
    codes = exit_code_lines()
    if codes:
        lines += ["", "exit codes:", *("  " + line for line in codes)]
    lines += ["", "shell completion (bash):  eval \"$(launcher --completion bash)\"",
              "a config of your own: copy conf/cluster/example_slurm.yaml to ~/.config/launcher/cluster/NAME.yaml,",
              "  then: launcher --config-dir ~/.config/launcher cluster=NAME ...   (README: \"Your own configs\")"]
    return "\n".join(lines) + "\n"


def print_help(argv: Sequence[str] = ()) -> int:
    print(help_text(argv), end="")
    return 0
