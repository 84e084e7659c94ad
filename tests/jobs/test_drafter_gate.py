"""The drafter quality gate and the drafter training stage around it (jobs/drafter_metrics.py, jobs/run_stage.py).

The trained drafter is an artifact, the gate a decision taken on it where it is used: train_drafter always
publishes with its measurements, the convert_drafter job and the launcher decide. Each logged top-1 is one
micro-batch's (the stand-in adds deterministic per-micro-batch noise): the gate reads the mean of a window.
Each training attempt has its own log. Runs the plan's own specs with the stand-ins (tests/standins).
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import drafter_metrics, run_stage, wandb_log
from jobs.run_stage import StageFailed
from launcher.contract import DrafterGate
from tests.jobs.test_run_stage import (DRAFTER_DIR, PY, STANDINS, manifest, plan, relocated, stage_spec_file,
                                       standin_env, write_spec)

A100 = "NVIDIA A100-SXM4-80GB:8.0:81920"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    standin_env(monkeypatch)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """fp8_redrafter's downloads, calibration data and FP8 checkpoint, made by their own stages."""
    storage = tmp_path_factory.mktemp("storage")
    with pytest.MonkeyPatch.context() as mp:
        standin_env(mp)
        the_plan = plan(storage, "+experiment=fp8_redrafter", "quantization.calib_size=16")
        for name in ("download_model", "download_dataset", "calibration_data", "quantize"):
            run_stage.run(stage_spec_file(the_plan, name, storage / "specs"))
    return the_plan


def elsewhere(the_plan, name: str, root: Path) -> Path:
    """Where the stage's artifact goes under another storage root `root` (artifacts/<kind>/<fingerprint>)."""
    stage = the_plan.stages[name]
    return root / "artifacts" / stage.kind / stage.fingerprint


def train(the_plan, root: Path, extra_args=(), **gate) -> tuple:
    """The plan's train_drafter stage, publishing under `root` (its spec's gate changed by `gate`)."""
    from launcher.scripts import stage_spec

    where = elsewhere(the_plan, "train_drafter", root)
    spec = relocated(stage_spec(the_plan, the_plan.stages["train_drafter"]).to_json(), where)
    spec["commands"]["train"] += list(extra_args)  # later flags win, as with argparse
    spec["drafter"].update(gate)
    return write_spec(root / "train.json", spec), where


def convert(the_plan, trained: Path, root: Path, **gate) -> tuple:
    """The plan's convert_drafter stage on the drafter published at `trained`, publishing under `root`."""
    from launcher.scripts import stage_spec

    where = elsewhere(the_plan, "convert_drafter", root)
    spec = stage_spec(the_plan, the_plan.stages["convert_drafter"]).to_json()
    text = json.dumps(spec).replace(the_plan.stages["train_drafter"].artifact, str(trained))
    spec = relocated(json.loads(text), where)
    spec["drafter"].update(gate)
    return write_spec(root / "convert.json", spec), where


