"""The classical baseline fits on train and scores on test; the Evaluator's gate un-blesses a CNN below it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.components.evaluator import constants
from tfx.types import artifact_utils, standard_artifacts

from components.classical_baseline.component import fit, load_split
from components.evaluator.executor import apply_baseline_gate
from lenspipe import features


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _examples(tmp_path, splits):
    """An Examples artifact whose splits hold (png, label) records."""
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path / "examples")
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split, rows in splits.items():
        (tmp_path / "examples" / f"Split-{split}").mkdir(parents=True)
        path = str(tmp_path / "examples" / f"Split-{split}" / "data.gz")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
            for png, label in rows:
                feature = {
                    features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                    features.LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return artifact


def _stripes(rng, vertical: bool) -> np.ndarray:
    image = rng.integers(0, 60, size=(16, 16), dtype=np.uint8)
    if vertical:
        image[:, ::4] = 255
    else:
        image[::4, :] = 255
    return image


@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_baseline_learns_a_separable_task_from_the_train_split(tmp_path, method):
    rng = np.random.default_rng(0)
    rows = lambda n: [(_png(_stripes(rng, i % 2 == 0)), "v" if i % 2 == 0 else "h") for i in range(n)]
    examples = _examples(tmp_path, {"train": rows(30), "test": rows(10)})
    x, y = load_split(examples, "train", 8, limit=20)
    assert x.shape == (20, 64) and 0.0 <= x.min() and x.max() <= 1.0 and set(y) == {"v", "h"}
    model = fit(method, x, y)
    x_test, y_test = load_split(examples, "test", 8, limit=100)
    assert np.mean(model.predict(x_test) == y_test) == 1.0


def _blessing(tmp_path, blessed: bool):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    (tmp_path / "blessing").mkdir()
    name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
    (tmp_path / "blessing" / name).write_text("")
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def test_gate_unblesses_a_cnn_below_the_baseline(tmp_path):
    blessing = _blessing(tmp_path, blessed=True)
    apply_baseline_gate(blessing, accuracy=0.95, baseline_accuracy=0.97, beat=True)
    assert blessing.get_int_custom_property("blessed") == 0
    assert sorted(p.name for p in (tmp_path / "blessing").iterdir()) == [constants.NOT_BLESSED_FILE_NAME]
    assert "0.9500 is below the classical baseline's 0.9700" in blessing.get_string_custom_property("not_blessed_reason")


def test_gate_counts_a_tie_measured_in_float32_as_a_tie_and_one_image_less_as_below(tmp_path):
    # TFMA's 180/181 passes through float32 and lands a hair under scikit-learn's float64 180/181.
    tie = float(np.float32(180 / 181))
    assert tie < 180 / 181
    (tmp_path / "tie").mkdir()
    tied = _blessing(tmp_path / "tie", blessed=True)
    apply_baseline_gate(tied, accuracy=tie, baseline_accuracy=180 / 181, beat=True)
    assert tied.get_int_custom_property("blessed") == 1
    (tmp_path / "worse").mkdir()
    worse = _blessing(tmp_path / "worse", blessed=True)
    apply_baseline_gate(worse, accuracy=float(np.float32(179 / 181)), baseline_accuracy=180 / 181, beat=True)
    assert worse.get_int_custom_property("blessed") == 0


@pytest.mark.parametrize("accuracy, beat", [(0.97, True), (0.99, True), (0.50, False)])
def test_gate_keeps_the_blessing_when_met_or_off(tmp_path, accuracy, beat):
    blessing = _blessing(tmp_path, blessed=True)
    apply_baseline_gate(blessing, accuracy=accuracy, baseline_accuracy=0.97, beat=beat)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_float_custom_property("classical_baseline_accuracy") == pytest.approx(0.97)
    assert blessing.get_float_custom_property("candidate_accuracy") == pytest.approx(accuracy)
