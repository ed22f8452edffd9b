"""Shared fixtures: tiny images and a real tf.Transform output built from them."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lenspipe import features

IMAGE_SIZE = 8  # the fixture images are already model-sized, so resizing is the identity


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (H, W) or (H, W, C) as PNG."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_images(seed: int = 0) -> list[tuple[bytes, str, np.ndarray]]:
    """A dozen 8x8 images in three classes and three pixel formats: (png, label, rgb array)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(12):
        label = ("cat", "dog", "owl")[i % 3]
        rgb = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        if i % 4 == 0:  # greyscale file
            grey = rgb[..., 0]
            out.append((png_bytes(grey), label, np.repeat(grey[..., None], 3, axis=-1)))
        elif i % 4 == 1:  # RGBA file: alpha must be dropped
            alpha = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
            out.append((png_bytes(np.concatenate([rgb, alpha], axis=-1)), label, rgb))
        else:
            out.append((png_bytes(rgb), label, rgb))
    return out


def analyze(images, out_dir: Path, channels: int = 3, size: int = IMAGE_SIZE, batch_size=None):
    """Run tf.Transform (AnalyzeAndTransformDataset, in memory) over ``images``.

    Returns (transformed rows, transform output directory).
    """
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from transform.preprocessing import preprocessing_fn

    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABEL_NAME_KEY: tf.io.FixedLenFeature([1], tf.string),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rows = [{features.IMAGE_KEY: [png], features.LABEL_NAME_KEY: [label.encode()]} for png, label, _ in images]
    fn = functools.partial(
        preprocessing_fn,
        custom_config={"image": {"height": size, "width": size, "channels": channels}},
    )
    with tft_beam.Context(temp_dir=str(out_dir / "tmp"), force_tf_compat_v1=False, desired_batch_size=batch_size):
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(out_dir / "transform"))
    # TFTransformOutput reads the raw schema from <dir>/metadata, as TFX's Transform writes it.
    metadata_io.write_metadata(metadata, str(out_dir / "transform" / "metadata"))
    return transformed, out_dir / "transform"


@pytest.fixture(scope="session")
def tiny_images():
    return make_images()


@pytest.fixture(scope="session")
def tiny_transform(tiny_images, tmp_path_factory):
    """(transformed rows, transform output dir) for the RGB configuration."""
    return analyze(tiny_images, tmp_path_factory.mktemp("tft"), channels=3)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (tests/postgres.py), shared by the session's tests."""
    from tests import postgres as pg

    cluster = pg.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """A small CNN trained on scikit-learn's digits, exported like the Trainer does (see trained_model.py)."""
    from tests.trained_model import train_digits_model

    return train_digits_model(tmp_path_factory.mktemp("digits-model"))
