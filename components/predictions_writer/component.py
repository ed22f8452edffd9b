"""PredictionsWriter: turn BulkInferrer's PredictionLogs into predictions.jsonl and a CSV twin.

Each line names the image (its path relative to data.inference_root), the class id and
label, and the top-k probabilities; the files are written under temporary names and
renamed (inference/batch.py). Files ExampleGen could not read are in its ``rejected``
artifact, listed in the run summary.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

PREDICTIONS_FILE = "predictions.jsonl"
TOP_K = 3
NUM_PREDICTIONS_PROPERTY = "num_predictions"


class Predictions(types.Artifact):
    """``predictions.jsonl`` and ``predictions.csv`` of one batch inference run."""

    TYPE_NAME = "Predictions"


class PredictionsWriterSpec(types.ComponentSpec):
    PARAMETERS = {"top_k": ExecutionParameter(type=int)}
    INPUTS = {
        "inference_result": ChannelParameter(type=standard_artifacts.InferenceResult),
        "model": ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {"predictions": ChannelParameter(type=Predictions)}


def read_prediction_logs(uri: str, probabilities_key: str) -> Iterator[tuple[str, list[float]]]:
    """(image path, probabilities) from the PredictionLog files BulkInferrer wrote under ``uri``."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from lenspipe import features

    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        # tfx_bsl logs the serialized example under tf.saved_model.PREDICT_INPUTS, whatever the signature names it.
        examples = tf.make_ndarray(log.predict_log.request.inputs[tf.saved_model.PREDICT_INPUTS]).reshape(-1)
        probs = tf.make_ndarray(log.predict_log.response.outputs[probabilities_key])
        probs = probs.reshape(len(examples), -1)
        for serialized, row in zip(examples, probs):
            feats = tf.train.Example.FromString(serialized).features.feature
            yield feats[features.PATH_KEY].bytes_list.value[0].decode("utf-8"), row


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        import numpy as np
        from tfx.utils import path_utils

        from inference.batch import prediction_row, write_rows
        from lenspipe import features

        model = artifact_utils.get_single_instance(input_dict["model"])
        model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        with open(os.path.join(model_dir, features.MODEL_METADATA_FILE)) as f:
            names = json.load(f)["class_names"]
        result = artifact_utils.get_single_uri(input_dict["inference_result"])
        out = artifact_utils.get_single_instance(output_dict["predictions"])
        top_k = min(int(exec_properties["top_k"]), len(names))
        rows = (
            prediction_row(path, np.asarray(probs), names, top_k)
            for path, probs in read_prediction_logs(result, features.PROBABILITIES_OUTPUT)
        )
        count = write_rows(rows, os.path.join(out.uri, PREDICTIONS_FILE))
        out.set_int_custom_property(NUM_PREDICTIONS_PROPERTY, count)


class PredictionsWriter(base_component.BaseComponent):
    """Writes ``predictions.jsonl`` + ``predictions.csv`` from BulkInferrer's ``inference_result``."""

    SPEC_CLASS = PredictionsWriterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, inference_result: types.BaseChannel, model: types.BaseChannel, top_k: int = TOP_K):
        super().__init__(spec=PredictionsWriterSpec(
            inference_result=inference_result, model=model, top_k=top_k,
            predictions=types.Channel(type=Predictions),
        ))
