"""What a launch writes, and where: nothing before validation passed, no secret, nothing outside the storage
root, nothing world-readable, and nothing at a storage root this machine cannot write (issue 9: 1, 3, 4, 9)."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.exit_codes import CONFIG_ERROR
from launcher.scripts import ExperimentDir, render_script
from launcher.validation import InvalidConfig
from tests.helpers import plan_for

# Built, so that no token-shaped literal is committed.
FAKE_HF_TOKEN = "hf_" + "fAkE" * 8
STANDINS = Path(__file__).resolve().parent / "standins"


def run_launcher(cwd, *args, env=None, prefix=()):
    environment = {k: v for k, v in os.environ.items() if k not in ("LAUNCHER_STORAGE_ROOT", "HF_TOKEN")}
    return subprocess.run([*prefix, sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**environment, **(env or {})})


def everything_under(path: Path):
    return sorted(path.rglob("*"))


@pytest.fixture
def workdir(tmp_path):
    """The launch's working directory, inside tmp_path: a path that leaves it shows up beside it."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


# --- 1. a secret given by value reaches no file -------------------------------------------------------------

@pytest.mark.parametrize("secret", [f"+cluster.hf_token={FAKE_HF_TOKEN}", f"model.revision={FAKE_HF_TOKEN}"])
@pytest.mark.parametrize("mode", [
    ["launcher.dry_run=true"],
    [],  # a launch (cluster=local: it would run the stages here)
    ["-m", "launcher.dry_run=true", "drafter.num_layers=1,2"],  # a sweep: Hydra's multirun.yaml, the points' configs
])
def test_a_secret_given_by_value_is_refused_before_anything_is_written(tmp_path, workdir, secret, mode):
    result = run_launcher(workdir, *mode, "+experiment=fp8_redrafter", secret)
    assert result.returncode == CONFIG_ERROR, result.stdout + result.stderr
    assert FAKE_HF_TOKEN not in result.stdout + result.stderr
    written = everything_under(tmp_path)
    assert written == [workdir], written  # not the storage root's directories, not a Hydra file
    for path in written:
        assert path.is_dir() or FAKE_HF_TOKEN.encode() not in path.read_bytes()


def test_a_launch_saves_its_config_once_valid(workdir):
    result = run_launcher(workdir, "+experiment=fp8", "launcher.dry_run=true", "quantization.calib_size=512")
    assert result.returncode == 0, result.stdout + result.stderr
    exp = workdir / "launcher_storage" / "experiments" / "fp8"
    import yaml

    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["quantization"]["calib_size"] == 512 and config["launcher"]["experiment_name"] == "fp8"
    assert yaml.safe_load((exp / "overrides.yaml").read_text()) == [
        "+experiment=fp8", "launcher.dry_run=true", "quantization.calib_size=512"]
    assert not (exp / "hydra").exists() and not list(workdir.glob("*.log"))


def test_what_is_saved_is_redacted_as_validation_judges_secrets():
    from launcher.validation import redacted, redacted_overrides

    commit = "0123456789abcdef" * 2 + "01234567"  # a revision may be a commit
    config = {"model": {"revision": commit, "hf_id": "nvidia/x"},
              "cluster": {"hf_token": "anything", "env_vars": ["HF_TOKEN", f"HF_TOKEN={FAKE_HF_TOKEN}"],
                          "env": {"NCCL_DEBUG": "WARN", "MY_API_KEY": "abc", "X": FAKE_HF_TOKEN}}}
    assert redacted(config) == {"model": {"revision": commit, "hf_id": "nvidia/x"},
                                "cluster": {"hf_token": "<redacted>", "env_vars": ["HF_TOKEN", "<redacted>"],
                                            "env": {"NCCL_DEBUG": "WARN", "MY_API_KEY": "<redacted>",
                                                    "X": "<redacted>"}}}
    assert redacted_overrides([f"+cluster.hf_token={FAKE_HF_TOKEN}", f"model.revision={commit}",
                               f"cluster.env_vars=['HF_TOKEN={FAKE_HF_TOKEN}']", "+cluster.env.DB_PASSWORD=x",
                               "drafter=redrafter"]) == [
        "+cluster.hf_token=<redacted>", f"model.revision={commit}", "cluster.env_vars=<redacted>",
        "+cluster.env.DB_PASSWORD=<redacted>", "drafter=redrafter"]


# --- 3. names are one safe path component --------------------------------------------------------------------

