"""The official tensorflow_serving.apis gRPC stubs against the server."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from conftest import http
from fixture_models import LABELS, example_bytes, png_bytes


def assert_rpc_error(call, request, code: grpc.StatusCode, details: str | None = None) -> None:
    """`call(request)` must fail with `code` (and exactly `details` when given)."""
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=30)
    assert err.value.code() == code
    if details is not None:
        assert err.value.details() == details


@pytest.fixture(scope="module")
def channel(main_server):
    with grpc.insecure_channel(main_server.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def test_predict_matches_rest_and_reports_model_spec(predict_stub, main_server):
    images = [png_bytes(1), png_bytes(2)]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "demo"
    request.model_spec.version_label = "stable"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    response = predict_stub.Predict(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("demo", 1, "serving_default")
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    rest = http("POST", f"{main_server.url}/v1/models/demo/versions/1:predict",
                {"instances": [{"b64": __import__("base64").b64encode(i).decode()} for i in images]}).json()
    assert np.max(np.abs(probabilities - np.array([p["probabilities"] for p in rest["predictions"]]))) <= 1e-6
    assert [b.decode() for b in tf.make_ndarray(response.outputs["label"])] == [p["label"] for p in rest["predictions"]]


def test_predict_output_filter_and_errors(predict_stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "demo"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png_bytes(1)], dtype=tf.string))
    request.output_filter.append("label")
    response = predict_stub.Predict(request, timeout=30)
    assert list(response.outputs) == ["label"] and response.model_spec.version.value == 2

    request.model_spec.name = "nope"
    assert_rpc_error(predict_stub.Predict, request, grpc.StatusCode.NOT_FOUND,
                     "Servable not found for request: Latest(nope)")

    request.model_spec.name = "demo"
    request.model_spec.version_label = "nope"
    assert_rpc_error(predict_stub.Predict, request, grpc.StatusCode.INVALID_ARGUMENT)


def test_get_model_metadata(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "demo"
    request.metadata_field.append("signature_def")
    response = predict_stub.GetModelMetadata(request, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    assert response.model_spec.version.value == 2
    assert sig_map.signature_def["serving_default"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    assert sig_map.signature_def["classification"].method_name == "tensorflow/serving/classify"

    del request.metadata_field[:]
    assert_rpc_error(predict_stub.GetModelMetadata, request, grpc.StatusCode.INVALID_ARGUMENT)


def test_get_model_status(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "latest"
    response = model_stub.GetModelStatus(request, timeout=30)
    states = {s.version: (get_model_status_pb2.ModelVersionStatus.State.Name(s.state), s.status.error_code)
              for s in response.model_version_status}
    assert states[2] == ("AVAILABLE", 0) and states[4][0] == "END" and states[4][1] != 0
    request.model_spec.name = "nope"
    assert_rpc_error(model_stub.GetModelStatus, request, grpc.StatusCode.NOT_FOUND)


def test_classify_and_regress(predict_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "demo"
    request.model_spec.signature_name = "classification"
    request.input.example_list.examples.add().ParseFromString(example_bytes(png_bytes(1)))
    response = predict_stub.Classify(request, timeout=30)
    classes = response.result.classifications[0].classes
    assert [c.label for c in classes] == LABELS and abs(sum(c.score for c in classes) - 1) < 1e-5

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "demo"
    regress.model_spec.signature_name = "regression"
    regress.input.example_list.examples.add().ParseFromString(example_bytes(png_bytes(1)))
    assert abs(predict_stub.Regress(regress, timeout=30).result.regressions[0].value - classes[0].score) < 1e-6

    request.model_spec.signature_name = "serving_default"
    assert_rpc_error(predict_stub.Classify, request, grpc.StatusCode.INVALID_ARGUMENT,
                     "Expected classification signature method_name to be tensorflow/serving/classify. "
                     "Was: tensorflow/serving/predict")


def test_reload_config_rejects_an_invalid_config(model_stub):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.add(name="", base_path="/nowhere")
    assert_rpc_error(model_stub.HandleReloadConfigRequest, request, grpc.StatusCode.INVALID_ARGUMENT)
