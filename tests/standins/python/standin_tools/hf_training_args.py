"""HfArgumentParser emulation for the train_redrafter STAND-IN (no transformers import).

``TRAINING_ARGUMENTS`` lists every field of transformers 4.57.6 ``TrainingArguments``
as HfArgumentParser turns it into a flag: (field, kind, default, choices), kind one of
str/int/float/bool (``--x [True|False]``)/optbool (``--x True|False``)/strlist/debug.
It was generated once from ``HfArgumentParser(TrainingArguments)._actions`` (field
names, types and choices only). NeMo-Skills' subclass (train_redrafter.py @ a4c0a188)
overrides/adds fields: see ``NEMO_SKILLS_FIELDS``.

Behaviour copied from HfArgumentParser: every ``--a_b`` flag also answers to
``--a-b``; bool fields take an optional value parsed by ``string_to_bool``; bool
fields defaulting to True also get ``--no_<name>``; unknown flags are *not* argparse
errors but a ``ValueError("Some specified arguments are not used by the
HfArgumentParser: [...]")`` (exit code 1, like the real script), while a bad value
or choice is an argparse error (exit code 2).
"""

from __future__ import annotations

import argparse
import os

TRAINING_ARGUMENTS = [   ('output_dir', 'str', None, None), ('overwrite_output_dir', 'bool', False, None),
    ('do_train', 'bool', False, None), ('do_eval', 'bool', False, None),
    ('do_predict', 'bool', False, None), ('eval_strategy', 'str', 'no', ['no', 'steps', 'epoch']),
    ('prediction_loss_only', 'bool', False, None), ('per_device_train_batch_size', 'int', 8, None),
    ('per_device_eval_batch_size', 'int', 8, None), ('per_gpu_train_batch_size', 'int', None, None),
    ('per_gpu_eval_batch_size', 'int', None, None), ('gradient_accumulation_steps', 'int', 1, None),
    ('eval_accumulation_steps', 'int', None, None), ('eval_delay', 'float', 0, None),
    ('torch_empty_cache_steps', 'int', None, None), ('learning_rate', 'float', 5e-05, None),
    ('weight_decay', 'float', 0.0, None), ('adam_beta1', 'float', 0.9, None),
    ('adam_beta2', 'float', 0.999, None), ('adam_epsilon', 'float', 1e-08, None),
    ('max_grad_norm', 'float', 1.0, None), ('num_train_epochs', 'float', 3.0, None),
    ('max_steps', 'int', -1, None),
    (   'lr_scheduler_type', 'str', 'linear',
        [   'linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant',
            'constant_with_warmup', 'inverse_sqrt', 'reduce_lr_on_plateau', 'cosine_with_min_lr',
            'cosine_warmup_with_min_lr', 'warmup_stable_decay']),
    ('lr_scheduler_kwargs', 'str', None, None), ('warmup_ratio', 'float', 0.0, None),
    ('warmup_steps', 'int', 0, None),
    (   'log_level', 'str', 'passive',
        ['detail', 'debug', 'info', 'warning', 'error', 'critical', 'passive']),
    (   'log_level_replica', 'str', 'warning',
        ['detail', 'debug', 'info', 'warning', 'error', 'critical', 'passive']),
    ('log_on_each_node', 'bool', True, None), ('logging_dir', 'str', None, None),
    ('logging_strategy', 'str', 'steps', ['no', 'steps', 'epoch']),
    ('logging_first_step', 'bool', False, None), ('logging_steps', 'float', 500, None),
    ('logging_nan_inf_filter', 'bool', True, None),
    ('save_strategy', 'str', 'steps', ['no', 'steps', 'epoch', 'best']),
    ('save_steps', 'float', 500, None), ('save_total_limit', 'int', None, None),
    ('save_safetensors', 'bool', True, None), ('save_on_each_node', 'bool', False, None),
    ('save_only_model', 'bool', False, None),
    ('restore_callback_states_from_checkpoint', 'bool', False, None),
    ('no_cuda', 'bool', False, None), ('use_cpu', 'bool', False, None),
    ('use_mps_device', 'bool', False, None), ('seed', 'int', 42, None),
    ('data_seed', 'int', None, None), ('jit_mode_eval', 'bool', False, None),
    ('bf16', 'bool', False, None), ('fp16', 'bool', False, None),
    ('fp16_opt_level', 'str', 'O1', None),
    ('half_precision_backend', 'str', 'auto', ['auto', 'apex', 'cpu_amp']),
    ('bf16_full_eval', 'bool', False, None), ('fp16_full_eval', 'bool', False, None),
    ('tf32', 'optbool', None, None), ('local_rank', 'int', -1, None),
    ('ddp_backend', 'str', None, ['nccl', 'gloo', 'mpi', 'ccl', 'hccl', 'cncl', 'mccl']),
    ('tpu_num_cores', 'int', None, None), ('tpu_metrics_debug', 'bool', False, None),
    ('debug', 'debug', None, ['underflow_overflow', 'tpu_metrics_debug']),
    ('dataloader_drop_last', 'bool', False, None), ('eval_steps', 'float', None, None),
    ('dataloader_num_workers', 'int', 0, None), ('dataloader_prefetch_factor', 'int', None, None),
    ('past_index', 'int', -1, None), ('run_name', 'str', None, None),
    ('disable_tqdm', 'optbool', None, None), ('remove_unused_columns', 'bool', True, None),
    ('label_names', 'strlist', None, None), ('load_best_model_at_end', 'bool', False, None),
    ('metric_for_best_model', 'str', None, None), ('greater_is_better', 'optbool', None, None),
    ('ignore_data_skip', 'bool', False, None), ('fsdp', 'str', None, None),
    ('fsdp_min_num_params', 'int', 0, None), ('fsdp_config', 'str', None, None),
    ('fsdp_transformer_layer_cls_to_wrap', 'str', None, None),
    ('accelerator_config', 'str', None, None), ('parallelism_config', 'str', None, None),
    ('deepspeed', 'str', None, None), ('label_smoothing_factor', 'float', 0.0, None),
    (   'optim', 'str', 'adamw_torch',
        [   'adamw_torch', 'adamw_torch_fused', 'adamw_torch_xla', 'adamw_torch_npu_fused',
            'adamw_apex_fused', 'adafactor', 'adamw_anyprecision', 'adamw_torch_4bit',
            'adamw_torch_8bit', 'ademamix', 'sgd', 'adagrad', 'adamw_bnb_8bit', 'adamw_8bit',
            'ademamix_8bit', 'lion_8bit', 'lion_32bit', 'paged_adamw_32bit', 'paged_adamw_8bit',
            'paged_ademamix_32bit', 'paged_ademamix_8bit', 'paged_lion_32bit', 'paged_lion_8bit',
            'rmsprop', 'rmsprop_bnb', 'rmsprop_bnb_8bit', 'rmsprop_bnb_32bit', 'galore_adamw',
            'galore_adamw_8bit', 'galore_adafactor', 'galore_adamw_layerwise',
            'galore_adamw_8bit_layerwise', 'galore_adafactor_layerwise', 'lomo', 'adalomo',
            'grokadamw', 'schedule_free_radam', 'schedule_free_adamw', 'schedule_free_sgd',
            'apollo_adamw', 'apollo_adamw_layerwise', 'stable_adamw']),
    ('optim_args', 'str', None, None), ('adafactor', 'bool', False, None),
    ('group_by_length', 'bool', False, None), ('length_column_name', 'str', 'length', None),
    ('report_to', 'str', None, None), ('project', 'str', 'huggingface', None),
    ('trackio_space_id', 'str', 'trackio', None),
    ('ddp_find_unused_parameters', 'optbool', None, None), ('ddp_bucket_cap_mb', 'int', None, None),
    ('ddp_broadcast_buffers', 'optbool', None, None), ('dataloader_pin_memory', 'bool', True, None),
    ('dataloader_persistent_workers', 'bool', False, None),
    ('skip_memory_metrics', 'bool', True, None),
    ('use_legacy_prediction_loop', 'bool', False, None), ('push_to_hub', 'bool', False, None),
    ('resume_from_checkpoint', 'str', None, None), ('hub_model_id', 'str', None, None),
    ('hub_strategy', 'str', 'every_save', ['end', 'every_save', 'checkpoint', 'all_checkpoints']),
    ('hub_token', 'str', None, None), ('hub_private_repo', 'optbool', None, None),
    ('hub_always_push', 'bool', False, None), ('hub_revision', 'str', None, None),
    ('gradient_checkpointing', 'bool', False, None),
    ('gradient_checkpointing_kwargs', 'str', None, None),
    ('include_inputs_for_metrics', 'bool', False, None),
    ('include_for_metrics', 'strlist', [], None), ('eval_do_concat_batches', 'bool', True, None),
    ('fp16_backend', 'str', 'auto', ['auto', 'apex', 'cpu_amp']),
    ('push_to_hub_model_id', 'str', None, None), ('push_to_hub_organization', 'str', None, None),
    ('push_to_hub_token', 'str', None, None), ('mp_parameters', 'str', '', None),
    ('auto_find_batch_size', 'bool', False, None), ('full_determinism', 'bool', False, None),
    ('torchdynamo', 'str', None, None), ('ray_scope', 'str', 'last', None),
    ('ddp_timeout', 'int', 1800, None), ('torch_compile', 'bool', False, None),
    ('torch_compile_backend', 'str', None, None), ('torch_compile_mode', 'str', None, None),
    ('include_tokens_per_second', 'bool', False, None),
    ('include_num_input_tokens_seen', 'bool', False, None),
    ('neftune_noise_alpha', 'float', None, None), ('optim_target_modules', 'str', None, None),
    ('batch_eval_metrics', 'bool', False, None), ('eval_on_start', 'bool', False, None),
    ('use_liger_kernel', 'bool', False, None), ('liger_kernel_config', 'str', None, None),
    ('eval_use_gather_object', 'bool', False, None),
    ('average_tokens_across_devices', 'bool', True, None)]



