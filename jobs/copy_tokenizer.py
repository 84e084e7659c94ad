"""Copy the tokenizer files (`tokenizer*`) of an HF model directory beside a TensorRT-LLM engine."""
import shutil
import sys
from pathlib import Path


def copy_tokenizer(model_dir: str, engine_dir: str) -> list:
    files = sorted(p for p in Path(model_dir).glob("tokenizer*") if p.is_file())  # not a `tokenizer/` dir
    if not files:
        raise SystemExit(f"no tokenizer* files in {model_dir}")
    for path in files:
        shutil.copy2(path, Path(engine_dir) / path.name)
    return [p.name for p in files]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m jobs.copy_tokenizer MODEL_DIR ENGINE_DIR")
    print("copied", ", ".join(copy_tokenizer(*sys.argv[1:])))
