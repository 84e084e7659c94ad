# serving=trtllm_pytorch: TensorRT-LLM's NGC release image,
# pinned, plus AIPerf (benchmark=load_sweep) in a venv of its own. Tag: nvcr.io/nvidia/tensorrt-llm/release:1.2.1
# is in public use (digest sha256:33cd085b772947bd22b7273886539331420404e5d2a4a039945241945ff927b9 as one user
# recorded it); not checked against the NGC catalog itself. The first RUN fails the build unless the image's
# tensorrt_llm is the pinned one (read from its metadata: importing it needs a GPU). It is an NGC PyTorch image:
# python 3.12, and /etc/pip/constraint.txt through PIP_CONSTRAINT, which must not reach AIPerf's venv.
ARG TRTLLM_VERSION=1.2.1
FROM nvcr.io/nvidia/tensorrt-llm/release:${TRTLLM_VERSION}
ARG TRTLLM_VERSION
ARG AIPERF_VERSION=0.13.0

RUN python3 -c "from importlib.metadata import version; v = version('tensorrt_llm'); \
assert v == '${TRTLLM_VERSION}', f'the image has tensorrt_llm {v}, not ${TRTLLM_VERSION}'"

# AIPerf in a venv of its own (containers/aiperf_venv.sh); `python`: cluster.python runs the jobs (the launch's
# code snapshot) with the server's own python.
COPY containers/aiperf_venv.sh /tmp/aiperf_venv.sh
RUN /tmp/aiperf_venv.sh "${AIPERF_VERSION}" && rm /tmp/aiperf_venv.sh && \
    (command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python)

ENV AIPERF_BIN=/opt/aiperf/bin/aiperf
