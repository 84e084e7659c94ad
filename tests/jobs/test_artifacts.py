"""Tests of jobs/artifacts.py: what makes a published artifact whole, as launches and jobs both check it.

The artifacts are published by jobs.run_stage itself, so the manifests are the ones stages really write."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jobs import artifacts, run_stage
from tests.jobs.test_run_stage import simple_spec

PY = sys.executable
FINGERPRINT = "0123456789abcdef"
WORK = ("import os; os.makedirs('engine', exist_ok=True); open('engine/rank0.engine', 'wb').write(b'x' * 1000); "
        "open('config.json', 'w').write('{}')")


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    from tests.jobs.test_run_stage import standin_env

    standin_env(monkeypatch)


@pytest.fixture
def artifact(tmp_path) -> Path:
    """A build_engine artifact published by a stage job: a 1000-byte engine in a subdirectory and a config."""
    path = tmp_path / "artifacts" / "build_engine" / FINGERPRINT
    spec = simple_spec(tmp_path, "build_engine", commands={"work": [PY, "-c", WORK]}, name="build_engine")
    assert spec["artifact"] == str(path)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_stage.run(str(tmp_path / "spec.json"))
    return path


def test_the_manifest_lists_every_file_with_its_size(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["files"] == {"config.json": 2, "engine/rank0.engine": 1000}
    assert manifest["size_bytes"] == 1002


def manifest_json(artifact) -> dict:
    return json.loads((artifact / "manifest.json").read_text())


def test_a_whole_artifact_has_no_problem(artifact):
    assert artifacts.problem(artifact) is None
    assert artifacts.problem(artifact, "build_engine", FINGERPRINT) is None


def test_an_emptied_manifest(artifact):
    (artifact / "manifest.json").write_text("")
    assert artifacts.problem(artifact) == "its manifest.json is not valid JSON (0 bytes)"


def test_a_manifest_of_another_artifact(artifact):
    assert artifacts.problem(artifact, fingerprint="fedcba9876543210") == \
        "its manifest.json says fingerprint '0123456789abcdef', expected 'fedcba9876543210'"
    (artifact / "manifest.json").write_text(json.dumps({**manifest_json(artifact), "stage": "quantize"}))
    assert artifacts.problem(artifact) == "its manifest.json says stage 'quantize', expected 'build_engine'"


def test_a_manifest_another_version_wrote_names_the_key(artifact):
    whole = manifest_json(artifact)
    (artifact / "manifest.json").write_text("{}")
    assert artifacts.problem(artifact).startswith("its manifest.json: missing key 'stage' (a Manifest has stage, ")
    (artifact / "manifest.json").write_text(json.dumps({**whole, "size_bytes": "1002"}))
    assert artifacts.problem(artifact) == "its manifest.json: size_bytes: expected int, got '1002'"


def test_a_deleted_file(artifact):
    (artifact / "engine" / "rank0.engine").unlink()
    assert artifacts.problem(artifact) == "engine/rank0.engine is missing"


def test_a_truncated_file(artifact):
    with open(artifact / "engine" / "rank0.engine", "r+b") as engine:
        engine.truncate(10)
    assert artifacts.problem(artifact) == "engine/rank0.engine is 10 bytes, manifest.json says 1000"


def test_every_problem_is_counted_but_only_the_first_few_named(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"].update({f"shard{i}.bin": 1 for i in range(5)})
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    assert artifacts.problem(artifact) == "shard0.bin is missing; shard1.bin is missing; shard2.bin is missing; and 2 more"


def test_a_listed_path_outside_the_artifact_is_damage(artifact):
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"]["../../../etc/passwd"] = 1
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    assert "outside the artifact" in artifacts.problem(artifact)


def test_a_manifest_from_before_files_were_listed_is_checked_by_its_identity_only(artifact):
    """Artifacts published by earlier versions of the launcher are not all rebuilt on an upgrade."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    del manifest["files"]
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    (artifact / "config.json").unlink()
    assert artifacts.problem(artifact) is None
    assert artifacts.problem(artifact, fingerprint="fedcba9876543210") is not None