NEMO_SKILLS_MODEL_FIELDS = [
    ("llm_name_or_path", "str", "lmsys/vicuna-7b-v1.3", None),
    ("drafter_name_or_path", "str", None, None),
]

NEMO_SKILLS_FIELDS = [  # NeMo-Skills TrainingArguments(transformers.TrainingArguments)
    ("cache_dir", "str", None, None),
    ("optim", "str", "adamw_torch", None),  # re-declared as a plain str
    ("model_max_length", "int", 2048, None),
    ("drafter_predict_n_tokens", "int", 5, None),
    ("drafter_top_k", "int", 5, None),
    ("drafter_num_layers", "int", 1, None),
    ("include_inputs_for_metrics", "bool", True, None),
    ("phase", "str", "train", None),
    ("rnn", "bool", False, None),
    ("dataset", "str", "nvidia/OpenMathReasoning", None),
    ("dataset_split", "str", "tir", None),
    ("dataset_nrows", "int", 100000, None),
    ("dataset_eval", "str", "nvidia/OpenMathReasoning", None),
    ("dataset_eval_split", "str", "tir", None),
    ("report_to", "str", "none", None),
    ("logging_steps", "int", 30, None),
]


def string_to_bool(v):
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(
        f"Truthy value expected: got {v} but expected one of yes/no, true/false, t/f, y/n, 1/0 (case insensitive).")


