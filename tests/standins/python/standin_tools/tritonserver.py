"""STAND-IN for ``tritonserver`` serving Triton's TensorRT-LLM backend model repository (tests only).

It is a real gRPC server built from the proto stubs tritonclient ships (``GRPCInferenceServiceServicer``), plus
HTTP health and metrics endpoints, in front of a scripted text generator: no model runs. What it reproduces
(tests/standins/README.md, "Triton", says where each behaviour lives upstream):

* loading: every model directory of ``--model-repository`` (or only ``--load-model`` ones with
  ``--model-control-mode=explicit``) is parsed with protobuf's text format into tritonclient's
  ``inference.ModelConfig``; an unfilled ``${key}`` outside quotes fails that parse and the server prints the
  C++ parser's line and ``Poll failed for model directory 'M': failed to read text proto from PATH``, then
  ``error: creating server: Internal - failed to load all models`` (exit 1), as Triton does;
* a ``backend: "${triton_backend}"`` left unfilled: ``unable to find backend library for backend
  '${triton_backend}'``; a model without a version directory: ``at least one version must be available``;
* the tensorrt_llm model: ``gpt_model_path`` must exist (else the backend's ``Both encoder and decoder model
  paths are empty``), be an engine dir (config.json with build_config and pretrained_config.mapping, and a
  ``rank{r}.engine`` per rank), and the MPI world size (``OMPI_COMM_WORLD_SIZE``, 1 without mpirun) must be
  the engine's tp*pp (``MPI size 1 != TP size 2 * PP size 1 * CP Size 1``);
* the pre/postprocessing models load their ``tokenizer_dir`` with transformers' AutoTokenizer;
* the ensemble needs its steps' models loaded;
* requests (``ModelInfer`` and ``ModelStreamInfer``) to ``ensemble``/``tensorrt_llm_bls``: input names and
  datatypes are checked against the config; ``stream=true`` needs a decoupled tensorrt_llm model
  (``Streaming is only supported if model is deployed using decoupled mode.``); a prompt longer than the engine's
  ``build_config.max_input_len`` is refused (``Prompt length (P) exceeds maximum input length (I).``), and a
  prompt + ``max_tokens`` over ``max_seq_len`` is not refused: the executor lowers ``max_tokens`` to
  ``max_seq_len - P`` and logs a warning, as TensorRT-LLM's request validation does;
* decoupled streaming: one response per generated token, each with the ``triton_final_response`` parameter
  (false), then, if the request asked for ``triton_enable_empty_final_response``, an empty response with it
  true; requests on one stream are served concurrently, as in-flight batching does.

Knobs: ``STANDIN_TRITON_TOKEN_DELAY_S`` (seconds per generated token, default 0.002);
``STANDIN_FAIL=tritonserver`` exits 1 once the repository loaded (a server that dies at start).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional

from standin_tools.common import log, maybe_fail

TOOL = "tritonserver"
ENTRY_MODELS = ("ensemble", "tensorrt_llm_bls")
# The C++ text-format parser's complaint for each kind of field an unquoted "${" lands in.
_PARSE_KINDS = (("Couldn't parse integer", "Expected integer, got: $"),
                ('Expected "true" or "false"', "Expected identifier, got: $"),
                ("Enum type", "Expected integer or identifier, got: $"))
_DTYPES = {"TYPE_STRING": "BYTES", "TYPE_INT32": "INT32", "TYPE_BOOL": "BOOL", "TYPE_FP32": "FP32",
           "TYPE_INT64": "INT64", "TYPE_UINT64": "UINT64", "TYPE_FP16": "FP16", "TYPE_UINT8": "UINT8"}


class LoadError(Exception):
    """A model that Triton marks UNAVAILABLE, with the reason it prints."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tritonserver", allow_abbrev=True,
                                description="[STAND-IN] Triton Inference Server (scripted generator, no model)")
    p.add_argument("--model-repository", "--model-store", dest="model_repository", action="append", required=True)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--allow-http", default="true")
    p.add_argument("--allow-grpc", default="true")
    p.add_argument("--allow-metrics", default="true")
    p.add_argument("--model-control-mode", choices=["none", "poll", "explicit"], default="none")
    p.add_argument("--load-model", action="append", default=[])
    p.add_argument("--disable-auto-complete-config", action="store_true")
    p.add_argument("--strict-model-config", default="false")
    p.add_argument("--backend-config", action="append", default=[])
    p.add_argument("--exit-on-error", default="true")
    p.add_argument("--exit-timeout-secs", type=int, default=30)
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("--log-file")
    p.add_argument("--http-address", default="0.0.0.0")
    p.add_argument("--grpc-address", default="0.0.0.0")
    return p


