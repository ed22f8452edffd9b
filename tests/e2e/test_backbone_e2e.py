"""A pretrained-backbone run end to end: a weights file the test saves itself, two phases, blessed and pushed."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.e2e.test_pipeline_e2e import lenspipe, summary_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("backbone")
    weights = root / "mobilenet_v3_small-32.weights.h5"
    keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None).save_weights(str(weights))
    work = root / "work"
    result = lenspipe(
        "run", "--work-dir", str(work), "--set", "data.embedded_per_class=20",
        "--architecture", "mobilenet_v3_small", "--backbone-weights", str(weights), "--image-size", "32", "--channels", "1",
        "--trials", "1", "--set", "tuner.epochs=1", "--set", "trainer.head_epochs=2", "--epochs", "2",
        "--set", "trainer.fine_tune_layers=10", "--min-accuracy", "0.0",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, weights, result, summary_of(work)


def test_backbone_run_trains_in_two_phases_and_pushes_a_raw_bytes_model(backbone_run):
    import tensorflow as tf

    work, weights, result, summary = backbone_run
    assert summary.blessed is True and summary.pushed_version == "1"
    version = work / "serving" / "lenspipe" / "1"
    meta = json.loads((version / "assets.extra" / "lenspipe.json").read_text())
    arch = meta["architecture"]
    assert arch["name"] == "mobilenet_v3_small"
    assert arch["weights"] == {"source": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert [p["trained"] for p in arch["phases"]] == ["head (backbone frozen)", "head and the top 10 backbone layers"]
    assert "greyscale input repeated to 3 channels" in arch["note"]
    assert "model:      mobilenet_v3_small, weights " in result.stdout
    png = next((work / "data" / "digits-20" / "4").glob("*.png")).read_bytes()
    out = tf.saved_model.load(str(version)).signatures["serving_default"](image_bytes=tf.constant([png]))
    assert out["probabilities"].shape == (1, 10)
    assert out["label"].numpy()[0].decode() == meta["class_names"][int(out["class_id"].numpy()[0])]
