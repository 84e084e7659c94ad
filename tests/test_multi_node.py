"""A server larger than one node (serving=trtllm_pytorch, tensor x pipeline parallel > cluster.gpus_per_node):
its own step over the job's nodes under srun --mpi=pmix, every rank running trtllm-llmapi-launch trtllm-serve,
started by the benchmark job through a launch file (jobs.server_launch). The rendered script, the rendezvous,
the stand-ins' refusals, and the real thing on the test cluster's two nodes (partition `multi`)."""
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import server_launch
from launcher.contract import SERVER_LAUNCH_FILE_ENV
from launcher.dispatch.storage import code_snapshot_dir
from launcher.scripts import ExperimentDir, render_script
from tests.helpers import plan_for
from tests.test_e2e_slurm import STANDINS, cluster_overrides, job_ids, state

TWO_NODES = ("+experiment=bf16", "serving=trtllm_pytorch", "benchmark=aimo_notebook", "cluster.gpus_per_node=2",
             "model.tensor_parallel=4")


def _script(tmp_path, *overrides):
    plan = plan_for("cluster=example_slurm", f"cluster.storage_root={tmp_path}", *overrides)
    stage = plan.stages["benchmark"]
    return stage, render_script(plan, stage, ExperimentDir(plan.storage_root, plan.experiment), None,
                                code_snapshot_dir(plan.storage_root))


def test_the_script_starts_the_server_over_every_node_and_the_stage_on_the_first(tmp_path):
    stage, script = _script(tmp_path, *TWO_NODES)
    assert (stage.resources.nodes, stage.resources.gpus_per_node) == (2, 2)
    (server_step,) = [line for line in script.splitlines() if "jobs.server_launch" in line and "srun" in line]
    assert server_step.lstrip().startswith("srun --overlap --mpi=pmix --kill-on-bad-exit=1 --nodes=2 --ntasks=4 "
                                           "--ntasks-per-node=2 --cpus-per-task=")
    assert "--container-image=" in server_step and f"--container-mounts={tmp_path}:{tmp_path}" in server_step
    assert server_step.endswith('--timeout 1800 >> "$LAUNCHER_SERVER_LOG" 2>&1 &')
    assert "srun \\\n  --unbuffered \\\n  --nodes=1 \\\n  --ntasks=1 \\\n" in script
    assert "LAUNCHER_SERVER_LAUNCH_FILE" in re.search(r"--container-env=(\S+)", script)[1]
    assert "trap 'stop_server; stop_sandbox' EXIT" in script and "  srun --overlap --nodes=1 --ntasks=1 " in script
    # What every rank runs, written by the job once the port is chosen: shown in the script's header.
    assert re.search(r"#   server: trtllm-llmapi-launch trtllm-serve serve .* --tp_size 4 .*--gpus_per_node 2", script)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_a_server_within_one_node_has_no_step_of_its_own(tmp_path):
    _, script = _script(tmp_path, "+experiment=bf16", "serving=trtllm_pytorch", "benchmark=aimo_notebook")
    assert "jobs.server_launch" not in script and "--mpi=pmix" not in script and "  --ntasks=1 \\\n" not in script


def _on_stack(name):
    return tuple(f"serving={name}" if o.startswith("serving=") else o for o in TWO_NODES)


