"""PredictionsWriter: turn BulkInferrer's PredictionLogs into predictions.jsonl and a CSV twin.

Each line names the image (its path relative to data.inference_root), the class id and
label, and the top-k probabilities; the files are written under temporary names and
renamed (inference/batch.py). Files ExampleGen could not read are in its ``rejected``
artifact, listed in the run summary.
"""

from __future__ import annotations

import os
from typing import Iterator

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from lenspipe.artifacts import Predictions

PREDICTIONS_FILE = "predictions.jsonl"
TOP_K = 3
NUM_PREDICTIONS_PROPERTY = "num_predictions"


class PredictionsWriterSpec(types.ComponentSpec):
    PARAMETERS = {"top_k": ExecutionParameter(type=int)}
    INPUTS = {
        "inference_result": ChannelParameter(type=standard_artifacts.InferenceResult),
    }
    OUTPUTS = {"predictions": ChannelParameter(type=Predictions)}


def read_prediction_logs(uri: str) -> Iterator[tuple[str, list[str], list[float]]]:
    """(image path, class names, scores) from the classify PredictionLogs BulkInferrer wrote under ``uri``.

    BulkInferrer runs the ``classification`` signature: tfx_bsl cannot log a predict signature
    with a string output of rank 1 (``label``), and classify logs carry the example itself.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from lenspipe import features

    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy()).classify_log
        examples = log.request.input.example_list.examples
        for example, result in zip(examples, log.response.result.classifications):
            path = example.features.feature[features.PATH_KEY].bytes_list.value[0].decode("utf-8")
            yield path, [c.label for c in result.classes], [c.score for c in result.classes]


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        import numpy as np

        from inference.batch import prediction_row, write_rows

        result = artifact_utils.get_single_uri(input_dict["inference_result"])
        out = artifact_utils.get_single_instance(output_dict["predictions"])
        top_k = int(exec_properties["top_k"])
        rows = (
            prediction_row(path, np.asarray(scores), labels, top_k)
            for path, labels, scores in read_prediction_logs(result)
        )
        count = write_rows(rows, os.path.join(out.uri, PREDICTIONS_FILE))
        out.set_int_custom_property(NUM_PREDICTIONS_PROPERTY, count)


class PredictionsWriter(base_component.BaseComponent):
    """Writes ``predictions.jsonl`` + ``predictions.csv`` from BulkInferrer's ``inference_result``."""

    SPEC_CLASS = PredictionsWriterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, inference_result: types.BaseChannel, top_k: int = TOP_K):
        super().__init__(spec=PredictionsWriterSpec(
            inference_result=inference_result, top_k=top_k,
            predictions=types.Channel(type=Predictions),
        ))
