"""The batch scripts submitit writes for every stage: resources, dependencies, requeue, pyxis flags."""
import re
import shlex

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from launcher.dispatch.slurm import SlurmBackend, job_states, submitit_parameters, submitit_python
from launcher.dispatch.storage import code_snapshot_dir
from launcher.plan import build_plan
from launcher.scripts import ExperimentDir
from tests.helpers import NGC_IMAGE, compose_config, example_slurm_plan

@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return example_slurm_plan(tmp_path_factory.mktemp("storage"))


def sbatch_for(plan, name, deps=("11", "12")):
    stage = plan.stages[name]
    params = submitit_parameters(plan, stage, list(deps) if stage.deps else [], code_snapshot_dir(plan.storage_root))
    # What submitit writes (its private renderer, the one SlurmExecutor.submit uses).
    return _make_sbatch_string(command="python -u -m submitit.core._submit /f", folder="/f/%j", **params)


@pytest.mark.parametrize("name", ["download_model", "download_dataset", "calibration_data", "quantize",
                                  "train_drafter", "convert_drafter", "build_drafter_engine", "benchmark", "report"])
def test_every_stage_script(plan, name):
    script = sbatch_for(plan, name)
    stage = plan.stages[name]
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M))
    assert sbatch["job-name"] == f"launcher:fp8_redrafter:{name}"
    assert sbatch["time"] == str(stage.resources.time_min) and "requeue" in sbatch
    assert sbatch["signal"] == "USR2@90" and sbatch["account"] == "my_account"
    if stage.resources.gpus_per_node:
        assert sbatch["gpus-per-node"] == str(stage.resources.gpus_per_node) and sbatch["partition"] == "batch"
    else:
        assert "gpus-per-node" not in sbatch and sbatch["partition"] == "cpu"
    if stage.deps:
        assert sbatch["dependency"] == f"{stage.dependency_kind}:11:12" and sbatch["kill-on-invalid-dep"] == "yes"
    else:
        assert "dependency" not in sbatch
    srun = shlex.split(next(line for line in script.splitlines() if line.startswith("srun --unbuffered")))
    assert f"--container-image={NGC_IMAGE}" in srun  # survives shell quoting with its `#`
    container_env = next(a for a in srun if a.startswith("--container-env=")).split("=", 1)[1].split(",")
    assert "--no-container-mount-home" in srun and {"HF_TOKEN", "WANDB_API_KEY"} <= set(container_env)
    assert any(a.startswith("--container-mounts=" + plan.storage_root + ":" + plan.storage_root) for a in srun)
    assert any(a.startswith("--container-workdir=" + plan.storage_root + "/code/") for a in srun)
    assert "export WANDB_RUN_GROUP=fp8_redrafter" in script


def test_report_waits_for_any_benchmark_outcome(plan):
    assert "#SBATCH --dependency=afterany:11:12" in sbatch_for(plan, "report")


def test_benchmark_starts_the_sandbox_step_without_secrets(plan):
    script = sbatch_for(plan, "benchmark")
    sandbox = next(line for line in script.splitlines() if line.startswith("  srun --overlap"))
    assert "launcher-sandbox.sqsh" in sandbox and "--container-env" not in sandbox
    assert sandbox.endswith(" &") and "env -u HF_TOKEN -u WANDB_API_KEY" in sandbox
    assert script.index("srun --overlap") < script.index("srun --unbuffered")