# --------------------------------------------------------------------------- loading
def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = path.read_text()
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        message = next((cpp for py, cpp in _PARSE_KINDS if py in str(exc)), str(exc))
        print(f"[libprotobuf ERROR google/protobuf/text_format.cc:335] Error parsing text-format "
              f"inference.ModelConfig: {exc.GetLine()}:{exc.GetColumn()}: {message}", file=sys.stderr, flush=True)
        raise LoadError(f"failed to read text proto from {path}") from None


def parameter(config, key: str) -> Optional[str]:
    return config.parameters[key].string_value if key in config.parameters else None


def load_tokenizer(config, name: str):
    tokenizer_dir = parameter(config, "tokenizer_dir") or ""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as exc:  # the python backend's initialize() raising: the model is UNAVAILABLE
        raise LoadError(f"Failed to initialize model '{name}': tokenizer_dir {tokenizer_dir!r}: "
                        f"{type(exc).__name__}: {exc}") from None


def load_engine(config) -> dict:
    engine_dir = parameter(config, "gpt_model_path") or ""
    if not engine_dir or not os.path.exists(engine_dir):
        log(TOOL, f"[TensorRT-LLM][WARNING] gpt_model_path is not specified, will be left empty")
        raise LoadError("unexpected error when creating modelInstanceState: [TensorRT-LLM][ERROR] Assertion "
                        "failed: Both encoder and decoder model paths are empty "
                        "(/tmp/tritonbuild/tensorrtllm/inflight_batcher_llm/src/model_instance_state.cc)")
    try:
        engine = json.loads((Path(engine_dir) / "config.json").read_text())
        build, mapping = engine["build_config"], engine["pretrained_config"]["mapping"]
        tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
        limits = {"max_seq_len": int(build["max_seq_len"]), "max_input_len": int(build["max_input_len"])}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise LoadError(f"unexpected error when creating modelInstanceState: {engine_dir}/config.json is not a "
                        f"TensorRT-LLM engine config ({type(exc).__name__}: {exc})") from None
    cp = int(mapping.get("cp_size", 1))
    mpi_size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    if mpi_size != tp * pp * cp:
        raise LoadError(f"unexpected error when creating modelInstanceState: [TensorRT-LLM][ERROR] Assertion "
                        f"failed: MPI size {mpi_size} != TP size {tp} * PP size {pp} * CP Size {cp} "
                        f"(/src/tensorrt_llm/cpp/tensorrt_llm/runtime/worldConfig.cpp)")
    missing = [f"rank{r}.engine" for r in range(tp * pp * cp) if not (Path(engine_dir) / f"rank{r}.engine").is_file()]
    if missing:
        raise LoadError(f"unexpected error when creating modelInstanceState: engine file not found: "
                        f"{engine_dir}/{missing[0]}")
    return limits


class Repository:
    """The loaded models: configs, and what serving needs (tokenizer, engine limits, decoupled)."""

    def __init__(self, roots: List[str], explicit: Optional[List[str]]):
        self.configs: Dict[str, object] = {}
        self.errors: Dict[str, str] = {}
        self.tokenizer = None
        self.limits: Optional[dict] = None
        self.decoupled = False
        dirs = sorted(d for root in roots for d in Path(root).iterdir() if d.is_dir())
        if explicit is not None:
            dirs = [d for d in dirs if d.name in explicit]
        for d in dirs:
            try:
                self.configs[d.name] = self._load(d)
            except LoadError as exc:
                self.errors[d.name] = str(exc)
                if "text proto" in str(exc):
                    print(f"E model_repository_manager.cc:1335] Poll failed for model directory '{d.name}': {exc}",
                          file=sys.stderr, flush=True)
        self._check_ensembles()

    def _load(self, model_dir: Path):
        config = parse_config(model_dir / "config.pbtxt")
        if not any(v.is_dir() and v.name.isdigit() for v in model_dir.iterdir()):
            raise LoadError(f"at least one version must be available under the version policy of model "
                            f"'{config.name}'")
        if config.platform != "ensemble" and config.backend not in ("python", "tensorrtllm"):
            raise LoadError(f"Invalid argument: unable to find backend library for backend '{config.backend}', "
                            f"try specifying runtime on the model configuration.")
        if config.backend == "tensorrtllm":
            self.limits = load_engine(config)
            self.decoupled = config.model_transaction_policy.decoupled
        elif config.name in ("preprocessing", "postprocessing"):
            self.tokenizer = load_tokenizer(config, config.name)
        return config

    def _check_ensembles(self) -> None:
        for name, config in list(self.configs.items()):
            if config.platform != "ensemble":
                continue
            for step in config.ensemble_scheduling.step:
                if step.model_name not in self.configs:
                    reason = self.errors.get(step.model_name, "model not found")
                    self.errors[name] = (f"Invalid argument: ensemble '{name}' depends on '{step.model_name}' "
                                         f"which has no loaded version. Model '{step.model_name}' loading failed "
                                         f"with error: {reason}")
                    del self.configs[name]
                    break

    def print_table(self) -> None:
        rows = [(n, "READY") for n in self.configs] + [(n, f"UNAVAILABLE: {e}") for n, e in self.errors.items()]
        print("+" + "-" * 20 + "+---------+--------+", flush=True)
        for name, status in sorted(rows):
            print(f"| {name:<18} | 1       | {status} |", flush=True)


