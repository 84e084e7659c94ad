"""The batch scripts sbatch receives for every stage: resources, dependencies, requeue, pyxis flags, and the
command submitit starts, or the stage itself when the script is submitted by hand (the same text a dry run
writes: tests/test_submitted_script.py reads it back from Slurm, and submits one by hand)."""
import re
import shlex

import pytest

from launcher.dispatch.slurm import SlurmBackend, job_states, submitit_python
from launcher.dispatch.storage import code_snapshot_dir
from launcher.plan import build_plan
from launcher.scripts import (SUBMITIT_LAUNCH_ENV, ExperimentDir, format_time_limit, job_argv, render_script,
                              stage_image, submitit_argv, submitit_folder)
from tests.helpers import NGC_IMAGE, compose_config, example_slurm_plan

@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return example_slurm_plan(tmp_path_factory.mktemp("storage"))


def sbatch_for(plan, name, deps=("11", "12"), array=()):
    """The script SlurmBackend.submit gives submitit for this stage (its dependencies' jobs `deps`)."""
    stage = plan.stages[name]
    return render_script(plan, stage, ExperimentDir(plan.storage_root, plan.experiment),
                         stage.dependency(list(deps) if stage.deps else []), code_snapshot_dir(plan.storage_root),
                         array=array)


def stage_step(script, launched=True):
    """The stage's srun, the script's last command, as words: its command the one the script chooses where the
    launch submitted it (`launched`), else where it is submitted by hand. An array's element's spec stays
    `${stage_specs[SLURM_ARRAY_TASK_ID]}`."""
    lines = script.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("srun "))
    srun = shlex.split("\n".join(lines[start:]).replace("\\\n", " "))
    assert srun[-1] == "${stage_step[@]}", srun[-1]
    choices = re.findall(r"^  stage_step=\((.*)\)$", script, re.M)
    assert len(choices) == 2 and re.search(r"^if \[ -n \"\$\{LAUNCHER_SUBMITIT:-}\" ]; then$", script, re.M)
    return srun[:-1] + shlex.split(choices[0 if launched else 1])


@pytest.mark.parametrize("name", ["download_model", "download_dataset", "calibration_data", "quantize",
                                  "train_drafter", "convert_drafter", "build_drafter_engine", "benchmark", "report"])
def test_every_stage_script(plan, name):
    script = sbatch_for(plan, name)
    stage = plan.stages[name]
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M))
    assert sbatch["job-name"] == f"launcher:fp8_redrafter:{name}"
    assert sbatch["time"] == format_time_limit(stage.resources.time_min) and "requeue" in sbatch
    assert sbatch["signal"] == "USR2@90" and sbatch["account"] == "my_account"
    if stage.resources.gpus_per_node:
        assert sbatch["gpus-per-node"] == str(stage.resources.gpus_per_node) and sbatch["partition"] == "batch"
    else:
        assert "gpus-per-node" not in sbatch and sbatch["partition"] == "cpu"
    if stage.deps:
        assert sbatch["dependency"] == f"{stage.dependency_kind}:11:12" and sbatch["kill-on-invalid-dep"] == "yes"
    else:
        assert "dependency" not in sbatch
    assert "array" not in sbatch
    srun = stage_step(script)
    assert srun[:2] == ["srun", "--unbuffered"]
    assert f"--container-image={NGC_IMAGE}" in srun  # survives shell quoting with its `#`
    container_env = next(a for a in srun if a.startswith("--container-env=")).split("=", 1)[1].split(",")
    assert "--no-container-mount-home" in srun and {"HF_TOKEN", "WANDB_API_KEY"} <= set(container_env)
    assert any(a.startswith("--container-mounts=" + plan.storage_root + ":" + plan.storage_root) for a in srun)
    assert any(a.startswith("--container-workdir=" + plan.storage_root + "/code/") for a in srun)
    assert "export WANDB_RUN_GROUP=fp8_redrafter" in script


