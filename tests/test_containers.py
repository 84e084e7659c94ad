"""The container images and the files that name them: containers/*.Dockerfile, containers/build_images.sh and
the example cluster config."""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
NEMO_SKILLS_COMMIT = "1054be9959a0634b83637f7d6e62dcb9e9f2860d"  # the sandbox image's pin

# Every third-party top-level import on the way to `import nemo_skills.code_execution.local_sandbox.
# local_sandbox_server` at NeMo-Skills 1054be9 (module-level imports only; function-level ones, like wandb in
# nemo_skills/utils.py, do not run at import), and the distribution that installs it:
#   nemo_skills/__init__.py                          -> nemo_skills.version (no third-party import)
#   nemo_skills/code_execution/__init__.py           -> nemo_skills.code_execution.utils
#   nemo_skills/code_execution/utils.py              -> nemo_skills.utils
#   nemo_skills/utils.py                             -> fire, rich.logging, nemo_skills.file_utils (stdlib only)
#   nemo_skills/code_execution/local_sandbox/local_sandbox_server.py -> psutil, flask, IPython
SANDBOX_IMPORT_CHAIN = {
    "nemo_skills": "nemo_skills",
    "fire": "fire",
    "rich": "rich",
    "psutil": "psutil",
    "flask": "flask",
    "IPython": "ipython",
}
# What the benchmark's tool calls import (AIMO-2's TIR solutions compute with these).
TOOL_CALL_IMPORTS = {"numpy": "numpy", "sympy": "sympy", "scipy": "scipy"}


def pip_requirements(dockerfile: Path) -> dict:
    """{normalized distribution name: requirement} of every `pip install` in the Dockerfile's RUN lines."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    args = {m[1]: m[2] for m in re.finditer(r"^ARG (\w+)=(\S+)", text, re.M)}
    found = {}
    for line in text.splitlines():
        if not line.startswith("RUN "):
            continue
        lexer = shlex.shlex(line[4:], posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        commands, words = [], []
        for token in lexer:  # split on ; && || outside quotes; a leading VAR=value is the command's environment
            if set(token) <= set(";&|"):
                commands.append(words)
                words = []
            elif not (not words and re.match(r"\w+=", token)):
                words.append(token)
        for words in [*commands, words]:
            if words[:2] != ["pip", "install"]:
                continue
            for word in words[2:]:
                if word.startswith("-"):
                    continue
                word = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], word)
                name = re.match(r"[A-Za-z0-9._-]+", word)[0]
                found[re.sub(r"[-_.]+", "-", name).lower()] = word
    return found


def test_the_sandbox_image_installs_every_import_of_the_sandbox_module_pinned():
    """pip would install flask and IPython, but the sandbox module then dies at import on `import fire`
    (nemo_skills/utils.py): every package the import chain needs is named, at an exact version."""
    installed = pip_requirements(CONTAINERS / "sandbox.Dockerfile")
    for module, dist in {**SANDBOX_IMPORT_CHAIN, **TOOL_CALL_IMPORTS}.items():
        assert dist.replace("_", "-") in installed, f"`import {module}` needs {dist}, which the image does not install"
        requirement = installed[dist.replace("_", "-")]
        if dist == "nemo_skills":
            assert requirement.endswith(f".git@{NEMO_SKILLS_COMMIT}"), requirement
        else:
            assert re.fullmatch(rf"{re.escape(dist)}==[0-9][0-9a-z.]*", requirement, re.I), f"not pinned: {requirement}"
    for requirement in installed.values():  # the dependencies too: nothing floats
        assert "==" in requirement or "@" in requirement, f"not pinned: {requirement}"


SNAPSHOT_PACKAGES = {"jobs", "launcher"}  # the code snapshot's (launcher.dispatch.storage.snapshot_code)


def _module_files(module: str) -> list:
    """The repository's files that `import module` runs: each package's __init__.py on the way, and the module."""
    parts = module.split(".")
    files = [REPO.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
    return [f for f in [*files, REPO.joinpath(*parts[:-1], f"{parts[-1]}.py")] if f.is_file()]


def _imports_run_by(path: Path) -> set:
    """The top-level names of every module-level import that importing `path` runs, following the imports of
    the code snapshot's own modules into their files: those run in the image too."""
    names, todo, seen = set(), [path], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.parse(current.read_text()).body:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:  # `from jobs import ports`: a module too
                modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in SNAPSHOT_PACKAGES:
                    todo += _module_files(module)
                else:
                    names.add(module.split(".")[0])
    return names


def test_the_guard_needs_nothing_the_sandbox_image_lacks():
    """jobs.sandbox_guard runs in the sandbox image from the code snapshot: the standard library (of the image's
    python 3.10), what the image installs and the snapshot's own modules (jobs.ports, launcher.contract), each
    of which needs no more, nothing of the launcher's own dependencies."""
    assert re.search(r"^FROM python:3\.10", (CONTAINERS / "sandbox.Dockerfile").read_text(), re.M)
    imports = _imports_run_by(REPO / "jobs" / "sandbox_guard.py") - {"__future__"}
    installed = set(pip_requirements(CONTAINERS / "sandbox.Dockerfile"))
    needed = {name for name in imports if name not in sys.stdlib_module_names and name.lower() not in installed}
    assert not needed, f"jobs/sandbox_guard.py, with the snapshot modules it imports, needs {needed}, which the " \
        "sandbox image does not have"
    assert "tomllib" not in imports  # standard only from python 3.11


