"""A mistake in the input is said in a paragraph naming what is wrong, never as a traceback, and exits with the
config-error code (launcher.exit_codes.CONFIG_ERROR), whether it comes from Hydra, YAML or our validation."""
import subprocess
import sys

import pytest

from launcher.exit_codes import CONFIG_ERROR

FAKE_HF_TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz123456"  # built, so no token-shaped literal is committed
BROKEN_YAML = "defaults:\n  - cluster_schema\n  - _self_\nname: mine\n  executor: [slurm\n"


def run_launcher(cwd, *args):
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def user_dir(tmp_path):
    """A user's config directory whose cluster file is not valid YAML."""
    (tmp_path / "mine" / "cluster").mkdir(parents=True)
    (tmp_path / "mine" / "cluster" / "broken.yaml").write_text(BROKEN_YAML)
    (tmp_path / "afile").write_text("not a directory\n")
    return tmp_path


CASES = [
    # (command line, words the message must hold, words it must not)
    (("+experiment=fp8", "launcher.dry_run=true", f"cluster.env_vars.HF_TOKEN={FAKE_HF_TOKEN}"),
     ("cluster.env_vars.HF_TOKEN", "cluster.env_vars is a list", "<redacted>"), (FAKE_HF_TOKEN,)),
    (("--config-dir", "mine", "cluster=broken", "launcher.dry_run=true"),
     ("mine/cluster/broken.yaml, line 5, column 11: not valid YAML",), ()),
    (("status", "cluster=nowhere"), ("cluster='nowhere': no such option", "allowed: example_slurm, local)"),
     ("cluster_schema",)),
    (("-m", "launcher.dry_run=true", "model=openmath_nemotron_14b_kaggle,no_such_model"),
     ("model='no_such_model': no such option", "llama2_7b_chat"), ()),
    (("status", "--config-dir", "mine", "cluster=broken"), ("broken.yaml, line 5",), ()),
    (("status", "--config-dir", "mine"), ("no experiment has been launched",), ()),
    (("+experiment=fp8", "cluster.storage_root=afile"), ("cluster.storage_root", "afile"), ()),
    (("-m", "+experiment=fp8_redrafter", "launcher.dry_run=true", "drafter.num_layers=1,many"),
     ("drafter.num_layers='many'", "could not be converted to Integer", "allowed: an integer, 1..64"), ()),
    (("+experiment=fp8", "launcher.dry_run=true", "drafter.num_layr=3"),
     ("drafter.num_layr", "did you mean drafter.num_layers?"), ("To append to your config use +",)),
]


@pytest.mark.parametrize("args,words,absent", CASES, ids=[" ".join(c[0][:3]).replace(FAKE_HF_TOKEN, "<token>") for c in CASES])
def test_an_input_mistake_is_a_message_and_the_config_error_code(user_dir, args, words, absent):
    result = run_launcher(user_dir, *args)
    output = result.stdout + result.stderr
    assert result.returncode == CONFIG_ERROR, output
    assert "Traceback" not in output, output
    message = output.strip().splitlines()
    assert len(message) <= 3, output  # a paragraph: the key is not after 40 lines of traceback
    for word in words:
        assert word in output, output
    for word in absent:
        assert word not in output, output
