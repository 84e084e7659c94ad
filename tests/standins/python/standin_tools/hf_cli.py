"""STAND-IN for the huggingface_hub ``hf`` CLI (``hf download`` only; plus ``hf version``/``hf env``).

Flags of ``hf download`` follow huggingface_hub v0.36.x, src/huggingface_hub/cli/download.py
(argparse; the last CLI generation before 1.0 moved to typer; transformers<5 needs
huggingface_hub<1.0). Nothing is downloaded: a tiny repository shaped like the real one
is synthesized.

* model repos: config.json (Qwen2 / Llama / DeciLM-Nemotron-NAS shaped, chosen from the
  repo id), generation_config.json, model.safetensors.index.json + one tiny shard,
  a real tiny tokenizer (copied from tests/standins/data/tiny_tokenizer), README.md.
* dataset repos: only ids containing ``OpenMathReasoning``: data/{cot,tir,genselect}-
  00000-of-00001.parquet with the columns of nvidia/OpenMathReasoning and
  ``STANDIN_HF_ROWS`` (default 64) synthetic rows each, plus a README.md whose YAML
  ``configs`` maps the splits, so ``datasets.load_dataset(dir, split="tir")`` works.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import random
import re
import sys
from pathlib import Path

from .common import StandinError, log, run_main, safetensors_bytes, simulate_work

TOOL = "hf"
VERSION = "0.36.2"
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
TOKENIZER_DIR = DATA_DIR / "tiny_tokenizer"
STANDIN_NOTE = ("STAND-IN repository synthesized by tests/standins/bin/hf; tiny placeholder "
                "weights, not the real model or data.")


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "hf", usage="hf <command> [<args>]",
        description="[STAND-IN] huggingface_hub `hf` CLI: synthesizes tiny repos, no network.")
    sub = parser.add_subparsers(help="hf command helpers")

    d = sub.add_parser("download", help="Download files from the Hub ([STAND-IN] synthesizes them)",
                       description="[STAND-IN] hf download: synthesizes a tiny repository shaped like "
                       "the real one (no network). See tests/standins/README.md.")
    d.add_argument("repo_id", type=str, help="ID of the repo to download from (e.g. `username/repo-name`).")
    d.add_argument("filenames", type=str, nargs="*", help="Files to download (e.g. `config.json`).")
    d.add_argument("--repo-type", choices=["model", "dataset", "space"], default="model",
                   help="Type of repo to download from (defaults to 'model').")
    d.add_argument("--revision", type=str, help="An optional Git revision id.")
    d.add_argument("--include", nargs="*", type=str, help="Glob patterns to match files to download.")
    d.add_argument("--exclude", nargs="*", type=str, help="Glob patterns to exclude from files to download.")
    d.add_argument("--cache-dir", type=str, help="Path to the directory where to save the downloaded files.")
    d.add_argument("--local-dir", type=str, help="If set, the downloaded file will be placed under this directory.")
    d.add_argument("--force-download", action="store_true", help="Download even if already cached.")
    d.add_argument("--token", type=str, help="A User Access Token (ignored by the stand-in).")
    d.add_argument("--quiet", action="store_true", help="Only print the path to the downloaded files.")
    d.add_argument("--max-workers", type=int, default=8, help="Maximum number of workers (ignored).")
    d.set_defaults(func=cmd_download)

    v = sub.add_parser("version", help="Print information about the hf version.")
    v.set_defaults(func=lambda a: print(f"huggingface_hub version: {VERSION} (stand-in)") or 0)
    e = sub.add_parser("env", help="Print information about the environment.")
    e.set_defaults(func=lambda a: print("- huggingface_hub version: " + VERSION + " (stand-in)\n"
                                        "- HF_HOME: " + _hf_home()) or 0)
    return parser


# ------------------------------------------------------------------ model presets


def _qwen2(hidden, layers, heads, kv, inter, vocab, max_pos=131072, theta=1000000.0):
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": inter, "max_position_embeddings": max_pos,
        "max_window_layers": layers, "model_type": "qwen2", "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": theta, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.51.3",
        "use_cache": True, "use_sliding_window": False, "vocab_size": vocab,
    }


def _llama(hidden, layers, heads, kv, inter, vocab, max_pos, dtype, theta=10000.0, rope_scaling=None,
           bos=1, eos=2):
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": inter, "max_position_embeddings": max_pos,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_scaling": rope_scaling, "rope_theta": theta,
        "tie_word_embeddings": False, "torch_dtype": dtype, "transformers_version": "4.44.0",
        "use_cache": True, "vocab_size": vocab,
    }


def _decilm_51b():
    """Nemotron-NAS (DeciLM) layout: per-layer block_configs; some attention/FFN blocks are
    no-ops or single linear layers. KV heads are per layer (num_attention_heads //
    n_heads_in_group): there is no top-level num_key_value_heads, as in the real config."""
    blocks = []
    for i in range(80):
        if i >= 40 and i % 4 == 3:
            attn = {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False}
        elif i >= 60 and i % 7 == 0:
            attn = {"n_heads_in_group": None, "no_op": False, "replace_with_linear": True}
        else:
            attn = {"n_heads_in_group": 8, "no_op": False, "replace_with_linear": False}
        mult = [5.25, 2.625, 1.3125, 3.28125][i % 4] if i % 9 else 5.25
        ffn = {"ffn_mult": mult, "no_op": False, "replace_with_linear": False}
        blocks.append({"attention": attn, "ffn": ffn})
    return {
        "architectures": ["DeciLMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_decilm.DeciLMConfig",
                     "AutoModelForCausalLM": "modeling_decilm.DeciLMForCausalLM"},
        "block_configs": blocks, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "hidden_act": "silu", "hidden_size": 8192, "initializer_range": 0.02,
        "intermediate_size": None, "max_position_embeddings": 131072, "model_type": "nemotron-nas",
        "num_attention_heads": 64, "num_hidden_layers": 80, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.44.2", "use_cache": True, "vocab_size": 128256,
    }


_QWEN_SIZES = [  # (pattern in id, hidden, layers, heads, kv, intermediate, vocab)
    ("1.5b", 1536, 28, 12, 2, 8960, 151936),
    ("7b", 3584, 28, 28, 4, 18944, 152064),
    ("32b", 5120, 64, 40, 8, 27648, 152064),
    ("14b", 5120, 48, 40, 8, 13824, 152064),
]


def model_config_for(repo_id: str) -> dict:
    rid = repo_id.lower()
    if any(k in rid for k in ("nemotron-51b", "nemotron-nas", "decilm", "nemotron-49b", "nemotron-253b")):
        return _decilm_51b()
    if "qwen" in rid or "openmath" in rid:
        for pat, *dims in _QWEN_SIZES:
            if re.search(r"(^|[^0-9.])" + re.escape(pat), rid):
                return _qwen2(*dims)
        return _qwen2(5120, 48, 40, 8, 13824, 152064)
    if "llama" in rid:
        if "llama-2" in rid:
            if "70b" in rid:
                return _llama(8192, 80, 64, 8, 28672, 32000, 4096, "float16")
            if "13b" in rid:
                return _llama(5120, 40, 40, 40, 13824, 32000, 4096, "float16")
            return _llama(4096, 32, 32, 32, 11008, 32000, 4096, "float16")
        rs = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
              "original_max_position_embeddings": 8192, "rope_type": "llama3"}
        if "70b" in rid:
            return _llama(8192, 80, 64, 8, 28672, 128256, 131072, "bfloat16", 500000.0, rs, 128000, 128009)
        return _llama(4096, 32, 32, 8, 14336, 128256, 131072, "bfloat16", 500000.0, rs, 128000, 128009)
    # Unknown family: a small Qwen2-shaped model.
    return _qwen2(896, 24, 14, 2, 4864, 151936, 32768)


_DECI_CONFIG_PY = '''"""STAND-IN configuration_decilm.py (written by tests/standins/bin/hf).

