"""The scale benchmark's dataset: deterministic variants, layout, caching, atomic build."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from bench import scale_data


def test_variants_are_distinct_never_the_identity_and_fixed_by_the_image_index():
    many = scale_data.variants_of(7, 100)
    assert len(many) == 99 == len(set(many))
    assert (0, 0, 0.0) not in many
    assert all(abs(dx) <= 1 and abs(dy) <= 1 and abs(angle) <= 15 for dx, dy, angle in many)
    assert scale_data.variants_of(7, 100) == many  # same on every call
    assert scale_data.variants_of(7, 10) == many[:9]  # a smaller factor's variants are a prefix
    assert scale_data.variants_of(8, 100) != many  # each image gets its own order
    assert scale_data.variants_of(7, 1) == ()


@pytest.mark.parametrize("factor", [0, scale_data.MAX_FACTOR + 1, 2.0])
def test_a_factor_out_of_range_is_refused_with_the_range(factor):
    with pytest.raises(ValueError, match=f"from 1 to {scale_data.MAX_FACTOR}"):
        scale_data.variants_of(0, factor)


def test_augment_shifts_by_whole_pixels_and_rotates_about_the_centre():
    image = np.zeros((8, 8), np.uint8)
    image[2:5, 3] = 200
    shifted = scale_data.augment(image, 1, -1, 0.0)
    expected = np.zeros_like(image)
    expected[1:4, 4] = 200
    np.testing.assert_array_equal(shifted, expected)
    rotated = scale_data.augment(image, 0, 0, 15.0)
    assert rotated.shape == (8, 8) and rotated.dtype == np.uint8
    assert not np.array_equal(rotated, image) and rotated.sum() > 0
    np.testing.assert_array_equal(scale_data.augment(image, 0, 0, 15.0), rotated)


def test_writes_the_originals_and_their_variants_once_then_reuses_the_folder(tmp_path):
    root = scale_data.write_scaled_digits(tmp_path / "x2", 2, per_class=3)
    digits = load_digits()
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.png"))
    assert len(files) == 2 * 3 * 10 == scale_data.image_count(root)
    assert [f for f in files if f.startswith("4/")] == [
        f"4/4_{i:04d}{suffix}.png" for i in np.flatnonzero(digits.target == 4)[:3] for suffix in ("", "_v01")
    ]
    index = 14  # the second 4
    digit = int(digits.target[index])
    original = np.clip(np.rint(digits.images[index] * 255.0 / 16.0), 0, 255).astype(np.uint8)
    with Image.open(root / str(digit) / f"{digit}_{index:04d}.png") as f:
        np.testing.assert_array_equal(np.asarray(f), original)
    (variant,) = scale_data.variants_of(index, 2)
    with Image.open(root / str(digit) / f"{digit}_{index:04d}_v01.png") as f:
        assert (f.mode, f.size) == ("L", (8, 8))
        np.testing.assert_array_equal(np.asarray(f), scale_data.augment(original, *variant))

    stamp = (root / str(digit) / f"{digit}_{index:04d}_v01.png").stat().st_mtime_ns
    assert scale_data.write_scaled_digits(root, 2, per_class=3) == root
    assert (root / str(digit) / f"{digit}_{index:04d}_v01.png").stat().st_mtime_ns == stamp  # cached
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x2"]  # no temporary folder left
    assert json.loads((root / scale_data.MARKER_FILE).read_text())["generator"] == scale_data.GENERATOR_VERSION


def test_a_failed_build_leaves_nothing_behind_and_a_foreign_folder_is_kept(tmp_path, monkeypatch):
    calls = []
    original_save = Image.Image.save

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 50:
            raise OSError("disk full")
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        scale_data.write_scaled_digits(tmp_path / "x3", 3, per_class=5)
    assert list(tmp_path.iterdir()) == []

    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="photos"):
        scale_data.write_scaled_digits(mine, 2, per_class=1)
    assert (mine / "keep.txt").read_text() == "precious"
