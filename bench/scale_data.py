"""The embedded digits at N times their size, for the scale benchmark (bench/scale_bench.py).

Every original image is kept (``<digit>/<digit>_<index:04d>.png``, as pipeline/datasets.py
writes it) and N-1 variants of it are added (``<digit>/<digit>_<index:04d>_v<NN>.png``): the
same image rotated by a small angle and shifted by at most one pixel. Which variants an
image gets is fixed by its index, so the folder is the same byte for byte on every build.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

MARKER_FILE = ".lenspipe-scaled-digits.json"
GENERATOR_VERSION = 1  # bump when the variants change: a cached folder of another version is rebuilt
_SEED = 20261202
_SHIFTS = (-1, 0, 1)  # pixels, each of x and y
_ANGLES = tuple(float(a) for a in np.arange(-15.0, 15.01, 2.5))  # degrees, 13 values
# Every (dx, dy, angle) but the identity: 116 variants, so a factor up to 117.
VARIANTS: Tuple[Tuple[int, int, float], ...] = tuple(
    (dx, dy, angle) for dx in _SHIFTS for dy in _SHIFTS for angle in _ANGLES if (dx, dy, angle) != (0, 0, 0.0)
)
MAX_FACTOR = len(VARIANTS) + 1


def _check_factor(factor: int) -> None:
    if not isinstance(factor, int) or not 1 <= factor <= MAX_FACTOR:
        raise ValueError(f"factor must be an int from 1 to {MAX_FACTOR} (copies of each digit), got {factor!r}")


def variants_of(index: int, factor: int) -> Tuple[Tuple[int, int, float], ...]:
    """The (dx, dy, angle) of the ``factor - 1`` variants of image ``index``: distinct, none the identity.

    A seeded permutation of VARIANTS keyed by ``index``: the same on every machine and run,
    and the variants of a smaller factor are the first ones of a larger factor's.
    """
    _check_factor(factor)
    order = np.random.default_rng([_SEED, index]).permutation(len(VARIANTS))
    return tuple(VARIANTS[int(i)] for i in order[: factor - 1])


def augment(image: np.ndarray, dx: int, dy: int, angle: float) -> np.ndarray:
    """``image`` (uint8 HxW) rotated by ``angle`` degrees about its centre, then shifted by (dx, dy); black fill."""
    from PIL import Image

    rotated = Image.fromarray(image, mode="L").rotate(
        angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy), fillcolor=0
    )
    return np.asarray(rotated)


def scaled_digits(factor: int, per_class: Optional[int] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """(relative path, uint8 8x8 image) of every image of the ``factor``-times dataset, in a fixed order.

    ``per_class`` starts from the first N originals of each digit only (tests).
    """
    from pipeline.datasets import _digits  # the embedded digits as pipeline/datasets.py writes them

    _check_factor(factor)
    for image, digit, index in _digits(per_class):
        stem = f"{digit}/{digit}_{index:04d}"
        yield f"{stem}.png", image
        for number, (dx, dy, angle) in enumerate(variants_of(index, factor), start=1):
            yield f"{stem}_v{number:02d}.png", augment(image, dx, dy, angle)


def _read_marker(root: Path) -> Optional[dict]:
    try:
        return json.loads((root / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_scaled_digits(root: Path, factor: int, per_class: Optional[int] = None) -> Path:
    """Writes the ``factor``-times digits as ``<root>/<digit>/<file>.png`` and returns ``root``.

    ``per_class`` keeps the first N originals of each digit (and their variants); None = all 1,797.

    Cached: returns at once when ``root`` already holds this factor and generator version
    (its marker file). Built in a temporary sibling folder and renamed into place, so a
    half-written folder never appears under ``root``. Raises ValueError for a factor out of
    range, FileExistsError if ``root`` holds something this function did not write.
    """
    from PIL import Image

    _check_factor(factor)
    root = Path(root)
    wanted = {"factor": factor, "per_class": per_class, "generator": GENERATOR_VERSION}
    marker = _read_marker(root)
    if marker is not None and {k: marker.get(k) for k in wanted} == wanted:
        return root
    if root.exists() and marker is None and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not a scaled digits folder; choose another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        for digit in range(10):
            (build / str(digit)).mkdir()
        count = 0
        for rel, image in scaled_digits(factor, per_class):
            Image.fromarray(image, mode="L").save(build / rel, format="PNG")
            count += 1
        (build / MARKER_FILE).write_text(json.dumps({**wanted, "count": count}))
        old = None
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.rename(root, old)
        os.rename(build, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return root


def image_count(root: Path) -> int:
    """Images in a folder written by write_scaled_digits (from its marker); raises FileNotFoundError if none."""
    marker = _read_marker(Path(root))
    if marker is None:
        raise FileNotFoundError(f"{root}: no {MARKER_FILE}; build it with write_scaled_digits")
    return int(marker["count"])
