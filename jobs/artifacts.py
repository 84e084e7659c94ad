"""What a published artifact must be, checked the same way by the launcher (before it skips one) and by a job
(before it reads its inputs, or calls its own artifact complete).

An artifact is `<storage>/artifacts/<stage kind>/<fingerprint>`, published by renaming a finished staging
directory that holds `manifest.json`. The manifest lists every other file of the artifact with its size: a
file deleted, truncated or rewritten by hand on the shared storage is noticed at the next launch or job,
instead of failing every consumer the same way at every rerun. Sizes only: hashing multi-GB engines and
checkpoints at every launch would cost minutes; a stat per file costs milliseconds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

from launcher.contract import MANIFEST, ContractError, Manifest

SHOWN_PROBLEMS = 3  # a message names the first few; a wiped directory would otherwise list thousands


def list_files(directory: Path) -> Dict[str, int]:
    """{relative path: size} of every file under `directory` but the manifest, which is written after."""
    files = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            relative = path.relative_to(directory).as_posix()
            if relative != MANIFEST:
                files[relative] = path.stat().st_size
    return files


def expected_identity(artifact: Path) -> tuple:
    """(stage kind, fingerprint) the artifact's path promises: `.../artifacts/<kind>/<fingerprint>`."""
    artifact = Path(artifact)
    return artifact.parent.name, artifact.name


def problem(artifact, stage: Optional[str] = None, fingerprint: Optional[str] = None) -> Optional[str]:
    """What is wrong with the published artifact at `artifact`, or None when it is whole.

    `stage` and `fingerprint` default to what its path says. An artifact with no manifest at all is not
    published (a caller tells "missing" from "damaged" by the manifest's presence)."""
    artifact = Path(artifact)
    default_stage, default_fingerprint = expected_identity(artifact)
    stage, fingerprint = stage or default_stage, fingerprint or default_fingerprint
    path = artifact / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return f"it has no {MANIFEST}"
    except OSError as error:
        return f"its {MANIFEST} cannot be read ({error})"
    try:
        manifest = Manifest.from_json(json.loads(text), f"its {MANIFEST}")
    except ContractError as error:
        return str(error)
    except ValueError:
        return f"its {MANIFEST} is not valid JSON ({len(text.encode())} bytes)"
    for key, found, expected in (("stage", manifest.stage, stage), ("fingerprint", manifest.fingerprint, fingerprint)):
        if found != expected:
            return f"its {MANIFEST} says {key} {found!r}, expected {expected!r}"
    listed = manifest.files
    if listed is None:
        # Published before manifests listed their files: its identity is all there is to check, and
        # rebuilding every such artifact (GPU-hours of engines) on an upgrade would cost more than it saves.
        return None
    problems = _file_problems(artifact, listed)
    if not problems:
        return None
    more = len(problems) - SHOWN_PROBLEMS
    return "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")


def _file_problems(artifact: Path, listed: Dict[str, int]) -> List[str]:
    problems = []
    for relative, size in listed.items():
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            problems.append(f"{MANIFEST} lists {relative!r}, outside the artifact")
            continue
        try:
            actual = (artifact / relative).stat()
        except FileNotFoundError:
            problems.append(f"{relative} is missing")
            continue
        except OSError as error:
            problems.append(f"{relative} cannot be read ({error})")
            continue
        if not os.path.isfile(artifact / relative):
            problems.append(f"{relative} is not a file")
        elif actual.st_size != size:
            problems.append(f"{relative} is {actual.st_size} bytes, {MANIFEST} says {size}")
    return problems
