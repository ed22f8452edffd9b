"""The TF Serving warm-up file written beside every exported model: a few real images as PredictionLogs.

TF Serving (and `lenspipe serve`) replays assets.extra/tf_serving_warmup_requests at load time with
--enable_model_warmup, so the first client request after a version swap does not pay for tracing.
"""
from __future__ import annotations

import logging
from typing import Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from lenspipe import features

log = logging.getLogger("lenspipe.trainer")

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # TF Serving's fixed name
# One-image requests (the common case) and one larger batch, so both shapes are traced.
BATCH_SIZES = (1, 1, 1, 8)


def warmup_images(example_files: Sequence[str], count: int = 8) -> list[bytes]:
    """The encoded image bytes of the first ``count`` tf.Examples in gzipped TFRecord ``example_files``."""
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(list(example_files), compression_type="GZIP").take(count)
    return [tf.io.parse_single_example(r, spec)[features.IMAGE_KEY].numpy() for r in dataset]


def prediction_logs(images: Sequence[bytes]) -> list[prediction_log_pb2.PredictionLog]:
    """PredictRequests on serving_default's image_bytes input, sized by BATCH_SIZES, cycling over ``images``."""
    logs, start = [], 0
    for size in BATCH_SIZES:
        batch = [images[(start + i) % len(images)] for i in range(size)]
        start += size
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = features.SERVING_SIGNATURE
        request.inputs[features.IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_file(export_dir: str, images: Sequence[bytes]) -> str | None:
    """Write the warm-up requests for ``images`` under ``export_dir`` (temp name, then rename); None if no images."""
    if not images:
        log.warning("no images for the warm-up file: %s not written", WARMUP_FILE)
        return None
    path = f"{export_dir}/{WARMUP_FILE}"
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for record in prediction_logs(images):
            writer.write(record.SerializeToString())
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path
