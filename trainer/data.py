"""Input pipelines: raw tf.Examples -> the Transform graph -> (image, label) batches.

Transform runs with materialize=False (decoded float images would cost
H*W*C*4 bytes each on disk and in Beam's memory), so the Trainer applies the
saved transform graph here, exactly as serving does -- once per run, not once
per epoch: the transformed examples are cached in memory when they fit
``cache_budget_mb``, else in a cache file on disk, and every later epoch (and
every tuning trial) reads the cache. Augmentation lives in the model, so caching
the deterministic part loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from lenspipe import features

log = logging.getLogger("lenspipe.trainer")

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


def count_examples(file_patterns: Sequence[str]) -> int:
    """Records in the gzipped TFRecord files (one cheap pass: no parsing)."""
    ds = tf.data.TFRecordDataset(expand_files(file_patterns), compression_type="GZIP")
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def make_dataset(
    file_patterns: Sequence[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    repeat: bool = False,
    cache_budget_mb: float = 0,
    cache_dir: Optional[str] = None,
) -> tf.data.Dataset:
    """Batches of (standardised image [B,H,W,C], class id [B]) from gzipped TFRecords.

    The transform graph runs once: its output is cached in memory if the decoded
    images fit ``cache_budget_mb``, else in ``cache_dir`` (no cache when neither).
    Element order is fixed (deterministic map, seeded shuffle), so the same seed
    gives the same batches.
    """
    files = expand_files(file_patterns)
    spec = raw_input_spec(tft_output)
    tft_layer = tft_output.transform_features_layer()

    def transform(serialized: tf.Tensor):
        xf = tft_layer(tf.io.parse_example(serialized, spec))
        return xf[IMAGE_XF], xf[LABEL_XF]

    ds = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(256)
        # Not through AutoGraph: it would transpile the transform layer's whole Keras call stack
        # (~70 functions, several CPU seconds per process) for code with no tensor control flow.
        .map(tf.autograph.experimental.do_not_convert(transform), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
    )
    count = count_examples(file_patterns)
    image_shape = ds.element_spec[0].shape
    needed_mb = count * image_shape.num_elements() * 4 / 2**20
    if needed_mb <= cache_budget_mb:
        ds = ds.cache()
        where = "memory"
    elif cache_dir:
        tf.io.gfile.makedirs(cache_dir)
        name = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
        ds = ds.cache(os.path.join(cache_dir, f"transformed-{name}"))
        where = f"disk ({cache_dir})"
    else:
        where = "none"
    log.info("%d examples, %.0f MiB transformed; cache: %s", count, needed_mb, where)
    if shuffle:
        ds = ds.shuffle(min(count, 10_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_counts(dataset: tf.data.Dataset, num_classes: int) -> list[int]:
    """Images per class id in a dataset of (image, class id) batches."""
    counts = dataset.map(lambda _, y: tf.math.bincount(tf.cast(y, tf.int32), minlength=num_classes, maxlength=num_classes))
    return [int(c) for c in counts.reduce(tf.zeros([num_classes], tf.int32), lambda a, b: a + b).numpy()]
