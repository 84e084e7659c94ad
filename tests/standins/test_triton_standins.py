"""The Triton stand-ins (tritonserver, fill_template.py, examples/run.py, mpirun) driven by the launcher's builders.

Each runs as a subprocess with tests/standins/bin first on PATH, as a stage job would run the real tools. The
Triton transport of jobs/triton_benchmark.py is exercised here against the stand-in server (real tritonclient).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jobs import triton_benchmark as tb
from launcher.triton_commands import model_repository_commands, mpirun_wrap, smoke_run_argv, tritonserver_argv

HERE = Path(__file__).resolve().parent
BIN, PYDIR = HERE / "bin", HERE / "python"
BACKEND = HERE / "triton_backend"
EXAMPLES = HERE / "trtllm_examples"
TOKENIZER = HERE / "data" / "tiny_tokenizer"
MAX_SEQ_LEN, MAX_INPUT_LEN = 256, 200


@pytest.fixture(scope="module")
def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("STANDIN_", "OMPI_"))}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = os.pathsep.join([str(PYDIR)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["STANDIN_TRITON_TOKEN_DELAY_S"] = "0.005"
    return e


def make_engine(path: Path, tp: int = 1) -> Path:
    """An engine dir as the trtllm-build stand-in writes it: config.json + rank{r}.engine."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "pretrained_config": {"architecture": "LlamaForCausalLM",
                              "mapping": {"world_size": tp, "tp_size": tp, "pp_size": 1}},
        "build_config": {"max_seq_len": MAX_SEQ_LEN, "max_input_len": MAX_INPUT_LEN}}))
    for rank in range(tp):
        (path / f"rank{rank}.engine").write_bytes(b"STANDIN")
    return path


def make_repo(tmp: Path, engine: Path, env: dict, decoupled: bool = True, drop: tuple = ()) -> Path:
    repo = tmp / "repo"
    for argv in model_repository_commands(repo_dir=str(repo), engine_dir=str(engine), tokenizer_dir=str(TOKENIZER),
                                          max_batch_size=64, max_queue_delay_us=0, decoupled=decoupled,
                                          backend_dir=str(BACKEND), python=sys.executable).values():
        if argv[-2].endswith("/config.pbtxt"):
            argv[-1] = ",".join(kv for kv in argv[-1].split(",") if kv.split(":")[0] not in drop)
        subprocess.run(argv, check=True, env=env)
    return repo


def free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def server_argv(repo: Path, world_size: int = 1) -> tuple:
    http, grpc, metrics = free_ports(3)
    return tritonserver_argv(repo_dir=str(repo), http_port=http, grpc_port=grpc, metrics_port=metrics,
                             world_size=world_size), http, grpc


