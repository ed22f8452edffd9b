"""The embedded digits writer: layout, pixel values, idempotence, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from pipeline import datasets


def test_writes_every_digit_as_a_greyscale_png_in_its_class_folder(tmp_path):
    root = datasets.write_digits(tmp_path / "digits")
    digits = load_digits()
    files = sorted(root.glob("*/*.png"))
    assert len(files) == len(digits.images) == 1797
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    counts, _ = datasets.describe_image_folder(root)
    assert counts == {str(d): int(np.sum(digits.target == d)) for d in range(10)}
    for index in (0, 1, 1000, 1796):
        digit = int(digits.target[index])
        with Image.open(root / str(digit) / f"{digit}_{index:04d}.png") as image:
            assert (image.mode, image.size, image.format) == ("L", (8, 8), "PNG")
            pixels = np.asarray(image)
        expected = np.rint(digits.images[index] * 255.0 / 16.0).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)


def test_per_class_keeps_the_first_n_of_each_digit(tmp_path):
    root = datasets.write_digits(tmp_path / "digits", per_class=3)
    target = load_digits().target
    for digit in range(10):
        first_three = [int(i) for i in np.flatnonzero(target == digit)[:3]]
        assert sorted(p.name for p in (root / str(digit)).iterdir()) == [f"{digit}_{i:04d}.png" for i in first_three]


def test_is_idempotent_and_rebuilds_for_another_subset(tmp_path):
    root = datasets.write_digits(tmp_path / "digits", per_class=2)
    a_file = root / "0" / "0_0000.png"
    stamp = a_file.stat().st_mtime_ns
    assert datasets.write_digits(root, per_class=2) == root
    assert a_file.stat().st_mtime_ns == stamp  # not rewritten

    datasets.write_digits(root, per_class=4)
    assert sum(datasets.describe_image_folder(root)[0].values()) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]  # no temporary or old copies left


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return original_save(self, *args, **kwargs)

    original_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        datasets.write_digits(tmp_path / "digits", per_class=1)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    root = tmp_path / "photos"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "tom.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="photos"):
        datasets.write_digits(root)
    assert (root / "cats" / "tom.png").read_bytes() == b"precious"


def test_describe_image_folder_counts_only_what_example_gen_would_decode(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "empty").mkdir()
    for name in ("x.png", "y.JPG", "notes.txt"):
        (tmp_path / "a" / name).write_bytes(b"")
    (tmp_path / "b" / "z.bmp").write_bytes(b"")
    (tmp_path / "loose.png").write_bytes(b"")
    assert datasets.describe_image_folder(tmp_path) == ({"a": 2, "b": 1}, ("empty",))
    with pytest.raises(FileNotFoundError, match="missing"):
        datasets.describe_image_folder(tmp_path / "missing")
