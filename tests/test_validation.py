"""Bad input fails early, naming the key, the bad value and what is allowed."""
import os

import pytest
from hydra.errors import ConfigCompositionException

from launcher.validation import InvalidConfig, validate
from tests.helpers import compose_config, plan_for

SLURM = ("cluster=example_slurm",)
FAKE_HF_TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz123456"  # built, so no token-shaped literal is committed

CASES = [
    # (overrides, key named, words in the message)
    (("+experiment=fp8", "cluster.gpu_type=a100"), "quantization.qformat", "int8_wo"),
    (("+experiment=fp8", "quantization=fp8_kv", "cluster.gpu_type=a10g", "quantization.qformat=int8_wo"),
     "quantization.kv_cache_dtype", "8.9"),
    (("+experiment=fp8", "cluster.gpu_type=tpu"), "cluster.gpu_type", "gpu_compute_capability"),
    (("+experiment=fp8", "model.tensor_parallel=4"), "model.tensor_parallel", "tp*pp <= 2"),
    (("+experiment=fp8", "cluster.gpus_per_node=8", "model.tensor_parallel=3"), "model.tensor_parallel",
     "40 attention heads"),
    (("+experiment=fp8_redrafter", "drafter.draft_len_per_beam=4"), "drafter.draft_len_per_beam", "1..3"),
    (("+experiment=fp8_redrafter", "drafter.tensor_parallel=1"), "drafter.tensor_parallel", "tensor parallel"),
    (("+experiment=fp8", "model.max_input_len=40000"), "model.max_input_len", "model.max_seq_len=32000"),
    (("+experiment=fp8_redrafter", "drafter.engine_max_input_len=64000"), "drafter.engine_max_input_len", "<= 32000"),
    ((*SLURM, "+experiment=fp8", "cluster.storage_root=relative/dir"), "cluster.storage_root", "absolute"),
    ((*SLURM, "+experiment=fp8", "~cluster.containers.sandbox"), "cluster.containers.sandbox", "maps no image"),
    ((*SLURM, "+experiment=fp8", "cluster.containers.trtllm=image.sqsh"), "cluster.containers.trtllm", "absolute"),
    (("+experiment=fp8", f"cluster.env_vars=['HF_TOKEN={FAKE_HF_TOKEN}']"), "cluster.env_vars[0]",
     "by name"),
    (("+experiment=fp8", f"+cluster.containers.trtllm='nvcr.io#x:{FAKE_HF_TOKEN}'"),
     "cluster.containers.trtllm", "secret"),
    (("+experiment=fp8", "launcher.wandb_project=0123456789abcdef0123456789abcdef01234567"), "launcher.wandb_project",
     "secret"),
    (("+experiment=fp8", "quantization.calibrate=false"), "quantization.calibrate", "calibration"),
    (("+experiment=fp8", "benchmark.cancel_after=13"), "benchmark.cancel_after", "1..12"),
    (("+experiment=fp8", "benchmark.problems_file=/nonexistent.jsonl"), "benchmark.problems_file", "no such file"),
    (("+experiment=fp8_redrafter", "drafter.num_gpus=4"), "drafter.num_gpus", "1..2"),
    (("+experiment=fp8_redrafter", "cluster.gpu_type=v100", "quantization=int8_wo"), "drafter", "8.0"),
    (("+experiment=fp8", "serving.port=80"), "serving.port", "1024..64435"),
    (("+experiment=fp8", "serving.sandbox.port=65000"), "serving.sandbox.port", "1024..64435"),
    (("+experiment=fp8", "serving.sandbox.port=5000"), "serving.sandbox.port", "other than serving.port=5000"),
    # The engine refuses prompt tokens + max_tokens > its max_seq_len: the default 20000 new tokens fit neither.
    (("model=llama2_7b_chat", "+experiment=bf16"), "benchmark.max_new_tokens", "model.max_seq_len=2560"),
    (("model=nemotron_nas_51b", "cluster.gpus_per_node=8", "+experiment=bf16"), "benchmark.max_new_tokens",
     "1..16383"),
    (("+experiment=fp8_redrafter", "drafter.engine_max_seq_len=19997", "drafter.engine_max_input_len=1000"),
     "benchmark.max_new_tokens", "+ 3 draft tokens"),
    (("+experiment=fp8", "benchmark.max_new_tokens=0"), "benchmark.max_new_tokens", "positive"),
    # Rendered as --time=-1-23:55:00 before; then, a limit under the USR2 warning's lead requeued the stage at once.
    (("+experiment=fp8_redrafter", "+cluster.time_limits.train_drafter=-5"), "cluster.time_limits.train_drafter",
     "must be positive (allowed: >= 5 (minutes))"),
    (("+experiment=fp8", "+cluster.time_limits.quantize=1"), "cluster.time_limits.quantize",
     "Slurm warns a stage 30 s before its limit, up to 60 s earlier still"),
    (("+experiment=fp8", "+cluster.time_limits.benchmark=4"), "cluster.time_limits.benchmark", ">= 5 (minutes)"),
    # cluster.env: plain variables by value, written into batch scripts.
    (("+experiment=fp8", "+cluster.env.MY-VAR=1"), "cluster.env.MY-VAR", "not an environment variable name"),
    (("+experiment=fp8", "+cluster.env.PYTHONPATH=/opt/mine"), "cluster.env.PYTHONPATH", "sets this variable"),
    (("+experiment=fp8", "+cluster.env.LAUNCHER_SANDBOX_PORT=7000"), "cluster.env.LAUNCHER_SANDBOX_PORT",
     "LAUNCHER_*"),
    (("+experiment=fp8", "+cluster.env.WANDB_MODE=online"), "cluster.env.WANDB_MODE", "sets this variable"),
    (("+experiment=fp8", "+cluster.env.HF_TOKEN=x"), "cluster.env.HF_TOKEN", "cluster.env_vars, which passes by name"),
    (("+experiment=fp8", f"+cluster.env.HUB_AUTH={FAKE_HF_TOKEN}"), "cluster.env.HUB_AUTH",
     "cluster.env is written into batch scripts"),
    (("+experiment=fp8", "+cluster.env.NGC_API_KEY=abc"), "cluster.env.NGC_API_KEY", "NGC_API_KEY in cluster.env_vars"),
    # The code sandbox runs model-written code: loopback only, a time cap and a memory limit it can enforce.
    (("+experiment=fp8", "serving.sandbox.host=0.0.0.0"), "serving.sandbox.host", "loopback address only"),
    (("+experiment=fp8", "serving.sandbox.host=10.1.2.3"), "serving.sandbox.host", "127.0.0.1 (or another"),
    (("+experiment=fp8", "serving.sandbox.host=node-a17"), "serving.sandbox.host", "localhost"),
    (("+experiment=fp8", "serving.sandbox.host='::1'"), "serving.sandbox.host", "IPv6"),
    (("+experiment=fp8", "serving.sandbox.timeout_s=0"), "serving.sandbox.timeout_s", "0 < timeout_s <= 600"),
    (("+experiment=fp8", "serving.sandbox.timeout_s=3600"), "serving.sandbox.timeout_s", "wall-time cap"),
    (("+experiment=fp8", "serving.sandbox.memory_limit_mb=512"), "serving.sandbox.memory_limit_mb", "1024..65536"),
    (("+experiment=fp8", "serving.sandbox.memory_limit_mb=1000000"), "serving.sandbox.memory_limit_mb", "(MiB)"),
    (("+experiment=fp8", "+serving.sandbox.env.MY-VAR=1"), "serving.sandbox.env.MY-VAR",
     "not an environment variable name"),
    (("+experiment=fp8", "+serving.sandbox.env.PYTHONPATH=/x"), "serving.sandbox.env.PYTHONPATH", "by the launcher"),
    (("+experiment=fp8", "+serving.sandbox.env.NEMO_SKILLS_SANDBOX_MEM_LIMIT=1"),
     "serving.sandbox.env.NEMO_SKILLS_SANDBOX_MEM_LIMIT", "serving.sandbox.memory_limit_mb"),
    (("+experiment=fp8", "cluster.env_vars=[HF_TOKEN]", "+serving.sandbox.env.HF_TOKEN=x"),
     "serving.sandbox.env.HF_TOKEN", "gets no secrets"),
    (("+experiment=fp8", f"+serving.sandbox.env.HUB={FAKE_HF_TOKEN}"), "serving.sandbox.env.HUB", "secret"),
    (("+experiment=fp8", "+serving.sandbox.env.OPENAI_API_KEY=sk"), "serving.sandbox.env.OPENAI_API_KEY", "secret"),
    (("+experiment=fp8", "serving.sandbox.mounts=[/data:/data]"), "serving.sandbox.mounts[0]",
     "no container to mount into"),
    ((*SLURM, "+experiment=fp8", "serving.sandbox.mounts=[data:/data]"), "serving.sandbox.mounts[0]", "SRC:DST"),
    ((*SLURM, "+experiment=fp8", "cluster.storage_root=/lustre/me/launcher", "serving.sandbox.mounts=[/lustre/me:/m]"),
     "serving.sandbox.mounts[0]", "holds the storage root"),
]


