"""Tests of jobs/services.py: process groups that never outlive their block, health checks, ports, and the
benchmark stage end to end with the stand-in trtllm-serve, the stand-in NeMo-Skills sandbox and the real client.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from jobs import artifacts, ports, run_stage, services
from jobs.services import StageFailed
from launcher.contract import SANDBOX_EXIT_ENV, SANDBOX_PORT_FILE_ENV, StageSpec
from tests.jobs.test_run_stage import PY, STANDINS, alive, manifest, plan, standin_env, write_spec
from tests.test_contract import a_manifest

TOKENS = ["Let ", "me ", "compute.\n", "<tool_call>\n", "print(6*7)\n", "</tool_call>", "\nSo ", "\\boxed{42}"]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    standin_env(monkeypatch)
    monkeypatch.setattr(services, "HEALTH_POLL_S", 0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    """Any process of the group that is not a zombie (the oracle, independent of services' own check)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, _, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
            if int(pgrp) == pgid and state not in "ZX":
                return True
    return False


def wait_for_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise TimeoutError(path)


# A leader that starts a grandchild in its group and records both pids; `ignore` makes both ignore SIGTERM.
FAMILY = """
import os, signal, subprocess, sys, time
if {ignore}:  # the leader notes each SIGTERM in <pids>.term, and goes on
    signal.signal(signal.SIGTERM, lambda *_: open({pids!r} + ".term", "a").write("TERM\\n"))
child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                          + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); " if {ignore} else "")
                          + "time.sleep(120)"])
open({pids!r}, "w").write(f"{{os.getpid()}} {{child.pid}}\\n")
time.sleep({leader_s})
"""


def family(tmp_path, ignore=False, leader_s=120):
    pids = tmp_path / "pids.txt"
    return [PY, "-c", FAMILY.format(ignore=ignore, pids=str(pids), leader_s=leader_s)], pids


# --------------------------------------------------------------------------------------------------
# Process groups
# --------------------------------------------------------------------------------------------------
def test_the_group_is_stopped_when_the_block_ends(tmp_path):
    argv, pids = family(tmp_path)
    with services.process_group(argv, echo=False) as process:
        leader, child = map(int, wait_for_file(pids).split())
        assert alive(child)
    assert process.returncode is not None
    assert not alive(leader) and not alive(child) and not group_alive(process.pid)


def test_the_group_is_stopped_on_an_exception_inside_the_block(tmp_path):
    argv, pids = family(tmp_path)
    with pytest.raises(KeyError):
        with services.process_group(argv, echo=False) as process:
            leader, child = map(int, wait_for_file(pids).split())
            raise KeyError("the client failed")
    assert not alive(leader) and not alive(child) and not group_alive(process.pid)


def test_children_left_behind_by_a_leader_that_exited_are_stopped(tmp_path):
    argv, pids = family(tmp_path, leader_s=0)  # like a launcher that forks a server and returns
    with services.process_group(argv, echo=False) as process:
        leader, child = map(int, wait_for_file(pids).split())
        process.wait(timeout=20)
        assert process.returncode == 0 and alive(child)
    assert not alive(child) and not group_alive(process.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr("jobs.process.STOP_GRACE_S", 0.5)
    argv, pids = family(tmp_path, ignore=True)
    with services.process_group(argv, echo=False) as process:
        leader, child = map(int, wait_for_file(pids).split())
    assert not alive(leader) and not alive(child) and not group_alive(process.pid)
    assert process.returncode == -9  # SIGKILL
    assert Path(f"{pids}.term").read_text() == "TERM\n"  # killed after the SIGTERM it outlived, not at once


def test_a_group_whose_only_member_is_a_zombie_is_gone():
    """A zombie still takes signal 0 but no signal stops it: waiting for it to go would wait out every grace."""
    import os
    import subprocess

    from jobs import process as tools

    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    leader = subprocess.Popen([PY, "-c", "pass"], start_new_session=True)
    try:
        os.waitid(os.P_PID, leader.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        os.killpg(leader.pid, 0)  # the group still exists for the kernel
        assert tools._group_alive(sleeper.pid) and not tools._group_alive(leader.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
        leader.wait()
    assert not tools._group_alive(sleeper.pid)


def test_a_tool_that_writes_much_more_than_a_pipe_holds_is_not_blocked(tmp_path):
    log = tmp_path / "tool.log"
    argv = [PY, "-c", "import sys\nfor i in range(20000): print('x' * 50, i)"]
    with services.process_group(argv, log, echo=False) as process:
        assert process.wait(timeout=30) == 0
    assert log.read_text().count("\n") == 20000 and process.output_tail[-1].endswith(" 19999")


# --------------------------------------------------------------------------------------------------
# Health checks and ports
# --------------------------------------------------------------------------------------------------
def test_wait_for_health_fails_early_with_the_log_when_the_server_dies(tmp_path):
    log = tmp_path / "server.log"
    argv = [PY, "-c", "import time; print('loading engine', flush=True); time.sleep(0.3); "
                      "raise SystemExit('engine built for tp=2, served with tp=1')"]
    with services.process_group(argv, log, echo=False) as process:
        with pytest.raises(StageFailed) as failure:
            services.wait_for_health(f"http://127.0.0.1:{free_port()}/health", 60, process, log, "LLM server")
    message = str(failure.value)
    assert "LLM server exited with code 1 before it was healthy" in message  # not the 60 s timeout's message
    assert "loading engine" in message and "engine built for tp=2, served with tp=1" in message


def test_wait_for_health_times_out_with_a_clear_message(tmp_path):
    log = tmp_path / "server.log"
    port = free_port()
    with services.process_group([PY, "-c", "print('still loading', flush=True); import time; time.sleep(60)"], log,
                                echo=False) as process:
        with pytest.raises(StageFailed) as failure:
            services.wait_for_health(f"http://127.0.0.1:{port}/health", 1.5, process, log, "LLM server")
        assert process.poll() is None  # the server was not what ended the wait
    assert f"LLM server was not healthy at http://127.0.0.1:{port}/health after 1.5 s" in str(failure.value)
    assert "still loading" in str(failure.value)


def test_wait_for_health_goes_straight_to_loopback_whatever_the_proxy(tmp_path, monkeypatch):
    (tmp_path / "health").write_text("ok")
    port = free_port()
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with services.process_group(argv, tmp_path / "server.log", echo=False) as process:
        since = time.monotonic() - 100
        waited = services.wait_for_health(f"http://127.0.0.1:{port}/health", 20, process, tmp_path / "server.log",
                                          "server", since=since)
    assert waited >= 100  # measured from `since` (a wait measured from its own start is under its 20 s timeout)
    assert not listening(port)


def test_a_port_file_is_read_once_its_line_is_whole(tmp_path):
    port_file = tmp_path / "sandbox.port"
    port_file.write_text("62")  # the line is still being written
    never_ends = services.ExitFile(None)
    with pytest.raises(StageFailed, match=r"the sandbox wrote no port to .*sandbox.port within 0.3 s"):
        services.wait_for_port_file(port_file, 0.3, never_ends, None, "the sandbox")
    port_file.write_text("6242\n")
    assert services.wait_for_port_file(port_file, 0.3, never_ends, None, "the sandbox") == 6242
    port_file.write_text("[sandbox] listening\n")
    with pytest.raises(StageFailed, match=r"the sandbox wrote '\[sandbox\] listening' to its port file .*, not a port"):
        services.wait_for_port_file(port_file, 0.3, never_ends, None, "the sandbox")


def test_the_url_at_the_chosen_port():
    assert services.at_port("http://127.0.0.1:5000", 5242) == "http://127.0.0.1:5242"
    assert services.at_port("http://[::1]:6000", 6242) == "http://[::1]:6242"


# --------------------------------------------------------------------------------------------------
# The benchmark stage, end to end
# --------------------------------------------------------------------------------------------------
JOB_ID = 4242  # shifts every port by 242, as on a shared node
OFFSET = JOB_ID % 1000


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """The bf16 plan's benchmark spec, its engine a minimal stand-in engine dir, its ports free ones."""
    server_port, sandbox_port = free_port(), free_port()
    the_plan = plan(tmp_path / "storage", "+experiment=bf16", f"serving.port={server_port - OFFSET}",
                    f"serving.sandbox.port={sandbox_port - OFFSET}", "benchmark.num_generations=4",
                    "benchmark.cancel_after=3", "serving.health_timeout_s=60")
    stage = the_plan.stages["benchmark"]
    from launcher.scripts import stage_spec

    spec = stage_spec(the_plan, stage).to_json()
    assert spec["benchmark"]["start_sandbox"] is True and "sandbox" in spec["commands"]
    model_dir = Path(spec["commands"]["server"][spec["commands"]["server"].index("--tokenizer") + 1])
    shutil.copytree(STANDINS / "data" / "tiny_tokenizer", model_dir)
    engine = Path(spec["commands"]["server"][2])
    engine.mkdir(parents=True)
    (engine / "config.json").write_text(json.dumps({"pretrained_config": {"mapping": {"tp_size": 2, "pp_size": 1}},
                                                    "build_config": {"max_seq_len": 32000}}))
    for rank in range(2):
        (engine / f"rank{rank}.engine").write_text("stand-in engine")
    kind, fingerprint = artifacts.expected_identity(engine)  # published, as the benchmark's input must be
    a_manifest(kind, fingerprint, artifacts.list_files(engine)).write(engine / artifacts.MANIFEST)
    for dest, text in stage.files.items():  # what dispatch writes onto shared storage: the problems
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(text)
    script = tmp_path / "serve_script.json"
    script.write_text(json.dumps({"default": {"tokens": TOKENS, "delay": 0.005}}))
    monkeypatch.setenv("STANDIN_SERVE_SCRIPT", str(script))
    monkeypatch.setenv("SLURM_JOB_ID", str(JOB_ID))
    started = []
    original = services.process_group

    def recording(argv, *args, **kwargs):
        context = original(argv, *args, **kwargs)
        process = context.__enter__()
        started.append((argv, process))
        return _Entered(context, process)

    monkeypatch.setattr(services, "process_group", recording)
    monkeypatch.setattr("jobs.process.process_group", recording)  # the client, through run_command
    return {"spec": spec, "path": write_spec(tmp_path / "benchmark.json", spec), "started": started,
            "ports": (server_port, sandbox_port)}


class _Entered:
    def __init__(self, context, process):
        self.context, self.process = context, process

    def __enter__(self):
        return self.process

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def started_beside_the_job(bench) -> StageSpec:
    """The benchmark's spec as a launch on Slurm writes it: the batch script starts the sandbox, not the job."""
    spec = bench["spec"]
    return StageSpec.from_json({**spec, "benchmark": {**spec["benchmark"], "start_sandbox": False}})


def assert_all_stopped(bench):
    assert bench["started"], "nothing was started"
    for argv, process in bench["started"]:
        assert process.returncode is not None, argv
        assert not group_alive(process.pid), argv
    for port in bench["ports"]:
        assert not listening(port), port


def test_benchmark_end_to_end(bench):
    run_stage.run(bench["path"])
    artifact = Path(bench["spec"]["artifact"])
    results = json.loads((artifact / "results.json").read_text())
    summary = results["summary"]
    # 4 generations, the rest cancelled once 3 finished; each finished one is the stand-in's 24-token script.
    finished = [r for r in results["records"] if r["status"] == "finished"]
    assert summary["num_finished"] == len(finished) >= 3 and summary["num_generations"] == 4
    assert summary["num_cancelled"] == 4 - len(finished) and summary["num_errors"] == 0
    assert summary["total_output_tokens_finished"] == 24 * len(finished)
    assert all(r["answer"] == "42" and r["output_tokens"] == 24 for r in finished)
    assert summary["per_problem"] == [{"problem_index": 0, "expected_answer": "70", "majority_answer": "42",
                                       "num_votes": len(finished), "correct": False}]
    # The tool call ran in the sandbox, reached on its shifted port.
    assert summary["total_code_executions"] == sum(len(r["code_executions"]) for r in results["records"])
    assert all([e["status"] for e in r["code_executions"]] == ["completed"]
               and "\n```output\n42\n```\n" in r["generation"] for r in finished)
    recorded = manifest(artifact)  # what the stage published, as consumers read it
    assert (recorded["stage"], recorded["experiment"], recorded["job_id"], recorded["restart_count"]) == \
        ("benchmark", "bf16", str(JOB_ID), 0)
    assert list(recorded["inputs"]) == ["build_engine"] and recorded["benchmark_summary"]["num_finished"] == len(finished)
    assert isinstance(recorded["server_startup_s"], float)
    # Each on its port: the base + JOB_ID % 1000, free here; the sandbox chose its own and wrote it to its file.
    server_port, sandbox_port = bench["ports"]
    assert recorded["ports"] == {"server": server_port, "sandbox": sandbox_port}
    assert (artifact / "sandbox.port").read_text() == f"{sandbox_port}\n"
    sandbox, server, client = (argv for argv, _ in bench["started"])
    guard = sandbox.index(PY)  # after `env` and what it sets and unsets: the guard, its port file filled in
    assert sandbox[0] == "env" and sandbox[guard:guard + 3] == [PY, "-m", "jobs.sandbox_guard"]
    assert sandbox[-4:] == ["--base-port", str(sandbox_port - OFFSET), "--port-file",
                            f"{bench['spec']['staging_dir']}/sandbox.port"]
    assert server[0] == "trtllm-serve" and server[-2:] == ["--port", str(server_port)]
    assert client[:3] == [PY, "-m", "jobs.benchmark_client"]
    assert client[client.index("--server-url") + 1] == f"http://127.0.0.1:{server_port}"
    assert client[client.index("--sandbox-url") + 1] == f"http://127.0.0.1:{sandbox_port}"
    assert (artifact / "server.log").is_file() and (artifact / "sandbox.log").is_file()
    assert_all_stopped(bench)


def test_a_server_that_exits_at_start_fails_the_stage_with_its_log(bench, monkeypatch):
    monkeypatch.setenv("STANDIN_FAIL", "trtllm-serve")
    with pytest.raises(StageFailed) as failure:
        run_stage.run(bench["path"])
    message = str(failure.value)
    assert "LLM server exited with code 1 before it was healthy" in message
    assert "[STAND-IN] trtllm-serve: failing at start (STANDIN_FAIL)" in message
    assert not Path(bench["spec"]["artifact"]).exists()
    assert_all_stopped(bench)


def test_a_failing_client_stops_both_servers(bench):
    spec = bench["spec"]
    spec["commands"]["client"] = [PY, "-c", "raise SystemExit('client: no problems file')"]
    with pytest.raises(StageFailed, match="client: no problems file"):
        run_stage.run(write_spec(Path(bench["path"]), spec))
    assert [argv[0] for argv, _ in bench["started"]] == ["env", "trtllm-serve", PY]  # `env` starts the sandbox
    assert_all_stopped(bench)


def test_the_sandbox_the_batch_script_started_is_found_by_its_port_file(bench, monkeypatch, tmp_path):
    """On Slurm: the sandbox step writes its port to its stdout, which the batch script puts in the file the job
    reads (both named by LAUNCHER_SANDBOX_PORT_FILE); the job starts the server and the client only."""
    spec, port_file = started_beside_the_job(bench), tmp_path / "sandbox-port.4242"
    monkeypatch.setenv(SANDBOX_PORT_FILE_ENV, str(port_file))
    step = ports.expand(spec.commands["sandbox"], {SANDBOX_PORT_FILE_ENV: "-"})  # as launcher.scripts
    with open(port_file, "w") as stdout, open(tmp_path / "sandbox.log", "w") as log:
        sandbox = subprocess.Popen(step, stdout=stdout, stderr=log, start_new_session=True)
    staging = Path(spec.staging_dir)
    staging.mkdir(parents=True)
    try:
        result = services.run_benchmark(spec, staging)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(60)
    assert [argv[0] for argv, _ in bench["started"]] == ["trtllm-serve", PY]
    assert result["ports"] == {"server": bench["ports"][0], "sandbox": int(port_file.read_text())}
    summary = result["benchmark_summary"]
    assert summary["num_finished"] >= 3 and summary["total_code_executions"] >= 3  # each ran its tool call there


def test_a_sandbox_the_batch_script_should_have_started_is_waited_for(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(services, "EXTERNAL_SANDBOX_WAIT_S", 1)
    spec = started_beside_the_job(bench)  # and here nobody starts it
    monkeypatch.setenv(SANDBOX_PORT_FILE_ENV, str(tmp_path / "sandbox-port.4242"))
    with pytest.raises(StageFailed, match=r"the sandbox \(started by the batch script; .*\) wrote no port to "
                                          r".*sandbox-port.4242 within 1 s"):
        services.run_benchmark(spec, Path(spec.staging_dir).parent)
    assert bench["started"] == []  # the server waits for the sandbox's port


def test_a_sandbox_that_wrote_its_port_but_does_not_answer_fails_the_benchmark(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(services, "EXTERNAL_SANDBOX_WAIT_S", 1)
    spec, port_file = started_beside_the_job(bench), tmp_path / "sandbox-port.4242"
    port_file.write_text(f"{bench['ports'][1]}\n")  # nothing listens there
    monkeypatch.setenv(SANDBOX_PORT_FILE_ENV, str(port_file))
    with pytest.raises(StageFailed, match=r"the sandbox \(started by the batch script; .*\) was not healthy at "
                                          rf"http://127.0.0.1:{bench['ports'][1]}/health after 1 s"):
        services.run_benchmark(spec, Path(spec.staging_dir).parent)
    assert [argv[0] for argv, _ in bench["started"]] == ["trtllm-serve"]
    assert_all_stopped(bench)


def test_a_benchmark_without_the_sandbox_port_file_named_fails_saying_so(bench, monkeypatch):
    spec = started_beside_the_job(bench)
    monkeypatch.delenv(SANDBOX_PORT_FILE_ENV, raising=False)
    with pytest.raises(StageFailed, match="LAUNCHER_SANDBOX_PORT_FILE is not set: the batch script"):
        services.run_benchmark(spec, Path(spec.staging_dir).parent)
    assert bench["started"] == []


def test_a_sandbox_step_that_ended_fails_the_benchmark_at_once(bench, monkeypatch, tmp_path):
    exit_file = tmp_path / "sandbox-exit.4242"
    exit_file.write_text("1\n")  # what the batch script writes when the sandbox's srun step ends
    monkeypatch.setenv(SANDBOX_EXIT_ENV, str(exit_file))
    monkeypatch.setenv(SANDBOX_PORT_FILE_ENV, str(tmp_path / "sandbox-port.4242"))  # left empty
    spec = started_beside_the_job(bench)
    with pytest.raises(StageFailed, match=r"the sandbox \(started by the batch script; its output is in this job's "
                                          r"log\) exited with code 1 before it was healthy: it wrote no port to "
                                          r".*sandbox-port.4242"):
        services.run_benchmark(spec, Path(spec.staging_dir).parent)  # EXTERNAL_SANDBOX_WAIT_S is 300 s
    assert bench["started"] == []


def test_a_command_naming_another_placeholder_fails_the_stage(bench):
    """Only the job's port placeholders are filled in: a secret's name written `${...}` is never passed on."""
    spec = bench["spec"]
    spec["commands"]["client"] = [*spec["commands"]["client"], "--token", "${HF_TOKEN}"]
    with pytest.raises(StageFailed, match=r"\$\{HF_TOKEN\} in the command word '\$\{HF_TOKEN\}' is no placeholder"):
        run_stage.run(write_spec(Path(bench["path"]), spec))
    assert [argv[0] for argv, _ in bench["started"]] == ["env", "trtllm-serve"]  # the client never started
    assert_all_stopped(bench)


def test_an_exit_file_reads_as_a_process():
    assert services.ExitFile(None).poll() is None


def test_an_exit_file_not_yet_written(tmp_path):
    missing, empty = services.ExitFile(str(tmp_path / "none")), services.ExitFile(str(tmp_path / "empty"))
    (tmp_path / "empty").write_text("")
    assert missing.poll() is None and empty.poll() is None
    (tmp_path / "none").write_text("0\n")
    assert missing.poll() == 0 and missing.returncode == 0