def test_the_example_cluster_names_the_images_build_images_writes(tmp_path):
    """build_images.sh runs with docker and enroot recorded (not run): the .sqsh files it writes are the ones
    conf/cluster/example_slurm.yaml points at, and the command it prints sets the same."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("docker", "enroot"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    dest = tmp_path / "images"
    done = subprocess.run(["bash", str(CONTAINERS / "build_images.sh"), str(dest)], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=True)
    written = {Path(line.split(" -o ")[1].split()[0]).name
               for line in calls.read_text().splitlines() if line.startswith("enroot import")}
    example = yaml.safe_load((REPO / "conf" / "cluster" / "example_slurm.yaml").read_text())
    images = example["containers"]
    named = {key: Path(image).name for key, image in images.items()}
    # every image the example names is one the script writes: the serving stacks' too (AIPerf is added to them)
    assert set(named.values()) == written and \
        set(named) == {"trtllm", "sandbox", "triton", "modelopt", *SERVING_IMAGES}, (named, written)
    for key, name in named.items():
        assert f"{key}: {dest}/{name}" in done.stdout, (key, done.stdout)
    built = [line for line in calls.read_text().splitlines() if line.startswith("docker build")]
    for stack in (*SERVING_IMAGES, "modelopt"):
        assert any(f"-f {CONTAINERS}/{stack}.Dockerfile " in line for line in built), (stack, built)
    assert f"modelopt_examples_dir: {example['modelopt_examples_dir']}" in done.stdout
    # and its comment names the script that exists
    comments = re.findall(r"containers/\S+\.sh", (REPO / "conf" / "cluster" / "example_slurm.yaml").read_text())
    assert comments and all((REPO / c).is_file() for c in comments), comments


# The images that serve a model, and what the jobs' load sweep needs in each: AIPerf at jobs.load_sweep's
# version, in /opt/aiperf (containers/aiperf_venv.sh), named by AIPERF_BIN, which jobs/load_sweep.py runs (the
# launcher passes no --aiperf, so every image must set it the same way).
SERVING_IMAGES = {  # Dockerfile stem: (the version ARG, the distribution the image must have at that version)
    "trtllm_pytorch": ("TRTLLM_VERSION", "tensorrt_llm"),
    "vllm": ("VLLM_VERSION", "vllm"),
    "sglang": ("SGLANG_VERSION", "sglang"),
}
AIPERF_IMAGES = ("trtllm", *SERVING_IMAGES)


def dockerfile_args(text: str) -> dict:
    return {m[1]: m[2] for m in re.finditer(r"^ARG (\w+)=(\S+)", text, re.M)}


def base_image(dockerfile: Path) -> str:
    """The FROM image with its ARGs filled in."""
    text = dockerfile.read_text()
    args = dockerfile_args(text)
    (image,) = re.findall(r"^FROM (\S+)", text, re.M)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)


@pytest.mark.parametrize("stack", SERVING_IMAGES)
def test_each_serving_image_derives_the_pinned_release_and_checks_it(stack):
    """FROM the official image at an exact release tag (no `latest`, no floating major), the same release its
    config names, and a build step that fails unless the image's package is that version."""
    dockerfile = CONTAINERS / f"{stack}.Dockerfile"
    text = dockerfile.read_text()
    arg, dist = SERVING_IMAGES[stack]
    version = dockerfile_args(text)[arg]
    image = base_image(dockerfile)
    assert re.fullmatch(r"[\w./-]+:v?[0-9]+\.[0-9]+\.[0-9]+", image), image
    assert image.split(":")[1].lstrip("v") == version, image
    assert version in (REPO / "conf" / "serving" / f"{stack}.yaml").read_text().splitlines()[0]
    check = re.search(r"^RUN python3 -c \"from importlib.metadata import version; v = version\('(\w+)'\);[^\n]*\\\n"
                      r"assert v == '\$\{(\w+)\}'", text, re.M)
    assert check and check.groups() == (dist, arg), f"{stack}: no build-time check of {dist}=={version}"
    assert re.search(rf"^ARG {arg}$", text.split("FROM", 1)[1], re.M), "the version ARG must be redeclared after FROM"


