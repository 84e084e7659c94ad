"""A server larger than one node (serving=trtllm_pytorch, tensor x pipeline parallel > cluster.gpus_per_node):
its own step over the job's nodes under srun --mpi=pmix, every rank running trtllm-llmapi-launch trtllm-serve,
started by the benchmark job through a launch file (jobs.server_launch). The rendered script, the rendezvous,
the stand-ins' refusals, and the real thing on the test cluster's two nodes (partition `multi`)."""
import json
import os
import re
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


def test_vllm_across_nodes_is_refused_naming_the_key(tmp_path):
    from launcher.validation import InvalidConfig

    with pytest.raises(InvalidConfig) as raised:
        plan_for("cluster=example_slurm", "serving=vllm", "+experiment=bf16", "cluster.gpus_per_node=2",
                 "model.tensor_parallel=4")
    (error,) = [e for e in raised.value.errors if e.key == "model.tensor_parallel"]
    assert "spans 2 nodes" in str(error) and "serving=trtllm_pytorch" in error.allowed


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


# ------------------------------------------------------------------------------- on the test cluster's 2 nodes
def _env(**extra):
    return {**os.environ, "PATH": f"{STANDINS / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(STANDINS / "python"),
            "WANDB_MODE": "disabled", **extra}


def _launch_on_two_nodes(root, env):
    """TWO_NODES on the test cluster's partition `multi` (localhost and node2), as tests/test_e2e_slurm.py runs."""
    overrides = [o for o in cluster_overrides(root) if o != "quantization.calib_size=16"]
    overrides = [o.replace("cluster.partition=debug", "cluster.partition=multi") for o in overrides]
    launched = subprocess.run([sys.executable, "-m", "launcher", *TWO_NODES, *overrides], cwd=root, env=env,
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
