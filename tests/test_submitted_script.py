"""The script a dry run writes is the script sbatch receives (issue 10, item 1), read back from the real Slurm
test cluster: every stage kind of a campaign swept over a serving setting, its similar benchmarks as arrays.
submitit used to write its own script (another --output, another --time, another command). And it stays a
script a person can submit by hand, which runs its stage without submitit."""
import json
import os
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from rich.console import Console

from launcher.dispatch import submit
from launcher.dispatch.storage import code_snapshot_dir
from launcher.launch import compose_variants, validate_variants
from launcher.plan import build_plan
from launcher.preview import job_id_placeholder, write_dry_run_files
from launcher.schema import CONF_DIR, register_configs
from launcher.scripts import SUBMITIT_LAUNCH_ENV, ExperimentDir

pytestmark = pytest.mark.slurm

SIZES = (8, 16)
KINDS = {"download_model", "download_dataset", "calibration_data", "quantize", "train_drafter", "convert_drafter",
         "build_engine", "smoke_run", "build_drafter_engine", "benchmark", "report"}


def campaign_sweep(root: Path):
    """`-m +experiment=aimo2_campaign serving.max_batch_size=8,16` as launcher.sweep plans it, on the test
    cluster (no container: nothing needs to run here, only to be submitted)."""
    cluster = ["cluster=example_slurm", "cluster.account=null", "cluster.qos=null", "cluster.partition=debug",
               "cluster.cpu_partition=null", "cluster.container_runtime=none", "cluster.mounts=[]",
               "cluster.cpus_per_gpu=2", "cluster.mem_per_gpu_gb=1", "cluster.required_env_vars=[]",
               f"cluster.storage_root={root}", f"cluster.python={sys.executable}"]
    register_configs()
    variants, applied = {}, {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for size in SIZES:
            overrides = [*cluster, "+experiment=aimo2_campaign", f"serving.max_batch_size={size}"]
            cfg = compose("config", overrides=overrides)
            with open_dict(cfg):
                cfg.launcher.experiment_name = f"aimo2_campaign.max_batch_size={size}"
            point = compose_variants(cfg, overrides, prefix=f"{cfg.launcher.experiment_name}.")
            variants.update(point)
            applied.update({name: overrides for name in point})
        validate_variants(variants, applied)
    return build_plan("aimo2_campaign-sweep-test", variants)


def with_job_ids(text: str, ids: dict, accounting: list) -> str:
    """A dry run's script with the job ids of the launch where it writes placeholders: the report's sacct
    `-j` list as the launch quotes it (shlex), every other placeholder as it stands (--dependency: bare)."""
    placeholders = ",".join(job_id_placeholder(name) for name in accounting)
    text = text.replace(shlex.quote(placeholders), shlex.quote(",".join(ids[name] for name in accounting)))
    for name, job in ids.items():  # an array's own id where a dependency waits on the corresponding element
        array, _, element = job.partition("_")
        if element == "0":
            text = text.replace(job_id_placeholder(f"array:{name}"), array)
    for name, job in ids.items():
        text = text.replace(job_id_placeholder(name), job)
    return text


def batch_script(job_id: str) -> bytes:
    return subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], check=True, capture_output=True,
                          timeout=30).stdout


def stdout_of(job_id: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], check=True, capture_output=True, text=True,
                           timeout=30).stdout
    return next(word for word in shown.split() if word.startswith("StdOut=")).split("=", 1)[1]


