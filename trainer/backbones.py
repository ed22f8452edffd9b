"""Pretrained Keras Applications backbones under lenspipe's head, and the two-phase training they need.

The Transform stays the one place images are resized and standardised; the model
receives its output, ``(x - mean) / std`` per channel of pixels in [0, 1]. A backbone
was trained on its own normalisation, so the model first undoes the Transform's
(``Destandardize``, with the mean and std read out of the transform graph), scales to
[0, 255], repeats a greyscale channel three times, and then applies the backbone's own
preprocessing: MobileNetV3 and EfficientNetV2 take [0, 255] (their Rescaling is built
in), ResNet50 takes caffe-style BGR minus the ImageNet mean (``CaffePreprocess``).

Weights: ``imagenet`` is Keras' standard download into its cache (users with internet);
a ``.weights.h5`` or ``.keras`` file saved from the same backbone (``include_top=False``)
loads from disk; ``none`` starts from random weights. Nothing downloads unless asked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Optional

import keras
import numpy as np

IMAGENET = "imagenet"
NO_WEIGHTS = "none"
BACKBONE_NAME = "backbone"


class BackboneWeightsError(ValueError):
    """A backbone weights file is missing or does not fit the architecture; one line says which and how."""


@keras.saving.register_keras_serializable(package="lenspipe")
class Destandardize(keras.layers.Layer):
    """(x * std + mean) * 255: the Transform's standardised pixels back to [0, 255]."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.std = [float(v) for v in np.ravel(std)]

    def call(self, x):
        return (x * keras.ops.convert_to_tensor(self.std) + keras.ops.convert_to_tensor(self.mean)) * 255.0

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="lenspipe")
class CaffePreprocess(keras.layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB [0, 255] -> BGR minus the ImageNet mean."""

    def call(self, x):
        return x[..., ::-1] - keras.ops.convert_to_tensor([103.939, 116.779, 123.68])


@dataclass(frozen=True)
class Backbone:
    build: Callable[..., keras.Model]  # (input_shape, weights) -> model without its top
    preprocess: Optional[Callable[[], keras.layers.Layer]]  # None: the backbone rescales [0, 255] itself
    keras_name: str  # for messages: what to save a weights file from


BACKBONES = {
    "mobilenet_v3_small": Backbone(
        lambda shape, weights: keras.applications.MobileNetV3Small(
            input_shape=shape, include_top=False, weights=weights, include_preprocessing=True
        ),
        None,
        "keras.applications.MobileNetV3Small",
    ),
    "efficientnet_v2_b0": Backbone(
        lambda shape, weights: keras.applications.EfficientNetV2B0(
            input_shape=shape, include_top=False, weights=weights, include_preprocessing=True
        ),
        None,
        "keras.applications.EfficientNetV2B0",
    ),
    "resnet50": Backbone(
        lambda shape, weights: keras.applications.ResNet50(input_shape=shape, include_top=False, weights=weights),
        CaffePreprocess,
        "keras.applications.ResNet50",
    ),
}


def weights_source(weights: str) -> dict:
    """What the metadata file records about the weights: the source, and a file's SHA-256."""
    if weights in (IMAGENET, NO_WEIGHTS):
        return {"source": weights}
    with open(weights, "rb") as f:
        return {"source": os.path.abspath(weights), "sha256": hashlib.sha256(f.read()).hexdigest()}


def build_backbone(architecture: str, input_shape: tuple[int, int, int], weights: str) -> keras.Model:
    """The backbone for ``input_shape`` (3 channels) with ``weights``; raises BackboneWeightsError with one line."""
    spec = BACKBONES[architecture]
    shape = (input_shape[0], input_shape[1], 3)
    if weights in (IMAGENET, NO_WEIGHTS):
        return spec.build(shape, IMAGENET if weights == IMAGENET else None)
    expected = f"{architecture} ({spec.keras_name}(include_top=False, input_shape={shape}))"
    if not os.path.isfile(weights):
        raise BackboneWeightsError(f"trainer.backbone_weights {weights}: no such file; give weights saved from {expected}")
    backbone = spec.build(shape, None)
    try:
        if weights.endswith(".keras"):
            source = keras.models.load_model(weights, compile=False)
            backbone.set_weights(source.get_weights())
        else:
            backbone.load_weights(weights)
    except Exception as e:  # noqa: BLE001 - Keras raises ValueError, KeyError, OSError... for a misfit file
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BackboneWeightsError(
            f"trainer.backbone_weights {weights}: does not fit {expected}: {detail}"
        ) from None
    return backbone


def backbone_body(
    x, *, architecture: str, input_shape: tuple[int, int, int], weights: str, mean, std
):
    """Standardised images -> the backbone's feature map, the backbone called in inference mode.

    ``training=False`` keeps every BatchNormalization layer on its moving statistics even when
    its backbone layers are unfrozen for fine-tuning (small batches would wreck them otherwise).
    """
    x = Destandardize(mean, std, name="destandardize")(x)
    if input_shape[2] == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    spec = BACKBONES[architecture]
    if spec.preprocess is not None:
        x = spec.preprocess(name="backbone_preprocess")(x)
    built = build_backbone(architecture, input_shape, weights)
    backbone = keras.Model(built.input, built.output, name=BACKBONE_NAME)  # found by name to (un)freeze
    return backbone(x, training=False)


def set_trainable(classifier: keras.Model, fine_tune_layers: int) -> list[str]:
    """Freeze the backbone but its top ``fine_tune_layers`` layers (never BatchNorm); returns those trained.

    The head stays trainable. Recompile the model afterwards for the change to take effect.
    """
    backbone = classifier.get_layer(BACKBONE_NAME)
    backbone.trainable = fine_tune_layers > 0
    trained = []
    layers = backbone.layers
    top = layers[len(layers) - fine_tune_layers :] if fine_tune_layers > 0 else []
    for layer in layers:
        layer.trainable = layer in top and not isinstance(layer, keras.layers.BatchNormalization)
        if layer.trainable and layer.weights:
            trained.append(layer.name)
    return trained
