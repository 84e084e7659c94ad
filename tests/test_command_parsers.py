"""Every stage command of every shipped configuration, parsed with the REAL tool's argument parser facts.

Each argv a stage job runs (Stage.commands of every plan) is checked against the parser of the tool it
calls, at the pinned version (see "Command parser facts" in tests/standins/README.md for where each
tool's facts come from). Parsing only: no tool runs. A command passes when

* every flag is one the real parser declares, spelled out in full (no reliance on argparse's prefix
  abbreviation; click has none), with `--flag=value` only where a value is taken;
* no flag is given twice where the parser would silently keep the last value (that hides a mistake);
* the real parser accepts it: types, choices, arities and required flags/arguments.

The negative cases at the end prove every parser path can fail.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from unittest import mock

import click
import pytest

from jobs import ports
from launcher.contract import (GRPC_PORT_ENV, METRICS_PORT_ENV, SANDBOX_PORT_ENV, SANDBOX_PORT_FILE_ENV,
                               SERVER_PORT_ENV)
from tests.helpers import plan_for

STANDIN_PYTHON = Path(__file__).resolve().parent / "standins" / "python"


def _standin_module(name: str):
    """A stand-in's parser module (tests/standins/python/standin_tools), imported for its parser only."""
    if str(STANDIN_PYTHON) not in sys.path:
        sys.path.insert(0, str(STANDIN_PYTHON))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(STANDIN_PYTHON))
    return importlib.import_module(name)


# ======================================================================= the configurations users launch

# Nemotron-NAS needs tp x pp = 4 GPUs, more than the `local` cluster's 2: it is composed on the example Slurm
# cluster, as a user of that model would. The benchmark's default max_new_tokens (20000) exceeds the max_seq_len
# of both these models, which validation refuses: their users set it (seed 004 generates 512 tokens a request).
NEMOTRON = ("cluster=example_slurm", "model=nemotron_nas_51b", "benchmark.max_new_tokens=8192")
LLAMA = ("model=llama2_7b_chat", "benchmark.max_new_tokens=512")

# README "Experiments" and "Models": every conf/experiment/*.yaml, and every conf/model/*.yaml with its usual
# quantizations. The last entries exercise the command builders' optional branches (flags only some settings
# emit).
CONFIGS: Dict[str, Tuple[str, ...]] = {
    "bf16": ("+experiment=bf16",),
    "fp8": ("+experiment=fp8",),
    "fp8_redrafter": ("+experiment=fp8_redrafter",),
    "int8_wo": ("+experiment=int8_wo",),
    "aimo2_campaign": ("+experiment=aimo2_campaign",),
    "aimo2_campaign@example_slurm": ("cluster=example_slurm", "+experiment=aimo2_campaign"),
    "nemotron_nas_51b/bf16": (*NEMOTRON, "+experiment=bf16"),
    "nemotron_nas_51b/fp8": (*NEMOTRON, "+experiment=fp8"),
    "nemotron_nas_51b/fp8_kv": (*NEMOTRON, "quantization=fp8_kv"),
    "nemotron_nas_51b/int8_wo": (*NEMOTRON, "+experiment=int8_wo"),
    "llama2_7b_chat/fp16": (*LLAMA, "+experiment=bf16"),
    "llama2_7b_chat/fp8_kv": (*LLAMA, "quantization=fp8_kv"),
    "llama2_7b_chat/fp8": (*LLAMA, "+experiment=fp8"),
    "openmath/fp8_kv": ("quantization=fp8_kv",),
    "branches:drafter_steps_no_greedy": ("+experiment=fp8_redrafter", "drafter.save_strategy=steps",
                                         "drafter.greedy_search=false"),
    "branches:calib_len_no_sandbox": ("+experiment=fp8", "quantization.calib_max_seq_length=1024",
                                      "serving.sandbox.enabled=false"),
    "load_sweep": ("+experiment=fp8", "benchmark=load_sweep"),
    "branches:load_sweep_chat_whole_answers": (
        "+experiment=fp8", "benchmark=load_sweep", "benchmark.prompt_set=chat", "benchmark.endpoint=chat",
        "benchmark.problems_file=${launcher_conf:benchmark/prompts/chat.jsonl}", "benchmark.streaming=false",
        "benchmark.goodput.time_to_first_token=null", "benchmark.goodput.inter_token_latency=null",
        "benchmark.goodput.request_latency=30000", "benchmark.warmup_requests=4", "benchmark.repeats=3"),
    "serve_only": ("+experiment=bf16", "launcher.serve_only=true"),
    "llama2_fp8_triton": ("+experiment=llama2_fp8_triton",),
    "nemotron_nas@example_slurm": ("cluster=example_slurm", "+experiment=nemotron_nas"),
}


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("parsers_storage"))


_PLAN_COMMANDS: Dict[str, List[Tuple[str, List[str]]]] = {}


# What a benchmark job fills in for the port placeholders of its commands (jobs.ports): the tools parse that.
JOB_PORTS = {SERVER_PORT_ENV: "5242", SANDBOX_PORT_ENV: "6242",
             SANDBOX_PORT_FILE_ENV: "/storage/artifacts/benchmark/0123456789abcdef.partial/sandbox.port",
             GRPC_PORT_ENV: "8242", METRICS_PORT_ENV: "8243"}


def plan_commands(config: str, storage: str) -> List[Tuple[str, List[str]]]:
    """[(stage/command name, argv as the job runs it)] of one configuration's plan (composed once per module)."""
    if config not in _PLAN_COMMANDS:
        plan = plan_for(*CONFIGS[config], f"cluster.storage_root={storage}")
        _PLAN_COMMANDS[config] = [(f"{stage.name}/{key}", ports.expand(argv, JOB_PORTS))
                                  for stage in plan.stages.values() for key, argv in stage.commands.items()]
    return _PLAN_COMMANDS[config]


