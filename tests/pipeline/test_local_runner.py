"""The local runner's code hash: what invalidates the cache of dotted-path code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import trainer
import transform
from lenspipe import features
from pipeline.runners.local import code_version


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """A copy of the hashed sources, with the modules pointed at it."""
    repo = Path(features.__file__).parents[1]
    for package in ("transform", "trainer"):
        shutil.copytree(repo / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "lenspipe").mkdir()
    shutil.copy(repo / "lenspipe" / "features.py", tmp_path / "lenspipe" / "features.py")
    monkeypatch.setattr(features, "__file__", str(tmp_path / "lenspipe" / "features.py"))
    monkeypatch.setattr(transform, "__file__", str(tmp_path / "transform" / "__init__.py"))
    monkeypatch.setattr(trainer, "__file__", str(tmp_path / "trainer" / "__init__.py"))
    return tmp_path


@pytest.mark.parametrize("edited", ["lenspipe/features.py", "transform/preprocessing.py", "trainer/model.py"])
def test_editing_code_the_components_run_changes_the_hash(source_copy, edited):
    before = code_version()
    assert code_version() == before  # stable when nothing changed
    path = source_copy / edited
    path.write_text(path.read_text() + "\n# edited\n")
    assert code_version() != before
