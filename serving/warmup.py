"""Model warm-up as TF Serving does it: replay assets.extra/tf_serving_warmup_requests before AVAILABLE.

The file is a TFRecord of tensorflow.serving.PredictionLog (TF Serving's format, so the same model warms
up in real TF Serving with --enable_model_warmup). The first call of a loaded SavedModel traces and
optimises its functions; replaying real requests at load time moves that cost off the first client.
Like TF Serving, a warm-up request that fails fails the load, and at most 1000 records are read.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.errors import Code, ServingError
from serving.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # TF Serving's name; the trainer writes it
MAX_WARMUP_RECORDS = 1000  # TF Serving's kMaxNumRecords


def read_warmup_file(export_dir: Path) -> list[prediction_log_pb2.PredictionLog]:
    """The PredictionLogs of a version's warm-up file ([] if it has none). Raises ServingError if unreadable."""
    path = export_dir / WARMUP_FILE
    if not path.is_file():
        return []
    logs = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS + 1):
            logs.append(prediction_log_pb2.PredictionLog.FromString(raw.numpy()))
    except Exception as exc:  # a truncated record or a foreign file
        raise ServingError(Code.INVALID_ARGUMENT, f"cannot read warm-up file {path}: {exc}") from exc
    if len(logs) > MAX_WARMUP_RECORDS:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"warm-up file {path} has more than {MAX_WARMUP_RECORDS} records (TF Serving's limit)")
    return logs


def warm_up(servable: Servable) -> int:
    """Replay the version's warm-up requests through its signatures; returns how many ran."""
    logs = read_warmup_file(servable.export_dir)
    started = time.monotonic()
    for record in logs:
        if record.WhichOneof("log_type") != "predict_log":
            raise ServingError(Code.UNIMPLEMENTED, f"warm-up of {servable.name} version {servable.version}: only "
                               f"predict_log records are supported, got {record.WhichOneof('log_type')}")
        request = record.predict_log.request
        signature = servable.signature(request.model_spec.signature_name)
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        try:
            servable.run(signature, inputs)
        except ServingError as exc:
            raise ServingError(exc.code, f"warm-up request failed for {servable.name} version "
                               f"{servable.version}: {exc.message}") from exc
    if logs:
        log.info("warmed up {name: %s version: %d} with %d requests in %.2fs",
                 servable.name, servable.version, len(logs), time.monotonic() - started)
    return len(logs)


def make_loader(enable_warmup: bool, tags=("serve",)):
    """The ModelManager loader: load a Servable (MetaGraph ``tags``) and, if enabled, warm it up before it is AVAILABLE."""
    def load(name: str, version: int, export_dir: Path) -> Servable:
        servable = Servable(name, version, export_dir, tags=tags)
        if enable_warmup:
            warm_up(servable)
        return servable
    return load