# --------------------------------------------------------------------------- serving
def token_delay() -> float:
    return float(os.environ.get("STANDIN_TRITON_TOKEN_DELAY_S", "0.002"))


def make_servicer(repo: Repository):
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            return service_pb2.ServerLiveResponse(live=True)

        def ServerReady(self, request, context):
            return service_pb2.ServerReadyResponse(ready=not repo.errors)

        def ModelReady(self, request, context):
            return service_pb2.ModelReadyResponse(ready=request.name in repo.configs)

        def ModelMetadata(self, request, context):
            config = repo.configs.get(request.name)
            if config is None:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Request for unknown model: '{request.name}' is not found")
            tensor = service_pb2.ModelMetadataResponse.TensorMetadata
            return service_pb2.ModelMetadataResponse(
                name=config.name, versions=["1"], platform=config.platform or config.backend,
                inputs=[tensor(name=i.name, datatype=_DTYPES.get(model_dtype(i), "BYTES"), shape=[-1, *i.dims])
                        for i in config.input],
                outputs=[tensor(name=o.name, datatype=_DTYPES.get(model_dtype(o), "BYTES"), shape=[-1, *o.dims])
                         for o in config.output])

        def ModelInfer(self, request, context):
            responses = list(generate(request, decoupled_call=False))
            if isinstance(responses[0], str):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, responses[0])
            return responses[-1]

        def ModelStreamInfer(self, request_iterator, context):
            out: "queue.Queue" = queue.Queue()
            workers: List[threading.Thread] = []

            def serve(req):
                for item in generate(req, decoupled_call=True):
                    if isinstance(item, str):
                        out.put(service_pb2.ModelStreamInferResponse(error_message=item))
                    else:
                        out.put(service_pb2.ModelStreamInferResponse(infer_response=item))

            def read_requests():
                for req in request_iterator:
                    t = threading.Thread(target=serve, args=(req,), daemon=True)
                    t.start()
                    workers.append(t)
                for t in list(workers):
                    t.join()
                out.put(None)

            threading.Thread(target=read_requests, daemon=True).start()
            while True:
                item = out.get()
                if item is None:
                    return
                yield item

    def model_dtype(tensor) -> str:
        from tritonclient.grpc import model_config_pb2

        return model_config_pb2.DataType.Name(tensor.data_type)

    def read_inputs(request, config) -> dict:
        declared = {i.name: i for i in config.input}
        values = {}
        raw = list(request.raw_input_contents)
        for index, tensor in enumerate(request.inputs):
            if tensor.name not in declared:
                raise ValueError(f"unexpected inference input '{tensor.name}' for model '{config.name}'")
            expected = _DTYPES[model_dtype(declared[tensor.name])]
            if tensor.datatype != expected:
                raise ValueError(f"inference input '{tensor.name}' data-type is '{tensor.datatype}', but model "
                                 f"'{config.name}' expects '{expected}'")
            data = raw[index] if index < len(raw) else b""
            if expected == "BYTES":
                size = int.from_bytes(data[:4], "little")
                values[tensor.name] = data[4:4 + size].decode("utf-8")
            else:
                dtype = {"INT32": np.int32, "BOOL": np.bool_, "FP32": np.float32}.get(expected, np.int64)
                values[tensor.name] = np.frombuffer(data, dtype=dtype).reshape(-1)[0].item()
        missing = [n for n, i in declared.items() if not i.optional and n not in values]
        if missing:
            raise ValueError(f"expected {len(request.inputs) + len(missing)} inputs but got {len(request.inputs)} "
                             f"inputs for model '{config.name}'. Got input(s) "
                             f"{sorted(values)}, but missing required input(s) {missing}. Please provide all "
                             f"required input(s).")
        return values

    def text_response(request, text: str, final: bool):
        payload = text.encode("utf-8")
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        response.outputs.add(name="text_output", datatype="BYTES", shape=[1, 1])
        response.raw_output_contents.append(len(payload).to_bytes(4, "little") + payload)
        response.parameters["triton_final_response"].bool_param = final
        return response

    def generate(request, decoupled_call: bool):
        """Responses for one request: ModelInferResponse objects, or one error string."""
        config = repo.configs.get(request.model_name)
        if config is None:
            yield f"Request for unknown model: '{request.model_name}' is not found"
            return
        if request.model_name not in ENTRY_MODELS:
            yield f"[STAND-IN] tritonserver answers text requests to {', '.join(ENTRY_MODELS)} only"
            return
        try:
            inputs = read_inputs(request, config)
        except ValueError as exc:
            yield str(exc)
            return
        stream = bool(inputs.get("stream", False))
        if stream and not repo.decoupled:
            yield "Streaming is only supported if model is deployed using decoupled mode."
            return
        # An ensemble is decoupled when a step is (here: the tensorrt_llm model).
        decoupled = repo.decoupled if config.platform == "ensemble" else config.model_transaction_policy.decoupled
        if decoupled and not decoupled_call:
            yield "ModelInfer RPC doesn't support models with decoupled transaction policy"
            return
        prompt_ids = repo.tokenizer.encode(inputs["text_input"])  # preprocessing: add_special_tokens defaults on
        prompt_len, max_tokens = len(prompt_ids), int(inputs["max_tokens"])
        limits = repo.limits
        if prompt_len > limits["max_input_len"]:
            yield f"Prompt length ({prompt_len}) exceeds maximum input length ({limits['max_input_len']})."
            return
        if prompt_len + max_tokens > limits["max_seq_len"]:
            allowed = limits["max_seq_len"] - prompt_len
            log(TOOL, f"[TensorRT-LLM][WARNING] Prompt length + number of requested output tokens ({prompt_len} + "
                      f"{max_tokens}) exceeds maximum sequence length ({limits['max_seq_len']}). Number of requested "
                      f"output tokens is changed to ({allowed}).")
            max_tokens = allowed
        vocab = max(repo.tokenizer.vocab_size, 1)
        pieces = [repo.tokenizer.decode([(sum(prompt_ids) + 7 * i) % vocab]) for i in range(max_tokens)]
        if not stream:
            time.sleep(token_delay() * max_tokens)
            yield text_response(request, "".join(pieces), final=True)
            return
        for piece in pieces:
            time.sleep(token_delay())
            yield text_response(request, piece, final=False)
        if ("triton_enable_empty_final_response" in request.parameters
                and request.parameters["triton_enable_empty_final_response"].bool_param):
            empty = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
            empty.parameters["triton_final_response"].bool_param = True
            yield empty

    return Servicer()


