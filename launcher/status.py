"""`status`, `logs` and `cancel`: what an experiment's jobs are doing, read back from storage and Slurm.

    python -m launcher status [EXPERIMENT] [--watch] [overrides such as cluster=mycluster]
    python -m launcher logs [EXPERIMENT] STAGE [--lines N]
    python -m launcher cancel [EXPERIMENT]
    python -m launcher report [EXPERIMENT]     (regenerate report.md and the charts from results on disk)
With no experiment they act on the latest one launched on that storage.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, NoReturn, Tuple

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

from launcher.contract import ACCOUNTING, REPORT_INPUTS, ContractError, ExperimentState
from launcher.dispatch import local, slurm
from launcher.dispatch.storage import ATTEMPT_START, SANDBOX_ENDED, ExperimentDir, latest_pointer
from launcher.exit_codes import CONFIG_ERROR, PIPELINE_FAILED
from launcher.preview import (SUMMARY_ROWS, FittedTable, artifact_label, colored, is_complete, make_console,
                              summary_table, write_text_table)
from launcher.user_config import add_config_dir_argument

ERRORS = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
TERMINAL_FAILURES = ERRORS | {"CANCELLED", "PREEMPTED"}
LOG_TAIL = 25
MAX_CAUSE_LINES = 40
# Lines of a failed stage's log that say why, wherever they are: a broken image fails the step before the job
# writes anything (pyxis' errors at the top, then srun's), so the last lines alone miss the cause.
CAUSE = re.compile(r"""
    ^slurmstepd:\ error:                  # the node's: pyxis (couldn't chdir, image import), oom-kill, time limit
  | ^srun:\ error:                        # a step that failed or never started
  | ^(?:pyxis:\s*)?\[ERROR\]               # enroot's own (pyxis: [ERROR] Invalid image format: ...)
  | ^pyxis:.*(?:error|fail|couldn't|invalid)
  | ^launcher:\ error:                    # the batch script's checks (cluster.python not in the image)
  | ^\[launcher\ [\d:]+\]\ (?:FAILED:|.*stopped\ by\ signal)   # jobs.run_stage: the stage's own reason
""", re.VERBOSE | re.IGNORECASE)
FAILED_LINE = re.compile(r"^\[launcher [\d:]+\] FAILED:")
CONTINUATION = "  "  # a FAILED message's further lines (a tool's last output), indented by jobs.services


def storage_root_from(overrides: List[str], config_dirs: List[str] = ()) -> str:
    """The storage root of the cluster the overrides name, composed as the launch composes it: from the
    package's conf/ and the user's config directories (--config-dir, LAUNCHER_CONFIG_DIR)."""
    written = storage_root_written(overrides, config_dirs)
    if written:
        return written
    from hydra import compose, initialize_config_dir

    from launcher.schema import CONF_DIR, register_configs
    from launcher.user_config import config_dir_paths, searchpath_overrides

    register_configs()
    overrides = searchpath_overrides(config_dir_paths(config_dirs), overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return os.path.abspath(cfg.cluster.storage_root)


def storage_root_written(overrides: List[str], config_dirs: List[str] = ()) -> str | None:
    """What composing gives, read from the cluster's file in milliseconds instead of composing for a second: only
    when the command names nothing but the cluster (`cluster=NAME`) and its file says `storage_root:` plainly,
    as its last word (no interpolation, nothing merged after its own values). None otherwise: composing
    decides, and says what is wrong."""
    import yaml

    from launcher.user_config import config_dir_paths, env_config_dirs, group_options

    match = re.fullmatch(r"cluster=([\w.-]+)", overrides[0]) if len(overrides) == 1 else None
    dirs = [*config_dir_paths(config_dirs), *env_config_dirs()]
    if not match or not all(d.is_dir() for d in dirs):
        return None
    source = group_options(dirs).get("cluster", {}).get(match.group(1))  # the file Hydra's search path finds
    if source is None:
        return None
    try:
        text = (source / "cluster" / f"{match.group(1)}.yaml").read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        return None
    if "@package" in text or not isinstance(data, dict):  # its keys land elsewhere than cluster.*
        return None
    root, defaults = data.get("storage_root"), data.get("defaults", ["_self_"])
    if not isinstance(root, str) or root == "???" or "${" in root or "\\" in root \
            or not isinstance(defaults, list) or defaults[-1:] != ["_self_"]:
        return None
    return os.path.abspath(root)


def fail(message: str) -> NoReturn:
    """A usage error (no experiment launched, no such stage): the message, and CONFIG_ERROR, as argparse's."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(CONFIG_ERROR)


def load_state(storage_root: str, experiment: str | None) -> ExperimentState:
    if not experiment:
        pointer = latest_pointer(storage_root)
        if not pointer.is_file():
            fail(f"no experiment has been launched on {storage_root}")
        experiment = pointer.read_text().strip()
    path = ExperimentDir(storage_root, experiment).state
    if not path.is_file():
        fail(f"experiment {experiment!r} has no state at {path}: was it launched (not a dry run)?")
    try:
        return ExperimentState.read(path)
    except ContractError as error:
        fail(str(error))


def stage_states(state: ExperimentState) -> Dict[str, Tuple[str, str]]:
    """{stage: (state, elapsed)}: Slurm's (or the local runner's) word, corrected by the artifacts."""
    records = state.stages
    ids = [r.job_id for r in records.values() if r.job_id]
    if state.executor == "slurm":
        jobs = slurm.job_states(ids)
    else:
        exp = ExperimentDir(state.storage_root, state.experiment)
        jobs = {i: local.local_state(exp, i) for i in ids}
    result = {}
    for name, record in records.items():
        job_state, elapsed = jobs.get(str(record.job_id), ("", ""))
        if is_complete(record.artifact):
            job_state = "COMPLETED"
        elif not job_state or job_state == "UNKNOWN":
            job_state = "UNKNOWN (no completion marker)"
        elif job_state == "COMPLETED":  # the job ended well but published nothing
            job_state = "COMPLETED (no artifact)"
        result[name] = (job_state, elapsed)
    return result


def failure_cause(log_text: str) -> List[str]:
    """The lines of a failed stage's log that say why, in log order, from its last attempt only (a requeued
    job appends to the same log): pyxis/enroot and other node errors, srun's errors, the job's FAILED line
    with the tool output it quotes, and the last line of a Python traceback. Empty when none is there."""
    lines = log_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT_START)]
    lines = lines[starts[-1] + 1:] if starts else lines
    picked: List[str] = []
    in_traceback = quoting = False
    for line in lines:
        if quoting and line.startswith(CONTINUATION):
            picked.append(line)
            continue
        quoting = False
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            if not line.startswith(("During handling", "The above exception")):
                picked.append(line)  # the exception itself: the traceback's last unindented line
                in_traceback = False
        elif CAUSE.search(line) or line.startswith(SANDBOX_ENDED):  # then its output: pyxis' errors, say
            picked.append(line)
            quoting = bool(FAILED_LINE.match(line))
    return list(dict.fromkeys(picked))[:MAX_CAUSE_LINES]  # a line repeated (two tracebacks) says nothing new


