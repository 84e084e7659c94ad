# quantize_modelopt, eagle3_conversations and train_eagle3: NVIDIA Model-Optimizer 0.46.0 and its examples
# (hf_ptq/hf_ptq.py; speculative_decoding/main.py + scripts/export_hf_checkpoint.py) at the same tag. Base: the
# TensorRT-LLM release image that serving=trtllm_pytorch uses (one base to pull), as Model-Optimizer's install docs
# recommend, with modelopt upgraded by pip with the image's constraint file off. That image pins
# nvidia-modelopt ~=0.37, transformers 4.57 and datasets 3.1.0; the 0.46.0 examples need modelopt.recipe and
# speculative_decoding/requirements.txt's transformers>=5.0,<5.13, accelerate>=1.12, peft==0.18.1. TensorRT-LLM
# itself does not run on transformers 5 here: this image only quantizes and trains, it serves nothing.
# Versions: modelopt, transformers, tokenizers, accelerate, peft, datasets and huggingface-hub are the ones both
# examples ran with on an H200 (tests/standins/README.md, "EAGLE-3 training" and "Serving stacks": hf_ptq.py with
# the launcher's argv, EAGLE-3 train + export); hf_ptq's other requirements (unpinned there, not imported on the
# FP8 Llama path) at their PyPI releases of this writing.
ARG TRTLLM_VERSION=1.2.1
FROM nvcr.io/nvidia/tensorrt-llm/release:${TRTLLM_VERSION}
ARG TRTLLM_VERSION
ARG MODELOPT_VERSION=0.46.0

RUN python3 -c "from importlib.metadata import version; v = version('tensorrt_llm'); \
assert v == '${TRTLLM_VERSION}', f'the image has tensorrt_llm {v}, not ${TRTLLM_VERSION}'"

# nvidia-modelopt[hf] and the two examples' requirements.txt at tag 0.46.0, every one pinned. hf_ptq's
# flash-attn>=2.6.0 is the one the NGC PyTorch base ships for its torch (PyPI has only a source build, hours
# long): checked below rather than installed. setuptools>=80: modelopt's own floor (torch.utils.cpp_extension
# imports it when modelopt builds its CUDA extensions at first use).
RUN PIP_CONSTRAINT="" pip install --no-cache-dir \
        "nvidia-modelopt[hf]==${MODELOPT_VERSION}" "transformers==5.12.0" "tokenizers==0.22.2" \
        "accelerate==1.15.0" "peft==0.18.1" "datasets==5.2.0" "huggingface-hub==1.33.0" "setuptools==80.9.0" \
        "compressed-tensors==0.20.1" "fire==0.7.1" "transformers_stream_generator==0.0.5" "zstandard==0.25.0"

# The examples live in the repository, not the wheel: the same tag (cluster.modelopt_examples_dir).
RUN git clone --depth 1 --branch "${MODELOPT_VERSION}" --filter=blob:none --sparse \
        https://github.com/NVIDIA/Model-Optimizer.git /opt/Model-Optimizer && \
    cd /opt/Model-Optimizer && git sparse-checkout set examples && rm -rf .git

# The build fails unless what the recipe imports is there at the pinned versions (importing modelopt needs no GPU).
RUN python3 -c "import modelopt, modelopt.recipe; assert modelopt.__version__ == '${MODELOPT_VERSION}', \
f'modelopt {modelopt.__version__}, not ${MODELOPT_VERSION}'; from importlib.metadata import version as v; \
from packaging.version import Version; \
assert (v('transformers'), v('accelerate'), v('peft')) == ('5.12.0', '1.15.0', '0.18.1'); \
assert Version(v('flash-attn')) >= Version('2.6.0'), 'hf_ptq/requirements.txt wants flash-attn>=2.6.0'" && \
    test -f /opt/Model-Optimizer/examples/hf_ptq/hf_ptq.py && \
    test -f /opt/Model-Optimizer/examples/speculative_decoding/main.py && \
    test -f /opt/Model-Optimizer/examples/speculative_decoding/scripts/export_hf_checkpoint.py

# The jobs (jobs.eagle3_conversations) run from the launch's code snapshot with this image's python
# (cluster.python), as in the serving images.
RUN command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python
