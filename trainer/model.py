"""The Keras 3 model: augmentation (training only), the CNN or a pretrained backbone, one head.

Keras 3 is imported directly (``import keras``), never through ``tf.keras``:
tensorflow_transform sets TF_USE_LEGACY_KERAS at import, so what ``tf.keras``
means depends on import order (TFX-1.16-NOTES).
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import keras_tuner

from lenspipe.config import TrainerConfig
from trainer import backbones
from trainer import hparams as hparams_lib

CLASSIFIER_NAME = "classifier"


def augmentation(trainer_cfg: TrainerConfig, seed: int) -> keras.layers.Layer:
    """Random geometric augmentation; Keras runs these layers only when training=True."""
    layers: list[keras.layers.Layer] = []
    if trainer_cfg.augment_flip != "none":
        layers.append(keras.layers.RandomFlip(trainer_cfg.augment_flip, seed=seed))
    if trainer_cfg.augment_rotation > 0:
        layers.append(keras.layers.RandomRotation(trainer_cfg.augment_rotation, fill_mode="constant", seed=seed + 1))
    if trainer_cfg.augment_translation > 0:
        t = trainer_cfg.augment_translation
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=seed + 2))
    if trainer_cfg.augment_zoom > 0:
        layers.append(keras.layers.RandomZoom(trainer_cfg.augment_zoom, fill_mode="constant", seed=seed + 3))
    if not layers:  # an empty Sequential cannot be built: every augmentation off means none at all
        return keras.layers.Identity(name="augment")
    return keras.Sequential(layers, name="augment")


def _cnn_body(x, values: dict, input_shape: tuple[int, int, int]):
    """Conv blocks (conv-BN-ReLU x2, max-pool); each block halves the resolution until it would drop below 2 px."""
    size = min(input_shape[0], input_shape[1])
    for block in range(values["conv_blocks"]):
        filters = values["base_filters"] * (2**block)
        for conv in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            # momentum 0.9, not 0.99: small datasets give few steps for the moving statistics to settle
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        if size >= 4:
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            size //= 2
    return x


def build_model(
    hp: keras_tuner.HyperParameters,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    trainer_cfg: TrainerConfig,
    seed: int,
    normalisation: Optional[tuple] = None,
) -> keras.Model:
    """A compiled model for standardised images of ``input_shape`` and ``num_classes`` classes.

    The body is the CNN (``trainer_cfg.architecture == "cnn"``) or a Keras Applications
    backbone (trainer/backbones.py; ``normalisation`` = the Transform's per-channel (mean, std),
    needed to feed it its own input scale), frozen for phase 1 of training. The head
    (pooling, dropout, dense, dropout, softmax) is the same for both. Depth, width, dropout,
    learning rate (and fine-tuned layers) come from ``hp`` (tuner or defaults).
    """
    values = hparams_lib.declare(hp, trainer_cfg)
    inputs = keras.Input(shape=input_shape, name="image")
    if trainer_cfg.architecture == "cnn":
        x = _cnn_body(inputs, values, input_shape)
    else:
        if normalisation is None:
            raise ValueError(f"architecture {trainer_cfg.architecture} needs the Transform's (mean, std)")
        x = backbones.backbone_body(
            inputs, architecture=trainer_cfg.architecture, input_shape=input_shape,
            weights=trainer_cfg.backbone_weights, mean=normalisation[0], std=normalisation[1],
        )
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(values["dropout"], seed=seed, name="dropout")(x)
    x = keras.layers.Dense(values["dense_units"], activation="relu", name="dense")(x)
    x = keras.layers.Dropout(values["dropout"], seed=seed + 1, name="dropout_head")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    classifier = keras.Model(inputs, outputs, name=CLASSIFIER_NAME)
    if trainer_cfg.architecture != "cnn":
        backbones.set_trainable(classifier, 0)  # phase 1: the head only
    # Augmentation wraps the classifier instead of living inside it: only the
    # classifier is exported, so no random layer (or its seed state) reaches serving.
    train_inputs = keras.Input(shape=input_shape, name="image")
    model = keras.Model(train_inputs, classifier(augmentation(trainer_cfg, seed)(train_inputs)), name="lenspipe_cnn")
    compile_model(model, values["learning_rate"], trainer_cfg.label_smoothing)
    return model


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float) -> None:
    """Adam, cross-entropy on class ids (label-smoothed unless 0), accuracy; again after (un)freezing layers."""
    loss = (
        SmoothedSparseCategoricalCrossentropy(label_smoothing)
        if label_smoothing
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


@keras.saving.register_keras_serializable("lenspipe")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing, on integer class ids.

    Keras' SparseCategoricalCrossentropy has no ``label_smoothing``; this one one-hot
    encodes the ids inside the loss, so the datasets, the accuracy metric and class
    weights all keep integer class ids. The target of class k is 1 - s + s/K for k and
    s/K for every other class (Keras' CategoricalCrossentropy convention).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        ids = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(ids, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def inference_model(model: keras.Model) -> keras.Model:
    """The part of a model from build_model that serving runs: no augmentation."""
    return model.get_layer(CLASSIFIER_NAME)
