"""The pipeline as one table: every stage kind, what it reads, which config values it hashes, how it runs.

launcher.plan builds a plan by walking this table from the report down: for one experiment, each input of a kind
resolves to the first of the input's kinds that the config needs (`needed`), that stage's own inputs are added
first, and a stage is added once per fingerprint, so experiments share what they have in common. A kind's
functions see one stage through its StageContext: the composed config, its subject (which dataset a
download_dataset fetches), the paths its inputs give it (by role), the user's files it reads (stored by
content). A stage's fingerprint hashes `values`, the commands with their paths blanked, its inputs'
fingerprints and its container images (launcher.plan). Adding a stage kind or a serving backend is one entry
here and one small command builder in launcher.commands.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from launcher import commands
from launcher.contract import ACCOUNTING, CALIBRATION_SUBDIR, REPORT_INPUTS


@dataclass(frozen=True)
class StoredFile:
    """A file of the user's that a stage reads: copied onto shared storage at submission, named and
    fingerprinted by its content, not by where the user keeps it."""
    digest: str
    path: str  # <storage root>/inputs/<role>/<digest><suffix>
    text: str


@dataclass(frozen=True)
class StageContext:
    """What a stage kind's functions know of one stage."""
    cfg: DictConfig
    subject: Optional[str] = None
    inputs: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # role -> what its input stages give
    input_fingerprints: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # role -> their fingerprints
    files: Mapping[str, StoredFile] = field(default_factory=dict)  # role -> the stored file
    experiment_dir: str = ""  # <storage root>/experiments/<experiment>

    def input(self, role: str) -> Optional[str]:
        """The path the input of `role` gives, None where the config needs none (no calibration)."""
        paths = self.inputs.get(role, ())
        return paths[0] if paths else None


Values = Callable[[StageContext], dict]
Commands = Callable[[StageContext, str], Dict[str, List[str]]]  # (stage, where it writes) -> named argv lists
Output = Callable[[StageContext, str], str]  # (stage, its artifact directory) -> the path its dependents read


@dataclass(frozen=True)
class Input:
    """A stage's input, by the role its commands know it by: the first of `kinds` the config needs; absent when
    it needs none of them."""
    role: str
    kinds: Tuple[str, ...]
    subject: Optional[Callable[[DictConfig], str]] = None  # which stage of the kind (the dataset repo)
    # False: only its path is read; another input already waits on it (no job dependency, not hashed twice).
    dependency: bool = True
    # The report's inputs: this input of every experiment of the plan (the kind runs once per plan).
    every_experiment: bool = False


@dataclass(frozen=True)
class InputFile:
    """A file of the user's machine a stage reads (the benchmark's problems), stored by launcher.plan."""
    role: str
    path: Callable[[DictConfig], str]
    suffix: str


def _always(cfg: DictConfig) -> bool:
    return True


def _no_gpus(cfg: DictConfig) -> int:
    return 0


def _one_gpu(cfg: DictConfig) -> int:
    return 1


def _model_gpus(cfg: DictConfig) -> int:
    return cfg.model.tensor_parallel * cfg.model.pipeline_parallel


def _trtllm(cfg: DictConfig) -> Tuple[str, ...]:
    return ("trtllm",)


def _artifact(ctx: StageContext, root: str) -> str:
    return root


@dataclass(frozen=True)
class StageKind:
    name: str  # its artifacts live in <storage root>/artifacts/<name>/<fingerprint>
    time_limit_min: int  # unless the cluster sets its own (cluster.time_limits.<name>)
    values: Values  # the config values its output depends on: hashed into its fingerprint
    commands: Commands
    inputs: Tuple[Input, ...] = ()
    needed: Callable[[DictConfig], bool] = _always
    gpus: Callable[[DictConfig], int] = _no_gpus
    containers: Callable[[DictConfig], Tuple[str, ...]] = _trtllm  # the stage's own first, then helpers
    output: Output = _artifact
    files: Tuple[InputFile, ...] = ()
    # Its GPUs run FP8 kernels when the config quantizes to FP8, or the drafter when there is one: the job checks
    # their compute capability first (launcher.scripts.gpu_requirement).
    gpus_run_fp8: bool = False
    gpus_run_drafter: bool = False
    after_any: bool = False  # runs once its inputs ended, well or not: the report shows failed points as failed


def _tool_values(cfg: DictConfig) -> dict:
    return {"python": cfg.cluster.python, "examples": cfg.cluster.trtllm_examples_dir}


def _keys(node: DictConfig, keys: Tuple[str, ...]) -> dict:
    return {k: node[k] for k in keys}


def _calibrates(cfg: DictConfig) -> bool:
    return cfg.quantization.calibrate


def _drafts(cfg: DictConfig) -> bool:
    return cfg.drafter.enabled


def _model_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{commands.model_dir_name(ctx.cfg.model.hf_id)}"


