"""The benchmark's ports: chosen once, by the process that will listen where it can, and handed on by environment.

Benchmarks sharing a node must not share ports, and nothing may land on a port a daemon holds (slurmd's 6818
is 6000 + 818): each listener starts at its configured base port + SLURM_JOB_ID % PORT_SPREAD and takes the
first free one of the PORT_SEARCH ports after it, or fails naming that range (`first_free`).

* The code sandbox (jobs.sandbox_guard) binds its own port that way and writes it, one line, to its port
  file: there is no moment between choosing a port and listening on it for another job to take it.
* trtllm-serve binds its port itself after loading the engine, minutes later: the job chooses the port
  (`free_port`) just before starting it, after the sandbox's is known.

The job hands both to the benchmark's tools as the environment variables of PLACEHOLDERS. The commands the
launcher writes name them as `${LAUNCHER_SERVER_PORT}` (a preview shows where each port comes from) and the job
expands exactly those names (`expand`); anything else written `${...}` is an error, never passed on.

Standard library only (with launcher.contract): the sandbox image (python:3.10) imports it too.
"""
from __future__ import annotations

import errno
import os
import re
import socket
from typing import Callable, Collection, List, Mapping, Sequence, TypeVar

# The placeholders' names and syntax are the contract's: the launcher writes them, this module expands them.
# The names are importable from here too (the tests' `ports.SERVER_PORT_ENV`).
from launcher.contract import (PLACEHOLDERS, PORT_SEARCH, PORT_SPREAD, SANDBOX_PORT_ENV,  # noqa: F401
                               SANDBOX_PORT_FILE_ENV, SERVER_PORT_ENV, placeholder)

_PLACEHOLDER = re.compile(r"\$\{([^}]*)(\}?)")

Bound = TypeVar("Bound")


class PortError(RuntimeError):
    """No free port in a job's range, or a command naming a placeholder the job does not fill."""


def start_port(base: int) -> int:
    """The first port this job tries from `base`."""
    return base + int(os.environ.get("SLURM_JOB_ID") or 0) % PORT_SPREAD


def first_free(host: str, base: int, bind: Callable[[str, int], Bound], taken: Collection[int] = ()) -> Bound:
    """What `bind(host, port)` returns for the first port of this job's range from `base` that is not in `taken`
    and that `bind` does not find in use (OSError EADDRINUSE); any other error of `bind` is raised."""
    start = start_port(base)
    for port in range(start, start + PORT_SEARCH + 1):
        if port in taken:
            continue
        try:
            return bind(host, port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    raise PortError(f"no free port on {host} in {start}-{start + PORT_SEARCH} (base port {base} + SLURM_JOB_ID % "
                    f"{PORT_SPREAD}, then {PORT_SEARCH} more): every one is in use on this node")


def _probe(host: str, port: int) -> int:
    """`port`, if a server could listen on host:port now (binding as servers do, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    return port


def free_port(host: str, base: int, taken: Collection[int] = ()) -> int:
    """The port a server that binds it later (trtllm-serve) should be given."""
    return first_free(host, base, _probe, taken)


def expand(argv: Sequence[str], values: Mapping[str, str]) -> List[str]:
    """`argv` with each `${NAME}` replaced by values[NAME]. NAME must be one of PLACEHOLDERS and have a value."""
    def fill(word: str) -> str:
        def one(match: "re.Match[str]") -> str:
            name, closed = match.groups()
            if not closed:
                raise PortError(f"an unclosed ${{ in the command word {word!r}")
            if name not in PLACEHOLDERS:
                raise PortError(f"${{{name}}} in the command word {word!r} is no placeholder the job fills in "
                                f"(allowed: {', '.join(placeholder(p) for p in PLACEHOLDERS)})")
            if name not in values:
                raise PortError(f"${{{name}}} in the command word {word!r} has no value in this stage (known "
                                f"here: {', '.join(values) or 'none'})")
            return values[name]

        return _PLACEHOLDER.sub(one, word)

    return [fill(word) for word in argv]