@pytest.mark.parametrize("name, node_args, worker_args", [
    ("vllm", '\'["--nnodes", "2", "--node-rank", "${LAUNCHER_NODE_RANK}", "--master-addr", "${LAUNCHER_SERVER_HEAD}", '
             '"--master-port", "${LAUNCHER_SERVER_DIST_PORT}"]\'', ' --worker-args \'["--headless"]\''),
    ("sglang", '\'["--nnodes", "2", "--node-rank", "${LAUNCHER_NODE_RANK}", "--dist-init-addr", '
               '"${LAUNCHER_SERVER_HEAD}:${LAUNCHER_SERVER_DIST_PORT}"]\'', ""),
])
def test_vllm_and_sglang_run_one_task_per_node_that_finds_the_head(tmp_path, name, node_args, worker_args):
    stage, script = _script(tmp_path, *_on_stack(name))
    assert (stage.resources.nodes, stage.resources.gpus_per_node) == (2, 2)
    (server_step,) = [line for line in script.splitlines() if "jobs.server_launch" in line and "srun" in line]
    assert server_step.lstrip().startswith("srun --overlap --kill-on-bad-exit=1 --nodes=2 --ntasks=2 "
                                           "--ntasks-per-node=1 --cpus-per-task=")
    assert "--mpi" not in server_step and "trtllm-llmapi-launch" not in script
    assert server_step.endswith(f"--timeout 1800 --node-args {node_args}{worker_args} "
                                '>> "$LAUNCHER_SERVER_LOG" 2>&1 &'), server_step
    # The command the job writes has no node of its own: each task adds its node's words.
    assert re.search(r"#   server: (vllm serve|\S+ -m sglang.launch_server) .*--port '\$\{LAUNCHER_SERVER_PORT\}'",
                     script)
    assert "--nnodes" not in re.search(r"#   server: .*", script)[0]
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize("name, tp, pp, gpus, problem", [
    ("vllm", 1, 3, 2, "tensor x pipeline parallel 1x3 over 2 nodes of 2 GPUs: vLLM needs tp*pp divisible by its nodes"),
    ("sglang", 2, 3, 4, "SGLang would start 2 ranks on each node, 4 in all, not the 6 of its world"),
])
def test_a_layout_the_stack_cannot_split_over_its_nodes_is_refused_naming_the_key(name, tp, pp, gpus, problem):
    from launcher.validation import InvalidConfig

    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", f"serving={name}", "+experiment=bf16", f"cluster.gpus_per_node={gpus}",
                 f"model.tensor_parallel={tp}", f"model.pipeline_parallel={pp}")
    (error,) = [e for e in raised.value.errors if e.key == "model.tensor_parallel"]
    assert problem in str(error), error


def test_layouts_that_split_evenly_are_served_across_nodes():
    for name in ("vllm", "sglang"):
        stage = plan_for("cluster=example_slurm", f"serving={name}", "+experiment=bf16", "cluster.gpus_per_node=4",
                         "model.tensor_parallel=2", "model.pipeline_parallel=4").stages["benchmark"]
        assert stage.resources.nodes == 2