def _dataset_dir(ctx: StageContext, root: str) -> str:
    return f"{root}/{commands.model_dir_name(ctx.subject)}"


def _model_download(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    m, local_dir = ctx.cfg.model, _model_dir(ctx, out)
    return {"download": commands.download_command(m.hf_id, local_dir, revision=m.revision),
            "check": commands.check_download_command(ctx.cfg, "model", local_dir)}


def _dataset_download(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    local_dir = _dataset_dir(ctx, out)
    return {"download": commands.download_command(ctx.subject, local_dir, "dataset"),
            "check": commands.check_download_command(ctx.cfg, "dataset", local_dir)}


CALIBRATION_KEYS = ("calib_split", "calib_size", "calib_prompt", "calib_max_seq_length")
QUANTIZE_CALIBRATION_KEYS = ("calib_size", "calib_batch_size", "calib_max_seq_length")
TRAIN_DRAFTER_KEYS = ("dataset_split", "dataset_nrows", "num_gpus", "num_train_epochs", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "save_strategy", "learning_rate", "weight_decay", "warmup_ratio",
                      "lr_scheduler_type", "bf16", "tf32", "model_max_length", "predict_n_tokens", "num_layers", "rnn")
CONVERT_DRAFTER_KEYS = ("dtype", "tensor_parallel", "num_beams", "draft_len_per_beam", "greedy_search")
DRAFTER_ENGINE_KEYS = ("engine_max_batch_size", "engine_max_input_len", "engine_max_seq_len", "engine_max_num_tokens",
                       "engine_kv_cache_type", "num_beams")
ENGINE_KEYS = ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "gemm_plugin", "kv_cache_type",
               "use_paged_context_fmha")


def _calibration_output(ctx: StageContext, root: str) -> str:
    return f"{root}/{CALIBRATION_SUBDIR}"


def _quantize_values(ctx: StageContext) -> dict:
    m, q = ctx.cfg.model, ctx.cfg.quantization
    return {"qformat": q.qformat, "kv_cache_dtype": q.kv_cache_dtype, "dtype": m.dtype,
            "tp": m.tensor_parallel, "pp": m.pipeline_parallel, "tool": m.checkpoint_tool,
            "convert_script": m.convert_script, "trust_remote_code": m.trust_remote_code, **_tool_values(ctx.cfg),
            **(_keys(q, QUANTIZE_CALIBRATION_KEYS) if q.calibrate else {})}


def _drafter_output(ctx: StageContext, root: str) -> str:
    """Where NeMo-Skills' trainer really writes (commands.drafter_output_dir), given --output_dir."""
    return commands.drafter_output_dir(ctx.cfg, f"{root}/redrafter_output", ctx.input("model"))


def _drafter_engine_values(ctx: StageContext) -> dict:
    return {**_keys(ctx.cfg.drafter, DRAFTER_ENGINE_KEYS), "gemm_plugin": commands.drafter_gemm_plugin(ctx.cfg)}


def _engine_commands(build: Callable[[DictConfig, str, str], List[str]]) -> Commands:
    """An engine build and the tokenizer trtllm-serve reads beside it."""
    return lambda ctx, out: {"build": build(ctx.cfg, ctx.input("checkpoint"), out),
                             "copy_tokenizer": commands.copy_tokenizer_command(ctx.cfg, ctx.input("model"), out)}


def _benchmark_values(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    benchmark = OmegaConf.to_container(cfg.benchmark, resolve=True)
    return {"serving": OmegaConf.to_container(cfg.serving, resolve=True),
            "benchmark": {**benchmark, "problems_file": ctx.files["problems"].digest},
            "tp": cfg.model.tensor_parallel, "pp": cfg.model.pipeline_parallel, "python": cfg.cluster.python}


def _benchmark_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    cfg, engine, tokenizer = ctx.cfg, ctx.input("engine"), ctx.input("model")
    cmds = {"server": commands.serve_command(cfg, engine, tokenizer),
            "client": commands.benchmark_client_command(cfg, engine, tokenizer, ctx.files["problems"].path,
                                                        f"{out}/results.json")}
    if cfg.serving.sandbox.enabled:
        cmds["sandbox"] = commands.sandbox_command(cfg)
    return cmds


def _benchmark_containers(cfg: DictConfig) -> Tuple[str, ...]:
    return ("trtllm", "sandbox") if cfg.serving.sandbox.enabled else ("trtllm",)


def _report_commands(ctx: StageContext, out: str) -> Dict[str, List[str]]:
    d = ctx.experiment_dir
    return {"report": commands.report_command(ctx.cfg, os.path.join(d, REPORT_INPUTS), out, d,
                                              os.path.join(d, ACCOUNTING))}


MODEL = Input("model", ("download_model",))
KINDS: Dict[str, StageKind] = {kind.name: kind for kind in (
    StageKind("download_model", 120, output=_model_dir, commands=_model_download,
              values=lambda ctx: {"hf_id": ctx.cfg.model.hf_id, "revision": ctx.cfg.model.revision}),
    StageKind("download_dataset", 120, output=_dataset_dir, commands=_dataset_download,
              values=lambda ctx: {"repo_id": ctx.subject}),
    StageKind("calibration_data", 60, needed=_calibrates, output=_calibration_output,
              inputs=(MODEL, Input("dataset", ("download_dataset",), lambda cfg: cfg.quantization.calib_dataset)),
              values=lambda ctx: {**_keys(ctx.cfg.quantization, CALIBRATION_KEYS), **_tool_values(ctx.cfg)},
              commands=lambda ctx, out: {"calibration_data": commands.calibration_data_command(
                  ctx.cfg, ctx.input("model"), ctx.input("dataset"), _calibration_output(ctx, out))}),
    StageKind("quantize", 120, gpus=_model_gpus, gpus_run_fp8=True,
              inputs=(MODEL, Input("calibration", ("calibration_data",))), values=_quantize_values,
              commands=lambda ctx, out: {"quantize": commands.quantize_command(
                  ctx.cfg, ctx.input("model"), ctx.input("calibration"), out)}),
    StageKind("build_engine", 90, needed=lambda cfg: not _drafts(cfg), gpus=_one_gpu, gpus_run_fp8=True,
              inputs=(Input("checkpoint", ("quantize",)), MODEL),
              values=lambda ctx: _keys(ctx.cfg.model, ENGINE_KEYS),
              commands=_engine_commands(commands.build_engine_command)),
    StageKind("train_drafter", 480, needed=_drafts, gpus=lambda cfg: cfg.drafter.num_gpus, gpus_run_drafter=True,
              inputs=(MODEL, Input("dataset", ("download_dataset",), lambda cfg: cfg.drafter.dataset)),
              output=_drafter_output, values=lambda ctx: _keys(ctx.cfg.drafter, TRAIN_DRAFTER_KEYS),
              commands=lambda ctx, out: {"train": commands.train_drafter_command(
                  ctx.cfg, ctx.input("model"), ctx.input("dataset"), f"{out}/redrafter_output")}),
    StageKind("convert_drafter", 30, needed=_drafts, gpus=_one_gpu, gpus_run_drafter=True,
              inputs=(Input("checkpoint", ("quantize",)), Input("drafter", ("train_drafter",))),
              values=lambda ctx: {**_keys(ctx.cfg.drafter, CONVERT_DRAFTER_KEYS), **_tool_values(ctx.cfg)},
              commands=lambda ctx, out: {"convert": commands.convert_drafter_command(
                  ctx.cfg, ctx.input("checkpoint"), ctx.input("drafter"), out)}),
    StageKind("build_drafter_engine", 90, needed=_drafts, gpus=_one_gpu, gpus_run_fp8=True, gpus_run_drafter=True,
              inputs=(Input("checkpoint", ("convert_drafter",)), MODEL), values=_drafter_engine_values,
              commands=_engine_commands(commands.build_drafter_engine_command)),
    StageKind("benchmark", 90, gpus=_model_gpus, containers=_benchmark_containers, gpus_run_fp8=True,
              gpus_run_drafter=True, files=(InputFile("problems", lambda cfg: cfg.benchmark.problems_file, ".jsonl"),),
              # The tokenizer is the downloaded model's, which the engine already waits on.
              inputs=(Input("engine", ("build_drafter_engine", "build_engine")),
                      Input("model", ("download_model",), dependency=False)),
              values=_benchmark_values, commands=_benchmark_commands),
    StageKind("report", 15, after_any=True, inputs=(Input("benchmarks", ("benchmark",), every_experiment=True),),
              values=lambda ctx: {"benchmarks": list(ctx.input_fingerprints["benchmarks"])},
              commands=_report_commands),
)}
STAGE_KINDS = tuple(KINDS)  # in dependency order: a kind's inputs come before it
REPORT = KINDS["report"]  # once per plan: the root of the walk
FP8_KINDS = tuple(k.name for k in KINDS.values() if k.gpus_run_fp8)
DRAFTER_KINDS = tuple(k.name for k in KINDS.values() if k.gpus_run_drafter)


def input_kind(spec: Input, cfg: DictConfig) -> Optional[StageKind]:
    """The kind an input is for this config: the first of its kinds the config needs, or None."""
    return next((KINDS[name] for name in spec.kinds if KINDS[name].needed(cfg)), None)


def needed_containers(cfg: DictConfig) -> Tuple[str, ...]:
    """Every container key the stages this config needs run in, in table order."""
    keys: Dict[str, None] = {}
    for kind in KINDS.values():
        if kind.needed(cfg):
            keys.update(dict.fromkeys(kind.containers(cfg)))
    return tuple(keys)