def merged_fields():
    """Model fields first, then TrainingArguments with NeMo-Skills overrides in place."""
    over = {f[0]: f for f in NEMO_SKILLS_FIELDS}
    out = list(NEMO_SKILLS_MODEL_FIELDS)
    for f in TRAINING_ARGUMENTS:
        out.append(over.pop(f[0], f))
    out.extend(f for f in NEMO_SKILLS_FIELDS if f[0] in over)
    return out


def add_fields(parser: argparse.ArgumentParser, fields) -> None:
    for name, kind, default, choices in fields:
        flags = [f"--{name}"]
        if "_" in name:
            flags.append(f"--{name.replace('_', '-')}")
        kw: dict = {"default": default, "dest": name}
        if kind == "int":
            kw["type"] = int
        elif kind == "float":
            kw["type"] = float
        elif kind == "bool":
            kw.update(type=string_to_bool, nargs="?", const=True)
        elif kind == "optbool":
            kw["type"] = string_to_bool
        elif kind in ("strlist", "debug"):
            kw.update(type=str, nargs="+")
        else:
            kw["type"] = str
        if choices:
            kw["choices"] = choices
        if name == "output_dir":
            kw["required"] = False
        parser.add_argument(*flags, **kw)
        if kind == "bool" and default is True:
            neg = [f"--no_{name}"] + ([f"--no-{name.replace('_', '-')}"] if "_" in name else [])
            parser.add_argument(*neg, action="store_false", dest=name)


def build_parser(prog: str = "train_redrafter.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="[STAND-IN] nemo_skills.training.train_redrafter "
        "(HfArgumentParser over ModelArguments + TrainingArguments)")
    add_fields(parser, merged_fields())
    return parser


class UnusedArgumentsError(ValueError):
    pass


def default_logdir() -> str:
    """transformers 4.57.6 training_args.default_logdir: `runs/<time>_<host name>` ("same default as PyTorch")."""
    import socket
    from datetime import datetime

    return os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname())


def parse(argv=None, prog: str = "train_redrafter.py") -> argparse.Namespace:
    parser = build_parser(prog)
    ns, remaining = parser.parse_known_args(argv)
    if remaining:
        raise UnusedArgumentsError(f"Some specified arguments are not used by the HfArgumentParser: {remaining}")
    # TrainingArguments.__post_init__, at parse time (before train_redrafter rewrites output_dir).
    if ns.logging_dir is None and ns.output_dir is not None:
        ns.logging_dir = os.path.join(ns.output_dir, default_logdir())
    return ns
