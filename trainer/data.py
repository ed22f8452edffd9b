"""Input pipelines: raw tf.Examples -> the Transform graph -> (image, label) batches.

Transform runs with materialize=False (decoded float images would cost
H*W*C*4 bytes each on disk and in Beam's memory), so the Trainer applies the
saved transform graph here, batch by batch, exactly as serving does.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_transform as tft

from lenspipe import features

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_NAME_KEY)


def expand_files(patterns: Sequence[str]) -> list[str]:
    """Sorted file list for the glob patterns TFX passes (``.../Split-train/*``)."""
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise FileNotFoundError(f"no example files match {list(patterns)}")
    return files


def raw_input_spec(tft_output: tft.TFTransformOutput) -> dict:
    """The part of the raw feature spec the transform graph needs."""
    spec = tft_output.raw_feature_spec()
    return {k: spec[k] for k in (features.IMAGE_KEY, features.LABEL_NAME_KEY)}


def make_dataset(
    file_patterns: Sequence[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (standardised image [B,H,W,C], class id [B]) from gzipped TFRecords."""
    ds = tf.data.TFRecordDataset(expand_files(file_patterns), compression_type="GZIP")
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    spec = raw_input_spec(tft_output)
    tft_layer = tft_output.transform_features_layer()

    def transform(serialized: tf.Tensor):
        xf = tft_layer(tf.io.parse_example(serialized, spec))
        return xf[IMAGE_XF], xf[LABEL_XF]

    return ds.batch(batch_size).map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
