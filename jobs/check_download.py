"""Check that a downloaded Hugging Face repository holds what the later stages read, before it is published.

    python -m jobs.check_download model DIR
    python -m jobs.check_download dataset DIR --split tir [--split cot ...]

A model directory needs `config.json` (valid JSON), a tokenizer (`tokenizer_config.json` plus
`tokenizer.json`, `tokenizer.model` or `vocab.json` + `merges.txt`) and weights: `*.safetensors` or `*.bin`;
sharded weights need their index (`model.safetensors.index.json` / `pytorch_model.bin.index.json`) and every
shard it names. A dataset directory needs the data files of each split: those its README's `configs` map to
the split, else the `datasets` naming conventions (`data/tir-00000-of-00004.parquet`, `tir.parquet`, ...);
a numbered shard set `-0000i-of-0000N` must be complete. In both, files `hf download` has not finished
(`.cache/huggingface/download/*.incomplete`), empty files, and safetensors/parquet files shorter than their
own header says are errors.

Exit 0 when complete; otherwise exit 1 with one line per problem, naming what is missing.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pyarrow
import pyarrow.parquet
import safetensors

TOKENIZER_ALTERNATIVES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"))
WEIGHT_INDEXES = {".safetensors": "model.safetensors.index.json", ".bin": "pytorch_model.bin.index.json"}
SHARD = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<suffix>\..+)$")
DATA_EXTENSIONS = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv", ".txt", ".jsonl.gz", ".json.gz")


def _files(root: Path) -> List[Path]:
    """Every file of the download, relative to `root`, without hf's own `.cache` bookkeeping."""
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and ".cache" not in p.relative_to(root).parts)


def _unfinished(root: Path) -> List[str]:
    """Problems for the partial files `hf download --local-dir` keeps while a file downloads (their names are
    hashed: `.cache/huggingface/download/<hash>.<etag>.incomplete`, renamed into place once complete)."""
    pending = root / ".cache" / "huggingface" / "download"
    return [f"{p.relative_to(root)}: a download that did not finish" for p in sorted(pending.rglob("*.incomplete"))]


def _safetensors_problem(path: Path, label: str) -> Optional[str]:
    """safetensors checks the header and that the tensors' offsets end where the file does (it reads no tensor)."""
    try:
        with safetensors.safe_open(str(path), framework="numpy"):
            pass
    except safetensors.SafetensorError as error:
        return f"{label}: truncated or not a safetensors file ({error})"
    return None


def _parquet_problem(path: Path, label: str) -> Optional[str]:
    """pyarrow reads the footer: its magic bytes, its length and the file metadata it points to."""
    try:
        pyarrow.parquet.read_metadata(path)
    except pyarrow.ArrowException as error:
        return f"{label}: not a complete parquet file ({error})"
    return None


def _file_problems(root: Path, names: Sequence[Path]) -> List[str]:
    problems = []
    for name in names:
        path = root / name
        if path.stat().st_size == 0:
            problems.append(f"{name}: empty file")
        elif path.suffix in CHECKERS:
            problems.append(CHECKERS[path.suffix](path, str(name)))
    return [p for p in problems if p]


CHECKERS = {".safetensors": _safetensors_problem, ".parquet": _parquet_problem}


def _missing_shards(names: Sequence[Path]) -> List[str]:
    """Numbered shard sets (`x-00001-of-00003.ext`, 1-based for models, 0-based for datasets) must be whole."""
    sets: Dict[tuple, set] = {}
    for name in names:
        match = SHARD.match(name.name)
        if match:
            key = (str(name.parent), match["prefix"], int(match["total"]), match["suffix"])
            sets.setdefault(key, set()).add(int(match["index"]))
    missing = []
    for (parent, prefix, total, suffix), found in sorted(sets.items()):
        expected = set(range(1, total + 1)) if 0 not in found else set(range(total))
        for i in sorted(expected - found):
            shard = f"{prefix}-{i:05d}-of-{total:05d}{suffix}"
            missing.append(shard if parent == "." else f"{parent}/{shard}")
    return missing