def failure_report(name: str, job_state: str, log: str | None, experiment: str) -> str:
    """What `status` shows of a failed stage: the cause lines of its log, else its last lines."""
    from jobs.services import log_tail  # here: the job-side module (http.client, subprocess) only for a failure

    text = Path(log).read_text(errors="replace") if log and Path(log).is_file() else None
    if text is None:
        return f"[bold]{escape(name)}[/bold] {job_state}: (no log at {escape(str(log))})"
    cause = failure_cause(text)
    if not cause:
        return (f"[bold]{escape(name)}[/bold] {job_state}: last lines of {escape(log)}\n"
                + escape(log_tail(Path(log), LOG_TAIL)))
    return (f"[bold]{escape(name)}[/bold] {job_state}: cause, from {escape(log)} (all of it: "
            f"python -m launcher logs {escape(experiment)} {escape(name)})\n" + escape("\n".join(cause)))


def serving_lines(log: str | None) -> List[str]:
    """Where a serving job's servers listen and how to reach them (jobs.serve), from its last attempt's log."""
    from jobs import services  # here: the job-side module only for a running stage

    if not log or not Path(log).is_file():
        return []
    lines = Path(log).read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT_START)]
    return services.serving_lines(lines[starts[-1] + 1 if starts else 0:])


def multi_node_lines(state: ExperimentState, states: Dict[str, Tuple[str, str]]) -> Dict[str, str]:
    """{stage: "N nodes: NODELIST"} of the running Slurm jobs that span several nodes (a server over nodes), as
    squeue gives them (%D nodes, %N NodeList)."""
    running = {record.job_id: name for name, record in state.stages.items()
               if record.job_id and states[name][0] == "RUNNING"}
    if state.executor != "slurm" or not running:
        return {}
    return {running[job_id]: f"{count} nodes: {nodelist}"
            for job_id, (count, nodelist) in slurm.job_nodes(list(running)).items()
            if job_id in running and count > 1}


STATUS_COLUMNS = ("stage", "job", "state", "elapsed", "artifact")
STATUS_TABLE = "status.txt"  # a big experiment's whole table (preview.SUMMARY_ROWS), in its directory


def status_cells(state: ExperimentState, states: Dict[str, Tuple[str, str]], artifact_form: str) -> List[List[str]]:
    """The status table's cells as plain text (STATUS_COLUMNS)."""
    return [[name, record.job_id or "-", states[name][0], states[name][1],
             artifact_label(record.artifact, state.storage_root, artifact_form)]
            for name, record in state.stages.items()]


