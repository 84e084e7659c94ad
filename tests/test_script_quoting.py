"""No config string can break out of its line of a batch script (issue 9, item 2).

A value with a newline used to end the `# download: ...` comment or an `#SBATCH` line and run the rest as a
command. Validation refuses control characters in every string of the config; every value of every line is
quoted for what reads that line: bash, or sbatch, which parses the #SBATCH lines itself (src/sbatch/opt.c,
get_argument: ported below, and checked against the real sbatch where it is installed).
"""
from __future__ import annotations

import copy
import itertools
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from jobs.ports import SANDBOX_PORT_FILE_ENV
from launcher.dispatch.slurm import SlurmBackend
from launcher.launch import validated_plan
from launcher.scripts import (SUBMITIT_EXPORTS, SUBMITIT_LAUNCH_ENV, ExperimentDir, accounting_argv, job_argv,
                              job_name, partition, pyxis_flags, render_script, sandbox_argv, sandbox_pyxis_flags,
                              sbatch_quote, stage_image, starts_sandbox_step, submitit_argv)
from launcher.validation import InvalidConfig, forbidden_character, validate
from tests.helpers import compose_config, plan_for

SBATCH_SPACE = " \t\n\v\f\r"  # C's isspace() in the C locale


def sbatch_words(text: str) -> List[str]:
    """The words sbatch takes from what follows `#SBATCH` on a line: a port of get_argument (src/sbatch/opt.c,
    SchedMD/slurm master; the same in 22.05). Whitespace separates words; '...' or "..." group characters
    (mixed within a word as in a shell); a backslash makes the next character literal, inside quotes too
    (`\\ ` a space); an unquoted `#` ends the line; a word that comes out empty ends it too."""
    words, i, n = [], 0, len(text)
    while True:
        while i < n and text[i] in SBATCH_SPACE:
            i += 1
        if i < n and text[i] == ":":
            raise ValueError(f"sbatch: fatal: Unexpected `:` in [{text}]")
        word, quoted, quote, escaped = None, False, "", False
        while i < n and (quoted or text[i] not in SBATCH_SPACE) and text[i] != "\n":
            char = text[i]
            if escaped:
                escaped = False
            elif char == "\\":
                i += 1
                if i < n and text[i] == " ":
                    word, i = (word or "") + " ", i + 1
                else:
                    escaped = True
                continue
            elif quoted:
                if char == quote:
                    quoted, i = False, i + 1
                    continue
            elif char in "\"'":
                quoted, quote, i = True, char, i + 1
                continue
            elif char == "#":
                break
            word, i = (word or "") + char, i + 1
        if quoted:
            raise ValueError(f"sbatch: fatal: Unmatched `{quote}` in [{text}]")
        if word is None:
            return words
        words.append(word)


def sbatch_options(script: str) -> Dict[str, object]:
    """{option: value} of a script's #SBATCH lines as sbatch reads them (_opt_batch_script: only lines that
    begin with `#SBATCH`, up to the first line that is neither blank nor a comment); `--flag` gives True."""
    options: Dict[str, object] = {}
    for line in script.split("\n"):
        if not line.startswith("#SBATCH"):
            if line.strip() and not line.lstrip().startswith("#"):
                break
            continue
        for word in sbatch_words(line[len("#SBATCH"):]):
            assert word.startswith("--"), (word, line)
            key, sep, value = word[2:].partition("=")
            assert key not in options, (key, script)
            options[key] = value if sep else True
    return options