# --------------------------------------------------------------------------------------------------
# The gate reads the mean of the last gate_window logged values, each one micro-batch's
# --------------------------------------------------------------------------------------------------
def test_the_gate_reads_a_window_mean_where_the_last_value_would_flip_it(pipeline, tmp_path, monkeypatch):
    # 32 steps, each logged (--gradient_accumulation_steps 1 --logging_steps 1): a trend rising to 0.65, and
    # per micro-batch noise. With noise seed 3 the last value is below 0.65 and the mean of the last 5 above;
    # with seed 7 the other way round. A gate on the last value would decide both wrongly.
    args = ["--gradient_accumulation_steps", "1", "--logging_steps", "1"]
    decided = {}
    for seed in ("3", "7"):
        monkeypatch.setenv("STANDIN_REDRAFTER_SEED", seed)
        path, artifact = train(pipeline, tmp_path / f"seed-{seed}", args)
        result = run_stage.run(path)
        gate = result["drafter_gate"]
        history = gate["history"]
        assert len(history) == result["drafter_metrics_history_len"] == 32
        assert len(set(history)) > 20  # noisy: not a smooth curve
        window = history[-5:]
        assert (gate["metric"], gate["statistic"], gate["window"], gate["window_requested"]) == (
            "redrafter2_top1", "mean", 5, 5)
        assert gate["value"] == pytest.approx(statistics.fmean(window), abs=1e-6)
        assert (gate["min"], gate["max"], gate["last"]) == (min(window), max(window), history[-1])
        assert gate["std"] == pytest.approx(statistics.pstdev(window), abs=1e-6) and gate["std"] > 0
        # Every metric of the manifest is its window mean; the last record is kept beside it.
        assert result["drafter_metrics"]["redrafter2_top1"] == pytest.approx(gate["value"], abs=1e-6)
        assert result["drafter_metrics_last"]["redrafter2_top1"] == history[-1]
        assert manifest(artifact)["drafter_gate"] == gate
        decided[seed] = (artifact, gate)

    low_last, high_last = decided["3"][1], decided["7"][1]
    assert low_last["last"] < 0.65 < low_last["value"] and high_last["value"] < 0.65 < high_last["last"]
    spec, converted = convert(pipeline, decided["3"][0], tmp_path / "convert-3", min_top1=0.65)
    result = run_stage.run(spec)
    assert result["drafter_gate_passed"] is True and result["drafter_gate"]["value"] == low_last["value"]
    assert (converted / "config.json").is_file()
    spec, refused = convert(pipeline, decided["7"][0], tmp_path / "convert-7", min_top1=0.65)
    with pytest.raises(StageFailed) as failure:
        run_stage.run(spec)
    assert f"redrafter2_top1={high_last['value']:.4f} (mean of its last 5 logged values" in str(failure.value)
    assert not refused.exists() and not Path(f"{refused}.partial").exists()


