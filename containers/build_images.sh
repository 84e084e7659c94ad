#!/usr/bin/env bash
# Build the stage and sandbox images and import them with enroot into .sqsh files on shared storage,
# where the cluster config's `containers` map points (pyxis then never pulls at job start).
#   containers/build_images.sh /lustre/fsw/my_account/images
# Needs docker (or podman via DOCKER=podman) and enroot on the machine that builds.
set -euo pipefail
dest=${1:?usage: build_images.sh DEST_DIR_ON_SHARED_STORAGE}
docker=${DOCKER:-docker}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
trtllm_version=$(sed -n 's/^ARG TRTLLM_VERSION=//p' "$here/trtllm.Dockerfile")
mkdir -p "$dest"

"$docker" build -f "$here/trtllm.Dockerfile" -t "launcher-trtllm:$trtllm_version" "$repo"
"$docker" build -f "$here/sandbox.Dockerfile" -t "launcher-sandbox:latest" "$here"

enroot import -o "$dest/launcher-trtllm-$trtllm_version.sqsh" "dockerd://launcher-trtllm:$trtllm_version"
enroot import -o "$dest/launcher-sandbox.sqsh" "dockerd://launcher-sandbox:latest"
echo "set in conf/cluster/<yours>.yaml:"
echo "  containers: {trtllm: $dest/launcher-trtllm-$trtllm_version.sqsh, sandbox: $dest/launcher-sandbox.sqsh}"
