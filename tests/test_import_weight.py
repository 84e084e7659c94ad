"""`python -m launcher status` answers in a fraction of a second (issue 10, item 5): it reads an experiment's
state and asks Slurm, and never loads what composing, planning or rendering needs (Hydra, OmegaConf, jinja2),
which took most of its second."""
import json
import subprocess
import sys
import time

from launcher.contract import ExperimentState, StageRecord
from launcher.dispatch.storage import ExperimentDir

HEAVY = ("hydra", "omegaconf", "jinja2")

# Runs `python -m launcher status ...` as __main__ does, then prints the top-level packages it loaded.
PROBE = """
import runpy, sys
sys.argv = ["launcher", *sys.argv[1:]]
try:
    runpy.run_module("launcher", run_name="__main__")
except SystemExit:
    pass
print("MODULES", " ".join(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""


def loaded_by(*argv: str, cwd) -> set:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd,
                            timeout=120)
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_status_of_a_named_cluster_loads_neither_hydra_omegaconf_nor_jinja2(tmp_path):
    root, conf = tmp_path / "storage", tmp_path / "conf"
    (conf / "cluster").mkdir(parents=True)
    (conf / "cluster" / "here.yaml").write_text(f"defaults:\n  - local\n  - _self_\nstorage_root: {root}\n")
    exp = ExperimentDir(str(root), "exp")
    exp.state.parent.mkdir(parents=True)
    record = StageRecord(kind="download_model", fingerprint="0" * 16, job_id="local-1-1", action="submitted",
                         log=str(exp.log("download_model")), artifact=str(root / "artifacts" / "x"))
    state = ExperimentState(experiment="exp", executor="local", storage_root=str(root), code=str(root / "code"),
                            submitted_at=time.time(), stages={"download_model": record}, umask="0002")
    exp.state.write_text(json.dumps(state.to_json()))
    (root / "experiments" / "LATEST").write_text("exp")

    loaded = loaded_by("status", "--config-dir", str(conf), "cluster=here", cwd=tmp_path)
    assert "launcher" in loaded and "rich" in loaded  # it ran, and printed its table
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_the_probe_sees_what_a_launch_loads(tmp_path):
    """The same probe on a dry run names Hydra: the test above can fail."""
    loaded = loaded_by("+experiment=bf16", "launcher.dry_run=true", f"cluster.storage_root={tmp_path}", cwd=tmp_path)
    assert set(HEAVY) <= loaded
