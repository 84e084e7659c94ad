"""No silent mistakes: a key the schema does not have, a value no tool can use, an override that changes nothing.

Each fails validation naming the key, the value and what is allowed (launcher.schema_check, launcher.schema)."""
import dataclasses
import typing

import pytest

from launcher import schema
from launcher.schema import Choice, Config
from launcher.validation import InvalidConfig
from tests.helpers import plan_for

SLURM = ("cluster=example_slurm",)


def _errors(*overrides):
    with pytest.raises(InvalidConfig) as raised:
        plan_for(*overrides)
    return raised.value.errors


# (overrides, the key named, words of its message)
UNKNOWN_KEYS = [
    # Hydra's own hint for a mistyped `launcher.dry_run`: the real pipeline ran
    (("+experiment=fp8", "+dry_run=true"), "dry_run", "did you mean launcher.dry_run?"),
    # training used 2 layers
    (("+experiment=fp8_redrafter", "+drafter.num_layer=4"), "drafter.num_layer", "did you mean drafter.num_layers?"),
    (("+experiment=fp8", "+serving.sandbox.timeout=30"), "serving.sandbox.timeout", "serving.sandbox.timeout_s"),
    (("+experiment=fp8", "+model.quirks.rope=2"), "model.quirks.rope", "not a key of the launcher's config"),
    # a time limit's key names a stage kind, or it limits no stage
    (("+experiment=fp8_redrafter", "+cluster.time_limits.train_drafer=60"), "cluster.time_limits.train_drafer",
     "did you mean cluster.time_limits.train_drafter?"),
    (("+experiment=fp8", "+cluster.time_limits.default=60"), "cluster.time_limits.default", "no stage kind"),
]


@pytest.mark.parametrize("overrides,key,words", UNKNOWN_KEYS, ids=[c[1] for c in UNKNOWN_KEYS])
def test_a_key_not_in_the_schema_is_an_error_whatever_its_prefix(overrides, key, words):
    errors = _errors(*overrides)
    assert [e.key for e in errors] == [key] and words in str(errors[0]), errors


def test_a_mapping_takes_any_key_but_a_time_limit_a_stage_kind():
    plan_for("+experiment=fp8_redrafter", "+cluster.time_limits.train_drafter=60", "+cluster.env.NCCL_DEBUG=WARN",
             "+serving.sandbox.env.OMP_NUM_THREADS=1")
    errors = _errors("+experiment=fp8_redrafter", "+cluster.time_limits.drafter=60", "+cluster.env.NCCL_DEBUG=WARN")
    assert [e.key for e in errors] == ["cluster.time_limits.drafter"]


def test_an_unknown_key_of_every_configuration_of_a_campaign_is_said_once():
    errors = _errors("+experiment=aimo2_campaign", "+dry_run=true")
    assert [e.key for e in errors] == ["dry_run"]