@pytest.mark.parametrize("overrides, key", [
    (["launcher.experiment_name=../../../x"], "launcher.experiment_name"),
    (["launcher.experiment_name="], "launcher.experiment_name"),  # experiments/ itself
    (["launcher.experiment_name=.."], "launcher.experiment_name"),
    (["model.name=../m"], "model.name"),  # in the default name, ${model.name}-${quantization.name}-...
    (["+experiment=aimo2_campaign", "launcher.campaign=[bf16,../../x]"], "launcher.campaign[1]"),
    (["-m", "launcher.experiment_name=ok,../../../x"], "launcher.experiment_name"),  # a sweep point's name
])
def test_a_name_that_is_not_one_path_component_is_refused_naming_the_key(tmp_path, workdir, overrides, key):
    result = run_launcher(workdir, *overrides, "launcher.dry_run=true")
    assert result.returncode == CONFIG_ERROR, result.stdout + result.stderr
    assert f"{key}=" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert everything_under(tmp_path) == [workdir]


def test_a_name_made_of_a_long_model_name_is_refused():
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8", "launcher.experiment_name=" + "x" * 161)
    assert [e.key for e in raised.value.errors] == ["launcher.experiment_name"]


def test_stage_files_stay_in_their_folder_whatever_the_config_values(workdir):
    """Repeated stages are named after the values that set them apart, such as a dataset `org/name`."""
    from launcher.dispatch.storage import stage_file_name

    result = run_launcher(workdir, "-m", "+experiment=fp8", "launcher.dry_run=true",
                          "quantization.calib_dataset=org/a,org/b")
    assert result.returncode == 0, result.stdout + result.stderr
    exp = next((workdir / "launcher_storage" / "experiments").iterdir())
    for folder in ("scripts", "stages", "logs"):
        assert all(p.is_file() for p in (exp / folder).iterdir()) or folder == "logs"
        assert not [p for p in (exp / folder).iterdir() if p.is_dir()]
    assert len(list((exp / "scripts").iterdir())) == len(list((exp / "stages").iterdir()))
    assert sorted(p.name for p in workdir.iterdir()) == ["launcher_storage"]
    assert sorted(p.name for p in (workdir / "launcher_storage").iterdir()) == ["code", "experiments", "sweeps"]
    names = [stage_file_name("calibration_data[calib_dataset=../../x]"), stage_file_name("a/b"),
             stage_file_name("a_b"), stage_file_name("a~2fb"), stage_file_name("q[x=" + "y" * 300 + "]")]
    assert len(set(names)) == len(names) and all("/" not in n and "%" not in n and len(n) <= 200 for n in names)


# --- 4. what is written is the user's: cluster.umask ---------------------------------------------------------

def modes(root: Path):
    return {p: stat.S_IMODE(p.lstat().st_mode) for p in everything_under(root) if not p.is_symlink()}


def test_a_dry_run_writes_nothing_world_readable_and_umask_022_gives_the_old_modes(workdir):
    private = workdir / "private"
    assert run_launcher(workdir, "+experiment=fp8", "launcher.dry_run=true",
                        f"cluster.storage_root={private}").returncode == 0
    written = modes(private)
    assert len(written) > 20 and {p: m for p, m in written.items() if m & 0o007} == {}
    assert {p: m for p, m in written.items() if not m & 0o040} == {}  # the group reads (the default, 027)

    shared = workdir / "shared"
    assert run_launcher(workdir, "+experiment=fp8", "launcher.dry_run=true", f"cluster.storage_root={shared}",
                        "cluster.umask=022").returncode == 0
    old = {p.relative_to(shared): m for p, m in modes(shared).items()}
    assert {m for p, m in old.items() if (shared / p).is_dir()} == {0o755}
    assert {m for p, m in old.items() if (shared / p).is_file()} == {0o644}
    assert set(old) == {p.relative_to(private) for p in written}


def test_a_local_run_and_its_jobs_write_nothing_world_readable(workdir):
    python = sys.executable
    env = {"PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": os.pathsep.join(filter(None, [str(STANDINS / "python"), os.environ.get("PYTHONPATH")])),
           "WANDB_MODE": "disabled"}
    result = run_launcher(workdir, "+experiment=bf16", "cluster=local", f"cluster.storage_root={workdir / 's'}",
                          f"cluster.python={python}", f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}",
                          "benchmark.num_generations=2", "benchmark.cancel_after=1", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (workdir / "s" / "experiments" / "bf16" / "report.md").unlink()
    again = run_launcher(workdir, "report", "bf16", f"cluster.storage_root={workdir / 's'}", prefix=(
        "sh", "-c", 'umask 022 && exec "$@"', "sh"))  # from a shell that shares what it writes
    assert again.returncode == 0, again.stdout + again.stderr
    written = modes(workdir / "s")
    assert (workdir / "s" / "experiments" / "bf16" / "report.md") in written
    assert any(p.name == "manifest.json" for p in written) and any(p.suffix == ".log" for p in written)
    assert {p: oct(m) for p, m in written.items() if m & 0o007} == {}