@pytest.mark.parametrize("stack", AIPERF_IMAGES)
def test_every_serving_image_has_aiperf_where_the_load_sweep_looks(stack):
    from jobs import load_sweep

    text = (CONTAINERS / f"{stack}.Dockerfile").read_text()
    assert dockerfile_args(text)["AIPERF_VERSION"] == load_sweep.AIPERF_VERSION
    assert "COPY containers/aiperf_venv.sh /tmp/aiperf_venv.sh" in text
    assert re.search(r'^RUN /tmp/aiperf_venv\.sh "\$\{AIPERF_VERSION\}"', text, re.M)
    joined = re.sub(r"\\\n", " ", text)  # continuation lines joined
    assert re.search(r"^ENV (.*\s)?AIPERF_BIN=/opt/aiperf/bin/aiperf(\s|$)", joined, re.M)
    script = (CONTAINERS / "aiperf_venv.sh").read_text()
    assert "python3 -m venv /opt/aiperf" in script and 'PIP_CONSTRAINT= /opt/aiperf/bin/pip install' in script
    assert '"aiperf==$version"' in script and "/opt/aiperf/bin/aiperf --version" in script
    # the test extra runs the same AIPerf against the stand-ins
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"aiperf=={load_sweep.AIPERF_VERSION}"' in pyproject
    # jobs.load_sweep runs $AIPERF_BIN, and the launcher does not override it
    assert load_sweep.build_parser().get_default("aiperf") == os.environ.get("AIPERF_BIN", "aiperf")


# Model-Optimizer's image (quantize_modelopt, eagle3_conversations, train_eagle3): what its 0.46.0 examples need,
# read from NVIDIA/Model-Optimizer at tag 0.46.0 (examples/hf_ptq/requirements.txt,
# examples/speculative_decoding/requirements.txt), at the versions the recipe ran with on an H200.
MODELOPT_VERSION = "0.46.0"
MODELOPT_EXAMPLE_REQUIREMENTS = {  # distribution: (the example's requirement, the pin that meets it)
    "transformers": (">=5.0,<5.13", "5.12.0"), "accelerate": (">=1.12.0", "1.15.0"), "peft": ("==0.18.1", "0.18.1"),
    "compressed-tensors": ("", "0.20.1"), "fire": ("", "0.7.1"), "transformers-stream-generator": ("", "0.0.5"),
    "zstandard": ("", "0.25.0"),
}


def test_the_modelopt_image_pins_model_optimizer_its_examples_and_their_requirements():
    from packaging.specifiers import SpecifierSet

    dockerfile = CONTAINERS / "modelopt.Dockerfile"
    text = dockerfile.read_text()
    args = dockerfile_args(text)
    # the serving image's base, one image to pull, at the release tag the trtllm_pytorch image checks
    assert base_image(dockerfile) == base_image(CONTAINERS / "trtllm_pytorch.Dockerfile")
    assert args["TRTLLM_VERSION"] == dockerfile_args((CONTAINERS / "trtllm_pytorch.Dockerfile").read_text())[
        "TRTLLM_VERSION"]
    assert args["MODELOPT_VERSION"] == MODELOPT_VERSION
    installed = pip_requirements(dockerfile)
    assert installed["nvidia-modelopt"] == f"nvidia-modelopt[hf]=={MODELOPT_VERSION}"
    for dist, (wanted, pin) in MODELOPT_EXAMPLE_REQUIREMENTS.items():
        assert installed.get(dist, "").lower().replace("_", "-") == f"{dist}=={pin}", (dist, installed.get(dist))
        assert pin in SpecifierSet(wanted), (dist, wanted, pin)
    for requirement in installed.values():  # nothing floats
        assert "==" in requirement, f"not pinned: {requirement}"
    joined = re.sub(r"\\\n", " ", text)
    assert re.search(r'^RUN PIP_CONSTRAINT="" pip install ', joined, re.M), "the image's constraint file pins modelopt 0.37"
    # the examples at the same tag, where cluster.modelopt_examples_dir points by default and in the example cluster
    assert re.search(r'git clone --depth 1 --branch "\$\{MODELOPT_VERSION\}" .*'
                     r"https://github\.com/NVIDIA/Model-Optimizer\.git /opt/Model-Optimizer ", joined)
    assert "git sparse-checkout set examples" in joined
    example = yaml.safe_load((REPO / "conf" / "cluster" / "example_slurm.yaml").read_text())
    from launcher.schema import ClusterConfig
    assert example["modelopt_examples_dir"] == ClusterConfig.modelopt_examples_dir == "/opt/Model-Optimizer/examples"
    # the build fails unless modelopt is the pinned one, and the tensorrt_llm base is the pinned release
    assert re.search(r"import modelopt, modelopt\.recipe; assert modelopt\.__version__ == '\$\{MODELOPT_VERSION\}'",
                     joined)
    assert re.search(r"v = version\('tensorrt_llm'\);\s+assert v == '\$\{TRTLLM_VERSION\}'", joined)
    for arg in ("TRTLLM_VERSION", "MODELOPT_VERSION"):
        assert re.search(rf"^ARG {arg}$", text.split("FROM", 1)[1], re.M) or \
            re.search(rf"^ARG {arg}=", text.split("FROM", 1)[1], re.M), f"{arg} must be visible after FROM"


def test_the_model_optimizer_stages_run_in_the_modelopt_image():
    from launcher.stages import KINDS

    for kind in ("quantize_modelopt", "eagle3_conversations", "train_eagle3"):
        assert KINDS[kind].containers(None) == ("modelopt",), kind
