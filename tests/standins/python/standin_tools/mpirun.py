"""STAND-IN for Open MPI's ``mpirun`` (tests only): one process, rank 0, told the world size.

``mpirun [--allow-run-as-root] [--oversubscribe] [-x VAR[=VALUE]]... -n N PROG ARGS [: -n M PROG2 ARGS2]...``
(MPMD app contexts separated by ``:``, as ``launch_triton_server.py`` writes them). The world size is the sum
of the contexts' ``-n``; the stand-in execs the first context's program as rank 0 with Open MPI's
``OMPI_COMM_WORLD_SIZE``/``OMPI_COMM_WORLD_RANK``/``OMPI_COMM_WORLD_LOCAL_RANK`` set, which is what the
TensorRT-LLM runtime and the stand-ins read for the MPI size. Running as root without
``--allow-run-as-root`` (or both OMPI_ALLOW_RUN_AS_ROOT and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = 1) is refused
with Open MPI's message, exit 1; an unknown option or a context without a program exits 1 too.
"""

from __future__ import annotations

import os
import sys
from typing import List, Tuple

ROOT_REFUSAL = """--------------------------------------------------------------------------
mpirun has detected an attempt to run as root.

Running as root is *strongly* discouraged as any mistake (e.g., in
defining TMPDIR) or bug can result in catastrophic damage to the OS
file system, leaving your system in an unusable state.

We strongly suggest that you run mpirun as a non-root user.

You can override this protection by adding the --allow-run-as-root option
to the cmd line or by setting two environment variables in the following way:
the variable OMPI_ALLOW_RUN_AS_ROOT=1 to indicate the desire to override this
protection, and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 to confirm the choice and
add one more layer of certainty that you want to do so.
We reiterate our advice against doing so - please proceed at your own risk.
--------------------------------------------------------------------------"""

FLAGS = {"--allow-run-as-root", "--oversubscribe", "--tag-output", "--report-bindings"}
VALUED = {"-n", "-np", "--np", "-c", "-x", "--bind-to", "--map-by", "--mca", "-H", "--host"}


class MpirunError(Exception):
    pass


def parse(argv: List[str]) -> Tuple[set, dict, List[Tuple[int, List[str]]]]:
    flags, exports, contexts = set(), {}, []
    i = 0
    while i < len(argv):
        n, program = 1, None
        while i < len(argv) and argv[i].startswith("-"):
            opt = argv[i]
            if opt in FLAGS:
                flags.add(opt)
                i += 1
                continue
            if opt not in VALUED:
                raise MpirunError(f"mpirun: Error: unknown option \"{opt}\"")
            if i + 1 >= len(argv):
                raise MpirunError(f"mpirun: option {opt} needs a value")
            value = argv[i + 1]
            if opt in ("-n", "-np", "--np", "-c"):
                if not value.isdigit() or int(value) < 1:
                    raise MpirunError(f"mpirun: bad number of processes: {value!r}")
                n = int(value)
            elif opt == "-x":
                name, _, val = value.partition("=")
                exports[name] = val if "=" in value else os.environ.get(name, "")
            elif opt == "--mca":
                i += 1  # --mca takes two words
            i += 2
        args = []
        while i < len(argv) and argv[i] != ":":
            args.append(argv[i])
            i += 1
        if not args:
            raise MpirunError("mpirun: no executable was specified for an app context")
        contexts.append((n, args))
        i += 1  # skip ':'
    if not contexts:
        raise MpirunError("mpirun: no executable was specified")
    return flags, exports, contexts


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        flags, exports, contexts = parse(argv)
    except MpirunError as exc:
        print(exc, file=sys.stderr, flush=True)
        sys.exit(1)
    allowed = ("--allow-run-as-root" in flags
               or (os.environ.get("OMPI_ALLOW_RUN_AS_ROOT") == "1"
                   and os.environ.get("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM") == "1"))
    if os.geteuid() == 0 and not allowed:
        print(ROOT_REFUSAL, file=sys.stderr, flush=True)
        sys.exit(1)
    world = sum(n for n, _ in contexts)
    env = dict(os.environ, **exports, OMPI_COMM_WORLD_SIZE=str(world), OMPI_COMM_WORLD_RANK="0",
               OMPI_COMM_WORLD_LOCAL_RANK="0", OMPI_COMM_WORLD_LOCAL_SIZE=str(world))
    program = contexts[0][1]
    print(f"[STAND-IN] mpirun: world size {world}; running rank 0 only: {' '.join(program)}", file=sys.stderr,
          flush=True)
    try:
        os.execvpe(program[0], program, env)
    except OSError as exc:
        print(f"mpirun was unable to launch the specified application as it could not find an executable:\n\n"
              f"Executable: {program[0]}\n({exc})", file=sys.stderr, flush=True)
        sys.exit(1)