def _waiter(launch_file, timeout, env=None):
    return subprocess.run([sys.executable, "-m", "jobs.server_launch", "--timeout", str(timeout)],
                          env={**os.environ, SERVER_LAUNCH_FILE_ENV: str(launch_file), **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_each_task_runs_what_the_job_writes_and_gives_up_without_it(tmp_path):
    launch_file = tmp_path / "server-launch.1"
    waiting = subprocess.Popen([sys.executable, "-m", "jobs.server_launch", "--timeout", "30"],
                               env={**os.environ, SERVER_LAUNCH_FILE_ENV: str(launch_file), "SLURM_PROCID": "3"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server_launch.write(launch_file, [sys.executable, "-c", "import os; print('rank', os.environ['SLURM_PROCID'])"])
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and out == "rank 3\n", err
    late = _waiter(tmp_path / "never", 0.5)
    assert late.returncode == 1 and "wrote no server command" in late.stderr and "within 0.5 s" in late.stderr


def test_each_node_adds_its_rank_and_the_heads_address_and_only_workers_add_worker_args(tmp_path):
    launch_file = tmp_path / "server-launch.1"
    server_launch.write(launch_file, [sys.executable, "-c", "import sys; print(sys.argv[1:])"])
    launch = json.loads(launch_file.read_text())
    assert launch["head"] == socket.gethostname() and launch["dist_port"] >= 29500
    node = ["--node-args", '["--node-rank", "${LAUNCHER_NODE_RANK}", "--at", '
                           '"${LAUNCHER_SERVER_HEAD}:${LAUNCHER_SERVER_DIST_PORT}"]',
            "--worker-args", '["--headless"]']
    head = f"{launch['head']}:{launch['dist_port']}"
    for node_id, extra in (("0", []), ("1", ["--headless"])):
        ran = subprocess.run([sys.executable, "-m", "jobs.server_launch", "--timeout", "5", *node],
                             env={**os.environ, SERVER_LAUNCH_FILE_ENV: str(launch_file), "SLURM_NODEID": node_id},
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0 and ran.stdout == f"{['--node-rank', node_id, '--at', head, *extra]}\n", ran.stderr
    unknown = subprocess.run([sys.executable, "-m", "jobs.server_launch", "--timeout", "5", "--node-args",
                              '["${LAUNCHER_NODE}"]'], env={**os.environ, SERVER_LAUNCH_FILE_ENV: str(launch_file),
                                                           "SLURM_NODEID": "0"}, capture_output=True, text=True)
    assert unknown.returncode == 1 and "${LAUNCHER_NODE} in the command word" in unknown.stderr
    no_node = subprocess.run([sys.executable, "-m", "jobs.server_launch", "--timeout", "5", *node],
                             env={**{k: v for k, v in os.environ.items() if k != "SLURM_NODEID"},
                                  SERVER_LAUNCH_FILE_ENV: str(launch_file)}, capture_output=True, text=True)
    assert no_node.returncode == 1 and "SLURM_NODEID is None, not a node number" in no_node.stderr


def _launch(argv, env):
    return subprocess.run([str(STANDINS / "bin" / "trtllm-llmapi-launch"), *argv], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_the_launch_standin_runs_the_command_on_rank_0_without_the_mpi_environment():
    shown = _launch([sys.executable, "-c", "import os; print(sorted(k for k in os.environ if k.startswith("
                     "('SLURM_', 'PMIX_'))), os.environ['tllm_mpi_size'], os.environ['TLLM_SPAWN_PROXY_PROCESS'])"],
                    {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "PMIX_RANK": "0"})
    assert shown.returncode == 0 and shown.stdout == "[] 4 1\n", shown.stderr
    no_mpi = _launch(["true"], {"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "PMIX_RANK": "", "PMI_RANK": ""})
    assert no_mpi.returncode == 1 and "start it with srun --mpi=pmix" in no_mpi.stderr


def test_trtllm_serve_standin_refuses_ranks_it_does_not_see(tmp_path):
    serve = [str(STANDINS / "bin" / "trtllm-serve"), "serve", str(tmp_path), "--tp_size", "4", "--gpus_per_node", "2"]
    alone = subprocess.run(serve, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"})
    assert alone.returncode == 1 and "under trtllm-llmapi-launch" in alone.stderr
    small = subprocess.run(serve, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "TLLM_SPAWN_PROXY_PROCESS": "1", "tllm_mpi_size": "2"})
    assert small.returncode == 1 and "has 2 ranks, tp_size x pp_size = 4" in small.stderr
    few_gpus = subprocess.run(serve, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    assert few_gpus.returncode == 1 and "Only 1 GPUs are available, but 4 are required." in few_gpus.stderr


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _checkpoint(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    return str(tmp_path / "model")


def _vllm(model, *flags):
    return [str(STANDINS / "bin" / "vllm"), "serve", model, "--host", "127.0.0.1", "-tp", "2", *flags]


def _sglang(model, *flags):
    return [sys.executable, "-m", "sglang.launch_server", "--model-path", model, "--tp-size", "2", *flags]


def _standin_env():
    return {**os.environ, "PYTHONPATH": str(STANDINS / "python")}


def test_the_vllm_and_sglang_standins_refuse_what_cannot_join(tmp_path):
    model = _checkpoint(tmp_path)
    refusals = [
        (_vllm(model, "--nnodes", "2", "--node-rank", "1"), "collective_rpc should not be called on follower node"),
        (_vllm(model, "-tp", "3", "--nnodes", "2"), "world_size=3 must be divisible by nnodes=2."),
        (_vllm(model, "--nnodes", "2", "--node-rank", "2", "--headless"), "node_rank=2 must be less than nnodes=2."),
        (_sglang(model, "--nnodes", "2", "--node-rank", "1"), "nnodes > 1 without --dist-init-addr"),
        (_sglang(model, "--pp-size", "3", "--nnodes", "2", "--dist-init-addr", "h:1"),
         "2 nodes of 2 ranks do not make up tp_size x pp_size = 6"),
    ]
    for argv, message in refusals:
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_standin_env())
        assert ran.returncode == 1 and message in ran.stderr, (argv, ran.stderr)


def _read_until(stream, text):
    seen = []
    for line in stream:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never came: {''.join(seen)}")


@pytest.mark.parametrize("command, join", [
    (_vllm, lambda head, port: ["--master-addr", head, "--master-port", str(port)]),
    (_sglang, lambda head, port: ["--dist-init-addr", f"{head}:{port}"]),
])
def test_the_head_serves_only_once_the_other_node_joined_and_that_node_ends_with_it(tmp_path, command, join):
    model, http, dist = _checkpoint(tmp_path), _free_port(), _free_port()
    flags = ["--port", str(http), "--nnodes", "2", *join(socket.gethostname(), dist)]
    head = subprocess.Popen(command(model, *flags, "--node-rank", "0"), env=_standin_env(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    worker = None
    try:
        _read_until(head.stderr, "waiting on port")
        with pytest.raises(OSError):  # no HTTP before the world is complete
            socket.create_connection(("127.0.0.1", http), timeout=5).close()
        worker_flags = ["--headless"] if command is _vllm else []
        worker = subprocess.Popen(command(model, *flags, "--node-rank", "1", *worker_flags), env=_standin_env(),
                                  text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        shown = _read_until(head.stderr, "the world is complete")
        assert "node 1 joined from" in shown
    finally:
        head.kill()
        head.wait(timeout=60)
    out = worker.communicate(timeout=60)[1]
    assert worker.returncode == 1 and "the head closed the rendezvous" in out, out
    if command is _sglang:  # its dummy health check server would take the head's port on this shared machine
        assert "no dummy health check server: the head" in out, out


# ------------------------------------------------------------------------------- on the test cluster's 2 nodes
def _env(**extra):
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
            "WANDB_MODE": "disabled", **extra}


def _launch_on_two_nodes(root, env, two_nodes=TWO_NODES):
    """TWO_NODES on the test cluster's partition `multi` (localhost and node2), as tests/test_e2e_slurm.py runs."""
    overrides = [o for o in cluster_overrides(root) if o != "quantization.calib_size=16"]
    overrides = [o.replace("cluster.partition=debug", "cluster.partition=multi") for o in overrides]
    launched = subprocess.run([sys.executable, "-m", "launcher", *two_nodes, *overrides], cwd=root, env=env,
                              capture_output=True, text=True, timeout=180)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    return state(root, "bf16")


@pytest.mark.slurm
def test_a_benchmark_whose_server_spans_two_nodes_runs_end_to_end(slurm_cluster, tmp_path):
    env = _env()
    st = _launch_on_two_nodes(tmp_path, env)
    ids = job_ids(st)
    bench = ids["benchmark"]
    deadline, shown = time.monotonic() + 300, ""
    while time.monotonic() < deadline and "runs on 2 nodes" not in shown:  # status while it runs
        if slurm_cluster.states([bench]).get(bench) in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        shown = subprocess.run([sys.executable, "-m", "launcher", "status", f"cluster.storage_root={tmp_path}"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60).stdout
        time.sleep(1)
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=400)}
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    assert "gres/gpu=4" in rows[bench]["AllocTRES"] and "node=2" in rows[bench]["AllocTRES"], rows[bench]
    assert "benchmark runs on 2 nodes: localhost,node2" in " ".join(shown.split()), shown
    log = (tmp_path / "experiments" / "bf16" / "logs" / f"server.{bench}.log").read_text()
    # Four ranks, two on each node; rank 0 serves (with an MPI session of all four), the others are workers.
    ranks = dict(re.findall(r"mpi_rank: (\d) tllm_mpi_size: 4 on (\S+)", log))
    assert ranks == {"0": "localhost", "1": "localhost", "2": "node2", "3": "node2"}, log
    assert "rank0 run mgmn leader node with mpi_world_size: 4" in log
    assert all(f"rank{r} run mgmn worker node with mpi_world_size: 4" in log for r in (1, 2, 3)), log
    assert "start MpiSession with 4 workers (trtllm-llmapi-launch)" in log and "TEST STAND-IN" in log
    results = json.loads((Path(st["stages"]["benchmark"]["artifact"]) / "results.json").read_text())
    assert results["summary"]["num_finished"] >= 1, results["summary"]
    job_log = Path(st["stages"]["benchmark"]["log"]).read_text()
    assert "launcher: stopping the server step" in job_log  # the script stopped it once the stage had ended
    sandbox_log = (tmp_path / "experiments" / "bf16" / "logs" / f"sandbox.{bench}.log").read_text()
    assert "srun: Warning" not in sandbox_log, sandbox_log


@pytest.mark.slurm
def test_a_server_rank_that_fails_fails_the_benchmark_through_the_steps_exit_file(slurm_cluster, tmp_path):
    """Rank 0's trtllm-serve dies at start: --kill-on-bad-exit ends the step, whose exit code the job reads
    (not the health timeout's 1800 s)."""
    st = _launch_on_two_nodes(tmp_path, _env(STANDIN_FAIL="trtllm-serve"))
    bench = job_ids(st)["benchmark"]
    (row,) = slurm_cluster.wait_all_done([bench], timeout=300)
    assert row["State"] == "FAILED", row
    job_log = Path(st["stages"]["benchmark"]["log"]).read_text()
    assert re.search(r"LLM server exited with code \d+ before it was healthy; last lines of \S+/logs/server\."
                     + bench + r"\.log", job_log), job_log
    assert "trtllm-serve: failing at start (STANDIN_FAIL)" in job_log


@pytest.mark.slurm
@pytest.mark.parametrize("name, worker_says", [
    ("vllm", "Launching vLLM (v0.33.0) headless multiproc executor, with head node address {head}:"),
    ("sglang", "sglang.launch_server: node 1 joined the head at {head}:"),
])
def test_a_vllm_or_sglang_server_over_two_nodes_runs_a_benchmark_end_to_end(slurm_cluster, tmp_path, name,
                                                                             worker_says):
    """One task per node: the head (node 0, the job's) serves once node 1 has joined it at the job's host."""
    st = _launch_on_two_nodes(tmp_path, _env(), _on_stack(name))
    ids = job_ids(st)
    bench = ids["benchmark"]
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=400)}
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    assert "gres/gpu=4" in rows[bench]["AllocTRES"] and "node=2" in rows[bench]["AllocTRES"], rows[bench]
    log = (tmp_path / "experiments" / "bf16" / "logs" / f"server.{bench}.log").read_text()
    assert "node 0 of 2: waiting on port" in log and "node 1 joined from" in log, log
    assert "all 2 nodes joined: the world is complete" in log, log
    assert worker_says.format(head=socket.gethostname()) in log, log
    assert "task 0 on localhost runs the server" in log and "task 1 on node2 runs the server" in log, log
    results = json.loads((Path(st["stages"]["benchmark"]["artifact"]) / "results.json").read_text())
    assert results["summary"]["num_finished"] >= 1, results["summary"]
    assert "launcher: stopping the server step" in Path(st["stages"]["benchmark"]["log"]).read_text()