@pytest.fixture(scope="module")
def launched(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("submitted")
    plan = campaign_sweep(root)
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    preview = ExperimentDir(plan.storage_root, plan.experiment, root=root / "preview")
    write_dry_run_files(plan, exp, code_snapshot_dir(plan.storage_root), into=preview)
    records = submit(plan, Console(file=open("/dev/null", "w")))
    ids = {name: str(record["job_id"]) for name, record in records.items()}
    try:
        yield plan, preview, records, ids
    finally:
        subprocess.run(["scancel", *ids.values()], check=False)


def test_the_plan_has_every_kind_and_arrays(launched):
    plan, _, records, ids = launched
    assert {stage.kind for stage in plan.stages.values()} == KINDS
    assert {record["action"] for record in records.values()} == {"submitted"}
    arrays = {job.split("_")[0] for job in ids.values() if "_" in job}
    assert arrays and all(sum(job.startswith(a + "_") for job in ids.values()) == len(SIZES) for a in arrays)


def test_the_dry_runs_script_is_byte_for_byte_what_sbatch_received(launched):
    plan, preview, _, ids = launched
    accounting = [name for name, stage in plan.stages.items() if stage.kind != "report"]
    checked = set()
    for name, stage in plan.stages.items():
        written = with_job_ids(preview.script(name).read_text(), ids, accounting)
        received = batch_script(ids[name]).decode()
        assert received == written, (name, ids[name])
        checked.add(stage.kind)
    assert checked == KINDS


def test_submitit_keeps_the_same_script_in_the_jobs_folder(launched):
    plan, _, _, ids = launched
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    for name in plan.stages:
        job = ids[name].split("_")[0]
        assert (exp.submitit / f"{job}_submission.sh").read_bytes() == batch_script(ids[name]), name


def test_the_records_log_is_the_file_slurm_writes(launched):
    """One --output, submitit's: each array element its own; the record (`status`, `logs`) names it."""
    plan, _, records, ids = launched
    logs = {}
    for name in plan.stages:
        assert stdout_of(ids[name]) == records[name]["log"], name
        logs[records[name]["log"]] = name
    assert len(logs) == len(plan.stages)
    state = json.loads((ExperimentDir(plan.storage_root, plan.experiment).state).read_text())
    assert {name: r["log"] for name, r in state["stages"].items()} == {n: r["log"] for n, r in records.items()}


def test_a_dry_runs_scripts_submitted_by_hand_run_their_stages(slurm_cluster, tmp_path):
    """A dry run's script is submittable by hand, as README says: `sbatch <script>`, and for a stage with
    inputs `sbatch --dependency=afterok:<job> <script>` over the placeholder it writes. No submitit pickled a
    job for it: its step runs the stage itself (jobs.run_stage), which publishes the artifact. The GPU tools
    are the stand-ins of tests/test_e2e_slurm.py."""
    from tests.test_e2e_slurm import STANDINS, launcher

    launcher(tmp_path, "+experiment=bf16", "launcher.dry_run=true")
    exp = ExperimentDir(str(tmp_path), "bf16")
    env = {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
           "WANDB_MODE": "disabled"}
    env.pop(SUBMITIT_LAUNCH_ENV, None)

    def sbatch(*args) -> str:
        return subprocess.run(["sbatch", "--parsable", *args], check=True, capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=30).stdout.strip()

    download = sbatch(str(exp.script("download_model")))
    quantize = sbatch(f"--dependency=afterok:{download}", str(exp.script("quantize")))
    try:
        rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done([download, quantize], timeout=240)}
        for name, job in (("download_model", download), ("quantize", quantize)):
            log = exp.submitit / f"{job}_0_log.out"
            assert rows[job]["State"] == "COMPLETED", (name, rows[job], log.read_text() if log.exists() else "")
            spec = json.loads(exp.spec(name).read_text())
            manifest = json.loads((Path(spec["artifact"]) / "manifest.json").read_text())
            assert manifest["job_id"] == job and manifest["fingerprint"] == spec["fingerprint"], name
            assert f"{name}: published {spec['artifact']}" in log.read_text(), name
        assert datetime.fromisoformat(rows[quantize]["Start"]) >= datetime.fromisoformat(rows[download]["End"])
        assert not list(exp.submitit.glob("*.pkl"))  # nothing of submitit's
    finally:
        subprocess.run(["scancel", download, quantize], check=False)
