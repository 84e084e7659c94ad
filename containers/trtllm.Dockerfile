# The stage image: every GPU-side tool of the pipeline at versions that work together
# (../README.md "Container images"; versions from the seeds and checked against the sources).
#   TensorRT-LLM 1.1.0rc0 on NGC PyTorch 25.05 (Python 3.12), as the tutorial installs it; its examples/
#   (convert_checkpoint.py, quantize.py) from the same tag; NeMo-Skills and apple/ml-recurrent-drafter
#   pinned to commits; transformers < 5 (train_redrafter breaks under 5.x); this launcher's jobs.
FROM nvcr.io/nvidia/pytorch:25.05-py3

ARG TRTLLM_VERSION=1.1.0rc0
ARG NEMO_SKILLS_COMMIT=1054be9959a0634b83637f7d6e62dcb9e9f2860d
ARG RECURRENT_DRAFTING_COMMIT=bd8586bb9bbfa761644c36f932a0cd1eb3f1cdf9

# The NGC image pins its own TensorRT through a pip constraint file; TensorRT-LLM brings the one it needs.
# Its wheels are on NVIDIA's index (pypi.org has only a source stub of 1.1.0rc0).
RUN [ -f /etc/pip/constraint.txt ] && : > /etc/pip/constraint.txt; \
    pip uninstall -y tensorrt && \
    pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com "tensorrt_llm==${TRTLLM_VERSION}"

# convert_checkpoint.py and quantize.py live in the repository, not the wheel: same tag as the wheel.
RUN git clone --depth 1 --branch "v${TRTLLM_VERSION}" --filter=blob:none --sparse \
        https://github.com/NVIDIA/TensorRT-LLM.git /opt/TensorRT-LLM && \
    cd /opt/TensorRT-LLM && git sparse-checkout set examples && rm -rf .git

RUN pip install --no-cache-dir "nemo_skills @ git+https://github.com/NVIDIA/NeMo-Skills.git@${NEMO_SKILLS_COMMIT}" && \
    pip install --no-cache-dir --no-binary=protobuf --ignore-requires-python \
        "recurrent-drafting[dev,train] @ git+https://github.com/apple/ml-recurrent-drafter.git@${RECURRENT_DRAFTING_COMMIT}" && \
    pip install --no-cache-dir "transformers==4.57.6" "tokenizers==0.22.2" "huggingface_hub[cli]>=0.34,<1.0" \
        "datasets>=3.6,<4" "fschat==0.2.36" "submitit==1.5.4" "httpx==0.28.1" "httpx-sse==0.4.3" "safetensors==0.8.0" "pyarrow==26.0.1" "psutil==7.0.0" "wandb==0.31.0" "flask==3.1.2" "matplotlib==3.10.7" "tritonclient[grpc]==2.67.0"

# The launcher itself (jobs import it; jobs normally run from the launch's code snapshot, which wins on
# PYTHONPATH, so an older image still runs newer job code).
COPY . /opt/launcher
RUN pip install --no-cache-dir --no-deps /opt/launcher && pip install --no-cache-dir "hydra-core==1.3.2" "omegaconf==2.3.1" "jinja2>=3.1,<4" "rich>=13,<16"

# AIPerf (benchmark=load_sweep) in a venv of its own, as in every serving image (containers/aiperf_venv.sh): its
# pins must not move the TensorRT-LLM environment's. jobs/load_sweep.py runs $AIPERF_BIN.
ARG AIPERF_VERSION=0.13.0
COPY containers/aiperf_venv.sh /tmp/aiperf_venv.sh
RUN /tmp/aiperf_venv.sh "${AIPERF_VERSION}" && rm /tmp/aiperf_venv.sh

ENV HF_HUB_ENABLE_HF_TRANSFER=0 \
    AIPERF_BIN=/opt/aiperf/bin/aiperf \
    TRTLLM_EXAMPLES_DIR=/opt/TensorRT-LLM/examples
WORKDIR /opt/launcher