def real_sbatch_options(path: Path) -> Dict[str, str]:
    """What the installed sbatch read from a script's #SBATCH lines: its verbose "defined options" table,
    printed before it contacts the controller (--test-only: nothing is ever submitted). It is stopped once
    the table is printed: without a controller it would retry for many seconds."""
    proc = subprocess.Popen(["sbatch", "--test-only", "-vv", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=path.parent)
    options, inside = {}, False
    try:
        for line in proc.stderr:
            if "fatal:" in line or ": error:" in line:
                raise AssertionError(line)
            if line.startswith("sbatch: end of defined options"):
                break
            if inside and not line.startswith("sbatch: ----"):
                name, value = re.match(r"^sbatch: (\S+)\s*: (.*)$", line.rstrip("\n")).groups()
                options[name] = value
            inside = inside or line.startswith("sbatch: defined options")
    finally:
        proc.kill()
        proc.wait()
    return options


def _render(plan, name, dependency=None, code_dir=None, accounting_ids=()):
    code_dir = code_dir or Path(plan.storage_root) / "code" / ("0" * 16)
    return render_script(plan, plan.stages[name], ExperimentDir(plan.storage_root, plan.experiment), dependency,
                         code_dir, accounting_ids)


def _submitit_script(plan, stage, dependency_ids, code_dir, accounting_ids=()) -> str:
    """The script submitit writes for this stage, as SlurmBackend.submit has it made (nothing is submitted):
    render_script's, which the dry run writes too."""
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    script = render_script(plan, stage, exp, stage.dependency(dependency_ids), code_dir, accounting_ids)
    executor = SlurmBackend(plan, exp, code_dir).executor([stage], script)
    return executor._make_submission_file_text(executor._submitit_command_str, "uid")


# --------------------------------------------------------------------------------------------------
# The exact cases
# --------------------------------------------------------------------------------------------------
INJECTED = "touch /tmp/launcher-injected"


@pytest.mark.parametrize("override,key", [
    (f"model.hf_id='nvidia/x\n{INJECTED} #'", "model.hf_id"),  # the `# download: hf download ...` comment
    (f"cluster.account='acct\n{INJECTED}'", "cluster.account"),  # an #SBATCH line
    (f"cluster.qos='normal\r\n{INJECTED}'", "cluster.qos"),
    (f"cluster.mounts=['/data:/data\n{INJECTED}']", "cluster.mounts[0]"),  # list entries too
    (f"cluster.env_vars=['HF_TOKEN\n']", "cluster.env_vars[0]"),  # a name ENV_NAME's `$` let through
    ("launcher.wandb_project='launcher\x1b[2J'", "launcher.wandb_project"),  # a terminal escape
])
def test_a_newline_or_other_control_character_in_any_config_string_is_refused(tmp_path, override, key):
    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}", override)
    errors = [e for e in raised.value.errors if e.key == key]
    assert errors and "control character" in errors[0].problem, str(raised.value)
    for error in raised.value.errors:  # the message shows the value escaped: it cannot break a terminal line
        assert forbidden_character(str(error)) is None, str(error)
    assert "\\n" in str(raised.value) or "\\r" in str(raised.value) or "\\x1b" in str(raised.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_bad_key_is_refused_and_named_escaped(tmp_path):
    """Keys too: `export FOO\\n=...` would end its line; ENV_NAME's `$` matches before a final newline."""
    cfg = compose_config("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}",
                         "launcher.dry_run=true")
    with open_dict(cfg):  # as a user's YAML file (--config-dir) may have it; an override's grammar cannot
        cfg.cluster.env["NCCL_DEBUG\n"] = "WARN"
    with pytest.raises(InvalidConfig) as raised:
        validate(cfg)
    assert "cluster.env.NCCL_DEBUG\\n" in [e.key for e in raised.value.errors], str(raised.value)


def test_a_secret_with_a_newline_is_refused_without_showing_it(tmp_path):
    token = "hf_" + "abcdefghijklmnopqrstuvwxyz123456"
    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}",
                 f"model.revision='{token}\n'")
    assert [e for e in raised.value.errors if e.key == "model.revision" and "control character" in e.problem]
    assert "abcdefghij" not in str(raised.value)


@pytest.mark.parametrize("override,key", [
    ("cluster.account='a\\\\b'", "cluster.account"),  # submitit writes 'a\b', which sbatch reads `ab`
    ("model.hf_id='nvidia\\\\x'", "model.hf_id"),  # it can name a stage: a job name, a log file
])
def test_a_backslash_is_refused_where_sbatch_would_drop_it(tmp_path, override, key):
    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}", override)
    assert [e for e in raised.value.errors if e.key == key and "backslash" in e.problem], str(raised.value)


def test_a_percent_in_the_storage_root_is_refused(tmp_path):
    """Slurm expands %j, %x, ... in --output: submitit's logs under <storage_root>/.../%j would be elsewhere."""
    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}/100%x")
    assert [e for e in raised.value.errors if e.key == "cluster.storage_root" and "%" in e.problem]


# A storage root and an account with what sbatch reads specially: whitespace, quotes, `#`, non-ASCII.
AWKWARD = "my data #1 'x' \"y\" é"


@pytest.fixture(scope="module")
def awkward_plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage") / AWKWARD
    return plan_for("cluster=example_slurm", "+experiment=fp8_redrafter",
                    "cluster.storage_root='" + str(root).replace("'", "\\'") + "'",
                    "cluster.account='" + AWKWARD.replace("'", "\\'") + "'")