Minimal DeciLM (Nemotron-NAS) config class so that AutoConfig with
trust_remote_code=True can load the stand-in config.json. Not the real file.
"""
from transformers.models.llama.configuration_llama import LlamaConfig


class DeciLMConfig(LlamaConfig):
    model_type = "nemotron-nas"

    def __init__(self, block_configs=None, **kwargs):
        self.block_configs = block_configs
        super().__init__(**kwargs)
'''

_DECI_MODELING_PY = '''"""STAND-IN modeling_decilm.py (written by tests/standins/bin/hf): no model code."""


class DeciLMForCausalLM:  # pragma: no cover - stand-in placeholder
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("stand-in: DeciLM weights are placeholders")
'''


def model_files(repo_id: str) -> dict[str, bytes]:
    cfg = model_config_for(repo_id)
    cfg = dict(cfg, standin=True, standin_note=STANDIN_NOTE, _name_or_path=repo_id)
    st_dtype = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[cfg["torch_dtype"]]
    tensors = {
        "lm_head.weight": (st_dtype, [16, 8]),
        "model.embed_tokens.weight": (st_dtype, [16, 8]),
        "model.layers.0.input_layernorm.weight": (st_dtype, [8]),
        "model.layers.0.self_attn.q_proj.weight": (st_dtype, [8, 8]),
        "model.norm.weight": (st_dtype, [8]),
    }
    shard_name = "model-00001-of-00001.safetensors"
    shard = safetensors_bytes(tensors)
    files: dict[str, bytes] = {
        "config.json": _dumps(cfg),
        "generation_config.json": _dumps({
            "bos_token_id": cfg.get("bos_token_id"), "eos_token_id": cfg.get("eos_token_id"),
            "do_sample": True, "temperature": 0.7, "top_p": 0.95, "standin": True,
            "transformers_version": cfg.get("transformers_version")}),
        "model.safetensors.index.json": _dumps({
            "metadata": {"total_size": len(shard), "standin": True},
            "weight_map": {name: shard_name for name in tensors}}),
        shard_name: shard,
        "README.md": f"---\nlicense: other\n---\n# {repo_id} (STAND-IN)\n\n{STANDIN_NOTE}\n".encode(),
    }
    if cfg["architectures"][0] == "DeciLMForCausalLM":
        files["configuration_decilm.py"] = _DECI_CONFIG_PY.encode()
        files["modeling_decilm.py"] = _DECI_MODELING_PY.encode()
    for p in sorted(TOKENIZER_DIR.iterdir()):
        if p.is_file():
            files[p.name] = p.read_bytes()
    return files


# ------------------------------------------------------------------ dataset


OMR_COLUMNS = ["expected_answer", "problem_type", "problem_source", "generation_model",
               "pass_rate_72b_tir", "problem", "generated_solution", "inference_mode",
               "used_in_kaggle"]
OMR_SPLITS = ("cot", "tir", "genselect")


def _omr_rows(split: str, n: int, seed: int) -> dict[str, list]:
    rng = random.Random(f"{split}-{seed}")
    cols: dict[str, list] = {c: [] for c in OMR_COLUMNS}
    for i in range(n):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        ans = a * b + c
        problem = f"Compute the value of ${a} \\cdot {b} + {c}$."
        if split == "tir":
            sol = (f"<think>\nI need {a} times {b} plus {c}. Let me use Python to be sure.\n"
                   f"<tool_call>\n```python\nprint({a} * {b} + {c})\n```\n</tool_call>\n"
                   f"```output\n{ans}\n```\nThe code gives {ans}.\n</think>\n"
                   f"We have ${a} \\cdot {b} = {a * b}$, so the value is $\\boxed{{{ans}}}$.")
        elif split == "cot":
            sol = (f"<think>\nFirst {a} times {b} is {a * b}. Adding {c} gives {ans}.\n</think>\n"
                   f"The value is $\\boxed{{{ans}}}$.")
        else:  # genselect
            problem = (f"You will be given a problem and 2 solutions. Pick the best one.\n\n"
                       f"Problem: {problem}\n\nSolution 0: ... $\\boxed{{{ans}}}$\n\n"
                       f"Solution 1: ... $\\boxed{{{ans + 1}}}$")
            sol = "<think>\nSolution 0 is correct.\n</think>\nJudgment: 0"
        cols["expected_answer"].append(str(ans))
        cols["problem_type"].append("has_answer_extracted")
        cols["problem_source"].append(rng.choice(["aops_c4_high_school_math", "aops_c6_high_school_olympiads"]))
        cols["generation_model"].append(rng.choice(["DeepSeek-R1", "QwQ-32B"]))
        cols["pass_rate_72b_tir"].append(rng.choice(["0.5", "0.25", "n/a"]))
        cols["problem"].append(problem)
        cols["generated_solution"].append(sol)
        cols["inference_mode"].append(split)
        cols["used_in_kaggle"].append(bool(i % 2))
    return cols


CNN_SPLITS = ("train", "validation", "test")
CNN_ROWS = 128  # per split: the seed-004 sample (98) fits in one split


def _cnn_rows(split: str, n: int) -> dict[str, list]:
    """abisee/cnn_dailymail's columns (article, highlights, id): synthetic news of 60-700 words, a 3-line summary."""
    rng = random.Random(f"cnn-{split}")
    cols: dict[str, list] = {"article": [], "highlights": [], "id": []}
    for i in range(n):
        town, count = rng.choice(["Lyon", "Austin", "Perth", "Osaka"]), rng.randint(2, 90)
        body = " ".join(f"Officials in {town} said {count + j} people attended the event on day {j}."
                        for j in range(rng.randint(5, 60)))
        cols["article"].append(f"{town.upper()} (CNN) -- {body}")
        cols["highlights"].append(f"{count} people attended in {town} .\nOfficials counted them for days .\n"
                                  f"The event ran {rng.randint(2, 9)} days .")
        cols["id"].append(f"{rng.getrandbits(160):040x}")
    return cols