@pytest.mark.parametrize("overrides,key,words", CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_bad_config_is_rejected_naming_the_key(overrides, key, words):
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*overrides)
    matching = [e for e in raised.value.errors if e.key == key]
    assert matching, f"no error names {key}: {raised.value}"
    assert any(words in str(e) for e in matching), str(raised.value)


@pytest.mark.parametrize("fits,refused", [
    # trtllm-build makes a ReDrafter engine's max_seq_len engine_max_seq_len + num_beams x draft_len_per_beam (3)
    (("+experiment=fp8_redrafter", "drafter.engine_max_seq_len=19998", "drafter.engine_max_input_len=1000"),
     ("+experiment=fp8_redrafter", "drafter.engine_max_seq_len=19997", "drafter.engine_max_input_len=1000")),
    (("model=llama2_7b_chat", "+experiment=bf16", "benchmark.max_new_tokens=2559"),
     ("model=llama2_7b_chat", "+experiment=bf16", "benchmark.max_new_tokens=2560")),
])
def test_max_new_tokens_must_leave_the_engine_room_for_a_prompt(fits, refused):
    plan_for(*fits)
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*refused)
    assert [e.key for e in raised.value.errors] == ["benchmark.max_new_tokens"]


def _submitting(tmp_path, *overrides):
    """The example Slurm cluster, submitting for real (not a dry run), its storage and images under tmp_path."""
    images = tmp_path / "images"
    return plan_for("cluster=example_slurm", "+experiment=fp8", "launcher.dry_run=false",
                    f"cluster.storage_root={tmp_path / 'storage'}", f"cluster.containers.trtllm={images}/trtllm.sqsh",
                    f"cluster.containers.sandbox={images}/sandbox.sqsh", *overrides)