def test_sbatch_reads_every_value_of_our_sbatch_lines_as_written(awkward_plan):
    """`--output` with a space broke: sbatch read `--output=/.../my` and an option `data`. Every value is
    written for sbatch's parser (sbatch_quote), in the script a dry run writes and submitit submits."""
    plan = awkward_plan
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    code_dir = Path(plan.storage_root) / "code" / ("0" * 16)
    for name, stage in plan.stages.items():
        submitted = _submitit_script(plan, stage, ["1", "2"], code_dir)
        assert submitted == _render(plan, name, stage.dependency(["1", "2"]), code_dir)
        options = sbatch_options(submitted)
        assert options["job-name"] == job_name(plan.experiment, stage)
        assert options["account"] == AWKWARD and options["output"] == str(exp.submitit / "%j_0_log.out")
        assert options["dependency"] == stage.dependency(["1", "2"]) and options["requeue"] is True


def test_the_comments_show_each_command_as_it_could_be_pasted(awkward_plan):
    plan = awkward_plan
    for name, stage in plan.stages.items():
        lines = _render(plan, name).split("\n")
        for key, argv in stage.commands.items():
            shown = next(line for line in lines if line.startswith(f"#   {shlex.quote(key)}: "))
            assert shlex.split(shown.split(": ", 1)[1]) == [str(a) for a in argv], (name, key)


def test_a_line_break_from_anywhere_but_the_config_writes_no_script(awkward_plan):
    """Validation refuses line breaks in config strings; a value from elsewhere (a plan's name) that held one
    stops the rendering instead of ending its line."""
    plan = copy.copy(awkward_plan)
    plan.experiment = f"x\n{INJECTED}"
    with pytest.raises(ValueError, match="would end its line"):
        _render(plan, "download_model")


def test_a_backslash_validation_did_not_see_reaches_sbatch_as_written(awkward_plan):
    """submitit used to write 'a\\b' on an #SBATCH line, which sbatch reads `ab` (a trailing backslash: a fatal
    unmatched quote). sbatch_quote escapes it, in a value from anywhere (here a plan's name)."""
    plan = copy.copy(awkward_plan)
    for experiment in ("x\\y", "x\\"):
        plan.experiment = experiment
        options = sbatch_options(_render(plan, "download_model"))
        assert options["job-name"] == job_name(experiment, plan.stages["download_model"])


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs Slurm's sbatch (no controller needed)")
def test_the_real_sbatch_reads_our_lines_as_this_port_does(awkward_plan, tmp_path):
    plan = awkward_plan
    code_dir = Path(plan.storage_root) / "code" / ("0" * 16)
    stage = plan.stages["benchmark"]
    script = _submitit_script(plan, stage, ["1", "2"], code_dir)
    path = tmp_path / "benchmark.sbatch"
    path.write_text(script)
    real, ported = real_sbatch_options(path), sbatch_options(script)
    for key in ("job-name", "account", "partition", "qos", "output", "dependency"):
        assert real[key] == ported[key], (key, real[key], ported[key])
    assert real["account"] == AWKWARD


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_sbatch_quote_gives_one_word_that_sbatch_reads_as_the_value(text):
    assert sbatch_words("--x=" + sbatch_quote(text) + " # a comment") == ["--x=" + text]


