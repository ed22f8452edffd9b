"""The training loss: label smoothing on integer class ids, and the config that turns it off."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from lenspipe.config import TrainerConfig
from trainer import hparams, model


def test_smoothed_loss_on_class_ids_equals_keras_smoothed_loss_on_one_hot_targets():
    ids = np.array([0, 2, 1, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.5, 0.25, 0.25]], "float32")
    weights = np.array([1.0, 0.5, 2.0, 1.0], "float32")
    ours = model.SmoothedSparseCategoricalCrossentropy(0.1)(ids, probs, sample_weight=weights)
    keras_one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        keras.utils.to_categorical(ids, 3), probs, sample_weight=weights
    )
    assert float(ours) == pytest.approx(float(keras_one_hot), rel=1e-6)
    # smoothing 0.1 over 3 classes: class 0's target is 0.9 + 0.1/3, the others 0.1/3
    expected_first = -((0.9 + 0.1 / 3) * np.log(0.7) + (0.1 / 3) * np.log(0.2) + (0.1 / 3) * np.log(0.1))
    per_image = model.SmoothedSparseCategoricalCrossentropy(0.1, reduction=None)(ids, probs)
    assert float(per_image[0]) == pytest.approx(expected_first, rel=1e-5)
    # column-shaped ids, as some datasets yield them, give the same loss
    assert float(model.SmoothedSparseCategoricalCrossentropy(0.1)(ids[:, None], probs, sample_weight=weights)) == pytest.approx(float(ours))


def test_smoothed_loss_round_trips_through_keras_serialization():
    loss = model.SmoothedSparseCategoricalCrossentropy(0.2)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, model.SmoothedSparseCategoricalCrossentropy) and again.label_smoothing == 0.2


@pytest.mark.parametrize("smoothing, loss_type", [(0.1, model.SmoothedSparseCategoricalCrossentropy), (0.0, keras.losses.SparseCategoricalCrossentropy)])
def test_the_model_compiles_with_the_configured_loss(smoothing, loss_type):
    cfg = TrainerConfig(label_smoothing=smoothing, conv_blocks=1, base_filters=4, dense_units=8)
    net = model.build_model(hparams.search_space(cfg), input_shape=(8, 8, 1), num_classes=3, trainer_cfg=cfg, seed=1)
    assert isinstance(net.loss, loss_type)
    if smoothing:
        assert net.loss.label_smoothing == smoothing


def test_label_smoothing_defaults_to_a_tenth_and_must_stay_below_one():
    assert TrainerConfig().label_smoothing == 0.1
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainerConfig(label_smoothing=1.0)
