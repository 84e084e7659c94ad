# serving=sglang: SGLang's official release image, pinned, plus AIPerf (benchmark=load_sweep).
# Tag: Docker Hub lmsysorg/sglang publishes v<release> for every SGLang release (seen up to v0.5.21 in public use;
# CUDA 13 since v0.5.20, v0.5.19-cu129 being the last CUDA 12 tag per SGLang's install docs); v0.5.23 itself was
# not checked against Docker Hub here (UNVERIFIED), PyPI has sglang 0.5.23 (the sources the stand-ins follow).
# The first RUN fails the build unless the image's sglang is the pinned one. Its python is 3.12 (python3.12-full),
# which aiperf 0.13.0 (Python >=3.11,<3.14) runs on.
ARG SGLANG_VERSION=0.5.23
FROM lmsysorg/sglang:v${SGLANG_VERSION}
ARG SGLANG_VERSION
ARG AIPERF_VERSION=0.13.0

RUN python3 -c "from importlib.metadata import version; v = version('sglang'); \
assert v == '${SGLANG_VERSION}', f'the image has sglang {v}, not ${SGLANG_VERSION}'"

# AIPerf in a venv of its own (containers/aiperf_venv.sh); `python`: cluster.python runs the jobs (the launch's
# code snapshot) with the server's own python.
COPY containers/aiperf_venv.sh /tmp/aiperf_venv.sh
RUN /tmp/aiperf_venv.sh "${AIPERF_VERSION}" && rm /tmp/aiperf_venv.sh && \
    (command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python)

ENV AIPERF_BIN=/opt/aiperf/bin/aiperf