def test_one_log_where_submitit_looks_for_it(plan):
    """sbatch's --output is submitit's JobPaths.stdout (the launch's record of the stage, what `status` reads);
    the step writes there too (no srun --output of its own)."""
    from submitit.core.utils import JobPaths

    exp = ExperimentDir(plan.storage_root, plan.experiment)
    script = sbatch_for(plan, "quantize")
    output = re.search(r"^#SBATCH --output=(.*)$", script, re.M)[1]
    assert str(JobPaths(submitit_folder(exp), job_id="4242").stdout) == output.replace("%j", "4242")
    assert output == f"{exp.submitit}/%j_0_log.out"  # a folder that exists before the job starts
    assert "--output" not in stage_step(script) and "--error" not in script


def test_similar_stages_share_one_array_script(plan):
    """An array's script: --array over its elements, each element's own log (%A_%a, submitit's JobPaths of
    `<array id>_<i>`), a job name for the whole, every element named in the comments."""
    from submitit.core.utils import JobPaths

    stages = [plan.stages["quantize"], plan.stages["train_drafter"]]  # as if batch_key had grouped them
    script = sbatch_for(plan, "train_drafter", array=stages)
    assert script == sbatch_for(plan, "quantize", array=stages)
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M))
    assert sbatch["array"] == "0-1"
    assert sbatch["job-name"] == '"launcher:fp8_redrafter:quantize[array of 2]"'  # a space: quoted for sbatch
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    assert sbatch["output"].replace("%A", "77").replace("%a", "1") == str(JobPaths(submitit_folder(exp), "77_1").stdout)
    assert "#   [0] quantize: " in script and "#   [1] train_drafter: " in script


def test_the_stage_step_runs_what_submitit_starts(plan):
    """submitit's command (SlurmExecutor._submitit_command_str: `<python> -u -m submitit.core._submit <folder>`),
    where the launch submitted the script, with SUBMITIT_EXECUTOR exported and named for pyxis."""
    import submitit

    exp = ExperimentDir(plan.storage_root, plan.experiment)
    stage = plan.stages["quantize"]
    executor = submitit.SlurmExecutor(folder=submitit_folder(exp), python=submitit_python(stage))
    script = sbatch_for(plan, "quantize")
    launched = script.index(f'if [ -n "${{{SUBMITIT_LAUNCH_ENV}:-}}" ]; then\n')
    by_hand = script.index("\nelse\n", launched)
    assert script.index(f"\n  stage_step=({executor._submitit_command_str})\n", launched) < by_hand
    assert shlex.join(submitit_argv(stage, exp)) == executor._submitit_command_str
    assert launched < script.index("\n  export SUBMITIT_EXECUTOR=slurm\n") < by_hand
    container_env = next(a for a in stage_step(script) if a.startswith("--container-env=")).split(",")
    assert "SUBMITIT_EXECUTOR" in container_env


def test_submitted_by_hand_the_stage_step_runs_the_stage_itself(plan):
    """What cluster=local runs (jobs.run_stage with the stage's spec), in the same srun and container: no
    submitit pickled a job for a dry run's script."""
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    stage = plan.stages["quantize"]
    launched, by_hand = stage_step(sbatch_for(plan, "quantize")), stage_step(sbatch_for(plan, "quantize"), False)
    inner = job_argv(stage.cfg, exp.spec("quantize"), stage_image(stage))
    assert by_hand == [*launched[:-len(submitit_argv(stage, exp))], *inner]


def test_an_arrays_element_submitted_by_hand_runs_its_own_stage(plan):
    stages = [plan.stages["quantize"], plan.stages["train_drafter"]]
    script = sbatch_for(plan, "quantize", array=stages)
    (specs,) = re.findall(r"^  stage_specs=\((.*)\)  # element i runs stage \[i\]$", script, re.M)
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    assert shlex.split(specs) == [str(exp.spec("quantize")), str(exp.spec("train_drafter"))]
    assert stage_step(script, launched=False)[-1] == "${stage_specs[SLURM_ARRAY_TASK_ID]}"


