"""The cache key covers exactly the code each step runs (pipeline/code_hash.py)."""

from __future__ import annotations

import shutil

import pytest

from lenspipe.config import load_config
from pipeline import code_hash
from pipeline.pipeline import create_pipeline


@pytest.fixture
def repo_copy(tmp_path):
    for source in {f for sources in code_hash.SOURCES.values() for f in sources}:
        if source.endswith(".py"):
            (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(code_hash.REPO_ROOT / source, tmp_path / source)
        else:
            shutil.copytree(code_hash.REPO_ROOT / source, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    return tmp_path


@pytest.mark.parametrize(
    "edited, changed",
    [
        ("trainer/model.py", {"trainer"}),
        ("trainer/tflite_export.py", {"trainer", "tflite_check"}),
        ("transform/preprocessing.py", {"transform"}),
        ("components/image_example_gen/decoding.py", {"example_gen"}),
        ("components/data_gate/classes.py", {"data_gate"}),
        ("components/versioned_pusher/executor.py", {"pusher"}),
        ("components/artifact_json.py", {"classical_baseline", "serving_check"}),
        ("serving/warmup.py", {"serving_check"}),  # the check serves the candidate with serving/
        ("trainer/warmup.py", {"trainer"}),
        ("components/explainer/gradcam.py", {"explainer"}),
        ("lenspipe/features.py", set(code_hash.SOURCES)),  # bucket bounds, feature keys: every step
    ],
)
def test_an_edit_changes_the_hash_of_exactly_the_steps_that_run_it(repo_copy, edited, changed):
    before = code_hash.code_versions(repo_copy)
    assert code_hash.code_versions(repo_copy) == before  # stable while nothing changes
    path = repo_copy / edited
    path.write_text(path.read_text() + "\n# edited\n")
    after = code_hash.code_versions(repo_copy)
    assert {step for step in before if before[step] != after[step]} == changed


def test_each_hash_reaches_its_components_properties():
    versions = {step: f"hash-of-{step}" for step in code_hash.SOURCES}
    p = create_pipeline(load_config(), data_root="/d", pipeline_root="/r", serving_model_dir="/s", code_versions=versions)
    props = {c.id: c.exec_properties for c in p.components}
    assert props["ImageExampleGen"]["code_version"] == "hash-of-example_gen"
    assert props["DataGate"]["code_version"] == "hash-of-data_gate"
    assert '"hash-of-transform"' in props["Transform"]["custom_config"]
    for node in ("Tuner", "Trainer"):
        assert '"hash-of-trainer"' in props[node]["custom_config"]
        assert "hash-of-transform" not in props[node]["custom_config"]
    assert "hash-of-pusher" in props["VersionedPusher"]["custom_config"]
    assert props["ClassicalBaseline"]["code_version"] == "hash-of-classical_baseline"
    assert props["Evaluator"]["code_version"] == "hash-of-evaluator"
    assert props["TFLiteCheck"]["code_version"] == "hash-of-tflite_check"
    assert props["Explainer"]["code_version"] == "hash-of-explainer"