# Values no tool can use, each blamed on its own key, with the range or form the schema gives it.
BAD_VALUES = [
    (("+experiment=fp8_redrafter", "drafter.num_layers=-1"), "drafter.num_layers", "1..64"),
    (("+experiment=fp8", "model.hf_id=''"), "model.hf_id", "is empty"),
    (("+experiment=fp8", "model.hf_id=not/a/repo"), "model.hf_id", "namespace/name"),
    (("+experiment=fp8_redrafter", "drafter.learning_rate=nan"), "drafter.learning_rate", "not a finite number"),
    (("+experiment=fp8_redrafter", "drafter.learning_rate=inf"), "drafter.learning_rate", "0 < learning_rate <= 10"),
    (("+experiment=fp8_redrafter", "drafter.learning_rate=0"), "drafter.learning_rate", "must be positive"),
    (("+experiment=fp8", "serving.kv_cache_free_gpu_memory_fraction=5"), "serving.kv_cache_free_gpu_memory_fraction",
     "0 < kv_cache_free_gpu_memory_fraction <= 1"),
    (("+experiment=fp8", "benchmark.temperature=-1"), "benchmark.temperature", "0..10"),
    (("+experiment=fp8", "quantization.calib_size=10000000000000000000000"), "quantization.calib_size",
     "1..1000000 (samples)"),
    (("+experiment=fp8", "model.max_seq_len=99999999999999999999999"), "model.max_seq_len", "above 1048576"),
    ((*SLURM, "+experiment=fp8", "cluster.mounts=[/data]"), "cluster.mounts[0]", "SRC:DST"),
    ((*SLURM, "+experiment=fp8", "cluster.mounts=[data:/data]"), "cluster.mounts[0]", "absolute paths"),
    ((*SLURM, "+experiment=fp8", "cluster.trtllm_examples_dir=examples"), "cluster.trtllm_examples_dir",
     "an absolute path"),
    (("+experiment=fp8", "model.checkpoint_tool=trtllm_examples", "model.convert_script=../../x.py"),
     "model.convert_script", "without `..`"),
    (("+experiment=fp8", "cluster.gpus_per_node=0"), "cluster.gpus_per_node", "1..64"),
    (("+experiment=fp8", "model.pipeline_parallel=-2"), "model.pipeline_parallel", "must be positive"),
    (("+experiment=fp8", "model.num_kv_heads=0"), "model.num_kv_heads", "1..1024"),  # a division by zero before
    (("+experiment=fp8", "benchmark.max_code_executions=-1"), "benchmark.max_code_executions", "0..1000"),
    (("+experiment=fp8", "cluster.gpu_compute_capability=90"), "cluster.gpu_compute_capability", "3.0..20.0"),
    (("+experiment=fp8", "+cluster.time_limits.quantize=99999999"), "cluster.time_limits.quantize", "5..525600"),
    (("+experiment=fp8", "quantization.calib_split=''"), "quantization.calib_split", "is empty"),
    (("+experiment=fp8", "model.revision=''"), "model.revision", "or null"),
]


@pytest.mark.parametrize("overrides,key,words", BAD_VALUES, ids=[f"{c[1]}:{c[0][-1]}" for c in BAD_VALUES])
def test_a_value_no_tool_can_use_fails_naming_its_own_key(overrides, key, words):
    errors = _errors(*overrides)
    assert [e.key for e in errors] == [key] and words in str(errors[0]), errors


def test_an_out_of_range_value_is_not_reported_again_as_a_relation():
    """gpus_per_node=0 said "allowed: tp*pp <= 0"; a negative pipeline_parallel was blamed on tensor_parallel."""
    errors = _errors("+experiment=fp8", "cluster.gpus_per_node=0", "model.pipeline_parallel=-1")
    assert sorted(e.key for e in errors) == ["cluster.gpus_per_node", "model.pipeline_parallel"]
    assert "tp*pp" not in str(errors)