# --------------------------------------------------------------------------------------------------
# Any string, anywhere: refused by name, or every script parses and runs nothing but our commands
# --------------------------------------------------------------------------------------------------
RUNS = itertools.count()
MARK = "PWNED"  # what an injected command would create, in the directory the script runs in
PAYLOADS = [
    f"\ntouch {MARK}\n", f"\r\ntouch {MARK}", f"$(touch {MARK})", f"`touch {MARK}`", f"'; touch {MARK}; '",
    f'"; touch {MARK}; "', f"\n/usr/bin/touch {MARK}\n", f"\necho > {MARK}\n", f"$(echo > {MARK})",
    f"\n#SBATCH --output={MARK}\n", "\\", "\\\n", "#", " ", "\t", "%x", "%%", "'", '"', "$HOME", "${X:-y}",
    "\u2028", "\x85", "\x00", "\x1b[2J", "é", "-", ":", ",", "/", "..", "*", "?", "!", ";", "&", "|", "<>", "()",
]
TEXT = st.one_of(
    st.text(max_size=24),
    # what validation lets through, so that as many examples are rendered and run as refused
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\\"), max_size=24),
    st.lists(st.sampled_from([p for p in PAYLOADS if forbidden_character(p) is None and "\\" not in p]),
             min_size=1, max_size=4).map("".join),
    st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=4)), min_size=1, max_size=5).map("".join),
)
TARGETS = {
    # key: how a value is put there (the storage root stays under the test's directory)
    "model.hf_id": lambda cfg, text, base: setattr(cfg.model, "hf_id", "nvidia/" + text),
    "launcher.experiment_name": lambda cfg, text, base: setattr(cfg.launcher, "experiment_name", text),
    "launcher.wandb_project": lambda cfg, text, base: setattr(cfg.launcher, "wandb_project", text),
    "cluster.account": lambda cfg, text, base: setattr(cfg.cluster, "account", text),
    "cluster.partition": lambda cfg, text, base: setattr(cfg.cluster, "partition", text),
    "cluster.cpu_partition": lambda cfg, text, base: setattr(cfg.cluster, "cpu_partition", text),
    "cluster.qos": lambda cfg, text, base: setattr(cfg.cluster, "qos", text),
    "cluster.python": lambda cfg, text, base: setattr(cfg.cluster, "python", text),
    "cluster.storage_root": lambda cfg, text, base: setattr(cfg.cluster, "storage_root",
                                                            f"{base}/a/b/{text.replace('/', '')}"),
    "cluster.mounts": lambda cfg, text, base: setattr(cfg.cluster, "mounts", [f"/data/{text}:/data"]),
    "cluster.containers.trtllm": lambda cfg, text, base: setattr(cfg.cluster.containers, "trtllm", text),
    "cluster.env": lambda cfg, text, base: OmegaConf.update(cfg, "cluster.env", {"NCCL_DEBUG": text}, force_add=True),
    "cluster.env_vars": lambda cfg, text, base: cfg.cluster.env_vars.append(text),
    "serving.sandbox.mounts": lambda cfg, text, base: setattr(cfg.serving.sandbox, "mounts", [f"/data/{text}:/d"]),
    "quantization.calib_dataset": lambda cfg, text, base: setattr(cfg.quantization, "calib_dataset", text),
}
# A stand-in for every command the scripts run; srun and sacct record their argv (one file per call), the stage's
# srun its SUBMITIT_EXECUTOR too. Any other command bash looks up is no command of ours: command_not_found_handle
# records it (PATH holds only these). The stage's srun waits for the sandbox step (started in the background
# before it) to have recorded its own: the script stops that step once the stage's has ended.
STUBS = {
    "srun": """#!/bin/bash
printf "%s\\0" "$@" > "$RECORDS/srun.$$.$RANDOM"
if [ "$1" = --overlap ]; then : > "$RECORDS/../sandbox-started"; exit 0; fi
printf "%s\\0" "${SUBMITIT_EXECUTOR-unset}" > "$RECORDS/submitit_executor.$$"
if [ -n "${""" + SANDBOX_PORT_FILE_ENV + """:-}" ]; then
  for _ in $(seq 1000); do [ -e "$RECORDS/../sandbox-started" ] && break; sleep 0.01; done
fi
""",
    "sacct": '#!/bin/bash\nprintf "%s\\0" "$@" > "$RECORDS/sacct.$$.$RANDOM"\n',
}
BASH = shutil.which("bash")
REAL_COMMANDS = ("seq", "grep", "sleep", "rm", "cat")
UNEXPECTED = 'command_not_found_handle() { printf "%s\\n" "$*" >> "$RECORDS/unexpected"; return 127; }\n'


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    cfg = compose_config("cluster=example_slurm", "+experiment=fp8_redrafter", f"cluster.storage_root={base}/a/b/c",
                         "launcher.dry_run=true")
    stubs = base / "bin"
    stubs.mkdir()
    for name, stub in STUBS.items():
        (stubs / name).write_text(stub)
        (stubs / name).chmod(0o755)
    for name in REAL_COMMANDS:
        (stubs / name).symlink_to(shutil.which(name))
    (base / "bash_env").write_text(UNEXPECTED)
    return base, cfg


