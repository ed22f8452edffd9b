"""A real trained model for tests that need one: digits -> tf.Transform -> Keras CNN -> SavedModel.

It takes seconds, not the minute of a pipeline run: the Transform runs in memory and the
model trains on the transformed arrays. Sources are the 8x8 digits; the model takes 16x16,
so the exported graph really resizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenspipe.config import TrainerConfig
from tests.conftest import analyze, png_bytes

MODEL_SIZE = 16
TRAIN = 1300  # the first TRAIN digits train; the rest are held out
TRAINER_CFG = TrainerConfig(
    conv_blocks=2, base_filters=16, dense_units=32, dropout=0.1, learning_rate=3e-3,
    augment_rotation=0.0, augment_translation=0.05, augment_zoom=0.0, augment_flip="none",
)


@dataclass(frozen=True)
class DigitsModel:
    saved_model_dir: str
    transform_dir: str
    class_names: list[str]
    train: list[tuple[bytes, str]]  # (png, label name)
    test: list[tuple[bytes, str]]
    test_pixels: np.ndarray  # uint8 [N, 8, 8, 1], the decoded test images


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8), d.target


def train_digits_model(out: Path) -> DigitsModel:
    import keras
    import tensorflow_transform as tft

    from lenspipe import features
    from trainer import hparams, model, signatures

    images, targets = digits()
    rows = [(png_bytes(img), str(t), img) for img, t in zip(images, targets)]
    transformed, transform_dir = analyze(rows[:TRAIN], out, channels=1, size=MODEL_SIZE)
    tft_output = tft.TFTransformOutput(str(transform_dir))
    x = np.stack([r[features.transformed_name(features.IMAGE_KEY)] for r in transformed]).astype("float32")
    y = np.array([r[features.transformed_name(features.LABEL_NAME_KEY)] for r in transformed])
    names = signatures.class_names(tft_output)
    keras.utils.set_random_seed(0)
    net = model.build_model(
        hparams.search_space(TRAINER_CFG), input_shape=(MODEL_SIZE, MODEL_SIZE, 1), num_classes=len(names),
        trainer_cfg=TRAINER_CFG, seed=0,
    )
    net.fit(x, y, epochs=12, batch_size=32, verbose=0)
    export_dir = str(out / "model")
    signatures.export_serving_model(
        model.inference_model(net), tft_output, export_dir,
        metadata={"class_names": names, "input_shape": [MODEL_SIZE, MODEL_SIZE, 1], "seed": 0},
    )
    return DigitsModel(
        saved_model_dir=export_dir,
        transform_dir=str(transform_dir),
        class_names=names,
        train=[(png, label) for png, label, _ in rows[:TRAIN]],
        test=[(png, label) for png, label, _ in rows[TRAIN:]],
        test_pixels=images[TRAIN:, :, :, None],
    )
