# Seed 004's server image: Triton Inference Server with the TensorRT-LLM backend at TensorRT-LLM 1.1.0rc0, the
# version our engines are built with (an engine loads only under the TensorRT it was built with), plus the
# launcher's jobs and the benchmark client (tritonclient[grpc]).
#
# No NGC `tritonserver:<yy.mm>-trtllm-python-py3` ships 1.1.0rc0 (25.09/25.10: 1.0.0, 25.12: 1.1.0; Triton's
# Release Compatibility Matrix). The matching image is the one tensorrtllm_backend's own Dockerfile builds at
# its "TensorRT-LLM Backend v1.1.0rc0 release" commit edb0cdf (tag v1.1.0rc0; its tensorrt_llm submodule is
# TensorRT-LLM 26f413ad): dockerfile/Dockerfile.triton.trt_llm_backend on tritonserver:25.05-py3-min (Triton
# 2.58.0), which puts the model templates in /app/all_models, fill_template.py in /app/tools and
# TensorRT-LLM's examples (run.py) in /app/examples. containers/build_images.sh builds that image first, as
# BACKEND_IMAGE, then this one on it.
#
# Not built here: it needs docker, NVIDIA's registries and a long CUDA build (tests/standins/README.md,
# "Triton", says what the stand-ins reproduce of it instead).
ARG BACKEND_IMAGE=launcher-tensorrtllm-backend:v1.1.0rc0
FROM ${BACKEND_IMAGE}

# The jobs' own packages, at the stage image's versions (containers/trtllm.Dockerfile); the backend's
# TensorRT-LLM and its torch stay as built. `python` as cluster.python names it.
RUN pip install --no-cache-dir "transformers==4.57.6" "tokenizers==0.22.2" "huggingface_hub[cli]>=0.34,<1.0" \
        "submitit==1.5.4" "httpx==0.28.1" "httpx-sse==0.4.3" "safetensors==0.8.0" "pyarrow==26.0.1" \
        "psutil==7.0.0" "wandb==0.31.0" "tritonclient[grpc]==2.67.0" && \
    (command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python)

# The launcher itself (jobs normally run from the launch's code snapshot, which wins on PYTHONPATH).
COPY . /opt/launcher
RUN pip install --no-cache-dir --no-deps /opt/launcher

ENV TRITON_BACKEND_DIR=/app \
    TRTLLM_EXAMPLES_DIR=/app/examples
WORKDIR /opt/launcher