def test_the_launchs_sbatch_call_says_submitit_pickled_the_job(plan, tmp_path):
    """The script is the dry run's too: what tells it that a launch submitted it is on sbatch's command line,
    for every sbatch call of submitit (one job, or an array: both go through _submit_command)."""
    from launcher.dispatch.submitit_script import ScriptExecutor

    stage = plan.stages["quantize"]
    executor = ScriptExecutor(tmp_path, python=submitit_python(stage), script=sbatch_for(plan, "quantize"),
                              command=shlex.join(submitit_argv(stage, ExperimentDir(plan.storage_root,
                                                                                    plan.experiment))),
                              array_size=1)
    assert executor._make_submission_command(tmp_path / "job.sh") == [
        "sbatch", f"--export=ALL,{SUBMITIT_LAUNCH_ENV}=1", str(tmp_path / "job.sh")]


def test_a_submitit_that_would_run_another_command_submits_nothing(plan, tmp_path):
    from launcher.dispatch.submitit_script import ScriptExecutor

    exp = ExperimentDir(plan.storage_root, plan.experiment)
    stage = plan.stages["quantize"]
    command = shlex.join(submitit_argv(stage, exp))
    executor = ScriptExecutor(tmp_path / "%j", python=submitit_python(stage), script=sbatch_for(plan, "quantize"),
                              command=command, array_size=1)
    assert executor._make_submission_file_text(command, "uid") == sbatch_for(plan, "quantize")
    with pytest.raises(RuntimeError, match="the batch script runs"):
        executor._make_submission_file_text(command.replace("submitit.core._submit", "other"), "uid")


def test_report_waits_for_any_benchmark_outcome(plan):
    assert "#SBATCH --dependency=afterany:11:12" in sbatch_for(plan, "report")


def test_benchmark_starts_the_sandbox_step_without_secrets(plan):
    script = sbatch_for(plan, "benchmark")
    sandbox = next(line for line in script.splitlines() if line.startswith("  srun --overlap"))
    assert "launcher-sandbox.sqsh" in sandbox and "--container-env" not in sandbox
    assert sandbox.endswith(" &") and "env -u HF_TOKEN -u WANDB_API_KEY" in sandbox
    assert script.index("srun --overlap") < script.index("srun \\\n  --unbuffered")


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
    return [backend.batch_key(s) for s in sweep.stages.values() if s.kind == "benchmark"]


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
    assert backend.batch_key(plan.stages["report"]) == "report"


@pytest.mark.parametrize("minutes, lead_s", [(5, 30), (10, 60), (15, 90), (720, 90)])
def test_the_time_limit_warning_scales_with_a_short_limit(tmp_path, minutes, lead_s):
    """USR2 (submitit's checkpoint and requeue) comes 90 s before the limit, a tenth of a short limit (never under
    30 s): at 90 s a short stage was warned, and requeued, almost at once."""
    from tests.helpers import plan_for

    plan = plan_for("cluster=example_slurm", "+experiment=fp8", f"cluster.storage_root={tmp_path}",
                    f"+cluster.time_limits.quantize={minutes}")
    assert f"#SBATCH --signal=USR2@{lead_s}\n" in sbatch_for(plan, "quantize")


def test_the_script_names_every_variable_it_exports_in_container_env(plan):
    """pyxis gives the image's own ENV precedence over any variable not named in --container-env (seen under
    pyxis 0.24): every export of the script, SUBMITIT_EXECUTOR too, is named."""
    for name in plan.stages:
        script = sbatch_for(plan, name)
        exported = set(re.findall(r"^\s*export (\w+)=", script, re.M))
        assert {"PYTHONPATH", "SUBMITIT_EXECUTOR"} <= exported
        named = next(a for a in stage_step(script) if a.startswith("--container-env=")).split("=", 1)[1].split(",")
        assert exported | {"HF_TOKEN", "WANDB_API_KEY"} <= set(named), (name, exported - set(named))


def test_the_job_checks_cluster_python_in_the_image_first(plan):
    srun = stage_step(sbatch_for(plan, "quantize"))
    inner = srun[next(i for i, w in enumerate(srun) if w == "sh"):]
    exp = ExperimentDir(plan.storage_root, plan.experiment)
    assert inner[:2] == ["sh", "-c"] and inner[3:] == ["python", "-u", "-m", "submitit.core._submit",
                                                       str(exp.submitit)]
    assert f"cluster.python=python is not in the container image {NGC_IMAGE}" in inner[2]
    by_hand = stage_step(sbatch_for(plan, "quantize"), launched=False)
    assert by_hand[-8:-1] == [*inner[:3], "python", "-u", "-m", "jobs.run_stage"]  # checked the same way


