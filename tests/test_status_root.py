"""`status`, `logs`, `cancel` find the storage root in the cluster's file when it says it plainly, without
composing the whole config (a second of Hydra); composing decides every other case."""
import hydra
import pytest

from launcher import status
from launcher.status import storage_root_from, storage_root_written


def _user_dir(tmp_path, body, name="mine"):
    (tmp_path / "conf" / "cluster").mkdir(parents=True)
    (tmp_path / "conf" / "cluster" / f"{name}.yaml").write_text(body)
    return [str(tmp_path / "conf")]


SCHEMA = "defaults:\n  - cluster_schema\n  - _self_\nname: mine\nexecutor: slurm\n"


def test_a_plain_storage_root_is_read_from_the_file_and_is_what_composing_gives(tmp_path):
    dirs = _user_dir(tmp_path, SCHEMA + "storage_root: /lustre/fsw/team/launcher\n")
    assert storage_root_written(["cluster=mine"], dirs) == "/lustre/fsw/team/launcher"
    assert storage_root_from(["cluster=mine", "launcher.experiment_name=x"], dirs) == "/lustre/fsw/team/launcher"


def test_the_packages_cluster_wins_over_a_users_file_of_the_same_name(tmp_path):
    dirs = _user_dir(tmp_path, SCHEMA + "storage_root: /elsewhere\n", name="example_slurm")
    assert storage_root_written(["cluster=example_slurm"], dirs) == "/lustre/fsw/my_account/launcher"


@pytest.mark.parametrize("body, overrides", [
    (SCHEMA + "storage_root: ${oc.env:SCRATCH}/launcher\n", ["cluster=mine"]),  # interpolated
    ("defaults:\n  - _self_\n  - cluster_schema\nstorage_root: /a\n", ["cluster=mine"]),  # merged after its values
    ("# @package _global_\nstorage_root: /a\n", ["cluster=mine"]),  # not cluster.storage_root
    (SCHEMA + "storage_root: /a\n", ["cluster=mine", "cluster.storage_root=/b"]),  # another override
    (SCHEMA + "storage_root: /a\n", []),  # the default cluster
    (SCHEMA + "storage_root: [/a\n", ["cluster=mine"]),  # not YAML: composing says so
])
def test_anything_else_is_left_to_composing(tmp_path, body, overrides):
    assert storage_root_written(overrides, _user_dir(tmp_path, body)) is None


def test_status_answers_without_composing(tmp_path, monkeypatch, capsys):
    def no_composing(*args, **kwargs):
        raise AssertionError("composed")

    monkeypatch.setattr(hydra, "initialize_config_dir", no_composing)
    dirs = _user_dir(tmp_path, SCHEMA + f"storage_root: {tmp_path}/root\n")
    with pytest.raises(SystemExit):
        status.main("status", ["--config-dir", dirs[0], "cluster=mine"])
    assert capsys.readouterr().err == f"error: no experiment has been launched on {tmp_path}/root\n"
