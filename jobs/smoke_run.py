"""The smoke run after every engine build: the engine answers the seed's prompt with TensorRT-LLM's examples/run.py.

Rank 0 of run.py prints, per prompt, `Input [Text 0]: "<prompt>"` and per beam `Output [Text 0 Beam 0]: "<text>"`
(examples/run.py print_output at 1.1.0rc0). The answer goes into the manifest, where the report puts the answers
of a configuration's engines side by side (seed 004: FP16 and FP8 must answer alike).
"""
from __future__ import annotations

import re
from pathlib import Path

from jobs.process import StageFailed, run_command

LOG = "run.log"
# The first beam of the first prompt; its text may span lines and ends at a `"` that ends a line.
OUTPUT = re.compile(r'^Output \[Text 0 Beam 0\]: "(.*?)"$', re.MULTILINE | re.DOTALL)


def output_text(log_text: str) -> str:
    found = OUTPUT.search(log_text)
    if found is None:
        raise StageFailed('run.py printed no `Output [Text 0 Beam 0]: "..."` line: the engine gave no answer')
    return found.group(1)


def run(spec, staging: Path) -> dict:
    """Run the stage's one command; the manifest records the prompt, the answer, the engine and the MPI ranks."""
    log_file = staging / LOG
    run_command(spec.commands["smoke"], log_file, cwd=staging)
    (engine_stage, engine_artifact), = spec.inputs.items()
    return {"prompt": spec.config["prompt"], "output_text": output_text(log_file.read_text(errors="replace")),
            "engine": {"stage": engine_stage, "artifact": engine_artifact}, "world_size": spec.config["world_size"]}
