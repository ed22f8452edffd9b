"""The gRPC front end: TF Serving's PredictionService and ModelService on grpc.aio.

Uses the generated servicers from the tensorflow-serving-api wheel, so the official Python stubs
(and any other TF Serving gRPC client) work unchanged. Runs on the same event loop as REST and
shares the ServingCore, hence the same models, batching and errors.
"""
from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.apis import model_pb2

from serving.core import CLASSIFY_METHOD, REGRESS_METHOD, ModelRef, ServingCore, observe_request
from serving.errors import Code, ServingError, invalid_argument
from serving.servable import DEFAULT_SIGNATURE
from serving.flags import ConfigError, validate_model_server_config
from serving.server import metadata_response, status_response

log = logging.getLogger(__name__)

T = TypeVar("T")


def model_ref(spec: model_pb2.ModelSpec) -> ModelRef:
    which = spec.WhichOneof("version_choice")
    return ModelRef(name=spec.name, version=spec.version.value if which == "version" else None,
                    label=spec.version_label if which == "version_label" else None)


def fill_spec(spec: model_pb2.ModelSpec, name: str, version: int, signature_name: str) -> None:
    spec.name, spec.signature_name = name, signature_name
    spec.version.value = version


def serialized_examples(request_input) -> list[bytes]:
    """An Input proto (example_list / example_list_with_context) as serialized tf.Examples."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        lwc = request_input.example_list_with_context
        out = []
        for example in lwc.examples:
            merged = type(example)()
            merged.CopyFrom(lwc.context)
            for key, feature in example.features.feature.items():
                merged.features.feature[key].CopyFrom(feature)
            out.append(merged.SerializeToString())
        return out
    raise invalid_argument("Input is empty.")


def fill_classifications(result: classification_pb2.ClassificationResult, classes: np.ndarray | None,
                         scores: np.ndarray | None) -> None:
    ref = scores if scores is not None else classes
    assert ref is not None
    for i in range(ref.shape[0]):
        row = result.classifications.add()
        for j in range(ref.shape[1]):
            cls = row.classes.add()
            if classes is not None:
                cls.label = classes[i, j].decode("utf-8", "replace")
            if scores is not None:
                cls.score = float(scores[i, j])


def fill_regressions(result: regression_pb2.RegressionResult, values: np.ndarray) -> None:
    for value in values:
        result.regressions.add().value = float(value)


class _Base:
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def _call(self, context: grpc.aio.ServicerContext, model: str, api: str,
                    body: Callable[[], Awaitable[T]]) -> T:
        """Run `body`, turning a ServingError into a gRPC abort; `api` ("" = none) labels the metrics."""
        started = time.perf_counter()
        error: ServingError | None = None
        try:
            return await body()
        except ServingError as exc:
            error = exc
            await context.abort(exc.grpc_status, exc.message)
            raise  # unreachable: abort raises
        finally:
            if api:
                observe_request(self.core.metrics, model, api, "GRPC", started, error)


class PredictionService(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata."""

    async def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        async def body() -> predict_pb2.PredictResponse:
            ref = model_ref(request.model_spec)
            try:
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            except (TypeError, ValueError) as exc:
                raise invalid_argument(f"Invalid input tensor: {exc}") from exc
            servable, signature, outputs = await self.core.predict(ref, request.model_spec.signature_name, inputs)
            wanted = list(request.output_filter) or list(outputs)
            for alias in wanted:
                if alias not in outputs:
                    raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected "
                                           f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
            response = predict_pb2.PredictResponse()
            fill_spec(response.model_spec, servable.name, servable.version, signature.name)
            for alias in wanted:
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[alias])))
            return response
        return await self._call(context, request.model_spec.name, "Predict", body)

    async def Classify(self, request: classification_pb2.ClassificationRequest, context):
        async def body() -> classification_pb2.ClassificationResponse:
            servable, signature, classes, scores = await self.core.classify(
                model_ref(request.model_spec), request.model_spec.signature_name, serialized_examples(request.input))
            response = classification_pb2.ClassificationResponse()
            fill_spec(response.model_spec, servable.name, servable.version, signature.name)
            fill_classifications(response.result, classes, scores)
            return response
        return await self._call(context, request.model_spec.name, "Classify", body)

    async def Regress(self, request: regression_pb2.RegressionRequest, context):
        async def body() -> regression_pb2.RegressionResponse:
            servable, signature, values = await self.core.regress(
                model_ref(request.model_spec), request.model_spec.signature_name, serialized_examples(request.input))
            response = regression_pb2.RegressionResponse()
            fill_spec(response.model_spec, servable.name, servable.version, signature.name)
            fill_regressions(response.result, values)
            return response
        return await self._call(context, request.model_spec.name, "Regress", body)

    async def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context):
        """Classify/regress tasks on one model version and one input (multi_inference.cc's checks)."""
        async def body() -> inference_pb2.MultiInferenceResponse:
            tasks = list(request.tasks)
            first = tasks[0].model_spec if tasks else model_pb2.ModelSpec()
            servable = self.core.servable(model_ref(first))
            seen: set[str] = set()
            for task in tasks:  # every task is checked before any runs, as TF Serving does
                if not task.model_spec.name:
                    raise invalid_argument("Found ModelSpec with an empty model name.")
                if task.model_spec.name != first.name:
                    raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
                key = task.model_spec.signature_name or DEFAULT_SIGNATURE
                if key in seen:
                    raise invalid_argument(f"Duplicate evaluation of signature: {key}")
                seen.add(key)
                if key not in servable.signature_defs:
                    raise invalid_argument(f"Requested signature not found in model graph: {key}")
                if task.method_name == CLASSIFY_METHOD:
                    self.core.classify_signature(servable, key)
                elif task.method_name == REGRESS_METHOD:
                    self.core.regress_signature(servable, key)
                else:
                    raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
            examples = serialized_examples(request.input)
            response = inference_pb2.MultiInferenceResponse()
            for task in tasks:
                ref, key = model_ref(task.model_spec), task.model_spec.signature_name
                result = response.results.add()
                if task.method_name == CLASSIFY_METHOD:
                    _, _, classes, scores = await self.core.classify(ref, key, examples, servable=servable)
                    fill_classifications(result.classification_result, classes, scores)
                else:
                    _, _, values = await self.core.regress(ref, key, examples, servable=servable)
                    fill_regressions(result.regression_result, values)
                fill_spec(result.model_spec, servable.name, servable.version, key)
            return response
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return await self._call(context, name, "MultiInference", body)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        async def body() -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:
                raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise invalid_argument(f"Metadata field {field} is not supported")
            return metadata_response(self.core, model_ref(request.model_spec))
        return await self._call(context, request.model_spec.name, "", body)


class ModelService(_Base, model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        async def body() -> get_model_status_pb2.GetModelStatusResponse:
            ref = model_ref(request.model_spec)
            return status_response(self.core.manager.status(ref.name, ref.version, ref.label))
        return await self._call(context, request.model_spec.name, "", body)

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context):
        async def body() -> model_management_pb2.ReloadConfigResponse:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument("ServerCore is configured to use model_config_list; "
                                       "the reload request must carry one")
            try:
                validate_model_server_config(request.config)
            except ConfigError as exc:
                raise invalid_argument(str(exc)) from exc
            await self.core.manager.apply_config(request.config)
            log.info("reloaded model config from gRPC: %d models", len(request.config.model_config_list.config))
            response = model_management_pb2.ReloadConfigResponse()
            response.status.error_code = 0
            return response
        return await self._call(context, "", "", body)


def add_services(server: grpc.aio.Server, core: ServingCore) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
