"""Drift between spans, through the `lenspipe` command: span 1 trains and pushes, span 2 (brighter) stops at
the data gate, span 3 (like span 1) passes and is compared with the span serving version 1 was trained on.

Tiny synthetic images (two stripe classes, 16x16 grey), no tuning, a few epochs, and the checks
that do not bear on drift (TFLite, serving check, Explainer, classical baseline) off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lenspipe import features
from tests.conftest import png_bytes
from tests.e2e.test_pipeline_e2e import lenspipe, summary_of

pytestmark = pytest.mark.e2e

PER_CLASS = 20
DARKER = (70.0, 110.0)  # mean grey of spans 1 and 3
BRIGHTER = (170.0, 210.0)  # span 2
TINY = [
    "--image-size", "16", "--channels", "1", "--set", "tuner.enabled=false",
    "--epochs", "3", "--min-accuracy", "0.0", "--set", "evaluator.max_accuracy_drop=1.0",
    "--set", "tflite.enabled=false", "--set", "serving_check.enabled=false",
    "--set", "explainer.enabled=false", "--set", "classical.enabled=false",
    "--set", "data.span_pattern=span-{SPAN}",
]


def write_span(root: Path, span: int, brightness: tuple, seed: int) -> None:
    """``root/span-<n>/<h|v>/*.png``: horizontal or vertical stripes around a mean grey drawn from ``brightness``.

    The mean greys come from ``seed`` and the pixel noise from the span: spans 1 and 3 share a
    brightness distribution (and file names, so the same files land in train) but no image.
    With 16 train images per class, two independent draws of one uniform differ by a JSD of
    ~0.15 (measured), above the 0.1 default: such small spans are compared as they are.
    """
    means = np.random.default_rng(seed)
    noise = np.random.default_rng(1000 + span)
    stripes = (np.arange(16) % 4 < 2) * 2.0 - 1.0
    for label, pattern in (("h", np.repeat(stripes[:, None], 16, 1)), ("v", np.repeat(stripes[None, :], 16, 0))):
        folder = root / f"span-{span}" / label
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            mean = means.uniform(*brightness)
            pixels = np.clip(mean + 40.0 * pattern + noise.normal(0, 5, (16, 16)), 0, 255).astype(np.uint8)
            (folder / f"{label}_{i:02d}.png").write_bytes(png_bytes(pixels))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three runs in order (each span is added before its run: the newest span is ingested)."""
    root = tmp_path_factory.mktemp("spans")
    data, work = root / "data", root / "work"
    args = ["run", "--work-dir", str(work), "--data", str(data), *TINY]
    out = {}
    for span, brightness, seed in ((1, DARKER, 1), (2, BRIGHTER, 2), (3, DARKER, 1)):
        write_span(data, span, brightness, seed)
        result = lenspipe(*args)
        serving = work / "serving" / "lenspipe"
        out[span] = (result, summary_of(work), sorted(p.name for p in serving.iterdir()) if serving.is_dir() else [])
    return out


def test_span_1_trains_and_pushes(runs):
    result, summary, versions = runs[1]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary.pushed is True and summary.pushed_version == "1" and versions == ["1"]
    assert summary.drift == {}  # nothing serves yet: nothing to compare with
    assert "drift:" not in result.stdout


def test_span_2_with_shifted_brightness_stops_at_the_gate(runs):
    result, summary, versions = runs[2]
    assert result.returncode == 1
    assert "the new span drifted from the span serving version 1 was trained on" in result.stderr
    line = next(l for l in result.stderr.splitlines() if "feature 'brightness'" in l)
    assert "Jensen-Shannon divergence" in line and "above the threshold 0.1 (drift.brightness_jsd)" in line
    assert "--drift.brightness_jsd " in line and "data.schema_file" in line
    assert summary.failed == ["DataGate"]
    assert not {"Transform", "Tuner", "Trainer", "Evaluator", "VersionedPusher"} & set(summary.node_states)
    assert versions == ["1"]  # nothing new was pushed


def test_span_3_with_a_similar_distribution_passes_and_pushes(runs):
    result, summary, versions = runs[3]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "DataGate" in summary.executed and summary.pushed_version == "2" and versions == ["1", "2"]
    assert summary.drift["version"] == "1"  # span 2 pushed nothing: version 1 still serves
    measured = {f["feature"]: f for f in summary.drift["features"]}
    assert set(measured) == {features.LABEL_NAME_KEY, features.WIDTH_KEY, features.HEIGHT_KEY,
                             features.BRIGHTNESS_KEY, features.CHANNELS_KEY, features.FORMAT_KEY}
    assert all(f["distance"] <= f["threshold"] for f in measured.values())
    assert f"drift:      vs the span of serving version 1: {features.LABEL_NAME_KEY} L-inf" in result.stdout