def test_a_dry_run_writes_similar_points_as_the_array_a_launch_submits(tmp_path):
    """Each point's script is the array's, as batch_key groups them; a dependency's job id is its placeholder."""
    from launcher.preview import write_dry_run_files

    sweep = _sweep_plan(tmp_path, ["serving.max_batch_size=8"], ["serving.max_batch_size=16"])
    exp = ExperimentDir(sweep.storage_root, "sweep")
    write_dry_run_files(sweep, exp, code_snapshot_dir(sweep.storage_root))
    scripts = [exp.script(s.name).read_text() for s in sweep.stages.values() if s.kind == "benchmark"]
    assert len(scripts) == 2 and scripts[0] == scripts[1] and "\n#SBATCH --array=0-1\n" in scripts[0]
    build = next(s.name for s in sweep.stages.values() if s.kind == "build_engine")
    assert f"\n#SBATCH --dependency=afterok:<{build}>\n" in scripts[0]
    assert "--array" not in exp.script(build).read_text()
    assert exp.submitit.is_dir()  # where a script submitted by hand logs: Slurm does not create it


def test_a_sweeps_per_point_chains_are_arrays_element_after_element(tmp_path):
    """Each point's own chain (its drafter trained, converted, its engine, its benchmark): one array per kind,
    element i waiting on element i of its input's array (aftercorr), and on the shared jobs (afterok)."""
    from launcher.dispatch.core import job_groups, waves
    from launcher.preview import array_placeholder, write_dry_run_files

    common = ("cluster=example_slurm", f"cluster.storage_root={tmp_path}", "+experiment=fp8_redrafter",
              f"cluster.containers.trtllm='{NGC_IMAGE}'")
    sweep = build_plan("sweep", {f"point{i}": compose_config(*common, f"drafter.num_layers={i + 1}")
                                 for i in range(3)})
    exp = ExperimentDir(sweep.storage_root, "sweep")
    write_dry_run_files(sweep, exp, code_snapshot_dir(sweep.storage_root))
    by_kind = {}
    for stage in sweep.stages.values():
        by_kind.setdefault(stage.kind, []).append(stage)
    trains, converts = by_kind["train_drafter"], by_kind["convert_drafter"]
    assert len(trains) == len(converts) == 3
    scripts = {exp.script(s.name).read_text() for s in converts}
    assert len(scripts) == 1  # one array
    (script,) = scripts
    assert "\n#SBATCH --array=0-2\n" in script
    quantize = next(s for s in sweep.stages.values() if s.kind == "quantize")
    assert f"\n#SBATCH --dependency=afterok:<{quantize.name}>,aftercorr:{array_placeholder(trains)}\n" in script
    for i, (train, convert) in enumerate(zip(trains, converts)):  # element i converts what element i trained
        assert train.name in convert.deps and f"#   [{i}] {shlex.quote(convert.name)}: " in script
    engine = exp.script(by_kind["build_drafter_engine"][0].name).read_text()
    assert f",aftercorr:{array_placeholder(converts)}\n" in engine and "\n#SBATCH --array=0-2\n" in engine

    # Elements that cannot line up (element 1 of the input array has no dependent here) go one job each.
    backend = SlurmBackend(sweep, exp, code_snapshot_dir(sweep.storage_root))
    wave = next(w for w in waves(sweep, list(sweep.stages)) if converts[0].name in w)
    ids = {name: f"<{name}>" for name in sweep.stages}
    shifted = {t.name: ("77", i + 1) for i, t in enumerate(trains)}
    groups = [g for g in job_groups(sweep, backend, wave, ids, shifted) if g.stages[0].kind == "convert_drafter"]
    assert [len(g.stages) for g in groups] == [1, 1, 1]
    assert [g.dependency for g in groups] == [f"afterok:<{quantize.name}>:<{t.name}>" for t in trains]