def test_job_states_without_slurm_is_empty(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert job_states(["1", "2"]) == {}


def _sweep_plan(storage, *points):
    """A plan over several points, as a sweep builds it: each point's config composed on its own."""
    common = ("cluster=example_slurm", f"cluster.storage_root={storage}", "+experiment=fp8",
              f"cluster.containers.trtllm='{NGC_IMAGE}'")
    return build_plan("sweep", {f"point{i}": compose_config(*common, *p) for i, p in enumerate(points)})


def _benchmark_keys(sweep):
    backend = SlurmBackend(sweep, ExperimentDir(sweep.storage_root, "sweep"), code_snapshot_dir(sweep.storage_root))
    return [backend.batch_key(s, ["11"]) for s in sweep.stages.values() if s.kind == "benchmark"]


def test_points_with_the_same_batch_script_share_an_array(tmp_path):
    keys = _benchmark_keys(_sweep_plan(tmp_path, ["serving.max_batch_size=8"], ["serving.max_batch_size=16"]))
    assert len(keys) == 2 and keys[0] == keys[1]


@pytest.mark.parametrize("override", [
    "cluster.containers.sandbox=/images/other-sandbox.sqsh",  # a different image in the srun of the sandbox
    "serving.sandbox.port=7000",  # the sandbox the batch script starts
    "cluster.containers.trtllm=/images/trtllm-other.sqsh",  # the stage's own image (a TRT-LLM version sweep)
])
def test_points_whose_batch_scripts_differ_never_share_an_array(tmp_path, override):
    keys = _benchmark_keys(_sweep_plan(tmp_path, [], [override]))
    assert len(keys) == 2 and keys[0] != keys[1]


def test_the_report_goes_alone(plan):
    backend = SlurmBackend(plan, ExperimentDir(plan.storage_root, plan.experiment),
                           code_snapshot_dir(plan.storage_root))
    assert backend.batch_key(plan.stages["report"], ["1"]) == "report"


@pytest.mark.parametrize("minutes, lead_s", [(5, 30), (10, 60), (15, 90), (720, 90)])
def test_the_time_limit_warning_scales_with_a_short_limit(tmp_path, minutes, lead_s):
    """USR2 (submitit's checkpoint and requeue) comes 90 s before the limit, a tenth of a short limit (never under
    30 s): at 90 s a short stage was warned, and requeued, almost at once. The dry run's script says the same."""
    from launcher.scripts import render_script
    from tests.helpers import plan_for

    plan = plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}",
                    f"+cluster.time_limits.quantize={minutes}")
    assert f"#SBATCH --signal=USR2@{lead_s}\n" in sbatch_for(plan, "quantize")
    script = render_script(plan, plan.stages["quantize"], ExperimentDir(plan.storage_root, plan.experiment), None,
                           code_snapshot_dir(plan.storage_root))
    assert f"#SBATCH --signal=USR2@{lead_s}\n" in script


def sbatch_for_real_command(plan, name):
    """The script submitit writes, with the command SlurmBackend gives it (cluster.python checked first)."""
    stage = plan.stages[name]
    params = submitit_parameters(plan, stage, ["11"], code_snapshot_dir(plan.storage_root))
    return _make_sbatch_string(command=f"{submitit_python(stage)} -u -m submitit.core._submit /f", folder="/f/%j",
                               **params)


def test_submitits_script_names_every_variable_it_exports_in_container_env(plan):
    """pyxis gives the image's own ENV precedence over any variable not named in --container-env (seen under
    pyxis 0.24): every export of the script submitit writes, its own SUBMITIT_EXECUTOR too, is named."""
    for name in plan.stages:
        script = sbatch_for_real_command(plan, name)
        exported = set(re.findall(r"^\s*export (\w+)=", script, re.M))
        assert {"PYTHONPATH", "SUBMITIT_EXECUTOR"} <= exported
        srun = shlex.split(next(line for line in script.splitlines() if line.startswith("srun --unbuffered")))
        named = next(a for a in srun if a.startswith("--container-env=")).split("=", 1)[1].split(",")
        assert exported | {"HF_TOKEN", "WANDB_API_KEY"} <= set(named), (name, exported - set(named))


def test_submitits_job_checks_cluster_python_in_the_image_first(plan):
    script = sbatch_for_real_command(plan, "quantize")
    srun = shlex.split(next(line for line in script.splitlines() if line.startswith("srun --unbuffered")))
    inner = srun[next(i for i, w in enumerate(srun) if w == "sh"):]
    assert inner[:2] == ["sh", "-c"] and inner[3:] == ["python", "-u", "-m", "submitit.core._submit", "/f"]
    assert f"cluster.python=python is not in the container image {NGC_IMAGE}" in inner[2]