# ======================================================================= generic flag scan

NONE, ONE, OPTIONAL, MANY, REST = "none", "one", "optional", "many", "rest"
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass(frozen=True)
class Flag:
    dest: str
    arity: str  # NONE (a switch), ONE value, OPTIONAL value (nargs="?"), MANY values (nargs "*"/"+"), REST
    repeatable: bool = False  # append/count/click multiple: giving it twice is meaningful


def argparse_flags(parser: argparse.ArgumentParser) -> Dict[str, Flag]:
    flags = {}
    for action in parser._actions:
        if not action.option_strings:
            continue
        nargs = action.nargs
        arity = (NONE if nargs == 0 else OPTIONAL if nargs == "?" else MANY if nargs in ("*", "+")
                 else REST if nargs == argparse.REMAINDER else ONE)
        repeatable = isinstance(action, (argparse._AppendAction, argparse._AppendConstAction,
                                         argparse._CountAction, getattr(argparse, "_ExtendAction", ())))
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            dest = "<help/version: prints and exits without running>"
        else:
            dest = action.dest
        for name in action.option_strings:
            flags[name] = Flag(dest, arity, repeatable)
    return flags


def click_flags(command: click.Command) -> Dict[str, Flag]:
    flags = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        arity = NONE if (param.is_flag or param.count) else ONE if param.nargs == 1 else MANY
        for name in [*param.opts, *param.secondary_opts]:
            flags[name] = Flag(param.name, arity, bool(param.multiple or param.count))
    flags["--help"] = Flag("<help/version: prints and exits without running>", NONE)
    return flags


def scan(args: Sequence[str], flags: Dict[str, Flag], stop_after_positionals: Optional[int] = None,
         ) -> Tuple[List[str], List[str], List[str]]:
    """Walk `args` as the tool's parser would: (problems, positionals, the rest after `stop_after_positionals`
    positionals). Problems: a flag the parser does not declare under exactly that name (prefix abbreviations
    included), a value given to a switch, a flag without its value, a flag given twice where the parser would
    keep only the last one, and asking for help."""
    problems, positionals, seen = [], [], {}
    i = 0
    while i < len(args):
        word = args[i]
        if stop_after_positionals is not None and len(positionals) >= stop_after_positionals:
            return problems, positionals, list(args[i:])
        if word == "--":
            positionals += args[i + 1:]
            break
        if not word.startswith("-") or word == "-" or _NEGATIVE_NUMBER.match(word):
            positionals.append(word)
            i += 1
            continue
        name, has_inline, inline = word.partition("=")
        flag = flags.get(name)
        if flag is None:
            prefixed = sorted(n for n in flags if n.startswith(name) and n.startswith("--") and len(name) > 2)
            why = (f" (a prefix of {', '.join(prefixed)}: the real parser must not be relied on to expand it)"
                   if prefixed else "")
            problems.append(f"unknown flag {name!r}{why}")
            i += 1
            continue
        if flag.dest.startswith("<help"):
            problems.append(f"{name}: {flag.dest}")
        if flag.dest in seen and not flag.repeatable:
            problems.append(f"{name} given twice (with {seen[flag.dest]!r} before it): the parser keeps only the "
                            f"last value")
        seen.setdefault(flag.dest, name)
        i += 1
        if flag.arity == NONE:
            if has_inline:
                problems.append(f"{name} is a switch but is given a value ({word!r})")
        elif flag.arity == REST:
            return problems, positionals, list(args[i:])
        elif has_inline:
            pass
        elif flag.arity == ONE:
            if i >= len(args):
                problems.append(f"{name} needs a value")
            i += 1
        else:  # OPTIONAL / MANY: what follows up to the next flag
            while i < len(args) and not (args[i].startswith("-") and not _NEGATIVE_NUMBER.match(args[i])):
                i += 1
                if flag.arity == OPTIONAL:
                    break
    return problems, positionals, []


