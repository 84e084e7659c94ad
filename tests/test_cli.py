"""The command line as a person meets it: `--help`, the `launcher` console script, shell completion."""
import os
import re
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from launcher.user_config import CONF_DIR

SUBCOMMANDS = ("status", "logs", "cancel", "report", "sync")
SCRIPTS = Path(sysconfig.get_path("scripts"))


def run(cwd, *argv, env=None):
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def groups_and_options():
    """{group: [options]} as conf/ holds them, read here independently of the code under test."""
    return {g.name: sorted(f.stem for f in g.glob("*.yaml")) for g in CONF_DIR.iterdir()
            if g.is_dir() and any(g.glob("*.yaml"))}


def listed_groups(text):
    """{group: [options]} as the help's "config groups" section lists them (its lines may wrap)."""
    section = text.split("config groups", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    parts = re.split(r"(?:^|\s)\+?(\w+):\s", " ".join(section.split()))[1:]
    return {group: [re.sub(r"\*$", "", o.split(" (")[0]) for o in options.split(", ")]
            for group, options in zip(parts[::2], parts[1::2])}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_subcommands_groups_and_their_options_without_the_schemas(tmp_path, flag):
    result = run(tmp_path, sys.executable, "-m", "launcher", flag)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "powered by Hydra" not in text and "_schema" not in text
    for subcommand in SUBCOMMANDS:
        assert f"\n  {subcommand} " in text, subcommand
    assert listed_groups(text) == groups_and_options()
    assert "  +experiment:" in text  # a group with no default is added with `+`
    for key in ("cluster=", "+experiment=", "launcher.dry_run=true", "-m ", "--config-dir", "LAUNCHER_CONFIG_DIR",
                "launcher --completion bash"):
        assert key in text, key
    assert "exit codes:" in text and "CONFIG_ERROR" in text  # launcher/exit_codes.py's table
    hydras = run(tmp_path, sys.executable, "-m", "launcher", "--hydra-help")  # Hydra's own page is still there
    assert hydras.returncode == 0 and "Hydra (1.3.2)" in hydras.stdout


def test_help_does_not_load_hydra():
    """Near-instant: --help is answered before Hydra (or OmegaConf, or rich) is imported."""
    code = ("import sys, contextlib, io\n"
            "sys.argv = ['launcher', '--help']\n"
            "from launcher.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main() == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'rich')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_shows_the_users_own_config_directory(tmp_path):
    (tmp_path / "cfg" / "cluster").mkdir(parents=True)
    (tmp_path / "cfg" / "cluster" / "mycluster.yaml").write_text("name: mycluster\n")
    result = run(tmp_path, sys.executable, "-m", "launcher", "--help",
                 env={"LAUNCHER_CONFIG_DIR": str(tmp_path / "cfg")})
    assert result.returncode == 0, result.stderr
    assert f"local*, mycluster ({tmp_path / 'cfg'})" in " ".join(result.stdout.split())  # lines may wrap


def test_the_console_script_is_installed_and_is_python_m_launcher(tmp_path):
    scripts = [e for e in entry_points(group="console_scripts") if e.name == "launcher"]
    assert [e.value for e in scripts] == ["launcher.__main__:main"]
    script = SCRIPTS / "launcher"
    assert script.is_file(), f"{script}: reinstall with pip install -e ."
    helped = run(tmp_path, str(script), "--help")
    assert helped.returncode == 0 and helped.stdout == run(tmp_path, sys.executable, "-m", "launcher", "--help").stdout
    planned = run(tmp_path, str(script), "+experiment=fp8_redrafter", "launcher.dry_run=true")
    assert planned.returncode == 0, planned.stderr
    assert "build_drafter_engine" in planned.stdout and "nothing was submitted" in planned.stdout
    assert len(list((tmp_path / "launcher_storage/experiments/fp8_redrafter/scripts").glob("*.sbatch"))) == 10
    status = run(tmp_path, str(script), "status")  # a subcommand, through the script: the dry run launched nothing
    assert status.returncode == 2 and "no experiment has been launched" in status.stderr


# TAB in bash, as readline calls the function: COMP_WORDS split as bash splits them (at `=` too).
COMPLETE = r"""
eval "$(launcher --completion bash)"
line=$1
COMP_LINE=$line COMP_POINT=${#line}
COMP_WORDBREAKS=${COMP_WORDBREAKS:-$' \t\n"'"'"'><=;|&(:'}
words=$(sed -E 's/=/ = /g' <<< "$line")
read -ra COMP_WORDS <<< "$words"
[[ $line == *[[:space:]] || $line == *= ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_launcher_complete
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(line, env=None):
    result = subprocess.run(["bash", "-c", COMPLETE, "complete", line], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": f"{SCRIPTS}{os.pathsep}{os.environ['PATH']}", **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_offers_the_subcommands_groups_and_keys():
    words = complete("launcher ")
    for word in (*SUBCOMMANDS, "cluster=", "model=", "+experiment=", "launcher.dry_run=", "--config-dir"):
        assert word in words, word
    assert complete("launcher st") == ["status"]
    assert complete("launcher status --w") == ["--watch"]


def test_completion_offers_a_groups_options_after_the_equals_sign(tmp_path):
    assert complete("launcher cluster=") == sorted(groups_and_options()["cluster"])
    assert complete("launcher cluster=lo") == ["local"]  # what bash puts after the `=` it split at
    assert complete("launcher +experiment=fp8") == ["fp8", "fp8_redrafter"]
    assert complete("launcher launcher.dry_run=") == ["true", "false"]
    assert not any("_schema" in w for w in complete("launcher model="))
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "mycluster.yaml").write_text("name: mycluster\n")
    assert "mycluster" in complete("launcher status cluster=", env={"LAUNCHER_CONFIG_DIR": str(tmp_path)})
    assert "mycluster" in complete(f"launcher --config-dir {tmp_path} cluster=my")


def test_completion_of_a_subcommand_offers_its_flags():
    assert {"--watch", "--interval", "--config-dir", "cluster="} <= set(complete("launcher status "))
    assert "--dry-run" in complete("launcher sync ")