def start_server(argv: list, http: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tritonserver exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("tritonserver stand-in never became ready")


def refused(argv: list, env: dict) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: creating server: Internal - failed to load all models" in done.stderr
    return done.stderr


def prompts_file(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- tritonserver: serving
@pytest.fixture(scope="module")
def server(tmp_path_factory, env):
    tmp = tmp_path_factory.mktemp("triton")
    repo = make_repo(tmp, make_engine(tmp / "engine"), env)
    argv, http, grpc = server_argv(repo)
    proc = start_server(argv, http, env)
    yield {"grpc": f"127.0.0.1:{grpc}", "http": http, "tmp": tmp}
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_streamed_benchmark_gets_every_token_and_a_final_flag(server, model, tmp_path):
    rows = [{"prompt": f"Story {i}. Summarize the following news article:", "input_tokens": 12, "max_tokens": 3 + i}
            for i in range(10)]
    out = tmp_path / "r.json"
    rc = tb.main(["--protocol", "triton", "--url", server["grpc"], "--model", model,
                  "--prompts", str(prompts_file(tmp_path / "p.jsonl", rows)), "--output", str(out)])
    results = json.loads(out.read_text())
    assert rc == 0 and results["errors"] == 0
    assert [r["output_tokens"] for r in results["requests"]] == [3 + i for i in range(10)]
    assert all(r["text"] for r in results["requests"])
    # all sent at once and served concurrently, as the seed's client and in-flight batching do
    assert results["table"]["Avg. InFlight requests"] > 2


def test_concurrency_limit_caps_requests_in_flight(server, tmp_path):
    rows = [{"prompt": f"p{i}", "input_tokens": 2, "max_tokens": 6} for i in range(8)]
    out = tmp_path / "r.json"
    assert tb.main(["--protocol", "triton", "--url", server["grpc"], "--model", "ensemble", "--concurrency", "2",
                    "--prompts", str(prompts_file(tmp_path / "p.jsonl", rows)), "--output", str(out)]) == 0
    requests = json.loads(out.read_text())["requests"]
    for r in requests:  # at any request's start, at most 2 were open
        assert sum(o["start_s"] <= r["start_s"] < o["end_s"] for o in requests) <= 2


def test_lengths_as_the_executor_validates_them(server, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    long_prompt = "numbers " * 40  # < max_input_len, but with 200 new tokens > max_seq_len: clamped, not refused
    too_long = "numbers " * 120  # > max_input_len: refused
    n_long = len(tokenizer.encode(long_prompt))
    assert n_long <= MAX_INPUT_LEN < n_long + 200 and len(tokenizer.encode(too_long)) > MAX_INPUT_LEN
    rows = [{"prompt": long_prompt, "input_tokens": n_long, "max_tokens": 200},
            {"prompt": too_long, "input_tokens": 0, "max_tokens": 5}]
    out = tmp_path / "r.json"
    rc = tb.main(["--protocol", "triton", "--url", server["grpc"], "--model", "ensemble", "--concurrency", "1",
                  "--prompts", str(prompts_file(tmp_path / "p.jsonl", rows)), "--output", str(out)])
    first, second = json.loads(out.read_text())["requests"]
    assert rc == 1
    assert first["error"] is None and first["output_tokens"] == MAX_SEQ_LEN - n_long
    assert "exceeds maximum input length (200)" in second["error"]


def test_health_metadata_and_unknown_model(server):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server["grpc"])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tensorrt_llm")
    inputs = {i.name: i.datatype for i in client.get_model_metadata("ensemble").inputs}
    assert inputs["text_input"] == "BYTES" and inputs["max_tokens"] == "INT32" and inputs["stream"] == "BOOL"
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("llama")


def test_streaming_needs_a_decoupled_model(tmp_path, env):
    repo = make_repo(tmp_path, make_engine(tmp_path / "engine"), env, decoupled=False)
    argv, http, grpc = server_argv(repo)
    proc = start_server(argv, http, env)
    try:
        out = tmp_path / "r.json"
        rc = tb.main(["--protocol", "triton", "--url", f"127.0.0.1:{grpc}", "--model", "ensemble",
                      "--prompts", str(prompts_file(tmp_path / "p.jsonl", [{"prompt": "x", "input_tokens": 1,
                                                                             "max_tokens": 2}])),
                      "--output", str(out)])
    finally:
        proc.terminate()
        proc.wait(10)
    assert rc == 1
    assert "Streaming is only supported if model is deployed using decoupled mode." in \
        json.loads(out.read_text())["requests"][0]["error"]


# --------------------------------------------------------------------------- tritonserver: refusals
def test_unfilled_key_fails_the_text_proto_parse(tmp_path, env):
    repo = make_repo(tmp_path, make_engine(tmp_path / "engine"), env, drop=("triton_max_batch_size",))
    err = refused(server_argv(repo)[0], env)
    assert "Error parsing text-format inference.ModelConfig:" in err and "Expected integer, got: $" in err
    assert f"Poll failed for model directory 'ensemble': failed to read text proto from {repo}/ensemble" in err


def test_unfilled_backend_and_missing_engine_are_refused(tmp_path, env):
    repo = make_repo(tmp_path, tmp_path / "no_such_engine", env, drop=("triton_backend",))
    err = refused(server_argv(repo)[0], env)
    assert "unable to find backend library for backend '${triton_backend}'" in err
    (repo / "tensorrt_llm" / "config.pbtxt").write_text(
        (repo / "tensorrt_llm" / "config.pbtxt").read_text().replace("${triton_backend}", "tensorrtllm"))
    err = refused(server_argv(repo)[0], env)
    assert "Assertion failed: Both encoder and decoder model paths are empty" in err
    assert "ensemble 'ensemble' depends on 'tensorrt_llm' which has no loaded version" in err


def test_tp2_engine_needs_the_mpirun_form(tmp_path, env):
    repo = make_repo(tmp_path, make_engine(tmp_path / "engine", tp=2), env)
    err = refused(server_argv(repo)[0], env)
    assert "MPI size 1 != TP size 2 * PP size 1 * CP Size 1" in err
    argv, http, _ = server_argv(repo, world_size=2)
    start_server(argv, http, env).terminate()


# --------------------------------------------------------------------------- examples/run.py, mpirun
def run_py(argv: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_seed_smoke_prints_the_real_lines(tmp_path, env):
    argv = smoke_run_argv(examples_dir=str(EXAMPLES), engine_dir=str(make_engine(tmp_path / "e")),
                          tokenizer_dir=str(TOKENIZER), input_text="How do I count in French ? 1 un",
                          max_output_len=100, python=sys.executable)
    done = run_py(argv, env)
    assert done.returncode == 0, done.stderr
    assert 'Input [Text 0]: "How do I count in French ? 1 un"' in done.stdout.splitlines()
    # the generated text may hold newlines: the line opens with the label and the quote closes the output
    assert re.search(r'^Output \[Text 0 Beam 0\]: ".+"$', done.stdout, re.M | re.S)


def test_run_py_refuses_unknown_flags_and_a_missing_required_one(tmp_path, env):
    engine = make_engine(tmp_path / "e")
    base = [sys.executable, str(EXAMPLES / "run.py"), "--engine_dir", str(engine), "--tokenizer_dir", str(TOKENIZER)]
    unknown = run_py(base + ["--max_output_len", "5", "--max_new_tokens", "5"], env)
    assert unknown.returncode == 2 and "unrecognized arguments: --max_new_tokens" in unknown.stderr
    missing = run_py(base, env)
    assert missing.returncode == 2 and "the following arguments are required: --max_output_len" in missing.stderr


def test_run_py_checks_the_mpi_world_against_the_engine(tmp_path, env):
    engine = str(make_engine(tmp_path / "e", tp=2))
    kwargs = dict(examples_dir=str(EXAMPLES), engine_dir=engine, tokenizer_dir=str(TOKENIZER), input_text="hi",
                  max_output_len=4, python=sys.executable)
    alone = run_py(smoke_run_argv(**kwargs), env)
    assert alone.returncode == 1 and "MPI size 1 != TP size 2 * PP size 1 * CP Size 1" in alone.stderr
    under_mpi = run_py(smoke_run_argv(**kwargs, world_size=2), env)
    assert under_mpi.returncode == 0 and 'Input [Text 0]: "hi"' in under_mpi.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="Open MPI refuses root only")
def test_mpirun_refuses_root_without_allow_run_as_root(env):
    done = run_py(["mpirun", "-n", "2", sys.executable, "-c", "print('x')"], env)
    assert done.returncode == 1 and "mpirun has detected an attempt to run as root" in done.stderr
    ok = run_py(mpirun_wrap([sys.executable, "-c", "import os; print(os.environ['OMPI_COMM_WORLD_SIZE'])"], 3), env)
    assert ok.returncode == 0 and ok.stdout.strip() == "3"