def test_a_drafter_below_the_gate_is_published_and_convert_drafter_decides(pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_REDRAFTER_TOP1", "0.3")
    path, trained = train(pipeline, tmp_path / "train")
    result = run_stage.run(path)  # a drafter below drafter.min_top1=0.6: published all the same
    assert manifest(trained) == result and (trained / DRAFTER_DIR / "model.safetensors").is_file()
    value = result["drafter_gate"]["value"]
    assert value == pytest.approx(0.3, abs=0.03) and "drafter_gate_passed" not in result

    spec, refused = convert(pipeline, trained, tmp_path / "strict")
    with pytest.raises(StageFailed) as failure:  # the gate, taken before the conversion runs
        run_stage.run(spec)
    message = str(failure.value)
    assert f"redrafter2_top1={value:.4f}" in message and "< drafter.min_top1=0.6" in message
    assert "drafter.on_low_quality" in message and "not retrained" in message and str(trained) in message
    assert not refused.exists() and not Path(f"{refused}.partial").exists()

    spec, converted = convert(pipeline, trained, tmp_path / "warn", on_low_quality="warn")
    warned = run_stage.run(spec)
    assert warned["drafter_gate_passed"] is False and (converted / "config.json").is_file()
    lowered = run_stage.run(convert(pipeline, trained, tmp_path / "lower", min_top1=0.25)[0])
    assert lowered["drafter_gate"] | {"passed": None} == {
        "metric": "redrafter2_top1", "value": value, "window": 1, "window_requested": 5, "min": value, "max": value,
        "std": 0.0, "min_top1": 0.25, "on_low_quality": "fail", "passed": None}
    assert lowered["drafter_gate_passed"] is True
    assert run_stage.run(path) == result  # the drafter is never trained again: it is complete
    assert [p.name for p in trained.glob("train.attempt-*.log")] == ["train.attempt-1.log"]


def test_the_gate_keys_change_no_fingerprint():
    from tests.helpers import plan_for

    base = {n: s.fingerprint for n, s in plan_for("+experiment=fp8_redrafter").stages.items()}
    gated = plan_for("+experiment=fp8_redrafter", "drafter.min_top1=0.1", "drafter.on_low_quality=warn",
                     "drafter.gate_window=9")
    assert {n: s.fingerprint for n, s in gated.stages.items()} == base
    from launcher.scripts import stage_spec

    assert stage_spec(gated, gated.stages["convert_drafter"]).drafter == DrafterGate(
        min_top1=0.1, on_low_quality="warn", gate_window=9, predict_n_tokens=3)


def test_the_gate_keys_and_save_total_limit_are_validated():
    from launcher.validation import InvalidConfig
    from tests.helpers import plan_for

    with pytest.raises(InvalidConfig) as invalid:
        plan_for("+experiment=fp8_redrafter", "drafter.gate_window=0", "drafter.save_total_limit=0")
    assert {e.key for e in invalid.value.errors} == {"drafter.gate_window", "drafter.save_total_limit"}
    assert "drafter.gate_window=0: must be positive (allowed: 1..1000000 (logged values))" in str(invalid.value)


# --------------------------------------------------------------------------------------------------
# Relaunching with another gate reuses the drafter (cluster=local: the launcher, the jobs, the stand-ins)
# --------------------------------------------------------------------------------------------------
def launch(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{STANDINS / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(STANDINS / "python"), "WANDB_MODE": "disabled", "STANDIN_REDRAFTER_TOP1": "0.3"}
    return subprocess.run(
        [PY, "-m", "launcher", "+experiment=fp8_redrafter", "cluster=local", f"cluster.storage_root={root}",
         f"cluster.python={PY}", f"cluster.trtllm_examples_dir={STANDINS / 'trtllm_examples'}",
         "quantization.calib_size=16", *overrides],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)


def outcomes(stdout: str) -> dict:
    return dict(line.rsplit(": ", 1) for line in stdout.splitlines()
                if line.rsplit(": ", 1)[-1] in ("COMPLETED", "FAILED", "CANCELLED"))


def test_changing_the_gate_never_retrains_the_drafter(tmp_path):
    first = launch(tmp_path)  # the drafter trains to ~0.3, below drafter.min_top1=0.6
    states = outcomes(first.stdout)
    assert states["train_drafter"] == "COMPLETED", first.stdout + first.stderr
    assert states["convert_drafter"] == "FAILED" and states["build_drafter_engine"] == "CANCELLED"
    assert states["benchmark"] == "CANCELLED"
    exp = tmp_path / "experiments" / "fp8_redrafter"
    state = json.loads((exp / "state.json").read_text())["stages"]
    trained = Path(state["train_drafter"]["artifact"])
    published = manifest(trained)
    value = published["drafter_gate"]["value"]
    assert "drafter quality below the gate" in (exp / "logs" / "convert_drafter.log").read_text()
    jobs_before = (exp / "local_jobs.json").read_text()

    again = launch(tmp_path)  # the same gate: refused at launch, nothing submitted
    assert again.returncode == 2, again.stdout + again.stderr
    out = " ".join(again.stdout.split())  # rich wraps long lines
    assert f"drafter.min_top1=0.6: the drafter trained by train_drafter ({trained})" in out
    assert f"redrafter2_top1={value:.4f}" in out and "drafter.on_low_quality=warn" in out
    assert "stage(s) here" not in out and (exp / "local_jobs.json").read_text() == jobs_before

    lower = launch(tmp_path, f"drafter.min_top1={drafter_metrics.passing_min_top1({'value': value})}")
    assert lower.returncode == 0, lower.stdout + lower.stderr
    states = outcomes(lower.stdout)
    assert "train_drafter" not in states  # not submitted: the published drafter is used
    assert states["convert_drafter"] == states["build_drafter_engine"] == states["benchmark"] == "COMPLETED"
    assert json.loads((exp / "state.json").read_text())["stages"]["train_drafter"]["action"] == "complete"
    assert manifest(trained) == published
    assert [p.name for p in trained.glob("train.attempt-*.log")] == ["train.attempt-1.log"]
    assert manifest(state["convert_drafter"]["artifact"])["drafter_gate_passed"] is True

    warned = launch(tmp_path, "drafter.on_low_quality=warn")  # below the gate again, but allowed: said
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "is below the quality gate (drafter.on_low_quality=warn)" in " ".join(warned.stdout.split())
    assert "nothing to run: every stage of" in warned.stdout


# --------------------------------------------------------------------------------------------------
# One log per attempt; the metrics of the attempt that finished
# --------------------------------------------------------------------------------------------------
def printed_top1(log: Path) -> list:
    return [r["redrafter2_top1"] for r in drafter_metrics.read_metrics(log.read_text())]


def test_each_attempt_has_its_own_log_and_no_step_is_counted_twice(pipeline, tmp_path, monkeypatch):
    # 8 steps, each logged, checkpoints every 3. The first attempt logs steps 0-3 and crashes at step 4; it
    # saved checkpoint-3 (steps 0-2 logged). The second resumes from it and logs steps 3-7: step 3 twice in all.
    path, artifact = train(pipeline, tmp_path / "train", ["--logging_steps", "1", "--save_strategy", "steps",
                                                          "--save_steps", "3", "--save_total_limit", "2"])
    monkeypatch.setenv("STANDIN_FAIL", "train_redrafter")
    with pytest.raises(StageFailed, match="simulated failure at step 4"):
        run_stage.run(path)
    monkeypatch.delenv("STANDIN_FAIL")
    result = run_stage.run(path)
    first, second = artifact / "train.attempt-1.log", artifact / "train.attempt-2.log"
    assert result["train_logs"] == ["train.attempt-1.log", "train.attempt-2.log"]
    assert result["train_log"] == "train.attempt-2.log" and result["resumed_from_checkpoint"] == "checkpoint-3"
    assert "simulated failure" in first.read_text() and "simulated failure" not in second.read_text()
    assert len(printed_top1(first)) == 4 and len(printed_top1(second)) == 5
    history = result["drafter_gate"]["history"]
    assert history == printed_top1(first)[:3] + printed_top1(second)  # each step once: the trainer's own history
    assert result["drafter_metrics_history_len"] == 8
    assert result["drafter_gate"]["source"] == "checkpoint-8/trainer_state.json"
    assert not list(artifact.rglob("checkpoint-*"))


def test_a_resumed_attempt_that_logs_nothing_keeps_the_values_its_checkpoint_restored(pipeline, tmp_path,
                                                                                       monkeypatch):
    # Logged at steps 0 and 5 of 8; checkpoints every 2. The first attempt crashes at step 7, after
    # checkpoint-6; the second resumes there, runs steps 6 and 7 and logs no metrics before it finishes.
    path, artifact = train(pipeline, tmp_path / "train", ["--logging_steps", "5", "--save_strategy", "steps",
                                                          "--save_steps", "2", "--save_total_limit", "2"])
    monkeypatch.setenv("STANDIN_FAIL", "train_redrafter")
    monkeypatch.setenv("STANDIN_FAIL_AT_STEP", "7")
    with pytest.raises(StageFailed, match="simulated failure at step 7"):
        run_stage.run(path)
    staged = Path(f"{artifact}.partial") / DRAFTER_DIR
    assert sorted(p.name for p in staged.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]  # the limit
    monkeypatch.delenv("STANDIN_FAIL")
    result = run_stage.run(path)
    first, second = artifact / "train.attempt-1.log", artifact / "train.attempt-2.log"
    assert printed_top1(second) == [] and len(printed_top1(first)) == 2
    assert result["resumed_from_checkpoint"] == "checkpoint-6"
    # The trainer restored steps 0 and 5 from checkpoint-6 and saved them again in its last checkpoint.
    gate = result["drafter_gate"]
    assert gate["history"] == printed_top1(first) and gate["source"] == "checkpoint-8/trainer_state.json"
    assert (gate["window"], gate["window_requested"]) == (2, 5)
    assert gate["value"] == pytest.approx(statistics.fmean(printed_top1(first)), abs=1e-6)


def test_without_metrics_from_the_attempt_that_finished_the_stage_fails(tmp_path):
    staging = tmp_path / "fp.partial"
    drafter = staging / DRAFTER_DIR
    (drafter / "checkpoint-8").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (drafter / name).write_text("{}")
    (drafter / "checkpoint-8" / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 1.0}]}))
    log = staging / "train.attempt-2.log"
    log.write_text("{'train_runtime': 1.0}\n")
    gate = DrafterGate(min_top1=0.5, on_low_quality="fail", gate_window=5, predict_n_tokens=3)
    with pytest.raises(StageFailed, match="no redrafter metrics from the attempt that finished: none in its log"):
        drafter_metrics.measure_trained_drafter(gate, staging, log, drafter / "checkpoint-6")


