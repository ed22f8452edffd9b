"""Pretrained backbones: build for the input, freeze then unfreeze the right layers, load saved weights, export."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras

from lenspipe import features
from lenspipe.config import ConfigError, TrainerConfig, load_config
from tests.conftest import analyze, make_images
from trainer import backbones, data, fitting, hparams, model, signatures
from trainer.tflite_export import read_normalisation

SIZE = 32  # every backbone's minimum input size


@pytest.fixture(scope="module")
def transform32(tmp_path_factory):
    """A real tf.Transform output for 32x32 greyscale images (the digits' case: one channel, repeated to 3)."""
    import tensorflow_transform as tft

    _, out = analyze(make_images(), tmp_path_factory.mktemp("tft32"), channels=1, size=SIZE)
    return tft.TFTransformOutput(str(out))


def _cfg(architecture, weights="none", **kw):
    return TrainerConfig(architecture=architecture, backbone_weights=weights, dense_units=16, **kw)


def _build(cfg, transform, channels=1):
    return model.build_model(
        hparams.search_space(cfg), input_shape=(SIZE, SIZE, channels), num_classes=3, trainer_cfg=cfg, seed=1,
        normalisation=read_normalisation(transform, (SIZE, SIZE, channels)),
    )


@pytest.mark.parametrize("architecture", sorted(backbones.BACKBONES))
def test_each_backbone_builds_frozen_then_fine_tunes_its_top_layers(architecture, transform32):
    net = _build(_cfg(architecture), transform32)
    classifier = model.inference_model(net)
    backbone = classifier.get_layer(backbones.BACKBONE_NAME)
    assert net.output_shape == (None, 3)
    assert backbone.trainable_weights == []  # phase 1: the head only
    assert {w.path.split("/")[0] for w in classifier.trainable_weights} == {"dense", "probabilities"}
    trained = backbones.set_trainable(classifier, 12)
    top = [layer for layer in backbone.layers[-12:] if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    assert trained == [layer.name for layer in top] and trained
    assert all(not layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert all(not layer.trainable for layer in backbone.layers[:-12])


def test_saved_weights_load_back_and_a_misfit_file_is_one_line(tmp_path):
    shape = (SIZE, SIZE, 3)
    source = keras.applications.MobileNetV3Small(input_shape=shape, include_top=False, weights=None)
    path = tmp_path / "mnv3.weights.h5"
    source.save_weights(str(path))
    loaded = backbones.build_backbone("mobilenet_v3_small", shape, str(path))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert backbones.weights_source(str(path))["sha256"] and backbones.weights_source("none") == {"source": "none"}
    with pytest.raises(backbones.BackboneWeightsError) as misfit:
        backbones.build_backbone("resnet50", shape, str(path))
    message = str(misfit.value)
    assert "\n" not in message and str(path) in message and "resnet50" in message and "ResNet50" in message
    with pytest.raises(backbones.BackboneWeightsError, match="no such file"):
        backbones.build_backbone("mobilenet_v3_small", shape, str(tmp_path / "missing.weights.h5"))


def test_two_phase_fit_records_what_was_trained(transform32):
    cfg = _cfg("mobilenet_v3_small", head_epochs=1, epochs=1, fine_tune_layers=5)
    net = _build(cfg, transform32)
    x = np.random.default_rng(0).normal(size=(8, SIZE, SIZE, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    history, trained = fitting.fit(
        net, hparams.declare(hparams.search_space(cfg), cfg), cfg, tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, head_epochs=1, steps=None,
        callbacks=lambda total, phase: [],
    )
    assert len(history["loss"]) == 2  # one epoch per phase
    assert [p["trained"] for p in trained["phases"]] == ["head (backbone frozen)", "head and the top 5 backbone layers"]
    assert trained["phases"][1]["learning_rate"] == pytest.approx(cfg.learning_rate * cfg.fine_tune_lr_factor)


def test_exported_backbone_serves_raw_bytes_like_the_in_memory_model(transform32, tmp_path):
    net = _build(_cfg("mobilenet_v3_small"), transform32)
    export_dir = str(tmp_path / "model")
    signatures.export_serving_model(model.inference_model(net), transform32, export_dir, metadata={"seed": 1})
    pngs = [png for png, _, _ in make_images()[:4]]
    raw = {features.IMAGE_KEY: tf.reshape(tf.constant(pngs), [-1, 1])}
    expected = model.inference_model(net)(transform32.transform_features_layer()(raw)[data.IMAGE_XF], training=False)
    served = tf.saved_model.load(export_dir).signatures[features.SERVING_SIGNATURE](
        **{features.IMAGE_BYTES_INPUT: tf.constant(pngs)}
    )[features.PROBABILITIES_OUTPUT]
    np.testing.assert_allclose(served.numpy(), expected.numpy(), atol=1e-6)


def test_config_checks_the_backbones_minimum_input():
    with pytest.raises(ConfigError, match="mobilenet_v3_small needs image.height and image.width >= 32"):
        load_config(None, {"trainer.architecture": "mobilenet_v3_small"})  # the digits' 16x16 default
    assert load_config(None, {"trainer.architecture": "resnet50", "image.height": 32, "image.width": 32})