def argparse_errors(parser: argparse.ArgumentParser, args: Sequence[str], known_only: bool = False) -> List[str]:
    """What the real argparse parser says of `args` (its error message, or unused words)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if known_only:
                _, unused = parser.parse_known_args(list(args))
                return [f"arguments not used by the parser: {unused}"] if unused else []
            parser.parse_args(list(args))
            return []
        except SystemExit as exit_:
            lines = err.getvalue().strip().splitlines()
            return [f"rejected (exit {exit_.code}): {lines[-1] if lines else ''}"]


def click_errors(command: click.Command, name: str, args: Sequence[str], parent=None) -> List[str]:
    try:
        command.make_context(name, list(args), parent=parent)
        return []
    except click.exceptions.Exit as exit_:
        return [f"exits at parse time (code {exit_.exit_code})"]
    except click.ClickException as error:
        return [f"rejected: {error.format_message()}"]


def check_argparse(parser: argparse.ArgumentParser, args: Sequence[str]) -> List[str]:
    problems, _, _ = scan(args, argparse_flags(parser))
    return problems + argparse_errors(parser, args)


# ======================================================================= the tools

# ---- trtllm-serve: tensorrt_llm/commands/serve.py, the click command `serve`, TensorRT-LLM 1.1.0rc0
# (= commit 26f413ad9004bf4611b12c7aa15aed7897b720fb). The source index holds no file at that commit; these are
# the facts of the stored versions around it, which agree on every option below:
#   before: BHbean/TensorRT-LLM @ 22d1bd423cb69070be4ae4b1140c0ee71ab98b66 (--backend click.Choice(["pytorch", "trt"]))
#   after:  venkywonka/TensorRT-LLM @ 319d76db5d976386f862a528d168073ab69b8f24 and MatthiasKohl/TensorRT-LLM
#           @ 250df2e40e6915989ac419416969839b9e3d0a0e (cites issue #7142, Aug 2025): --backend
#           ChoiceWithAlias(["pytorch", "tensorrt", "_autodeploy"], {"trt": "tensorrt"}).
# UNVERIFIED which --backend form 1.1.0rc0 had, so only the values both forms accept pass: pytorch, trt.
# Later versions (not 1.1.0rc0) renamed options (--tensor_parallel_size, --free_gpu_memory_fraction, --config
# aliases) and dropped the TensorRT-engine backend: the aliases added later are deliberately absent here.
# `trtllm-serve` is `DefaultGroup(commands={"serve", "disaggregated", "disaggregated_mpi_worker", ...})`: a first
# word that is not a subcommand runs `serve`. The group itself has no options.
TRTLLM_SEVERITY = ["internal_error", "error", "warning", "info", "verbose", "debug", "trace"]  # logger.severity_map


class _NotEncoded(click.ParamType):
    """An option whose allowed values were not transcribed (the launcher never passes it): any use fails."""
    name = "not-encoded"

    def convert(self, value, param, ctx):
        self.fail(f"the allowed values of {param.opts[0]} at 1.1.0rc0 are not encoded in "
                  f"tests/test_command_parsers.py; transcribe them before passing it", param, ctx)


TRTLLM_SERVE_OPTIONS = [  # (option names, click type or "flag")
    (("--tokenizer",), click.STRING),
    (("--host",), click.STRING),
    (("--port",), click.INT),
    (("--backend",), click.Choice(["pytorch", "trt"])),
    (("--log_level",), click.Choice(TRTLLM_SEVERITY)),
    (("--max_beam_width",), click.INT),
    (("--max_batch_size",), click.INT),
    (("--max_num_tokens",), click.INT),
    (("--max_seq_len",), click.INT),
    (("--tp_size",), click.INT),
    (("--pp_size",), click.INT),
    (("--ep_size",), click.INT),
    (("--cluster_size",), click.INT),
    (("--gpus_per_node",), click.INT),
    (("--kv_cache_free_gpu_memory_fraction",), click.FLOAT),
    (("--num_postprocess_workers",), click.INT),
    (("--trust_remote_code",), "flag"),
    (("--extra_llm_api_options",), click.STRING),
    (("--reasoning_parser",), _NotEncoded()),  # click.Choice(ReasoningParserFactory.parsers.keys())
    (("--metadata_server_config_file",), click.STRING),
    (("--server_role",), click.STRING),
    (("--fail_fast_on_attention_window_too_large",), "flag"),
]
TRTLLM_SERVE_SUBCOMMANDS = ("serve", "disaggregated", "disaggregated_mpi_worker", "mm_embedding_serve")


def trtllm_serve_command() -> click.Command:
    params = [click.Argument(["model"], type=click.STRING)]  # required, as click arguments are by default
    for names, type_ in TRTLLM_SERVE_OPTIONS:
        if type_ == "flag":
            params.append(click.Option(list(names), is_flag=True, default=False))
        else:
            params.append(click.Option(list(names), type=type_, default=None))
    return click.Command("serve", params=params)


def check_trtllm_serve(argv: List[str]) -> List[str]:
    args = argv[1:]
    if args and args[0] in TRTLLM_SERVE_SUBCOMMANDS:
        if args[0] != "serve":
            return [f"trtllm-serve {args[0]}: only `serve` is encoded"]
        args = args[1:]
    command = trtllm_serve_command()
    problems, _, _ = scan(args, click_flags(command))
    return problems + click_errors(command, "serve", args)


# ---- the NeMo-Skills sandbox: `python -m flask --app MODULE run --host H --port P`. Flask's CLI is click:
# FlaskGroup (src/flask/cli.py) with -e/--env-file, -A/--app, --debug/--no-debug, --version, and `run` with
# --host/-h, --port/-p (int), --cert, --key, --reload/--no-reload, --debugger/--no-debugger,
# --with-threads/--without-threads, --extra-files, --exclude-patterns. The sandbox image pins flask==3.1.2
# (containers/sandbox.Dockerfile); the test environment's Flask 3.1.x objects are parsed with directly.

def check_flask(argv: List[str]) -> List[str]:
    version = metadata.version("flask")
    if not version.startswith("3.1."):
        pytest.skip(f"Flask {version} installed; the sandbox image pins 3.1.2")
    from flask.cli import cli as flask_group
    args = argv[3:]  # after `python -m flask`
    problems, positionals, rest = scan(args, click_flags(flask_group), stop_after_positionals=1)
    if positionals != ["run"]:
        return problems + [f"expected the `run` subcommand, got {positionals}"]
    group_args = args[:len(args) - len(rest)]
    run = flask_group.get_command(None, "run")
    problems += scan(rest, click_flags(run))[0]
    if "--app" not in group_args and "-A" not in group_args:
        problems.append("no --app: Flask would look for app.py/wsgi.py in the working directory")
    with mock.patch.dict(os.environ):  # FlaskGroup.make_context sets FLASK_RUN_FROM_CLI
        errors = click_errors(flask_group, "flask", group_args)
        if not errors:  # (click consumes the list it parses: hand it copies)
            context = flask_group.make_context("flask", list(group_args))
            errors = click_errors(run, "run", rest, parent=context)
    return problems + errors


# ---- nvidia-smi, which jobs.gpu_check runs (jobs.gpu_check.QUERY) before a GPU stage's tools: closed source,
# so its facts were read off the real tool, driver 580.159.04 on an H200 of the project's GPU machine:
# `nvidia-smi --help-query-gpu` lists "index", "uuid" or "gpu_uuid", "name" or "gpu_name", "compute_cap",
# "memory.total", "count", "driver_version" (among many others not transcribed); `--query-gpu=index,
# compute_capability` prints `Field "compute_capability" is not a valid field to query.` and exits 2;
# `--format=csv,noheaders` prints "Format modifier is not recognized." and exits 2 (csv, noheader, nounits are).
NVIDIA_SMI_FIELDS = {"index", "uuid", "gpu_uuid", "name", "gpu_name", "compute_cap", "memory.total", "count",
                     "driver_version"}
NVIDIA_SMI_FORMAT = {"csv", "noheader", "nounits"}


def check_nvidia_smi(argv: List[str]) -> List[str]:
    options = {}
    for word in argv[1:]:
        name, eq, value = word.partition("=")
        if name not in ("--query-gpu", "--format") or not eq:
            return [f"{word!r}: only --query-gpu=FIELDS --format=csv[,noheader][,nounits] is encoded"]
        if name in options:
            return [f"{name} given twice"]
        options[name] = value
    if set(options) != {"--query-gpu", "--format"}:
        return [f"needs both --query-gpu= and --format=, got {sorted(options)}"]
    problems = [f'Field "{f}" is not a valid field to query.' for f in options["--query-gpu"].split(",")
                if f not in NVIDIA_SMI_FIELDS]
    formats = options["--format"].split(",")
    if "csv" not in formats or not set(formats) <= NVIDIA_SMI_FORMAT:
        problems.append(f"--format={options['--format']}: Format modifier is not recognized.")
    return problems


# ---- TensorRT-LLM examples scripts and trtllm-build, hf, torchrun, NeMo-Skills: the stand-ins' parsers,
# which are built from the real sources (tests/standins/README.md names file and version for each).

def check_hf(argv: List[str]) -> List[str]:
    parser = _standin_module("standin_tools.hf_cli").build_parser()
    if argv[1:2] != ["download"]:
        return [f"hf {argv[1:2]}: only `hf download` is encoded"]
    download = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["download"]
    return scan(argv[2:], argparse_flags(download))[0] + argparse_errors(parser, argv[1:])


def check_torchrun(argv: List[str]) -> List[str]:
    parser = _standin_module("standin_tools.torchrun").build_parser()
    problems, positionals, script_args = scan(argv[1:], argparse_flags(parser), stop_after_positionals=1)
    problems += argparse_errors(parser, argv[1:])
    if problems:
        return problems
    args = parser.parse_args(argv[1:])
    if args.module and args.training_script == "nemo_skills.training.train_redrafter":
        return [f"train_redrafter: {p}" for p in check_train_redrafter(script_args)]
    return [f"torchrun runs {'module' if args.module else 'script'} {args.training_script!r}: no parser facts "
            f"for it"]


def check_train_redrafter(args: List[str]) -> List[str]:
    """HfArgumentParser((ModelArguments, TrainingArguments)).parse_args_into_dataclasses(): parse_known_args,
    then ValueError on any unused word."""
    parser = _standin_module("standin_tools.hf_training_args").build_parser()
    return scan(args, argparse_flags(parser))[0] + argparse_errors(parser, args, known_only=True)


def _ckpt_parser(name: str, *args) -> Callable[[], argparse.ArgumentParser]:
    return lambda: getattr(_standin_module("standin_tools.trtllm_ckpt"), name)(*args)


EXAMPLE_SCRIPTS = {  # path under TensorRT-LLM's examples/ -> its parser
    "quantization/quantize.py": _ckpt_parser("quantize_parser", "trtllm"),
    "models/core/llama/convert_checkpoint.py": _ckpt_parser("llama_parser"),
    "models/core/nemotron_nas/convert_checkpoint.py": _ckpt_parser("nemotron_nas_parser"),
    "redrafter/convert_checkpoint.py": _ckpt_parser("redrafter_parser"),
    # run.py parse_arguments() (stored @ 640403b6) + utils.py add_common_args() (stored @ 1b17f9d1)
    "run.py": lambda: _standin_module("standin_tools.trtllm_run").build_parser(),
}


# ---- our own jobs: their own argparse parsers, captured from the module without running it.

class _Captured(Exception):
    pass


def captured_parser(main: Callable[[], object]) -> argparse.ArgumentParser:
    """The parser `main` builds: parse_args is intercepted before it reads any argument."""
    parsers = []

    def intercept(self, args=None, namespace=None):
        parsers.append(self)
        raise _Captured

    with mock.patch.object(argparse.ArgumentParser, "parse_args", intercept):
        with contextlib.suppress(_Captured):
            main()
    assert parsers, f"{main} built no argparse parser"
    return parsers[0]


def copy_tokenizer_parser() -> argparse.ArgumentParser:
    """jobs/copy_tokenizer.py has no argparse: `__main__` needs exactly MODEL_DIR ENGINE_DIR (len(sys.argv) == 3)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.copy_tokenizer", add_help=False)
    parser.add_argument("model_dir")
    parser.add_argument("engine_dir")
    return parser


