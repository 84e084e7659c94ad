#!/bin/sh
# AIPerf (benchmark=load_sweep) into /opt/aiperf, a venv of its own, in every image that serves a model:
#   aiperf_venv.sh VERSION        (run by containers/{trtllm,trtllm_pytorch,vllm,sglang}.Dockerfile)
# Its pins (rich, pandas, pillow, orjson, psutil~=7.0.0) must not move the server's packages, and the server's
# pip constraints (NGC images set PIP_CONSTRAINT=/etc/pip/constraint.txt) must not reach it. jobs/load_sweep.py
# runs $AIPERF_BIN, which each image sets to /opt/aiperf/bin/aiperf. aiperf 0.13.0 needs Python >=3.11,<3.14.
set -eu
version=${1:?usage: aiperf_venv.sh AIPERF_VERSION}
python3 -m venv /opt/aiperf
PIP_CONSTRAINT= /opt/aiperf/bin/pip install --no-cache-dir "aiperf==$version"
installed=$(/opt/aiperf/bin/aiperf --version)
[ "$installed" = "$version" ] || { echo "aiperf_venv.sh: installed aiperf $installed, not $version" >&2; exit 1; }