@pytest.fixture
def login_node(tmp_path, monkeypatch):
    """This shell as a login node's: the required variables set, an `sbatch` on PATH, the images there."""
    (tmp_path / "images").mkdir()
    for name in ("trtllm.sqsh", "sandbox.sqsh"):
        (tmp_path / "images" / name).touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HF_TOKEN", "set")
    return tmp_path


def _environment_errors(tmp_path, *overrides):
    with pytest.raises(InvalidConfig) as raised:
        _submitting(tmp_path, *overrides)
    return raised.value.errors


def test_a_good_submission_environment_passes(login_node):
    _submitting(login_node)


def test_required_variables_must_be_set_when_submitting(login_node, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    plan_for("cluster=example_slurm", "+experiment=fp8", "launcher.dry_run=true")  # a dry run needs no secret
    errors = _environment_errors(login_node)
    assert [e.key for e in errors] == ["cluster.required_env_vars[0]"] and "export HF_TOKEN" in str(errors[0])


def test_submitting_to_slurm_needs_sbatch(login_node, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    errors = _environment_errors(login_node)
    assert [(e.key, e.problem) for e in errors] == [("cluster.executor", "sbatch is not on this machine's PATH")]


def test_a_missing_image_fails_before_the_queue(login_node):
    (login_node / "images" / "sandbox.sqsh").unlink()
    errors = _environment_errors(login_node)
    assert [(e.key, e.problem) for e in errors] == [("cluster.containers.sandbox", "no such image file")]
    assert "enroot import" in str(errors[0])


def test_an_image_directory_this_machine_does_not_mount_is_not_judged(login_node):
    _submitting(login_node, "cluster.containers.trtllm=/not/mounted/here/trtllm.sqsh")


def test_a_storage_root_whose_filesystem_is_not_here(login_node):
    errors = _environment_errors(login_node, "cluster.storage_root=/lustre-typo/fsw/me/launcher")
    assert [e.key for e in errors] == ["cluster.storage_root"] and "mounted here" in str(errors[0])


def test_secret_values_are_redacted_in_the_error():
    token = FAKE_HF_TOKEN
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8", f"cluster.env_vars=['HF_TOKEN={token}']")
    assert token not in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8_redrafter", "drafter.draft_len_per_beam=4", "model.max_input_len=40000")
    assert {e.key for e in raised.value.errors} >= {"drafter.draft_len_per_beam", "model.max_input_len"}


def test_the_checks_of_related_keys_report_every_problem_at_once():
    """One problem for each named check (GPU, parallelism, drafter, benchmark, ports, storage, containers)."""
    cfg = compose_config(*SLURM, "+experiment=fp8_redrafter", "cluster.gpu_type=a100", "model.pipeline_parallel=64",
                         "drafter.tensor_parallel=1", "benchmark.cancel_after=13", "serving.sandbox.port=5000",
                         "cluster.storage_root=relative", "~cluster.containers.sandbox")
    with pytest.raises(InvalidConfig) as raised:
        validate(cfg)
    assert [e.key for e in raised.value.errors] == [
        "quantization.qformat", "model.tensor_parallel", "model.pipeline_parallel", "drafter.tensor_parallel",
        "benchmark.cancel_after", "serving.sandbox.port", "cluster.storage_root", "cluster.containers.sandbox"]


def test_the_containers_checked_are_those_of_the_stages_the_config_needs():
    without_image = (*SLURM, "+experiment=fp8", "~cluster.containers.sandbox")
    with pytest.raises(InvalidConfig, match="cluster.containers.sandbox"):
        validate(compose_config(*without_image))
    validate(compose_config(*without_image, "serving.sandbox.enabled=false"))  # no stage runs the sandbox


def test_campaign_errors_name_the_experiment():
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=aimo2_campaign", "cluster.gpu_type=a100")
    keys = {e.key for e in raised.value.errors}
    assert "[fp8] quantization.qformat" in keys and not any(k.startswith("[bf16]") for k in keys)


def test_plain_container_variables_pass_and_secret_ones_are_redacted():
    plan_for("+experiment=fp8", "+cluster.env.TOKENIZERS_PARALLELISM='false'", "+cluster.env.NCCL_DEBUG=WARN",
             "+cluster.env.MAX_TOKENS=4096")  # "token" inside a word is no secret
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8", f"+cluster.env.HUB_AUTH={FAKE_HF_TOKEN}", "+cluster.env.DB_PASSWORD=hunter2")
    assert [e.key for e in raised.value.errors] == ["cluster.env.HUB_AUTH", "cluster.env.DB_PASSWORD"]
    assert FAKE_HF_TOKEN not in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_commit_hash_revision_is_not_a_secret():
    plan_for("+experiment=fp8", "model.revision=0123456789abcdef0123456789abcdef01234567")


@pytest.mark.parametrize("override,words", [
    ("model.hf_idd=x", "hf_idd"),
    ("model.tensor_parallel=two", "tensor_parallel"),
    ("drafter.min_top1=high", "min_top1"),
    ("quantization=fp4", "fp4"),
    # A key of fixed choices is an Enum of launcher/schema.py: another value fails while composing, naming them.
    ("quantization.qformat=int4", "expected one of [full_prec, fp8, int8_wo]"),
    ("cluster.executor=kubernetes", "expected one of [local, slurm]"),
    ("drafter.save_strategy=always", "expected one of [no, steps, epoch]"),
    ("drafter.lr_scheduler_type=cosin", "cosine_with_restarts"),
    ("model.kv_cache_type=page", "expected one of [paged, continuous, disabled]"),
])
def test_typos_and_wrong_types_fail_at_compose_time(override, words):
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config("+experiment=fp8", override)
    assert words in str(raised.value) + str(raised.value.__cause__)


@pytest.mark.parametrize("override,allowed,samples", [
    # More GPUs alone would train on 32 samples per step instead of the seed's 8: another optimisation.
    ("drafter.num_gpus=8", "allowed: 1 (= 8 / (8 x 1)), or a new drafter.global_batch_size", 32),
    ("drafter.num_gpus=3", "dividing 8 (1, 2, 4, 8)", 12),
    ("drafter.per_device_train_batch_size=2", "allowed: 2 (= 8 / (2 x 2))", 16),
])
def test_drafter_training_keeps_its_global_batch(override, allowed, samples):
    """drafter.num_gpus x per_device_train_batch_size x gradient_accumulation_steps (HF Trainer's samples per
    optimizer step) must be drafter.global_batch_size; a new global batch is a choice made by name."""
    node = ("cluster=example_slurm", "+experiment=fp8_redrafter", override)
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*node)
    assert [e.key for e in raised.value.errors] == ["drafter.gradient_accumulation_steps"]
    assert allowed in str(raised.value) and f"= {samples} samples per optimizer step, not drafter.global_batch_size=8" \
        in str(raised.value)
    plan_for(*node, f"drafter.global_batch_size={samples}")


def test_scaled_out_drafter_training_needs_a_global_batch_of_whole_per_device_batches():
    with pytest.raises(InvalidConfig) as raised:
        plan_for("+experiment=fp8_redrafter", "drafter.scale_out_gpus=8", "drafter.per_device_train_batch_size=3")
    assert [str(e) for e in raised.value.errors] == [
        "drafter.per_device_train_batch_size=3: does not divide drafter.global_batch_size=8, which "
        "drafter.scale_out_gpus keeps (allowed: 1, 2, 4, 8)"]
    with pytest.raises(InvalidConfig) as raised:  # sized to the node: a GPU count given with it changes nothing
        plan_for("+experiment=fp8_redrafter", "drafter.scale_out_gpus=8", "drafter.num_gpus=1")
    assert [e.key for e in raised.value.errors] == ["drafter.num_gpus"]


def test_the_forbidden_characters_are_exactly_the_unicode_categories_cc_zl_zp_cs():
    import unicodedata

    from launcher.validation import forbidden_character

    for code in range(0x110000):
        char = chr(code)
        expected = unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs")
        assert (forbidden_character(f"a{char}b") is not None) == expected, hex(code)
    assert forbidden_character("ok\x1bno") == "\\x1b" and forbidden_character("fine") is None