def test_every_batch_script_sets_the_umask_first(tmp_path):
    for umask, line in (("027", "umask 0027"), ("0o077", "umask 0077")):
        plan = plan_for("cluster=example_slurm", "+experiment=fp8_redrafter", f"cluster.storage_root={tmp_path}",
                        f"cluster.umask={umask}")
        exp = ExperimentDir(plan.storage_root, plan.experiment)
        for stage in plan.stages.values():
            script = render_script(plan, stage, exp, None, tmp_path / "code")
            commands = [s for s in script.splitlines() if s.strip() and not s.startswith("#")]
            assert commands[0] == line, (stage.name, commands[:2])


@pytest.mark.parametrize("umask, words", [
    ("'020'", "every user"),  # others may write
    ("0727", "owner"),
    ("27", "leading 0"),  # as YAML reads a bare 027: the number 23
    ("'0o99'", "leading 0"),
])
def test_a_umask_that_would_share_too_much_is_refused(umask, words):
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8", f"cluster.umask={umask}")
    assert [e.key for e in raised.value.errors] == ["cluster.umask"] and words in str(raised.value)


# --- 9. the storage root is checked before anything is created there -----------------------------------------

SLURM = ("cluster=example_slurm", "+experiment=fp8")


def test_a_storage_root_this_machine_does_not_mount(tmp_path, workdir):
    root = tmp_path / "lustre" / "fsw" / "launcher"  # /lustre is not mounted here
    dry = run_launcher(workdir, *SLURM, "launcher.dry_run=true", f"cluster.storage_root={root}")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    preview = workdir / "launcher_preview" / "fp8"
    assert f"writes its preview to {preview}" in " ".join(dry.stdout.split())
    assert len(list((preview / "scripts").glob("*.sbatch"))) == 8 and (preview / "config.yaml").is_file()
    # The job's log is submitit's, in the experiment's folder on the real storage root, not the preview's.
    quantize = (preview / "scripts" / "quantize.sbatch").read_text()
    assert f"--output={root}/experiments/fp8/submitit/%j_0_log.out" in quantize

    launch = run_launcher(workdir, *SLURM, f"cluster.storage_root={root}", env={"HF_TOKEN": "set"})
    assert launch.returncode == CONFIG_ERROR
    assert f"cluster.storage_root='{root}'" in launch.stdout and "mounted" in launch.stdout
    assert not (tmp_path / "lustre").exists()


def test_a_storage_root_that_is_a_file(tmp_path, workdir):
    root = tmp_path / "storage"
    root.write_text("not a directory")
    dry = run_launcher(workdir, *SLURM, "launcher.dry_run=true", f"cluster.storage_root={root}")
    assert dry.returncode == 0 and "is not a directory" in dry.stdout, dry.stdout + dry.stderr
    launch = run_launcher(workdir, *SLURM, f"cluster.storage_root={root}", env={"HF_TOKEN": "set"})
    assert launch.returncode == CONFIG_ERROR and "Traceback" not in launch.stdout + launch.stderr
    assert f"cluster.storage_root='{root}': {root} is not a directory" in launch.stdout


def read_only(root: Path):
    """A command prefix under which `root` is read-only. As root, permissions deny nothing (os.access says yes,
    writes succeed): a read-only bind mount in a mount namespace of its own, where this machine allows it."""
    if os.geteuid() != 0:
        root.chmod(0o555)
        return ()
    mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "sh", "-c", mount, str(root), "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("running as root without a mount namespace for a read-only bind mount (unshare -m)")
    return ("unshare", "-m", "sh", "-c", mount, str(root))


def test_a_read_only_storage_root_gets_a_message_not_a_traceback(tmp_path, workdir):
    root = tmp_path / "storage"
    root.mkdir()
    prefix = read_only(root)
    dry = run_launcher(workdir, *SLURM, "launcher.dry_run=true", f"cluster.storage_root={root}", prefix=prefix)
    assert dry.returncode == 0 and "not writable" in dry.stdout, dry.stdout + dry.stderr
    assert (workdir / "launcher_preview" / "fp8" / "scripts" / "quantize.sbatch").is_file()
    launch = run_launcher(workdir, *SLURM, f"cluster.storage_root={root}", env={"HF_TOKEN": "set"}, prefix=prefix)
    assert launch.returncode == CONFIG_ERROR and "Traceback" not in launch.stdout + launch.stderr
    assert f"cluster.storage_root='{root}': {root} is not writable" in " ".join(launch.stdout.split())
    assert list(root.iterdir()) == []


def test_storage_problem_judges_the_nearest_existing_directory(tmp_path, monkeypatch):
    from launcher.validation import storage_problem

    assert storage_problem(str(tmp_path)) is None
    assert storage_problem(str(tmp_path / "new")) is None  # one level is made by the launch
    assert "mounted" in storage_problem(str(tmp_path / "a" / "b"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert "not writable" in storage_problem(str(tmp_path / "new"))