# --------------------------------------------------------------------------------------------------
# The trainer's own W&B run; checkpoints kept; versions; the GPU check before the staging directory
# --------------------------------------------------------------------------------------------------
def test_the_trainer_records_no_host_argv_stats_or_console_in_wandb(pipeline, tmp_path, monkeypatch):
    dumped = tmp_path / "trainer-env.json"
    monkeypatch.setenv("STANDIN_TORCHRUN_ENV_FILE", str(dumped))
    path, _ = train(pipeline, tmp_path / "train")
    run_stage.run(path)
    trainer_env = json.loads(dumped.read_text())
    assert {k: trainer_env.get(k) for k in wandb_log.TRAINER_ENV} == wandb_log.TRAINER_ENV
    assert "WANDB_CONSOLE" not in os.environ and "WANDB__DISABLE_META" not in os.environ  # the trainer's only

    wandb = pytest.importorskip("wandb")
    from tests.jobs.test_wandb_log import files_containing, read_offline_run

    # What the trainer's WandbCallback does (wandb.init from the environment), under that environment, offline.
    env = {**trainer_env, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"),
           "HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    script = "import wandb; run = wandb.init(project='p'); print('CONSOLE' + '-LINE'); run.log({'a': 1}); run.finish()"
    done = subprocess.run([PY, "-c", script, "--argv-" + "marker"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CONSOLE-LINE" in done.stdout
    (run_dir,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert not {"environment", "stats", "output", "output_raw"} & set(run["types"]), run["types"]
    assert not run["run"].get("host") and socket.gethostname() not in json.dumps(run["run"])
    assert not list(run_dir.rglob("wandb-metadata.json")) and not list(run_dir.rglob("requirements.txt"))
    assert not list(run_dir.rglob("output.log")) and not list(run_dir.rglob("*.patch"))
    assert files_containing(tmp_path / "wandb", "argv-marker") == []
    assert files_containing(tmp_path / "wandb", "CONSOLE-LINE") == []
    assert wandb.__version__  # the settings' names were checked against this version (jobs/wandb_log.py)


def test_the_trainer_wandb_config_holds_no_host_name(pipeline, tmp_path, monkeypatch):
    # transformers' WandbCallback records args.to_dict() as the trainer's run config, whatever the W&B settings;
    # TrainingArguments' default logging_dir is <output_dir>/runs/<time>_<host name>. Seen in the real trainer's
    # offline run on 2 x H200 (2026-11-29): "logging_dir": ".../redrafter_output/runs/Nov29_00-44-20_<host>".
    from tests.jobs.test_run_stage import STANDINS

    host = socket.gethostname()
    config_file = tmp_path / "trainer-wandb-config.json"
    monkeypatch.setenv("STANDIN_WANDB_CONFIG_FILE", str(config_file))
    path, _ = train(pipeline, tmp_path / "train")
    run_stage.run(path)
    config = json.loads(config_file.read_text())
    assert config["report_to"] == "wandb" and config["logging_dir"]
    assert not [v for v in config.values() if isinstance(v, str) and Path(v).name.endswith("_" + host)], config

    # The stand-in models the default: without --logging_dir the host name is there.
    argv = json.loads(Path(path).read_text())["commands"]["train"]
    script_args = argv[argv.index("nemo_skills.training.train_redrafter") + 1:]
    at = script_args.index("--logging_dir")
    monkeypatch.syspath_prepend(str(STANDINS / "python"))
    from standin_tools import hf_training_args

    default = hf_training_args.parse(script_args[:at] + script_args[at + 2:])
    assert Path(default.logging_dir).name.endswith("_" + host)


def test_every_trainer_wandb_variable_is_a_setting_of_the_installed_wandb():
    wandb = pytest.importorskip("wandb")
    transformers_own = {"WANDB_LOG_MODEL", "WANDB_WATCH"}  # read by transformers' WandbCallback, not by wandb
    for name, value in wandb_log.TRAINER_ENV.items():
        if name in transformers_own:
            continue
        settings = wandb.Settings()
        before = settings.model_dump()
        settings.update_from_env_vars({name: value})
        changed = {k for k, v in settings.model_dump().items() if before.get(k) != v}
        assert changed, f"{name} sets no setting of wandb {wandb.__version__}"
    settings = wandb.Settings()
    settings.update_from_env_vars(wandb_log.TRAINER_ENV)
    assert (settings.console, settings.disable_code, settings.save_code, settings.disable_git, settings.host) == (
        "off", True, False, True, "")
    assert (settings.x_disable_meta, settings.x_disable_stats, settings.x_disable_machine_info,
            settings.x_save_requirements) == (True, True, True, False)


def test_checkpoints_are_limited_by_save_total_limit(pipeline, tmp_path, monkeypatch):
    from tests.helpers import plan_for

    def train_argv(*overrides):
        stage = plan_for("+experiment=fp8_redrafter", *overrides).stages["train_drafter"]
        return stage.commands["train"]

    assert train_argv("drafter.save_strategy=steps")[-4:] == ["--save_steps", "500", "--save_total_limit", "2"]
    assert train_argv("drafter.save_strategy=epoch", "drafter.save_total_limit=3")[-2:] == ["--save_total_limit", "3"]
    assert "--save_total_limit" not in train_argv()  # the tutorial's save_strategy no saves none
    # The plan's command (save_total_limit 2) with a checkpoint every step: the trainer keeps the newest two.
    path, artifact = train(pipeline, tmp_path / "train", ["--save_strategy", "steps", "--save_steps", "1",
                                                          "--save_total_limit", "2"])
    monkeypatch.setenv("STANDIN_FAIL", "train_redrafter")
    with pytest.raises(StageFailed):
        run_stage.run(path)
    staged = Path(f"{artifact}.partial") / DRAFTER_DIR
    assert sorted(p.name for p in staged.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]


def test_the_manifest_names_the_trainers_packages(monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(metadata, "version", lambda dist: "1.0")
    assert set(run_stage._versions()) >= {"datasets", "tokenizers", "huggingface_hub", "accelerate", "wandb",
                                          "fschat", "transformers", "torch", "nemo_skills", "recurrent_drafting"}


def test_a_failed_gpu_check_leaves_no_staging_directory(tmp_path, monkeypatch):
    from tests.jobs.test_run_stage import simple_spec

    monkeypatch.setenv("STANDIN_GPUS", A100)
    spec = simple_spec(tmp_path)
    spec["gpu_check"] = {"count": 2, "min_compute_capability": 8.9, "why": "quantization.qformat=fp8",
                         "gpu_type": "h100", "expected_compute_capability": 9.0, "engine_manifest": None}
    with pytest.raises(StageFailed, match="wrong GPUs"):
        run_stage.run(write_spec(tmp_path / "spec.json", spec))
    assert not Path(spec["staging_dir"]).exists() and not Path(spec["artifact"]).exists()