def check_model(model_dir: str) -> List[str]:
    """What the model directory lacks for quantization, drafter training and serving; empty when complete."""
    root = Path(model_dir)
    if not root.is_dir():
        return [f"{model_dir}: no such directory"]
    problems = _unfinished(root)
    names = _files(root)
    top = {str(n) for n in names if str(n.parent) == "."}

    if "config.json" not in top:
        problems.append("config.json: missing")
    else:
        try:
            json.loads((root / "config.json").read_text())
        except (ValueError, UnicodeDecodeError) as error:
            problems.append(f"config.json: not valid JSON ({error})")

    if "tokenizer_config.json" not in top:
        problems.append("tokenizer_config.json: missing")
    if not any(all(f in top for f in files) for files in TOKENIZER_ALTERNATIVES):
        problems.append("tokenizer: missing (" + " or ".join(" + ".join(files) for files in TOKENIZER_ALTERNATIVES)
                        + ")")

    weights = {suffix: sorted(n for n in top if n.endswith(suffix)) for suffix in WEIGHT_INDEXES}
    indexes = {suffix: index for suffix, index in WEIGHT_INDEXES.items() if index in top}
    if not any(weights.values()) and not indexes:
        problems.append("weights: missing (*.safetensors or *.bin)")
    for suffix, index in indexes.items():
        try:
            shards = sorted(set(json.loads((root / index).read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError, UnicodeDecodeError) as error:
            problems.append(f"{index}: unreadable ({type(error).__name__}: {error})")
            continue
        if not shards:
            problems.append(f"{index}: its weight_map names no shard")
        problems += [f"{shard}: missing (named by {index})" for shard in shards if shard not in top]
    for suffix, files in weights.items():
        if suffix not in indexes and any(SHARD.match(f) for f in files):
            problems.append(f"{WEIGHT_INDEXES[suffix]}: missing (the weights are sharded: {', '.join(files)})")
    problems += _file_problems(root, [n for n in names if str(n) in top])
    return problems


def _readme_split_patterns(root: Path) -> Dict[str, List[str]]:
    """{split: [glob, ...]} from the dataset card's YAML `configs` (the default config, or the first)."""
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return {}
    try:
        import yaml

        card = yaml.safe_load(match.group(1)) or {}
    except Exception:  # a card we cannot parse: fall back to the naming conventions
        return {}
    configs = card.get("configs") if isinstance(card, dict) else None
    if not isinstance(configs, list) or not configs:
        return {}
    config = next((c for c in configs if isinstance(c, dict) and c.get("config_name") == "default"), configs[0])
    data_files = config.get("data_files") if isinstance(config, dict) else None
    patterns: Dict[str, List[str]] = {}
    if isinstance(data_files, str):
        data_files = [{"split": "train", "path": data_files}]
    for entry in data_files or []:
        if isinstance(entry, dict) and "split" in entry:
            paths = entry.get("path", [])
            patterns[str(entry["split"])] = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    return patterns


def _convention_patterns(split: str) -> List[str]:
    """The file names `datasets` takes for a split when the card maps none (datasets.data_files)."""
    return [f"{split}.*", f"{split}-*", f"*-{split}.*", f"*-{split}-*", f"data/{split}.*", f"data/{split}-*",
            f"data/*-{split}.*", f"data/*-{split}-*", f"{split}/**", f"data/{split}/**", f"*/{split}/**",
            f"**/{split}-*"]


def _glob_match(name: str, pattern: str) -> bool:
    """Hub-style glob: `**` crosses directories, `*` and `?` do not."""
    regex, i, pattern = "", 0, pattern.removeprefix("./")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.fullmatch(regex, name) is not None


def check_dataset(dataset_dir: str, splits: Sequence[str]) -> List[str]:
    """What the dataset directory lacks for the given splits (or any data at all); empty when complete."""
    root = Path(dataset_dir)
    if not root.is_dir():
        return [f"{dataset_dir}: no such directory"]
    problems = _unfinished(root)
    names = [n for n in _files(root) if any(str(n).endswith(ext) for ext in DATA_EXTENSIONS)
             and n.name != "README.md"]
    card = _readme_split_patterns(root)
    wanted = list(splits) or [None]
    for split in wanted:
        if split is None:
            found = names
            where = "any split"
        else:
            if card and split not in card:
                problems.append(f"split {split!r}: not among the splits of README.md's configs "
                                f"({', '.join(sorted(card))})")
                continue
            patterns = card.get(split) or _convention_patterns(split)
            found = [n for n in names if any(_glob_match(n.as_posix(), p) for p in patterns)]
            where = f"split {split!r} ({', '.join(patterns)})"
        if not found:
            known = sorted(card) if card else sorted({n.name.split("-")[0].split(".")[0] for n in names})
            problems.append(f"data files of {where}: missing" + (f"; splits found: {', '.join(known)}" if known else
                                                                  "; no data files at all"))
            continue
        problems += [f"{name}: missing (its shard set is incomplete)" for name in _missing_shards(found)]
        problems += _file_problems(root, found)
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.check_download", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo_type", choices=("model", "dataset"))
    parser.add_argument("dir")
    parser.add_argument("--split", action="append", default=[], help="a dataset split the later stages read")
    args = parser.parse_args(argv)
    if args.repo_type == "model" and args.split:
        parser.error("--split is for datasets")
    problems = check_model(args.dir) if args.repo_type == "model" else check_dataset(args.dir, args.split)
    if problems:
        print(f"incomplete {args.repo_type} download in {args.dir}:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{args.repo_type} download complete: {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
