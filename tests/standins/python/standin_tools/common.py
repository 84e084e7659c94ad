"""Helpers every stand-in uses: failure/sleep knobs, tiny safetensors, JSON, errors.

Environment knobs (read by every stand-in, after its arguments and inputs were checked):

* ``STANDIN_FAIL`` -- ``1``/``true``/``all``: every stand-in exits non-zero; or a
  comma-separated list of tool names (see ``TOOL_NAMES``) to fail only those.
  ``STANDIN_FAIL_CODE`` sets the exit code (default 1).
* ``STANDIN_FAIL_MATCH`` -- a regular expression: a stand-in whose command line matches it exits non-zero
  (to fail one sweep point, e.g. ``layers_2 .*--redrafter_draft_len_per_beam 3``).
* ``STANDIN_SLEEP_S`` -- seconds to sleep to simulate work (float), or per tool: ``tool=seconds,...``
  (tool names as in ``TOOL_NAMES``; tools not listed do not sleep).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

TOOL_NAMES = (
    "hf",
    "hf_to_trtllm_quantize",
    "quantize",
    "llama_convert_checkpoint",
    "nemotron_nas_convert_checkpoint",
    "redrafter_convert_checkpoint",
    "trtllm-build",
    "torchrun",
    "train_redrafter",
)

STANDIN_BANNER = "[STAND-IN] "


class StandinError(Exception):
    """An input error the real tool would also raise (exit code 1, like an uncaught exception)."""


def log(tool: str, msg: str, stream=None) -> None:
    print(f"{STANDIN_BANNER}{tool}: {msg}", file=stream or sys.stderr, flush=True)


def fail_requested(tool: str) -> bool:
    pattern = os.environ.get("STANDIN_FAIL_MATCH")
    if pattern and re.search(pattern, " ".join(sys.argv)):
        return True
    value = os.environ.get("STANDIN_FAIL", "").strip()
    if not value or value.lower() in ("0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on", "all", "*"):
        return True
    return tool in {v.strip() for v in value.split(",")}


def fail_code() -> int:
    try:
        code = int(os.environ.get("STANDIN_FAIL_CODE", "1"))
    except ValueError:
        code = 1
    return code if code != 0 else 1


def sleep_seconds(tool: str) -> float:
    raw = os.environ.get("STANDIN_SLEEP_S", "").strip()
    if not raw:
        return 0.0
    if "=" in raw:
        per_tool = dict(item.split("=", 1) for item in raw.split(","))
        raw = per_tool.get(tool, "0")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StandinError(f"STANDIN_SLEEP_S must be a number or tool=seconds pairs, got {raw!r}")


def simulate_work(tool: str) -> None:
    """Honour STANDIN_SLEEP_S then STANDIN_FAIL. Call once inputs are validated."""
    s = sleep_seconds(tool)
    if s:
        log(tool, f"sleeping {s}s (STANDIN_SLEEP_S)")
        time.sleep(s)
    maybe_fail(tool)


def maybe_fail(tool: str, where: str = "") -> None:
    if fail_requested(tool):
        log(tool, f"simulated failure (STANDIN_FAIL){' ' + where if where else ''}")
        sys.exit(fail_code())


def run_main(tool: str, fn) -> None:
    """Run ``fn()``; map StandinError to exit 1 with a message (what an uncaught error does)."""
    try:
        rc = fn()
    except StandinError as e:
        print(f"Traceback (most recent call last):\n  (stand-in {tool})\n"
              f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(rc or 0)


# ---------------------------------------------------------------- JSON


def write_json(path: Path | str, data: Mapping, *, mark: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dict(data)
    if mark:
        out["standin"] = True
    path.write_text(json.dumps(out, indent=4) + "\n")


def read_json(path: Path | str, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise StandinError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StandinError(f"{what} is not valid JSON: {path}: {e}")


# ---------------------------------------------------------------- safetensors
# The format is a little-endian u64 header length, a JSON header mapping tensor
# names to {dtype, shape, data_offsets}, then raw bytes. Written by hand so the
# stand-ins need no numpy/torch/safetensors.

_DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "I8": 1, "I32": 4, "I64": 8, "U8": 1}


def safetensors_bytes(tensors: Mapping[str, tuple[str, Iterable[int]]],
                      metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize zero-filled tensors ``{name: (dtype, shape)}``. Keep the shapes tiny."""
    header: dict = {}
    meta = {"standin": "true", "format": "pt"}
    meta.update(metadata or {})
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        shape = [int(s) for s in shape]
        n = 1
        for s in shape:
            n *= s
        size = n * _DTYPE_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def write_safetensors(path: Path | str, tensors: Mapping[str, tuple[str, Iterable[int]]],
                      metadata: Mapping[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(tensors, metadata))


def read_safetensors_header(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise StandinError(f"safetensors file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise StandinError(f"not a safetensors file (too short): {path}")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise StandinError(f"not a safetensors file (bad header length): {path}")
        try:
            return json.loads(f.read(n))
        except json.JSONDecodeError:
            raise StandinError(f"not a safetensors file (bad header): {path}")


# ---------------------------------------------------------------- HF model dirs

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


def check_hf_model_dir(model_dir: str | None, tool: str, *, need_tokenizer: bool = True,
                       need_weights: bool = True) -> dict:
    """Check a Hugging Face model directory like loading it would; return its config.json."""
    if model_dir is None:
        raise StandinError("a model directory is required")
    d = Path(model_dir)
    if not d.is_dir():
        # The real tools would try the Hub here and fail without network/credentials.
        raise StandinError(f"{model_dir} is not a local directory (stand-in has no Hub access)")
    cfg = read_json(d / "config.json", "config.json of the HF model")
    if need_weights:
        has = (d / "model.safetensors").is_file() or (d / "pytorch_model.bin").is_file()
        idx = d / "model.safetensors.index.json"
        if idx.is_file():
            index = read_json(idx, "model.safetensors.index.json")
            shards = sorted(set(index.get("weight_map", {}).values()))
            missing = [s for s in shards if not (d / s).is_file()]
            if not shards or missing:
                raise StandinError(f"{d}: shards missing from the weight map: {missing or '(empty)'}")
            has = True
        if not has:
            raise StandinError(f"{d}: no model weights (model.safetensors[.index.json] / pytorch_model.bin)")
    if need_tokenizer:
        if not (d / "tokenizer_config.json").is_file() or not any((d / f).is_file() for f in TOKENIZER_FILES):
            raise StandinError(f"{d}: no tokenizer (tokenizer_config.json + tokenizer.json/vocab.json)")
    return cfg


def hf_architecture(cfg: Mapping) -> str:
    archs = cfg.get("architectures") or []
    if not archs:
        raise StandinError("config.json has no 'architectures'")
    return archs[0]


def infer_dtype(dtype: str, hf_cfg: Mapping) -> str:
    """TensorRT-LLM's infer_dtype: 'auto' -> the HF torch_dtype, float32 -> float16."""
    if dtype != "auto":
        return dtype
    src = hf_cfg.get("torch_dtype") or hf_cfg.get("dtype") or "float16"
    return "float16" if src in ("float32", None) else src
