"""Composing the real Hydra config tree in tests, as `python -m launcher` does."""
from __future__ import annotations

import shlex
from typing import Dict, List, Tuple

from hydra import compose, initialize_config_dir

from launcher.launch import validated_plan
from launcher.plan import Plan
from launcher.schema import CONF_DIR, register_configs


def compose_config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def plan_for(*overrides: str) -> Plan:
    """The plan a dry run makes (no submission, so the submitting shell's variables are not checked)."""
    overrides = ("launcher.dry_run=true", *overrides)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
        return validated_plan(cfg, list(overrides))


NGC_IMAGE = "nvcr.io#nvidia/pytorch:25.05-py3"  # a registry image: pyxis needs its `#` kept


def example_slurm_plan(storage_root) -> Plan:
    """fp8_redrafter on the example pyxis cluster, its stage image given as an NGC registry image."""
    return plan_for("cluster=example_slurm", "+experiment=fp8_redrafter", f"cluster.storage_root={storage_root}",
                    f"cluster.containers.trtllm='{NGC_IMAGE}'")


def parse_command(command) -> Tuple[List[str], Dict[str, str]]:
    """Split a command into its positional words and {flag: value}; `--a=b` and `--a b` are the same flag,
    numbers compare by value (the seed writes `0.`, Python `0.0`)."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    positional, flags, i = [], {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            if "=" in word:
                flag, value = word.split("=", 1)
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                flag, value = word, words[i + 1]
                i += 1
            else:
                flag, value = word, ""
            assert flag not in flags, f"{flag} given twice"
            flags[flag] = _normalize(value)
        else:
            positional.append(word)
        i += 1
    return positional, flags


def _normalize(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def hold_ports(stack, count: int, start: int = 20000) -> int:
    """Listen on `count` consecutive loopback ports from the first p >= start where all are free; return p
    (skips the test when there are none)."""
    import socket

    import pytest

    for first in range(start, 60000, count):
        try:
            for port in range(first, first + count):
                listener = stack.enter_context(socket.socket())
                listener.bind(("127.0.0.1", port))
                listener.listen()
            return first
        except OSError:
            stack.close()
    pytest.skip(f"no {count} consecutive free ports")
