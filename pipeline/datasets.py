"""The embedded dataset (scikit-learn's digits as PNG files) and a quick look at an image folder.

Nothing here downloads: ``load_digits`` ships inside scikit-learn.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# Written last into a complete copy; its content says which copy it is.
MARKER_FILE = ".lenspipe-digits.json"
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))


def _read_marker(root: Path) -> Optional[dict]:
    try:
        return json.loads((root / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _digits(per_class: Optional[int]):
    """(image uint8 8x8, digit, index in load_digits) in load_digits order, first per_class per digit."""
    from sklearn.datasets import load_digits  # imported here: slow, and only needed to build

    digits = load_digits()
    # load_digits values are 0..16; 16 -> 255.
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    kept: Dict[int, int] = {}
    for index, (image, target) in enumerate(zip(images, digits.target)):
        digit = int(target)
        if per_class is not None and kept.get(digit, 0) >= per_class:
            continue
        kept[digit] = kept.get(digit, 0) + 1
        yield image, digit, index


def write_digits(root: Path, per_class: Optional[int] = None) -> Path:
    """Writes scikit-learn's digits as ``<root>/<digit>/<digit>_<index:04d>.png`` and returns ``root``.

    Greyscale 8x8 PNGs, class folders "0".."9", ``index`` = position in ``load_digits``;
    ``per_class`` keeps the first N of each digit. Idempotent: returns at once if ``root``
    already holds this copy (marker file with count and per_class). Atomic: built in a
    temporary sibling folder, then renamed into place, replacing an older complete copy.
    Raises FileExistsError if ``root`` holds anything else; ValueError if per_class < 1.
    """
    from PIL import Image

    root = Path(root)
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be >= 1 or None, got {per_class}")
    marker = _read_marker(root)
    if marker is not None and marker.get("per_class") == per_class:
        return root
    if root.exists() and marker is None and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not a lenspipe digits folder; choose another path")

    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        for digit in DIGITS_CLASSES:
            (build / digit).mkdir()
        count = 0
        for image, digit, index in _digits(per_class):
            Image.fromarray(image, mode="L").save(build / str(digit) / f"{digit}_{index:04d}.png")
            count += 1
        (build / MARKER_FILE).write_text(json.dumps({"count": count, "per_class": per_class}))
        _swap_into_place(build, root, per_class)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    logger.info("Embedded digits: %d PNG files written to %s", count, root)
    return root


def _swap_into_place(build: Path, root: Path, per_class: Optional[int]) -> None:
    """Renames ``build`` to ``root``; an older complete copy is moved aside first, then deleted."""
    old = None
    if root.exists():
        if any(root.iterdir()):
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.rename(root, old)
        else:
            root.rmdir()
    try:
        os.rename(build, root)
    except OSError:
        # Another process finished first: its copy is as good as ours if it matches.
        marker = _read_marker(root)
        if marker is None or marker.get("per_class") != per_class:
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def describe_image_folder(root: Path) -> Tuple[Dict[str, int], Tuple[str, ...]]:
    """(image files per class, empty class folders) of ``<root>/<class>/<file>``, by file name only.

    Counts what ImageExampleGen would try to decode: accepted extensions, directly inside a
    class folder; a folder with none is not a class. Raises FileNotFoundError if ``root`` is
    not a directory.
    """
    from components.image_example_gen.layout import list_image_folder

    listing = list_image_folder(str(root))
    counts = {name: 0 for name in listing.class_names}
    for _, class_name in listing.candidates:
        counts[class_name] += 1
    return counts, listing.empty_class_folders
