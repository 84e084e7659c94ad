#!/usr/bin/env bash
# Build the stage, sandbox, Triton, checkpoint-serving (trtllm_pytorch, vllm, sglang) and Model-Optimizer images and import them with enroot into .sqsh files on shared storage,
# where the cluster config's `containers` map points (pyxis then never pulls at job start).
#   containers/build_images.sh /lustre/fsw/my_account/images
# Needs docker (or podman via DOCKER=podman) and enroot on the machine that builds.
set -euo pipefail
dest=${1:?usage: build_images.sh DEST_DIR_ON_SHARED_STORAGE}
docker=${DOCKER:-docker}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
trtllm_version=$(sed -n 's/^ARG TRTLLM_VERSION=//p' "$here/trtllm.Dockerfile")
# The checkpoint-serving stacks: each official release image, pinned in its Dockerfile, plus AIPerf.
declare -A serving_version=(
    [trtllm_pytorch]=$(sed -n 's/^ARG TRTLLM_VERSION=//p' "$here/trtllm_pytorch.Dockerfile")
    [vllm]=$(sed -n 's/^ARG VLLM_VERSION=//p' "$here/vllm.Dockerfile")
    [sglang]=$(sed -n 's/^ARG SGLANG_VERSION=//p' "$here/sglang.Dockerfile"))
# quantize_modelopt and EAGLE-3 training: Model-Optimizer, pinned, on the trtllm_pytorch base.
modelopt_version=$(sed -n 's/^ARG MODELOPT_VERSION=//p' "$here/modelopt.Dockerfile")
mkdir -p "$dest"

"$docker" build -f "$here/trtllm.Dockerfile" -t "launcher-trtllm:$trtllm_version" "$repo"
"$docker" build -f "$here/sandbox.Dockerfile" -t "launcher-sandbox:latest" "$here"
# Triton (seed 004): tensorrtllm_backend's own image at its v1.1.0rc0 release (commit edb0cdf, with the
# tensorrt_llm submodule TensorRT-LLM 26f413ad = 1.1.0rc0), built from its repository as its build.sh does,
# then ours on it (containers/triton.Dockerfile).
backend_image="launcher-tensorrtllm-backend:v$trtllm_version"
DOCKER_BUILDKIT=1 "$docker" build -f dockerfile/Dockerfile.triton.trt_llm_backend -t "$backend_image" \
    "https://github.com/triton-inference-server/tensorrtllm_backend.git#v$trtllm_version"
"$docker" build -f "$here/triton.Dockerfile" --build-arg "BACKEND_IMAGE=$backend_image" \
    -t "launcher-triton:$trtllm_version" "$repo"
for stack in trtllm_pytorch vllm sglang; do
    "$docker" build -f "$here/$stack.Dockerfile" -t "launcher-$stack:${serving_version[$stack]}" "$repo"
done
"$docker" build -f "$here/modelopt.Dockerfile" -t "launcher-modelopt:$modelopt_version" "$repo"

enroot import -o "$dest/launcher-trtllm-$trtllm_version.sqsh" "dockerd://launcher-trtllm:$trtllm_version"
enroot import -o "$dest/launcher-sandbox.sqsh" "dockerd://launcher-sandbox:latest"
enroot import -o "$dest/launcher-triton-$trtllm_version.sqsh" "dockerd://launcher-triton:$trtllm_version"
serving=""
for stack in trtllm_pytorch vllm sglang; do
    image="launcher-$stack-${serving_version[$stack]}.sqsh"
    enroot import -o "$dest/$image" "dockerd://launcher-$stack:${serving_version[$stack]}"
    serving+=", $stack: $dest/$image"
done
enroot import -o "$dest/launcher-modelopt-$modelopt_version.sqsh" "dockerd://launcher-modelopt:$modelopt_version"
echo "set in conf/cluster/<yours>.yaml:"
echo "  containers: {trtllm: $dest/launcher-trtllm-$trtllm_version.sqsh, sandbox: $dest/launcher-sandbox.sqsh, triton: $dest/launcher-triton-$trtllm_version.sqsh$serving, modelopt: $dest/launcher-modelopt-$modelopt_version.sqsh}"
echo "  triton_backend_dir: /app"
echo "  modelopt_examples_dir: /opt/Model-Optimizer/examples"
