"""Before a GPU stage runs its tools: are these the GPUs the plan was made for?

A stage that lands on the wrong partition (A100s for an FP8 build) would otherwise fail deep inside
TensorRT-LLM after loading the model; a TensorRT engine only runs on the GPU architecture it was built for,
so a benchmark on other GPUs than its engine's build fails just as late. This check runs first, reads the
GPUs the job sees from `nvidia-smi` (the driver's tool, in every GPU container), fails at once naming the
config key at fault, and leaves what it found in the stage's manifest.

    python -m jobs.gpu_check          prints the GPUs this job sees
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from jobs.process import StageFailed
from launcher.contract import GpuRequirement, Manifest

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,compute_cap,memory.total", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    compute_capability: float
    memory_mib: int


def parse(text: str) -> List[Gpu]:
    """nvidia-smi's CSV rows: `0, GPU-ddf1675b-..., NVIDIA H200, 9.0, 143771`."""
    gpus = []
    for line in text.splitlines():
        if line.strip():
            index, uuid, name, cc, memory = (field.strip() for field in line.rsplit(",", 4))
            gpus.append(Gpu(int(index), uuid, name, float(cc), int(memory)))
    return gpus


def visible(gpus: List[Gpu], cuda_visible_devices: Optional[str]) -> List[Gpu]:
    """The GPUs the job's processes can use: nvidia-smi lists the whole node unless cgroups hide the rest,
    while CUDA_VISIBLE_DEVICES (set by Slurm for the job's GPUs) names indices or UUIDs."""
    if cuda_visible_devices is None:
        return gpus
    wanted = [d.strip() for d in cuda_visible_devices.split(",") if d.strip()]
    chosen = []
    for device in wanted:
        named = [g for g in gpus if (g.index == int(device) if device.isdigit() else g.uuid.startswith(device))]
        chosen += named[:1]
    # Slurm renumbers when cgroups constrain devices: nvidia-smi then shows only ours, numbered from 0.
    return chosen if len(chosen) == len(wanted) else gpus[:len(wanted)]


def problems(requirement: GpuRequirement, gpus: List[Gpu], engine_gpus: Sequence[Gpu] = ()) -> List[str]:
    """Why these GPUs cannot run the stage (empty when they can); `engine_gpus`: those its input engine was
    built on (engine_build_gpus)."""
    found = describe(gpus)
    errors = []
    if len(gpus) < requirement.count:
        errors.append(f"the stage needs {requirement.count} GPU(s) but the job sees {found or 'none'}")
    minimum = requirement.min_compute_capability
    low = [g for g in gpus if minimum and g.compute_capability < minimum]
    if low:
        errors.append(f"{requirement.why} needs compute capability {minimum}+, this node has {describe(low)}; "
                      f"cluster.gpu_type={requirement.gpu_type} promised {requirement.expected_compute_capability}: "
                      "check cluster.partition")
    built_on = engine_gpus[0].compute_capability if engine_gpus else None
    other = [g for g in gpus if built_on is not None and g.compute_capability != built_on]
    if other:
        errors.append(f"the engine was built on compute capability {built_on} ({describe(engine_gpus)}) and "
                      f"only runs there; this node has {describe(other)}: run the benchmark on the build's "
                      f"GPU type or rebuild")
    return errors


def describe(gpus: List[Gpu]) -> str:
    """`2 x NVIDIA H200 (9.0)`: each kind of GPU with its count and compute capability."""
    kinds = collections.Counter(f"{g.name} ({g.compute_capability:.1f})" for g in gpus)
    return ", ".join(f"{count} x {kind}" for kind, count in sorted(kinds.items()))


def describe_recorded(gpus: List[dict]) -> str:
    """`describe` of the GPUs a manifest records (as `check` returns them)."""
    return describe([Gpu(**g) for g in gpus])


def engine_build_gpus(requirement: GpuRequirement) -> List[Gpu]:
    """The GPUs the input engine was built on, as its manifest records them (none: nothing to compare)."""
    path = requirement.engine_manifest
    if not path or not Path(path).is_file():
        return []
    return [Gpu(**g) for g in Manifest.read(path).outputs.get("gpus") or []]


def detect() -> Optional[List[Gpu]]:
    """The job's GPUs, or None where nvidia-smi is missing (a CPU container: nothing to check)."""
    if shutil.which(QUERY[0]) is None:
        return None
    done = subprocess.run(QUERY, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise StageFailed(f"{' '.join(QUERY)} failed (code {done.returncode}): {done.stderr.strip() or done.stdout}")
    return visible(parse(done.stdout), os.environ.get("CUDA_VISIBLE_DEVICES"))


def check(requirement: Optional[GpuRequirement]) -> dict:
    """Fail the stage if its GPUs cannot run it; return what the manifest records about them."""
    if not requirement:
        return {}
    gpus = detect()
    if gpus is None:
        print("[launcher] nvidia-smi not found: the GPUs are not checked", flush=True)
        return {}
    errors = problems(requirement, gpus, engine_build_gpus(requirement))
    if errors:
        raise StageFailed("wrong GPUs for this stage: " + "; ".join(errors))
    print(f"[launcher] GPUs: {describe(gpus)}", flush=True)
    return {"gpus": [asdict(g) for g in gpus]}


if __name__ == "__main__":
    found = detect()
    print("nvidia-smi not found" if found is None else json.dumps([asdict(g) for g in found], indent=2))
