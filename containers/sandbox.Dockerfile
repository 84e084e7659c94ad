# The code-execution sandbox: NeMo-Skills' local sandbox module at the pinned commit, served by the launcher's
# jobs.sandbox_guard (loopback only; one process per session, with a memory limit and a wall-time cap).
# It runs model-written Python: it gets no secrets and no storage from the launcher, only the launch's code
# snapshot, read-only, for the guard (which needs nothing beyond the standard library).
FROM python:3.10-slim

ARG NEMO_SKILLS_COMMIT=1054be9959a0634b83637f7d6e62dcb9e9f2860d

# What `import nemo_skills.code_execution.local_sandbox.local_sandbox_server` imports at that commit (the
# table in tests/test_containers.py names each file of the chain): nemo_skills/utils.py imports fire and
# rich.logging (through nemo_skills/code_execution/__init__.py); the server imports flask, psutil and IPython.
# Then what the model's tool calls import (numpy, sympy, scipy), and every dependency of both, pinned as pip
# resolved them together for python 3.10. NeMo-Skills itself is installed without its dependencies (its
# requirements/main.txt holds everything else it does: vLLM clients, evaluation, W&B, ...). The last command
# imports the module, so a package missing here fails the build, not a benchmark.
RUN apt-get update && apt-get install -y --no-install-recommends git build-essential && \
    rm -rf /var/lib/apt/lists/* && \
    pip install --no-cache-dir "fire==0.7.1" "rich==14.1.0" "flask==3.1.2" "psutil==7.0.0" "ipython==8.37.0" \
        "numpy==2.2.6" "sympy==1.14.0" "scipy==1.15.3" \
        "termcolor==3.3.0" "markdown-it-py==4.3.0" "mdurl==0.1.2" "pygments==2.21.0" \
        "werkzeug==3.1.9" "jinja2==3.1.6" "markupsafe==3.0.4" "itsdangerous==2.2.0" "click==8.5.1" "blinker==1.9.0" \
        "decorator==5.3.1" "exceptiongroup==1.3.2" "jedi==0.20.1" "parso==0.8.7" "matplotlib-inline==0.2.2" \
        "pexpect==4.9.0" "ptyprocess==0.7.0" "prompt-toolkit==3.0.53" "wcwidth==0.9.4" "stack-data==0.6.3" \
        "asttokens==3.0.2" "executing==2.3.0" "pure-eval==0.2.4" "traitlets==5.16.1" "typing-extensions==4.16.0" \
        "mpmath==1.3.0" && \
    pip install --no-cache-dir --no-deps "nemo_skills @ git+https://github.com/NVIDIA/NeMo-Skills.git@${NEMO_SKILLS_COMMIT}" && \
    python -c "import nemo_skills.code_execution.local_sandbox.local_sandbox_server"

RUN useradd --create-home sandbox
USER sandbox
WORKDIR /home/sandbox
# The launcher starts it itself, as a step of the benchmark job, with a per-job port:
#   env -u HF_TOKEN ... PYTHONPATH=<code snapshot> python -m jobs.sandbox_guard --host 127.0.0.1 \
#       --memory-limit-mb 4096 --timeout-s 10.0 --port P