def _schema_fields():
    """(dotted key, type, metadata) of every field of the schema."""
    def visit(dc, prefix):
        hints = typing.get_type_hints(dc)
        for f in dataclasses.fields(dc):
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp
            if dataclasses.is_dataclass(tp):
                yield from visit(tp, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", tp, f.metadata
    return list(visit(Config, ""))


def _numeric(tp) -> bool:
    return tp in (int, float) or any(_numeric(a) for a in typing.get_args(tp))


def test_every_numeric_key_has_a_range_in_the_schema():
    """A new int or float key (a Dict or List of them too) cannot skip the range check: it needs a Range, one that
    its default is in."""
    missing = [key for key, tp, meta in _schema_fields() if _numeric(tp) and not isinstance(meta.get("range"),
                                                                                            schema.Range)]
    assert not missing, f"give these keys a Range (launcher.schema.ranged): {missing}"
    for key, tp, meta in _schema_fields():
        default = schema_default(key)
        if _numeric(tp) and isinstance(default, (int, float)):
            assert default in meta["range"], key


PATH_LIKE = ("_dir", "_file", "_script", "_root", "mounts", "hf_id", "dataset")


def test_every_path_key_has_a_form_in_the_schema():
    """...one that its default has."""
    missing = [key for key, tp, meta in _schema_fields() if key.endswith(PATH_LIKE)
               and not isinstance(meta.get("form"), schema.Form)]
    assert not missing, f"give these keys a Form (launcher.schema.formed): {missing}"
    for key, tp, meta in _schema_fields():
        default = schema_default(key)
        if isinstance(default, str) and default != "???" and "form" in meta:
            assert meta["form"].matches(default), key


def schema_default(key):
    node = Config
    for part in key.split("."):
        f = {f.name: f for f in dataclasses.fields(node)}[part]
        if dataclasses.is_dataclass(typing.get_type_hints(node)[part]):
            node = typing.get_type_hints(node)[part]
            continue
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default


def test_keys_with_fixed_choices_are_enums_of_the_schema():
    """Allowed values live in the types: no second table of choices in validation."""
    import launcher.validation

    assert not hasattr(launcher.validation, "CHOICES")
    choices = {key: tp for key, tp, _ in _schema_fields() if isinstance(tp, type) and issubclass(tp, Choice)}
    assert {"quantization.qformat", "quantization.kv_cache_dtype", "cluster.executor", "drafter.save_strategy",
            "drafter.on_low_quality", "serving.backend"} <= set(choices)
    for tp in choices.values():  # OmegaConf converts by name: each name is its value
        assert all(member.name == member.value for member in tp)


# Overrides of keys that the chosen options do not use: they changed nothing, silently.
UNUSED = [
    (("+experiment=fp8", "drafter=none", "drafter.num_layers=4"), "drafter.num_layers", "drafter=redrafter"),
    (("+experiment=bf16", "drafter.learning_rate=0.002"), "drafter.learning_rate", "no drafter is trained"),
    (("+experiment=int8_wo", "quantization.calib_size=512"), "quantization.calib_size",
     "quantization.calibrate=false"),
    (("+experiment=fp8", "serving.sandbox.enabled=false", "serving.sandbox.timeout_s=30"), "serving.sandbox.timeout_s",
     "no sandbox is started"),
    (("+experiment=fp8_redrafter", "drafter.save_steps=100"), "drafter.save_steps", "drafter.save_strategy=no"),
    (("+experiment=fp8", "cluster.partition=gpu"), "cluster.partition", "without Slurm"),
    (("+experiment=fp8", "+cluster.containers.trtllm='nvcr.io#nvidia/x'"), "cluster.containers.trtllm",
     "without containers"),
    (("+experiment=fp8", "model.convert_script=models/x.py"), "model.convert_script", "trtllm_examples"),
]


@pytest.mark.parametrize("overrides,key,words", UNUSED, ids=[c[1] for c in UNUSED])
def test_an_override_the_chosen_options_do_not_use_is_an_error(overrides, key, words):
    errors = _errors(*overrides)
    assert [e.key for e in errors] == [key], errors
    assert "changes nothing" in str(errors[0]) and words in str(errors[0]), errors


@pytest.mark.parametrize("used,unused", [
    # bf16 and fp8 train no drafter; the campaign's fp8_redrafter does
    (("+experiment=aimo2_campaign", "drafter.num_layers=4"), ("+experiment=bf16", "drafter.num_layers=4")),
    (("+experiment=fp8_redrafter", "drafter.save_strategy=steps", "drafter.save_steps=100"),
     ("+experiment=fp8_redrafter", "drafter.save_strategy=no", "drafter.save_steps=100")),
    ((*SLURM, "+experiment=fp8", "cluster.partition=gpu"), ("+experiment=fp8", "cluster.partition=gpu")),
    # clearing an unused key expects nothing of it
    (("+experiment=fp8", "cluster.mounts=[]", "cluster.partition=null"), ("+experiment=fp8", "cluster.mounts=[/a:/b]")),
])
def test_an_override_is_refused_only_where_no_configuration_uses_it(used, unused):
    plan_for(*used)
    assert "changes nothing" in str(_errors(*unused))