def _cnn_dailymail_files(repo_id: str) -> dict[str, bytes]:
    """Config 3.0.0 only, as the hub repo lays it out: 3.0.0/{split}-0000i-of-0000N.parquet, a README mapping them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files: dict[str, bytes] = {}
    for split in CNN_SPLITS:
        buf = io.BytesIO()
        pq.write_table(pa.table(_cnn_rows(split, CNN_ROWS)), buf)
        files[f"3.0.0/{split}-00000-of-00001.parquet"] = buf.getvalue()
    card = ["---", "license: apache-2.0", "configs:", "- config_name: 3.0.0", "  data_files:"]
    for split in CNN_SPLITS:
        card += [f"  - split: {split}", f"    path: 3.0.0/{split}-*"]
    card += ["---", f"# {repo_id} (STAND-IN)", "", STANDIN_NOTE,
             f"Config 3.0.0, splits {', '.join(CNN_SPLITS)}; {CNN_ROWS} synthetic rows each; columns article, "
             "highlights, id.", ""]
    files["README.md"] = "\n".join(card).encode()
    return files


def dataset_files(repo_id: str) -> dict[str, bytes]:
    if "cnn_dailymail" in repo_id.lower():
        return _cnn_dailymail_files(repo_id)
    if "openmathreasoning" not in repo_id.lower():
        raise StandinError(
            f"RepositoryNotFoundError: 404 Client Error. Repository Not Found for url: "
            f"https://huggingface.co/api/datasets/{repo_id} (stand-in knows only *OpenMathReasoning* and *cnn_dailymail*)")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StandinError("the hf stand-in needs pyarrow to write parquet files")
    try:
        n = int(os.environ.get("STANDIN_HF_ROWS", "64"))
    except ValueError:
        raise StandinError("STANDIN_HF_ROWS must be an integer")
    files: dict[str, bytes] = {}
    for split in OMR_SPLITS:
        cols = _omr_rows(split, n, 0)
        schema = pa.schema([(c, pa.bool_() if c == "used_in_kaggle" else pa.string()) for c in OMR_COLUMNS])
        table = pa.table(cols, schema=schema)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        files[f"data/{split}-00000-of-00001.parquet"] = buf.getvalue()
    card = ["---", "license: cc-by-4.0", "configs:", "- config_name: default", "  data_files:"]
    for split in OMR_SPLITS:
        card += [f"  - split: {split}", f"    path: data/{split}-*"]
    card += ["---", f"# {repo_id} (STAND-IN)", "", STANDIN_NOTE,
             f"Splits {', '.join(OMR_SPLITS)}; {n} synthetic rows each; columns: {', '.join(OMR_COLUMNS)}.", ""]
    files["README.md"] = "\n".join(card).encode()
    return files


# ------------------------------------------------------------------ download


def _dumps(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _hf_home() -> str:
    return os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")


_REPO_ID_RE = re.compile(r"^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$")


def _validate_repo_id(repo_id: str) -> None:
    if not _REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise StandinError(f"HFValidationError: Repo id must use alphanumeric chars or '-', '_', '.', "
                           f"'--' and '..' are forbidden, '-' and '.' cannot start or end the name, "
                           f"max length is 96: '{repo_id}'.")


def _select(files: dict[str, bytes], filenames, include, exclude) -> dict[str, bytes]:
    if filenames:
        missing = [f for f in filenames if f not in files]
        if missing:
            raise StandinError(f"EntryNotFoundError: 404 Client Error. Entry Not Found: {missing[0]}")
        return {f: files[f] for f in filenames}
    out = dict(files)
    if include:
        out = {k: v for k, v in out.items() if any(fnmatch.fnmatch(k, p) for p in include)}
    if exclude:
        out = {k: v for k, v in out.items() if not any(fnmatch.fnmatch(k, p) for p in exclude)}
    return out


def cmd_download(args) -> int:
    _validate_repo_id(args.repo_id)
    if args.repo_type == "space":
        raise StandinError("the stand-in does not synthesize Space repositories")
    if args.filenames and (args.include or args.exclude):
        print("UserWarning: Ignoring `--include`/`--exclude` since filenames have being explicitly set.",
              file=sys.stderr)
    files = model_files(args.repo_id) if args.repo_type == "model" else dataset_files(args.repo_id)
    files = _select(files, args.filenames, args.include, args.exclude)

    simulate_work(TOOL)

    if args.local_dir:
        root = Path(args.local_dir)
        meta = root / ".cache" / "huggingface"
        meta.mkdir(parents=True, exist_ok=True)
        (meta / ".gitignore").write_text("*\n")
    else:
        cache = Path(args.cache_dir) if args.cache_dir else Path(
            os.environ.get("HF_HUB_CACHE") or os.path.join(_hf_home(), "hub"))
        folder = cache / ("--".join([f"{args.repo_type}s", *args.repo_id.split("/")]))
        revision = args.revision or "main"
        if re.fullmatch(r"[0-9a-f]{40}", revision):
            commit = revision
        else:
            commit = hashlib.sha1(f"standin:{args.repo_type}:{args.repo_id}:{revision}".encode()).hexdigest()
            (folder / "refs").mkdir(parents=True, exist_ok=True)
            (folder / "refs" / revision).write_text(commit)
        root = folder / "snapshots" / commit
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if args.force_download or not p.exists() or p.read_bytes() != data:
            p.write_bytes(data)
    if not args.quiet:
        log(TOOL, f"synthesized {len(files)} file(s) of {args.repo_type} {args.repo_id} into {root}")
    if len(args.filenames) == 1:
        print(root / args.filenames[0])
    else:
        print(root)
    return 0


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        sys.exit(1)
    run_main(TOOL, lambda: args.func(args))
