"""What `python -m launcher ...` exits with; the README's table. A script (or CI) reads the outcome from these.

    0  OK               submitted (Slurm), finished (cluster=local), a dry run written; status, logs, cancel,
                        report, sync answered
    1  (internal)       not one of ours: Python's code for an uncaught exception, so a launcher bug or a failure
                        while submitting (what the launch had submitted is cancelled); its traceback says which
    2  CONFIG_ERROR     the config, the command line or this machine is wrong; nothing was submitted. Hydra's
                        own compose errors (an unknown group option, a typo in a key, bad override syntax),
                        which Hydra reports with 1, are mapped here: see `mark_dispatch_started`
    3  PIPELINE_FAILED  a stage failed or was cancelled (cluster=local, where the launch waits for the stages),
                        or `report` was written while some configuration did not finish
"""
from __future__ import annotations

# jobs.report's REPORT_INCOMPLETE, "written, but some configuration did not finish", one number on both sides:
# `report` passes it through, and a local pipeline that did not finish says so with it too. Not 1: that is what
# any uncaught exception gives, and a failed stage must not read as a launcher crash.
from launcher.contract import REPORT_INCOMPLETE as PIPELINE_FAILED  # noqa: F401

OK = 0
CONFIG_ERROR = 2  # argparse's code for a usage error, and what validation has always exited with

# Hydra prints a compose error and exits 1, the code of any uncaught exception. Until the launch starts writing
# or submitting (launch.dry_run, dispatch.submit mark it), an error has left nothing behind and is the input's:
# launcher.app maps it to CONFIG_ERROR. After that, 1 stays 1.
_dispatch_started = False


def mark_dispatch_started() -> None:
    global _dispatch_started
    _dispatch_started = True


def dispatch_started() -> bool:
    return _dispatch_started