def state_color(job_state: str) -> str:
    return ("green" if job_state == "COMPLETED" else "red" if job_state.split()[0] in TERMINAL_FAILURES
            else "yellow")


def written(path: Path, title: str, headers, rows) -> bool:
    """Whether the table could be written: another user's experiment directory may not be writable by the
    user asking its status, who then gets the whole table printed."""
    try:
        write_text_table(path, title, headers, rows)
    except OSError:
        return False
    return True


def status_view(state: ExperimentState, states: Dict[str, Tuple[str, str]], table_file: Path | None = None) -> Group:
    """The stages' table, fitted to the width it is printed at (names whole: preview.FittedTable), then why
    each failed stage failed. `table_file`: past preview.SUMMARY_ROWS stages, the whole table is written
    there and a summary by stage kind shown instead."""
    title = escape(f"{state.experiment} ({state.executor})")
    if table_file is not None and len(state.stages) > SUMMARY_ROWS and written(
            table_file, f"{state.experiment} ({state.executor})", STATUS_COLUMNS, status_cells(state, states, "path")):
        table = Group(summary_table(title, [(record.kind, states[name][0].split()[0])
                                                                 for name, record in state.stages.items()]),
                      f"{len(state.stages)} stages, each in {escape(str(table_file))}")
    else:
        def rows(artifact_form: str) -> List[List[str]]:
            return [[escape(name), job, colored(job_state, state_color(job_state)), elapsed, escape(artifact)]
                    for name, job, job_state, elapsed, artifact in status_cells(state, states, artifact_form)]

        table = FittedTable(title, STATUS_COLUMNS, rows)
    failures = [failure_report(name, states[name][0], record.log, state.experiment)
                for name, record in state.stages.items() if states[name][0].split()[0] in ERRORS]
    serving = [f"[bold]{escape(name)}[/bold] serving (launcher.serve_only):\n" + escape("\n".join(lines))
               for name, record in state.stages.items() if states[name][0] == "RUNNING"
               for lines in [serving_lines(record.log)] if lines]
    nodes = [f"[bold]{escape(name)}[/bold] runs on {escape(where)}"
             for name, where in multi_node_lines(state, states).items()]
    return Group(table, *nodes, *serving, *failures)


def regenerate_report(state: ExperimentState, console: Console) -> int:
    """Run the report job's code here, with accounting read on this (login) node."""
    import subprocess
    import sys

    from launcher.validation import umask_value

    if umask_value(state.umask) is not None:  # the launch's cluster.umask, for what is written here
        os.umask(umask_value(state.umask))
    exp = ExperimentDir(state.storage_root, state.experiment)
    ids = sorted({r.job_id for r in state.stages.values() if r.job_id})
    if state.executor == "slurm":
        accounting = slurm.accounting_rows(ids)
        if accounting is not None:
            (exp.root / ACCOUNTING).write_text(accounting)
    command = [sys.executable, "-m", "jobs.report", "--inputs", str(exp.root / REPORT_INPUTS),
               "--output_dir", str(exp.root / "report"), "--experiment_dir", str(exp.root),
               "--accounting", str(exp.root / ACCOUNTING)]
    code = subprocess.run(command).returncode
    console.print(f"report: {exp.root / 'report.md'}"
                  + (" (some configurations did not finish)" if code == PIPELINE_FAILED else ""))
    # jobs.report's REPORT_INCOMPLETE is PIPELINE_FAILED, passed on; its bad input (1) too: not a config error
    return code


