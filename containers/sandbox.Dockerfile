# The code-execution sandbox: NeMo-Skills' local sandbox server (Flask, loopback) at the pinned commit.
# It runs model-written Python: it gets no secrets and no storage mounts from the launcher.
FROM python:3.10-slim

ARG NEMO_SKILLS_COMMIT=1054be9959a0634b83637f7d6e62dcb9e9f2860d

RUN apt-get update && apt-get install -y --no-install-recommends git build-essential && \
    rm -rf /var/lib/apt/lists/* && \
    pip install --no-cache-dir "flask==3.1.2" "psutil==7.0.0" "ipython==8.37.0" "numpy==2.2.6" "sympy==1.14.0" \
        "scipy==1.15.3" && \
    pip install --no-cache-dir --no-deps "nemo_skills @ git+https://github.com/NVIDIA/NeMo-Skills.git@${NEMO_SKILLS_COMMIT}"

RUN useradd --create-home sandbox
USER sandbox
WORKDIR /home/sandbox
# The launcher starts it itself with a per-job port:
#   python -m flask --app nemo_skills.code_execution.local_sandbox.local_sandbox_server run --host 127.0.0.1 --port P
