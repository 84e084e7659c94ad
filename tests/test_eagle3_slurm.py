"""drafter.train_eagle3 end to end on the Slurm test cluster: the conversations, Model-Optimizer's EAGLE-3 recipe
(stand-in main.py under the stand-in `accelerate launch`) and its export, then `vllm serve` (stand-in) drafting
with the exported head. Helpers of tests/test_e2e_slurm.py."""
import json
from pathlib import Path

import pytest

from tests.test_e2e_slurm import STANDINS, job_ids, launcher, state

pytestmark = pytest.mark.slurm


def test_a_trained_eagle3_head_is_served_by_vllm(slurm_cluster, tmp_path):
    launcher(tmp_path, "+experiment=fp8", "serving=vllm", "drafter=eagle3", "drafter.train_eagle3=true",
             "drafter.eagle3_dataset_nrows=16", "benchmark=aimo_notebook",
             f"cluster.modelopt_examples_dir={STANDINS / 'modelopt_examples'}")
    st = state(tmp_path, "fp8")
    ids = job_ids(st)
    assert {"eagle3_conversations", "train_eagle3", "benchmark"} <= set(ids) and "download_draft_model" not in ids
    rows = {r["JobID"]: r for r in slurm_cluster.wait_all_done(ids.values(), timeout=400)}
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    head = Path(st["stages"]["train_eagle3"]["artifact"], "eagle3_head")
    assert json.loads((head / "config.json").read_text())["architectures"] == ["LlamaForCausalLMEagle3"]
    # The server drafted with that head: the stand-in refuses a --speculative-config model without config.json.
    spec = json.loads((tmp_path / "experiments" / "fp8" / "stages" / "benchmark.json").read_text())
    server = spec["commands"]["server"]
    assert json.loads(server[server.index("--speculative-config") + 1])["model"] == str(head)
    benchmark = Path(st["stages"]["benchmark"]["artifact"])
    assert json.loads((benchmark / "results.json").read_text())["summary"]