def cancel(state: ExperimentState, console: Console) -> int:
    """Cancel the experiment's jobs that have not ended, and say which: its states are asked first, so that
    jobs that already ended are neither cancelled nor counted (a repeat cancels nothing). On Slurm, scancel;
    on cluster=local, the launch running them in the foreground is stopped (dispatch.local.stop)."""
    experiment = state.experiment
    ours = {n: r.job_id for n, r in state.stages.items() if r.action == "submitted" and r.job_id}
    exp = ExperimentDir(state.storage_root, state.experiment)
    if state.executor == "slurm":
        known = slurm.job_states(sorted(set(ours.values())))
        before = {n: known[j][0] if j in known else "UNKNOWN" for n, j in ours.items()}
        live = {n: s for n, s in before.items() if s in slurm.LIVE_STATES}
    else:
        before = {n: local.local_state(exp, j)[0] for n, j in ours.items()}
        live = {n: s for n, s in before.items() if s in local.LIVE_STATES}
    unknown = [n for n, s in before.items() if s == "UNKNOWN"]
    ended = len(before) - len(live) - len(unknown)
    notes = [f"{ended} had already ended"] if ended and (live or unknown) else []
    if unknown:
        notes.append(f"the {'Slurm' if state.executor == 'slurm' else 'local'} state of {len(unknown)} is not known "
                     f"(ended long ago, or the query did not answer), not cancelled: {', '.join(unknown)}")
    theirs = [f"{n} ({r.job_id}, {r.action})" for n, r in state.stages.items() if r.action.startswith("reused from")]
    if theirs:
        notes.append(f"jobs of other experiments it waits on are theirs to cancel: {', '.join(theirs)}")
    if not live:
        what = (f"all {len(before)} job(s) of {experiment} already ended" if before and not unknown
                else f"none of the {len(before)} job(s) of {experiment} is pending or running" if before
                else f"{experiment} submitted no job (its stages were complete, or another experiment's jobs "
                     "produce them)")
        console.print(escape(f"nothing to cancel: {what}" + "".join(f"; {n}" for n in notes)), highlight=False,
                      soft_wrap=True)
        return 0
    jobs = sorted({ours[n] for n in live})
    if state.executor == "slurm":
        problem = slurm.cancel(jobs)
        how = f"; scancel said: {problem}" if problem else ""
    else:
        marked, waiting = local.stop(exp, jobs)
        how = (f"; the launch running them (pid {waiting}) has not stopped yet" if waiting
               else "; the launch that ran them had ended without finishing them: marked CANCELLED" if marked
               else "; the launch running them stopped")
        if not waiting:  # what it stopped, read back: a stage that completed meanwhile was not cancelled
            live = {n: s for n, s in live.items() if local.local_state(exp, ours[n])[0] == "CANCELLED"}
    listed = ", ".join(f"{n} ({ours[n]}, {s})" for n, s in live.items())
    console.print(escape(f"cancelled {len(live)} job(s) of {experiment}: {listed}" + how
                         + "".join(f"; {n}" for n in notes)), highlight=False, soft_wrap=True)
    return 0


def _all_ended(states: Dict[str, Tuple[str, str]]) -> bool:
    return all(s.split()[0] in TERMINAL_FAILURES or s.startswith("COMPLETED") for s, _ in states.values())


def _any_failed(states: Dict[str, Tuple[str, str]]) -> bool:
    """A stage failed, timed out, was cancelled or preempted: `status` says so in its exit code, for scripts."""
    return any(s.split()[0] in TERMINAL_FAILURES for s, _ in states.values())


STATUS_EXIT = (f"exit status (status): {PIPELINE_FAILED} (PIPELINE_FAILED) when any stage failed, timed out, was "
               f"cancelled or preempted; 0 when every stage completed or is still pending or running (with --watch: "
               f"once all ended); {CONFIG_ERROR} on a usage error")


def main(command: str, argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m launcher {command}", description=__doc__,
                                     epilog=STATUS_EXIT if command == "status" else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="[EXPERIMENT]" + (" STAGE" if command == "logs" else ""))
    parser.add_argument("--watch", action="store_true", help="refresh until every stage has ended")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--lines", type=int, default=0, help="logs: only the last N lines")
    add_config_dir_argument(parser)
    args, overrides = parser.parse_known_args(argv)
    names = [n for n in args.names if "=" not in n]
    overrides += [n for n in args.names if "=" in n]
    console = make_console()
    try:
        root = storage_root_from(overrides, args.config_dir)
    except Exception as error:  # a cluster that is not there, a YAML file that does not parse: said, no traceback
        from launcher.errors import input_error_message

        message = input_error_message(error, overrides)
        if message is None:
            raise
        fail(message)
    if command == "logs":
        if not names:
            fail("usage: python -m launcher logs [EXPERIMENT] STAGE")
        state = load_state(root, names[0] if len(names) > 1 else None)
        stage = names[-1]
        if stage not in state.stages:
            fail(f"no stage {stage!r} in {state.experiment}; stages: {', '.join(state.stages)}")
        path = state.stages[stage].log
        text = Path(path).read_text(errors="replace") if path and Path(path).is_file() else f"(no log at {path})\n"
        print("\n".join(text.splitlines()[-args.lines:]) if args.lines else text, end="")
        return 0
    state = load_state(root, names[0] if names else None)
    if command == "report":
        return regenerate_report(state, console)
    if command == "cancel":
        return cancel(state, console)
    states = stage_states(state)
    table_file = ExperimentDir(state.storage_root, state.experiment).root / STATUS_TABLE
    if args.watch:  # one query of Slurm per refresh, shown and tested for the end
        with Live(status_view(state, states, table_file), console=console, refresh_per_second=1) as live:
            while not _all_ended(states):
                time.sleep(args.interval)
                states = stage_states(state)
                live.update(status_view(state, states, table_file))
    else:
        console.print(status_view(state, states, table_file), soft_wrap=True)  # log lines stay whole, for copying
    return PIPELINE_FAILED if _any_failed(states) else 0
