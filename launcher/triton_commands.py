"""Command builders for serving a TensorRT-LLM engine with Triton's TensorRT-LLM backend (seed 004).

Pure functions from plain arguments to argv lists: nothing here reads a file or the config tree, so the stage
table can plug them in and the tests can compare them with the seed's commands.

Facts (tests/standins/README.md, "Triton"): the tensorrtllm_backend v1.1.0rc0 image (TensorRT-LLM 26f413ad)
keeps the model-repository templates in ``/app/all_models/inflight_batcher_llm/{preprocessing,tensorrt_llm,
postprocessing,tensorrt_llm_bls,ensemble}`` and ``/app/tools/fill_template.py``; ``fill_template.py
[-i|--in_place] FILE key:value,...`` asserts every key occurs in FILE and leaves a key nobody filled as
``${key}``. The keys filled below are the ones tensorrtllm_backend's docs/model_config.md at that release marks
mandatory (an unquoted ``${...}`` makes Triton refuse the config), plus ``max_beam_width`` and
``exclude_input_in_output`` as its README fills them.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Union

TRITON_MODELS = ("preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls", "ensemble")
LOGITS_DATATYPES = ("TYPE_FP32", "TYPE_FP16", "TYPE_BF16")
# tensorrtllm_backend v1.1.0rc0 image layout (Dockerfile.triton.trt_llm_backend copies these under /app).
DEFAULT_BACKEND_DIR = "/app"
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")  # launcher.contract.placeholder's syntax: a port the job chooses


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _port(name: str, value: Union[int, str]) -> Union[int, str]:
    """A TCP port, or the `${NAME}` placeholder of the port the benchmark's job chooses (jobs.ports)."""
    if isinstance(value, str) and PLACEHOLDER.fullmatch(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{name} must be a TCP port in 1..65535 or a ${{NAME}} placeholder, got {value!r}")
    return value


def escape_fill_value(value: str) -> str:
    """A value as fill_template.py reads it back. It splits the argument twice, first on ``,`` (substitutions)
    then on ``:`` (key from value), and each pass turns ``\\x`` into ``x``: a comma needs one escape, a colon
    must survive the first pass still escaped (three backslashes) and a backslash needs four."""
    return "".join({",": "\\,", ":": "\\\\\\:", "\\": "\\" * 4}.get(ch, ch) for ch in str(value))


def _pbtxt_bool(value: bool) -> str:
    return "true" if value else "false"


def template_substitutions(*, engine_dir: str, tokenizer_dir: str, max_batch_size: int,
                           max_queue_delay_us: int, decoupled: bool, instance_count: int = 1,
                           max_queue_size: int = 0, logits_datatype: str = "TYPE_FP32",
                           exclude_input_in_output: bool = True,
                           kv_cache_free_gpu_mem_fraction: Optional[float] = None) -> Dict[str, Dict[str, str]]:
    """Per model of the inflight_batcher_llm repository, the keys fill_template.py substitutes (the optional
    ``kv_cache_free_gpu_mem_fraction`` of tensorrt_llm only when given: unfilled, the backend's default, 0.9)."""
    _positive("max_batch_size", max_batch_size)
    _non_negative("max_queue_delay_us", max_queue_delay_us)
    _positive("instance_count", instance_count)
    _non_negative("max_queue_size", max_queue_size)
    if logits_datatype not in LOGITS_DATATYPES:
        raise ValueError(f"logits_datatype must be one of {', '.join(LOGITS_DATATYPES)}, got {logits_datatype!r}")
    for name, path in (("engine_dir", engine_dir), ("tokenizer_dir", tokenizer_dir)):
        if not path:
            raise ValueError(f"{name} must be a path, got {path!r}")
    if kv_cache_free_gpu_mem_fraction is not None and not 0 < kv_cache_free_gpu_mem_fraction <= 1:
        raise ValueError(f"kv_cache_free_gpu_mem_fraction must be in (0, 1], got {kv_cache_free_gpu_mem_fraction!r}")
    batch = str(max_batch_size)
    decoupled_mode = _pbtxt_bool(decoupled)
    kv_fraction = ({} if kv_cache_free_gpu_mem_fraction is None
                   else {"kv_cache_free_gpu_mem_fraction": str(kv_cache_free_gpu_mem_fraction)})
    return {
        "preprocessing": {"tokenizer_dir": tokenizer_dir, "triton_max_batch_size": batch,
                          "preprocessing_instance_count": str(instance_count),
                          "max_queue_delay_microseconds": str(max_queue_delay_us),
                          "max_queue_size": str(max_queue_size)},
        "tensorrt_llm": {"triton_backend": "tensorrtllm", "triton_max_batch_size": batch,
                         "decoupled_mode": decoupled_mode, "engine_dir": engine_dir,
                         "max_queue_delay_microseconds": str(max_queue_delay_us),
                         "batching_strategy": "inflight_fused_batching", "max_queue_size": str(max_queue_size),
                         "encoder_input_features_data_type": "TYPE_FP16", "logits_datatype": logits_datatype,
                         "max_beam_width": "1", "exclude_input_in_output": _pbtxt_bool(exclude_input_in_output),
                         **kv_fraction},
        "postprocessing": {"tokenizer_dir": tokenizer_dir, "triton_max_batch_size": batch,
                           "postprocessing_instance_count": str(instance_count)},
        "tensorrt_llm_bls": {"triton_max_batch_size": batch, "decoupled_mode": decoupled_mode,
                             "bls_instance_count": str(instance_count), "logits_datatype": logits_datatype},
        "ensemble": {"triton_max_batch_size": batch, "logits_datatype": logits_datatype},
    }


def fill_template_argv(python: str, fill_template_py: str, config_pbtxt: str, substitutions: Mapping[str, str]
                       ) -> List[str]:
    """``python fill_template.py -i CONFIG k:v,...`` (``-i`` is ``--in_place``: the file is rewritten)."""
    if not substitutions:
        raise ValueError(f"no substitutions for {config_pbtxt}: fill_template.py needs at least one key:value")
    pairs = ",".join(f"{key}:{escape_fill_value(value)}" for key, value in substitutions.items())
    return [python, fill_template_py, "-i", config_pbtxt, pairs]


def model_repository_commands(*, repo_dir: str, engine_dir: str, tokenizer_dir: str, max_batch_size: int,
                              max_queue_delay_us: int, decoupled: bool, instance_count: int = 1,
                              max_queue_size: int = 0, logits_datatype: str = "TYPE_FP32",
                              kv_cache_free_gpu_mem_fraction: Optional[float] = None,
                              backend_dir: str = DEFAULT_BACKEND_DIR, python: str = "python3") -> Dict[str, List[str]]:
    """Copy the template repository to ``repo_dir`` and fill every model's config.pbtxt: named argv lists, run
    in order (the seed's ``cp -R .../inflight/* repo/.`` then one fill_template.py call per model, `fill_<model>`)."""
    subs = template_substitutions(engine_dir=engine_dir, tokenizer_dir=tokenizer_dir,
                                  max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
                                  decoupled=decoupled, instance_count=instance_count,
                                  max_queue_size=max_queue_size, logits_datatype=logits_datatype,
                                  kv_cache_free_gpu_mem_fraction=kv_cache_free_gpu_mem_fraction)
    base = backend_dir.rstrip("/")
    repo = repo_dir.rstrip("/")
    commands = {"mkdir": ["mkdir", "-p", repo],
                # "SRC/." copies the directory's contents (no shell glob needed), into an existing repo too.
                "copy": ["cp", "-R", f"{base}/all_models/inflight_batcher_llm/.", repo]}
    fill = f"{base}/tools/fill_template.py"
    commands.update({f"fill_{model}": fill_template_argv(python, fill, f"{repo}/{model}/config.pbtxt", subs[model])
                     for model in TRITON_MODELS})
    return commands


def tritonserver_argv(*, repo_dir: str, http_port: Union[int, str], grpc_port: Union[int, str],
                      metrics_port: Union[int, str], world_size: int = 1,
                      tritonserver: str = "tritonserver", tensorrt_llm_model: str = "tensorrt_llm") -> List[str]:
    """The server for one job: its own ports. World size 1 is the seed's plain ``tritonserver`` command; a
    larger engine (tp*pp ranks) runs one tritonserver per rank under one mpirun, as the backend's
    ``scripts/launch_triton_server.py`` lays them out (leader mode): rank 0 loads every model and answers,
    ranks > 0 load only the tensorrt_llm model, each with its own python-backend shared-memory prefix."""
    _positive("world_size", world_size)
    ports = {"http_port": _port("http_port", http_port), "grpc_port": _port("grpc_port", grpc_port),
             "metrics_port": _port("metrics_port", metrics_port)}
    if len(set(ports.values())) != 3:
        raise ValueError(f"http_port, grpc_port and metrics_port must differ, got {ports}")

    def one_rank(rank: int) -> List[str]:
        argv = [tritonserver, f"--model-repository={repo_dir}", f"--grpc-port={grpc_port}",
                f"--http-port={http_port}", f"--metrics-port={metrics_port}"]
        if rank > 0:
            argv += ["--model-control-mode=explicit", f"--load-model={tensorrt_llm_model}"]
        return argv + ["--disable-auto-complete-config",
                       f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]

    if world_size == 1:
        return [tritonserver, f"--model-repository={repo_dir}", f"--http-port={http_port}",
                f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}"]
    argv = ["mpirun", "--allow-run-as-root"]
    for rank in range(world_size):
        argv += ["-n", "1", *one_rank(rank)] + ([":"] if rank < world_size - 1 else [])
    return argv


def mpirun_wrap(argv: Sequence[str], world_size: int) -> List[str]:
    """``argv`` as every rank of a tp*pp engine runs it: under ``mpirun -n N --allow-run-as-root`` when N > 1
    (the runtime checks the MPI world size against the engine's tp*pp), unchanged for one rank."""
    _positive("world_size", world_size)
    if world_size == 1:
        return list(argv)
    return ["mpirun", "-n", str(world_size), "--allow-run-as-root", *argv]


def smoke_run_argv(*, examples_dir: str, engine_dir: str, tokenizer_dir: str, input_text: str,
                   max_output_len: int, world_size: int = 1, python: str = "python3") -> List[str]:
    """The seed's smoke test: ``examples/run.py`` on the engine with one prompt (prints ``Input [Text 0]: "..."``
    and ``Output [Text 0 Beam 0]: "..."``), under mpirun for a multi-rank engine."""
    _positive("max_output_len", max_output_len)
    if not input_text:
        raise ValueError("input_text must be a non-empty prompt")
    run_py = f"{examples_dir.rstrip('/')}/run.py"
    return mpirun_wrap([python, run_py, f"--engine_dir={engine_dir}", "--max_output_len", str(max_output_len),
                        "--tokenizer_dir", tokenizer_dir, "--input_text", input_text], world_size)
