# serving=vllm: vLLM's official release image, pinned, plus AIPerf (benchmark=load_sweep).
# Tag: Docker Hub vllm/vllm-openai publishes v<release> for every vLLM release (seen up to v0.31.0 in public
# use); v0.33.0 itself was not checked against Docker Hub here (UNVERIFIED), PyPI has vllm 0.33.0 (commit
# g4ba787ec9, the sources the stand-ins follow). The first RUN fails the build unless the image's vllm is the
# pinned one. Its python is 3.12 (deadsnakes, with venv), which aiperf 0.13.0 (Python >=3.11,<3.14) runs on.
ARG VLLM_VERSION=0.33.0
FROM vllm/vllm-openai:v${VLLM_VERSION}
ARG VLLM_VERSION
ARG AIPERF_VERSION=0.13.0

RUN python3 -c "from importlib.metadata import version; v = version('vllm'); \
assert v == '${VLLM_VERSION}', f'the image has vllm {v}, not ${VLLM_VERSION}'"

# AIPerf in a venv of its own (containers/aiperf_venv.sh); `python`: cluster.python runs the jobs (the launch's
# code snapshot) with the server's own python.
COPY containers/aiperf_venv.sh /tmp/aiperf_venv.sh
RUN /tmp/aiperf_venv.sh "${AIPERF_VERSION}" && rm /tmp/aiperf_venv.sh && \
    (command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python)

ENV AIPERF_BIN=/opt/aiperf/bin/aiperf