def _jobs_parser(module: str) -> argparse.ArgumentParser:
    mod = importlib.import_module(f"jobs.{module}")
    if hasattr(mod, "build_parser"):
        return mod.build_parser()
    if module == "copy_tokenizer":
        return copy_tokenizer_parser()
    if module == "calibration_data":
        return captured_parser(mod.main)
    return captured_parser(lambda: mod.main([]))


PYTHON_MODULES = {  # python -m MODULE -> its parser
    "nemo_skills.conversion.hf_to_trtllm_quantize": _ckpt_parser("quantize_parser", "nemo_skills"),
}
OUR_JOBS = {"check_download", "calibration_data", "copy_tokenizer", "benchmark_client", "report", "sandbox_guard",
            "prompt_set", "triton_benchmark", "load_sweep", "serve"}


# ---- seed 004's Triton tools (tests/standins/README.md "Triton"): tritonserver's options (server
# src/command_line_parser.cc, the ones the stand-in declares); tensorrtllm_backend tools/fill_template.py
# (`[-i|--in_place] FILE key:value,...`, argparse); Open MPI's mpirun (-n/-np, --allow-run-as-root, -x, app contexts
# split by `:`), each context's command checked as its own tool; coreutils `mkdir -p DIR` and `cp -R SRC DST`.
FILL_TEMPLATE = Path(__file__).resolve().parent / "standins" / "triton_backend" / "tools" / "fill_template.py"