def serve_http(port: int, repo: Repository, metrics: bool) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if metrics:
                status, body = (200, b"# STAND-IN\nnv_inference_request_success 0\n") if self.path == "/metrics" \
                    else (404, b"")
            elif self.path in ("/v2/health/live",):
                status, body = 200, b""
            elif self.path == "/v2/health/ready":
                status, body = (200 if not repo.errors else 400), b""
            else:
                status, body = 404, b'{"error":"Not Found"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    explicit = args.load_model if args.model_control_mode == "explicit" else None
    repo = Repository(args.model_repository, explicit)
    repo.print_table()
    if repo.errors and args.exit_on_error.lower() in ("true", "1", "on"):
        for name, error in repo.errors.items():
            print(f"E model_lifecycle.cc] failed to load '{name}' version 1: {error}", file=sys.stderr, flush=True)
        print("error: creating server: Internal - failed to load all models", file=sys.stderr, flush=True)
        sys.exit(1)
    maybe_fail(TOOL)

    import grpc
    from tritonclient.grpc import service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(make_servicer(repo), server)
    server.add_insecure_port(f"0.0.0.0:{args.grpc_port}")
    server.start()
    print(f"I grpc_server.cc] Started GRPCInferenceService at 0.0.0.0:{args.grpc_port}", file=sys.stderr, flush=True)
    serve_http(args.http_port, repo, metrics=False)
    print(f"I http_server.cc] Started HTTPService at 0.0.0.0:{args.http_port}", file=sys.stderr, flush=True)
    serve_http(args.metrics_port, repo, metrics=True)
    print(f"I http_server.cc] Started Metrics Service at 0.0.0.0:{args.metrics_port}", file=sys.stderr, flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
