"""ImageExampleGen's 'unlabeled' input: every file below the root is a candidate or a listed rejection."""

from __future__ import annotations

import pytest

from components.image_example_gen.component import INFERENCE_SPLIT, make_inference_output_config, make_input_config
from components.image_example_gen.executor import UNLABELED_PATTERN, list_unlabeled_folder


def test_lists_images_at_any_depth_and_rejects_other_files_with_a_reason(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("top.png", "a/mid.JPG", "a/b/deep.gif"):
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    candidates, rejected = list_unlabeled_folder(str(tmp_path))
    assert sorted(candidates) == [("a/b/deep.gif", ""), ("a/mid.JPG", ""), ("top.png", "")]
    assert rejected == [("a/notes.txt", "unsupported extension .txt (accepted: .bmp .gif .jpeg .jpg .png)")]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope: image folder not found"):
        list_unlabeled_folder(str(tmp_path / "nope"))


def test_configs_give_one_inference_split():
    assert [s.pattern for s in make_input_config(None, "unlabeled").splits] == [UNLABELED_PATTERN]
    assert [s.name for s in make_inference_output_config().split_config.splits] == [INFERENCE_SPLIT]