def fill_template_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("fill_template_standin", FILL_TEMPLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return captured_parser(lambda: module.main([]))


def check_mpirun(argv: List[str]) -> List[str]:
    mpirun = _standin_module("standin_tools.mpirun")
    try:
        _, _, contexts = mpirun.parse(argv[1:])
    except mpirun.MpirunError as error:
        return [str(error)]
    return [problem for _, command in contexts for problem in check(command)]


def check_coreutils(argv: List[str]) -> List[str]:
    shapes = {"mkdir": (["-p"], 1), "cp": (["-R"], 2)}
    flags, operands = shapes[argv[0]]
    words = argv[1:]
    if words[:len(flags)] != flags or len(words) != len(flags) + operands or any(w.startswith("-") for w in
                                                                                 words[len(flags):]):
        return [f"{argv[0]}: expected {argv[0]} {' '.join(flags)} and {operands} operand(s), got {words}"]
    return []


# ---- env(1), which starts a tool with a changed environment (the sandbox, without the secrets): GNU coreutils
# 9.1 `env --help` (Debian bookworm's, as in the sandbox image's python:3.10-slim): `env [OPTION]... [-]
# [NAME=VALUE]... [COMMAND [ARG]...]` with -i/--ignore-environment, -u/--unset=NAME (repeatable), -C/--chdir=DIR;
# "a mere - implies -i"; without COMMAND it prints the environment. Its other options (-0, -S, -v/--debug, the
# signal ones) are not encoded: any use fails.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_env(argv: List[str]) -> Tuple[List[str], List[str]]:
    """(problems, the command env runs) of an `env ...` argv."""
    problems, i = [], 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        if word in ("-i", "--ignore-environment"):
            i += 1
        elif word in ("-u", "-C"):
            if i + 1 >= len(argv):
                problems.append(f"env {word} needs a value")
            elif word == "-u" and not ENV_NAME.fullmatch(argv[i + 1]):
                problems.append(f"env -u {argv[i + 1]!r}: not a variable name")
            i += 2
        elif word.startswith(("--unset=", "--chdir=")):
            i += 1
        else:
            problems.append(f"env option {word!r} not encoded")
            i += 1
    if i < len(argv) and argv[i] == "-":
        i += 1
    while i < len(argv) and "=" in argv[i] and ENV_NAME.fullmatch(argv[i].split("=", 1)[0]):
        i += 1
    if i >= len(argv):
        problems.append("env without a command only prints the environment")
    return problems, list(argv[i:])


def identify(argv: List[str]) -> Tuple[str, Callable[[List[str]], List[str]]]:
    """(tool name, checker) for an argv; unknown tools get a checker that fails."""
    program = argv[0]
    if program == "env":
        env_problems, command = split_env(argv)
        tool, checker = identify(command) if command else ("env", lambda a: [])
        return tool, lambda a: env_problems + checker(split_env(a)[1])
    if program == "hf":
        return "hf download", check_hf
    if program == "trtllm-build":
        return "trtllm-build", lambda a: check_argparse(_standin_module("standin_tools.trtllm_build").build_parser(),
                                                        a[1:])
    if program == "torchrun":
        return "torchrun + train_redrafter", check_torchrun
    if program == "trtllm-serve":
        return "trtllm-serve serve", check_trtllm_serve
    if program == "nvidia-smi":
        return "nvidia-smi", check_nvidia_smi
    if program == "tritonserver":
        return "tritonserver", lambda a: check_argparse(_standin_module("standin_tools.tritonserver").build_parser(),
                                                        a[1:])
    if program == "mpirun":
        return "mpirun", check_mpirun
    if program in ("mkdir", "cp"):
        return program, check_coreutils
    if re.fullmatch(r"(.*/)?python(3(\.\d+)?)?", program) and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            module = argv[2]
            if module == "flask":
                return "flask run (sandbox)", check_flask
            if module in PYTHON_MODULES:
                return module, lambda a: check_argparse(PYTHON_MODULES[module](), a[3:])
            if module.startswith("jobs.") and module[5:] in OUR_JOBS:
                return module, lambda a: check_argparse(_jobs_parser(module[5:]), a[3:])
        if argv[1].endswith("/tools/fill_template.py"):
            return "tools/fill_template.py", lambda a: check_argparse(fill_template_parser(), a[2:])
        for suffix, parser in EXAMPLE_SCRIPTS.items():
            if argv[1].endswith("/examples/" + suffix):
                return f"examples/{suffix}", lambda a, parser=parser: check_argparse(parser(), a[2:])
    return "unknown", lambda a: [f"no parser facts for {a[:3]}: add the tool to tests/test_command_parsers.py"]


def check(argv: List[str]) -> List[str]:
    return identify(argv)[1](argv)


# ======================================================================= the shipped commands

@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_stage_command_parses_with_the_real_tools_facts(config, storage):
    failures = []
    for name, argv in plan_commands(config, storage):
        tool, checker = identify(argv)
        problems = checker(argv)
        if problems:
            failures.append(f"{name} ({tool}): {argv}\n    " + "\n    ".join(problems))
    assert not failures, f"{config}: commands the real tools would refuse:\n" + "\n".join(failures)


EXPECTED_TOOLS = {
    "hf download", "jobs.check_download", "jobs.calibration_data", "nemo_skills.conversion.hf_to_trtllm_quantize",
    "examples/quantization/quantize.py", "examples/models/core/llama/convert_checkpoint.py",
    "examples/models/core/nemotron_nas/convert_checkpoint.py", "examples/redrafter/convert_checkpoint.py",
    "trtllm-build", "jobs.copy_tokenizer", "torchrun + train_redrafter", "trtllm-serve serve",
    "jobs.benchmark_client", "jobs.report", "examples/run.py", "mpirun", "tritonserver", "tools/fill_template.py",
    "mkdir", "cp", "jobs.prompt_set", "jobs.triton_benchmark", "jobs.load_sweep", "jobs.serve",
}
# The code sandbox: NeMo-Skills' Flask app served by Flask's CLI, or our jobs.sandbox_guard in front of it.
SANDBOX_TOOLS = {"flask run (sandbox)", "jobs.sandbox_guard"}


def test_the_configurations_reach_every_tool(storage):
    """Every tool is reached by some configuration, and no command goes to a tool without parser facts."""
    tools = {identify(argv)[0] for config in CONFIGS for _, argv in plan_commands(config, storage)}
    assert "unknown" not in tools
    assert tools - SANDBOX_TOOLS == EXPECTED_TOOLS
    assert tools & SANDBOX_TOOLS


def test_the_example_scripts_exist_in_the_pinned_layout():
    """The examples paths the commands name are those of TensorRT-LLM's examples/ at 1.1.0rc0 (mirrored by the
    stand-ins' trtllm_examples/ tree)."""
    examples = Path(__file__).resolve().parent / "standins" / "trtllm_examples"
    for suffix in EXAMPLE_SCRIPTS:
        assert (examples / suffix).is_file(), suffix


def test_the_gpu_check_query_parses_with_nvidia_smi_facts():
    """jobs.gpu_check runs nvidia-smi before any tool of a GPU stage: the same check, on its fixed argv."""
    from jobs import gpu_check
    assert identify(gpu_check.QUERY)[0] == "nvidia-smi"
    assert check(gpu_check.QUERY) == []
    assert check(["nvidia-smi", "--query-gpu=index,compute_capability", "--format=csv"]) == [
        'Field "compute_capability" is not a valid field to query.']
    assert check(["nvidia-smi", "--query-gpu=index", "--format=csv,noheaders"])
    assert check(["nvidia-smi", "--query-gpu", "index", "--format=csv"])


# ======================================================================= negative cases: every path can fail

# Sandbox commands in both forms (the plans reach one of them), as containers/sandbox.Dockerfile and
# launcher.commands.sandbox_command write them.
LITERAL_SAMPLES = {
    "flask run (sandbox)": ["python", "-m", "flask", "--app",
                            "nemo_skills.code_execution.local_sandbox.local_sandbox_server", "run",
                            "--host", "127.0.0.1", "--port", "6000"],
    "jobs.sandbox_guard": ["env", "-u", "HF_TOKEN", "python", "-m", "jobs.sandbox_guard", "--host", "127.0.0.1",
                           "--memory-limit-mb", "4096", "--timeout-s", "10.0", "--base-port", "6000",
                           "--port-file", "-"],
}


def _samples(storage: str, tool: str) -> List[List[str]]:
    samples = [list(argv) for config in CONFIGS for _, argv in plan_commands(config, storage)
               if identify(argv)[0] == tool]
    samples += [LITERAL_SAMPLES[tool]] if tool in LITERAL_SAMPLES else []
    assert samples, f"no configuration reaches {tool}"
    return samples


def _replace(argv: List[str], old: str, new: str) -> List[str]:
    assert old in argv, (old, argv)
    return [new if word == old else word for word in argv]


def _set(argv: List[str], flag: str, value: str) -> List[str]:
    if flag in argv:
        i = argv.index(flag)
        return [*argv[:i + 1], value, *argv[i + 2:]]
    prefix = flag + "="
    assert any(w.startswith(prefix) for w in argv), (flag, argv)
    return [f"{flag}={value}" if w.startswith(prefix) else w for w in argv]


def _drop(argv: List[str], flag: str, with_value: bool = True) -> List[str]:
    i = argv.index(flag)
    return [*argv[:i], *argv[i + (2 if with_value else 1):]]


def _twice(argv: List[str], flag: str) -> List[str]:
    i = argv.index(flag)
    return [*argv, flag, argv[i + 1]]


# (tool, how to break its sample command, what the checker must say)
NEGATIVE = [
    ("hf download", lambda a: _replace(a, "--local-dir", "--local_dir"), "unknown flag '--local_dir'"),
    ("hf download", lambda a: [*a, "--repo-type", "models"], "invalid choice: 'models'"),
    ("hf download", lambda a: _replace(a, "--local-dir", "--local"), "a prefix of --local-dir"),
    ("jobs.check_download", lambda a: _replace(a, a[3], "datasets"), "invalid choice: 'datasets'"),
    ("jobs.calibration_data", lambda a: _set(a, "--size", "4k"), "invalid int value: '4k'"),
    ("jobs.calibration_data", lambda a: _drop(a, "--output_dir"), "required: --output_dir"),
    ("jobs.calibration_data", lambda a: _twice(a, "--split"), "--split given twice"),
    ("nemo_skills.conversion.hf_to_trtllm_quantize", lambda a: _set(a, "--qformat", "fp4"),
     "invalid choice: 'fp4'"),
    ("nemo_skills.conversion.hf_to_trtllm_quantize", lambda a: [*a, "--quantize_lm_head"],
     "unknown flag '--quantize_lm_head'"),
    ("nemo_skills.conversion.hf_to_trtllm_quantize", lambda a: _replace(a, "--calib_size", "--calib_siz"),
     "a prefix of --calib_size"),
    ("examples/quantization/quantize.py", lambda a: _set(a, "--kv_cache_dtype", "fp16"), "invalid choice: 'fp16'"),
    ("examples/quantization/quantize.py", lambda a: _twice(a, "--qformat"), "--qformat given twice"),
    ("examples/models/core/llama/convert_checkpoint.py", lambda a: _set(a, "--dtype", "bf16"),
     "invalid choice: 'bf16'"),
    ("examples/models/core/llama/convert_checkpoint.py", lambda a: _replace(a, "--tp_size", "--tensor_parallel"),
     "unknown flag '--tensor_parallel'"),
    ("examples/models/core/nemotron_nas/convert_checkpoint.py", lambda a: _drop(a, "--model_dir"),
     "required: --model_dir"),
    ("examples/models/core/nemotron_nas/convert_checkpoint.py", lambda a: [*a, "--trust_remote_code=yes"],
     "is a switch but is given a value"),
    ("examples/redrafter/convert_checkpoint.py", lambda a: _drop(a, "--drafter_model_dir"),
     "required: --drafter_model_dir"),
    ("examples/redrafter/convert_checkpoint.py", lambda a: _set(a, "--redrafter_num_beams", "1.5"),
     "invalid int value: '1.5'"),
    ("trtllm-build", lambda a: _set(a, "--gemm_plugin", "fp16"), "invalid choice: 'fp16'"),
    ("trtllm-build", lambda a: _replace(a, "--max_seq_len", "--max_seq_length"),
     "unknown flag '--max_seq_length'"),
    ("trtllm-build", lambda a: _twice(a, "--max_batch_size"), "--max_batch_size given twice"),
    ("trtllm-build", lambda a: _set(a, "--use_paged_context_fmha", "true"), "invalid choice: 'true'"),
    ("torchrun + train_redrafter", lambda a: _replace(a, "--nproc_per_node=2", "--nprocs=2"),
     "unknown flag '--nprocs'"),
    ("torchrun + train_redrafter", lambda a: _set(a, "--save_strategy", "never"), "invalid choice: 'never'"),
    ("torchrun + train_redrafter", lambda a: _replace(a, "--drafter_num_layers", "--drafter_num_layer"),
     "a prefix of --drafter_num_layers"),
    ("torchrun + train_redrafter", lambda a: _set(a, "--bf16", "yes please"), "Truthy value expected"),
    ("torchrun + train_redrafter", lambda a: _twice(a, "--learning_rate"), "--learning_rate given twice"),
    ("torchrun + train_redrafter", lambda a: _replace(a, "nemo_skills.training.train_redrafter",
                                                      "nemo_skills.training.train"), "no parser facts"),
    ("trtllm-serve serve", lambda a: _set(a, "--backend", "tensorrt_llm"), "'tensorrt_llm' is not one of"),
    ("trtllm-serve serve", lambda a: _replace(a, "--kv_cache_free_gpu_memory_fraction",
                                              "--free_gpu_memory_fraction"),
     "unknown flag '--free_gpu_memory_fraction'"),
    ("trtllm-serve serve", lambda a: _replace(a, "--tp_size", "--tensor_parallel_size"),
     "unknown flag '--tensor_parallel_size'"),
    ("trtllm-serve serve", lambda a: _set(a, "--tp_size", "2.0"), "'2.0' is not a valid integer"),
    ("trtllm-serve serve", lambda a: _twice(a, "--port"), "--port given twice"),
    ("trtllm-serve serve", lambda a: a[:2], "Missing argument 'MODEL'"),
    ("trtllm-serve serve", lambda a: [*a, "--reasoning_parser", "deepseek-r1"], "are not encoded"),
    ("jobs.copy_tokenizer", lambda a: a[:-1], "the following arguments are required: engine_dir"),
    ("jobs.benchmark_client", lambda a: _set(a, "--num-generations", "twelve"), "invalid int value: 'twelve'"),
    ("jobs.benchmark_client", lambda a: _replace(a, "--num-generations", "--num_generations"),
     "unknown flag '--num_generations'"),
    ("jobs.report", lambda a: _drop(a, "--inputs"), "required: --inputs"),
    ("jobs.load_sweep", lambda a: _drop(a, "--tokenizer"), "required: --tokenizer"),
    ("jobs.load_sweep", lambda a: _set(a, "--repeats", "2.5"), "invalid int value: '2.5'"),
    ("jobs.load_sweep", lambda a: [*a, "--chat-prompts", "/p.jsonl"], "not allowed with argument --problems"),
    ("jobs.serve", lambda a: _drop(a, "--minutes"), "required: --minutes"),
    ("flask run (sandbox)", lambda a: _set(a, "--port", "http"), "'http' is not a valid integer"),
    ("flask run (sandbox)", lambda a: _replace(a, "--host", "--hostname"), "unknown flag '--hostname'"),
    ("flask run (sandbox)", lambda a: _twice(a, "--port"), "--port given twice"),
    ("flask run (sandbox)", lambda a: _drop(a, "--app"), "no --app"),
    ("jobs.sandbox_guard", lambda a: _drop(a, "--memory-limit-mb"), "required: --memory-limit-mb"),
    ("jobs.sandbox_guard", lambda a: _replace(a, "--base-port", "--port"), "a prefix of --port-file"),
    ("jobs.sandbox_guard", lambda a: _replace(a, "--timeout-s", "--timeout"), "a prefix of --timeout-s"),
    ("jobs.sandbox_guard", lambda a: [a[0], "--debug", *a[1:]], "env option '--debug' not encoded"),
    ("jobs.sandbox_guard", lambda a: _replace(a, "HF_TOKEN", "HF-TOKEN"), "not a variable name"),
    ("examples/run.py", lambda a: _drop(a, "--max_output_len"), "required: --max_output_len"),
    ("examples/run.py", lambda a: _replace(a, "--tokenizer_dir", "--tokenizer"), "a prefix of --tokenizer_dir"),
    ("mpirun", lambda a: _replace(a, "-n", "--ranks"), 'unknown option "--ranks"'),
    ("mpirun", lambda a: _replace(a, "--max_output_len", "--max_output_length"), "unknown flag"),
    ("tritonserver", lambda a: [a[0], "--model-repository-path=/r", *a[2:]], "unknown flag"),
    ("tritonserver", lambda a: [*a, "--model-control-mode=manual"], "invalid choice: 'manual'"),
    ("tools/fill_template.py", lambda a: a[:-1], "required: substitutions"),
    ("tools/fill_template.py", lambda a: _replace(a, "-i", "--inplace"), "unknown flag '--inplace'"),
    ("mkdir", lambda a: _drop(a, "-p", with_value=False), "expected mkdir -p"),
    ("cp", lambda a: a[:-1], "expected cp -R"),
    ("jobs.prompt_set", lambda a: _set(a, "--overlong", "cut"), "invalid choice: 'cut'"),
    ("jobs.prompt_set", lambda a: _drop(a, "--tokenizer"), "required: --tokenizer"),
    ("jobs.triton_benchmark", lambda a: _set(a, "--protocol", "http"), "invalid choice: 'http'"),
    ("jobs.triton_benchmark", lambda a: _drop(a, "--prompts"), "required: --prompts"),
]


@pytest.mark.parametrize("tool, break_it, expected", NEGATIVE,
                         ids=[f"{tool}:{expected[:40]}" for tool, _, expected in NEGATIVE])
def test_a_wrong_command_fails(tool, break_it, expected, storage):
    for good in _samples(storage, tool):  # the first shipped command of that tool that has what is broken
        with contextlib.suppress(AssertionError, ValueError, IndexError):
            bad = break_it(list(good))
            break
    else:
        raise AssertionError(f"no {tool} command to break that way")
    assert check(good) == [], good
    assert identify(bad)[0] in (tool, "torchrun + train_redrafter")
    problems = check(bad)
    assert any(expected in p for p in problems), f"{bad}\n{problems}"


def test_an_unknown_tool_fails():
    assert check(["python", "-m", "jobs.not_a_job"]) and check(["trtllm-bench", "throughput"])
    assert check(["python", "/opt/TensorRT-LLM/examples/models/core/qwen/convert_checkpoint.py"])


def test_the_serve_facts_reject_later_versions_aliases():
    """Options that later TensorRT-LLM versions accept but 1.1.0rc0 did not (see the table's comment)."""
    engine = ["trtllm-serve", "serve", "/engine"]
    assert check([*engine, "--tp_size", "2", "--backend", "trt"]) == []
    assert check(["trtllm-serve", "/engine", "--pp_size", "2"]) == []  # the group's default command
    for later in (["--config", "x.yaml"], ["--tensor_parallel_size", "2"], ["--served_model_name", "m"]):
        assert check([*engine, *later]), later


# ---- AIPerf (aiperf 0.13.0, installed from PyPI in the test extra): the `aiperf profile` commands jobs.load_sweep
# runs, parsed by AIPerf's own command line (cyclopts, aiperf/cli.py and aiperf/config/flags/cli_config.py), which
# checks names, types, repeats and that --input-file exists; nothing is run.
LOAD_SWEEP_CONFIGS = ("load_sweep", "branches:load_sweep_chat_whole_answers")


def aiperf_errors(argv: List[str]) -> List[str]:
    from aiperf.cli import app

    assert argv[1] == "profile", argv
    try:
        app.parse_args(argv[1:], exit_on_error=False, print_error=False)
    except Exception as error:  # cyclopts' CycloptsError family, and pydantic's validation inside it
        return [f"{type(error).__name__}: {error}"]
    return []


def aiperf_commands(config: str, storage: str, tmp_path: Path) -> List[List[str]]:
    """Every point's `aiperf profile` argv of the configuration's load sweep, as its job would build them (the
    prompt file it writes made here, the tokenizer the tiny one)."""
    from jobs import load_sweep

    (client,) = [argv for name, argv in plan_commands(config, storage) if name.endswith("/client")]
    args = load_sweep.build_parser().parse_args(client[3:])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "Hello"}\n')
    cfg = load_sweep.sweep_config(args, str(prompts), "served-model")
    cfg = dataclasses.replace(cfg, tokenizer=str(STANDIN_PYTHON.parent / "data" / "tiny_tokenizer"))
    return [load_sweep.build_argv(cfg, c, str(tmp_path / f"c{c}"))[0:] for c in cfg.concurrencies]


@pytest.mark.parametrize("config", LOAD_SWEEP_CONFIGS)
def test_every_aiperf_command_parses_with_aiperfs_own_parser(config, storage, tmp_path):
    commands = aiperf_commands(config, storage, tmp_path)
    assert commands and all(argv[0] in ("aiperf", os.environ.get("AIPERF_BIN")) for argv in commands)
    failures = [f"{argv}\n    {problems}" for argv in commands for problems in [aiperf_errors(argv)] if problems]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("break_it, expected", [
    (lambda a: _replace(a, "--request-count", "--request-number"), "Unknown option: --request-number"),
    (lambda a: _set(a, "--concurrency", "four"), "four"),
    (lambda a: _twice(a, "--concurrency"), "specified multiple times"),
    (lambda a: _set(a, "--input-file", "/no/such/prompts.jsonl"), "is not a valid file or directory"),
])
def test_a_wrong_aiperf_command_fails(break_it, expected, storage, tmp_path):
    good = aiperf_commands("load_sweep", storage, tmp_path)[0]
    assert aiperf_errors(good) == []
    problems = aiperf_errors(break_it(list(good)))
    assert any(expected in p for p in problems), problems