def _run(script: str, where: Path, base: Path, launched: bool) -> Dict[str, List[List[str]]]:
    """Run a batch script as slurmd would (bash, SLURM_JOB_ID set) with the stand-ins; {command: [argv, ...]}.
    `launched`: as a launch submits it (its sbatch call sets SUBMITIT_LAUNCH_ENV), else as submitted by hand."""
    where.mkdir(parents=True)
    records = where / "records"
    records.mkdir()
    path = where / "job.sbatch"
    path.write_text(script)
    subprocess.run([BASH, "-n", str(path)], check=True, capture_output=True)
    env = {"PATH": str(base / "bin"), "BASH_ENV": str(base / "bash_env"), "RECORDS": str(records),
           "SLURM_JOB_ID": "4242", **({SUBMITIT_LAUNCH_ENV: "1"} if launched else {})}
    done = subprocess.run([BASH, str(path)], cwd=where, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (records / "unexpected").exists(), (records / "unexpected").read_text()
    assert not (where / MARK).exists()
    calls: Dict[str, List[List[str]]] = {}
    for record in records.iterdir():
        calls.setdefault(record.name.split(".")[0], []).append(record.read_text().split("\0")[:-1])
    return calls


# The scripts whose commands differ (the comments of download_model; the sandbox step of benchmark; the accounting
# of report) are run: the rest differ from them only in values the sbatch and comment checks read.
RUN_KINDS = ("download_model", "benchmark", "report")


def _check_stage(plan, stage, where: Path, base: Path) -> None:
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    assert exp.root.resolve().is_relative_to(base.resolve()), exp.root  # what the scripts write stays in here
    (exp.root / "logs").mkdir(parents=True, exist_ok=True)
    code_dir = Path(plan.storage_root) / "code" / ("0" * 16)
    accounting = ["1", "2"] if stage.kind == "report" else []
    script = _submitit_script(plan, stage, ["1"], code_dir, accounting)  # what sbatch receives, and a dry run writes
    assert forbidden_character(script.replace("\n", "")) is None
    options = sbatch_options(script)
    assert options["job-name"] == job_name(plan.experiment, stage)
    assert options["output"] == str(exp.submitit / "%j_0_log.out")
    for key, value in (("account", stage.cfg.cluster.account), ("partition", partition(stage)),
                       ("qos", stage.cfg.cluster.qos)):
        assert options.get(key) == (value or None), key
    lines = script.split("\n")
    for key, argv in stage.commands.items():
        shown = next(line for line in lines if line.startswith(f"#   {shlex.quote(key)}: "))
        assert shlex.split(shown.split(": ", 1)[1]) == [str(a) for a in argv]
    if stage.kind not in RUN_KINDS:
        return
    srun = ["--unbuffered", *pyxis_flags(plan, stage, code_dir, extra_env=list(SUBMITIT_EXPORTS))]
    sandbox = ["--overlap", "--ntasks=1", *sandbox_pyxis_flags(stage.cfg, code_dir), *sandbox_argv(stage, code_dir)]
    # Submitted by hand, the step runs the stage itself; a launch's runs what submitit starts (the benchmark's
    # script: the others differ from it only in values both runs read the same way).
    for launched in (False, True) if stage.kind == "benchmark" else (False,):
        calls = _run(script, where / ("launched" if launched else "by_hand"), base, launched)
        if accounting:
            assert calls["sacct"] == [accounting_argv(accounting)[1:]]
        stage_steps = [c for c in calls.get("srun", []) if c[:1] != ["--overlap"]]
        step = submitit_argv(stage, exp) if launched else job_argv(stage.cfg, exp.spec(stage.name), stage_image(stage))
        assert stage_steps == [[*srun, *step]]
        assert calls["submitit_executor"] == [[SUBMITIT_EXPORTS["SUBMITIT_EXECUTOR"] if launched else "unset"]]
        if starts_sandbox_step(stage):
            (sandbox_step,) = [c for c in calls["srun"] if c[:1] == ["--overlap"]]
            assert sandbox_step[:-1] == sandbox[:-1]  # the last: the port the script chose
        else:
            assert len(calls.get("srun", [])) == 1


@given(target=st.sampled_from(sorted(TARGETS)), text=TEXT)
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_any_config_string_is_refused_by_name_or_runs_nothing_but_our_commands(fuzz_base, target, text):
    base, composed = fuzz_base
    cfg = copy.deepcopy(composed)
    TARGETS[target](cfg, text, base)
    named = (target, target + ".", target + "[")
    try:
        plan = validated_plan(cfg, ["launcher.dry_run=true"])
    except InvalidConfig as invalid:
        assert [e for e in invalid.errors if e.key.startswith(named)], (target, text, str(invalid))
        for error in invalid.errors:
            assert forbidden_character(str(error)) is None, str(error)
        event("refused by validation")
        return
    except OmegaConfBaseException as error:  # `${...}` that does not resolve: the app names its key (errors.py)
        assert str(getattr(error, "full_key", "")).startswith(named), (target, text, error)
        event("an interpolation that does not resolve")
        return
    event("rendered and run")
    where = base / "runs" / str(next(RUNS))
    kinds = {}
    for stage in plan.stages.values():
        kinds.setdefault(stage.kind, stage)
    for i, stage in enumerate(kinds.values()):
        _check_stage(plan, stage, where / str(i), base)
