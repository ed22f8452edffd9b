"""TF Serving drop-in behaviour over real HTTP and gRPC: its README requests, TF1 models, the signature
method_name check, MultiInference, JSON NaN/Infinity, CORS preflight and gzip bodies."""
from __future__ import annotations

import gzip
import json

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, inference_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from conftest import ServerThread, half_models_config, http, start_server
from fixture_models import half_example
from serving.core import CLASSIFY_METHOD, REGRESS_METHOD, ModelRef


def predict(server: ServerThread, model: str, body: dict | bytes, headers: dict | None = None):
    return http("POST", f"{server.url}/v1/models/{model}:predict", body, headers=headers)


# ---- TF Serving's README quick start: rank-1 instances for an x of shape [-1, 1] ------------------

@pytest.mark.parametrize("model,expected", [("half_plus_two", [2.5, 3.0, 4.5]), ("half_plus_three", [3.5, 4.0, 5.5])])
def test_readme_quick_start_rank_1_instances(compat_server, model, expected):
    r = predict(compat_server, model, {"instances": [1.0, 2.0, 5.0]})
    assert (r.status, r.json()) == (200, {"predictions": expected})


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_three"])
def test_rank_1_columnar_inputs_bare_and_named(compat_server, model):
    bare = predict(compat_server, model, {"inputs": [1.0, 2.0, 5.0]}).json()
    named = predict(compat_server, model, {"inputs": {"x": [1.0, 2.0, 5.0]}}).json()
    rows = predict(compat_server, model, {"instances": [{"x": 1.0}, {"x": 2.0}, {"x": 5.0}]}).json()
    offset = 2.0 if model == "half_plus_two" else 3.0
    assert bare == named == {"outputs": [0.5 * v + offset for v in (1.0, 2.0, 5.0)]}
    assert rows == {"predictions": [0.5 * v + offset for v in (1.0, 2.0, 5.0)]}


def test_rank_2_instances_keep_their_shape(compat_server):
    r = predict(compat_server, "half_plus_two", {"instances": [[1.0], [2.0]]})
    assert r.json() == {"predictions": [[2.5], [3.0]]}


def test_the_model_not_the_codec_rejects_a_shape_it_cannot_take(compat_server):
    # As in TF Serving, shapes are not checked against the signature: MatMul itself needs rank 2.
    r = predict(compat_server, "half_plus_two", {"signature_name": "matmul", "instances": [1.0, 2.0]})
    assert r.status == 400 and "In[0] ndims must be >= 2" in r.json()["error"]
    assert predict(compat_server, "half_plus_two", {"signature_name": "matmul", "instances": [[1.0]]}).json() == \
        {"predictions": [[1.0]]}


# ---- TF1 SavedModels ------------------------------------------------------------------------------

def test_tf1_model_loads_with_the_v1_loader_and_tf2_with_the_tf2_loader(compat_server, half_models):
    with pytest.raises(ValueError, match="Shape must be rank 1 but is rank 0"):
        tf.saved_model.load(str(half_models / "half_plus_three" / "123"))  # why the v1 loader is needed
    core = compat_server.server.core
    assert core.servable(ModelRef("half_plus_three"))._session is not None
    assert core.servable(ModelRef("half_plus_two"))._session is None
    status = http("GET", f"{compat_server.url}/v1/models/half_plus_three").json()
    assert status["model_version_status"][0]["version"] == "123"
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


def test_tf1_regress_and_classify_through_parse_example(compat_server):
    url = f"{compat_server.url}/v1/models/half_plus_three"
    regress = http("POST", f"{url}:regress", {"signature_name": "tensorflow/serving/regress",
                                              "examples": [{"x": 1.0}, {"x": 2.0}]})
    assert (regress.status, regress.json()) == (200, {"results": [3.5, 4.0]})
    classify = http("POST", f"{url}:classify", {"signature_name": "tensorflow/serving/classify",
                                                "examples": [{"x": 1.0}, {"x": 5.0}]})
    assert (classify.status, classify.json()) == (200, {"results": [[["", 3.5]], [["", 5.5]]]})


def test_tf1_metadata_lists_the_builder_signatures(compat_server):
    sigs = http("GET", f"{compat_server.url}/v1/models/half_plus_three/metadata").json()[
        "metadata"]["signature_def"]["signature_def"]
    assert sigs["regress_x_to_y"]["method_name"] == REGRESS_METHOD
    assert sigs["serving_default"]["inputs"]["x"]["name"] == "x:0"


# ---- --enable_signature_method_name_check ---------------------------------------------------------

def _examples_body(signature: str, *xs: float) -> dict:
    return {"signature_name": signature, "examples": [{"x": x} for x in xs]}


def test_without_the_check_tf2_predict_signatures_classify_and_regress(compat_server):
    url = f"{compat_server.url}/v1/models/half_plus_two"
    assert http("POST", f"{url}:regress", _examples_body("regress_x_to_y", 1.0, 2.0)).json() == {"results": [2.5, 3.0]}
    assert http("POST", f"{url}:classify", _examples_body("classify_x_to_y", 1.0)).json() == \
        {"results": [[["", 2.5]]]}
    with grpc.insecure_channel(compat_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = "half_plus_two", "regress_x_to_y2"
        request.input.example_list.examples.add().ParseFromString(half_example(2.0))
        assert [r.value for r in stub.Regress(request, timeout=30).result.regressions] == [4.0]
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
        classify.input.example_list.examples.add().ParseFromString(half_example(4.0))
        assert stub.Classify(classify, timeout=30).result.classifications[0].classes[0].score == 4.0


def test_with_the_check_predict_signatures_are_refused(half_models, tmp_path):
    server = start_server(model_config_file=str(half_models_config(half_models, tmp_path)),
                          file_system_poll_wait_seconds=3600, enable_signature_method_name_check=True)
    try:
        r = http("POST", f"{server.url}/v1/models/half_plus_two:regress", _examples_body("regress_x_to_y", 1.0))
        assert (r.status, r.json()) == (400, {"error": "Expected regression signature method_name to be "
                                                       "tensorflow/serving/regress. Was: tensorflow/serving/predict"})
        tf1 = http("POST", f"{server.url}/v1/models/half_plus_three:regress", _examples_body("regress_x_to_y", 1.0))
        assert tf1.json() == {"results": [3.5]}
        custom = predict(server, "half_plus_two", {"signature_name": "matmul", "instances": [[1.0]]})
        assert (custom.status, custom.json()) == (500, {"error": (
            "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
            "tensorflow/serving/classify, tensorflow/serving/regress}. Was: custom/matmul")})
        assert predict(server, "half_plus_two", {"instances": [1.0]}).json() == {"predictions": [2.5]}
    finally:
        server.stop()


# ---- gRPC MultiInference --------------------------------------------------------------------------

def _multi(model: str, *tasks: tuple[str, str], xs=(1.0, 2.0)) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = model, signature, method
    for x in xs:
        request.input.example_list.examples.add().ParseFromString(half_example(x))
    return request


@pytest.fixture(scope="module")
def compat_stub(compat_server):
    with grpc.insecure_channel(compat_server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.mark.parametrize("model", ["half_plus_three", "half_plus_two"])
def test_multi_inference_runs_every_task_on_one_input(compat_stub, model):
    response = compat_stub.MultiInference(_multi(
        model, ("regress_x_to_y", REGRESS_METHOD), ("regress_x_to_y2", REGRESS_METHOD),
        ("classify_x_to_y", CLASSIFY_METHOD)), timeout=30)
    b = 3.0 if model == "half_plus_three" else 2.0
    y, y2, scores = response.results
    assert [r.value for r in y.regression_result.regressions] == [0.5 + b, 1.0 + b]
    assert [r.value for r in y2.regression_result.regressions] == [0.5 + b + 1, 1.0 + b + 1]
    assert [c.classes[0].score for c in scores.classification_result.classifications] == [0.5 + b, 1.0 + b]
    assert [(r.model_spec.name, r.model_spec.signature_name) for r in response.results] == [
        (model, "regress_x_to_y"), (model, "regress_x_to_y2"), (model, "classify_x_to_y")]
    assert {r.model_spec.version.value for r in response.results} == {123 if model == "half_plus_three" else 1}


@pytest.mark.parametrize("tasks,code,details", [
    ([("half_plus_three", "regress_x_to_y", REGRESS_METHOD), ("half_plus_three", "regress_x_to_y", REGRESS_METHOD)],
     grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
    ([("half_plus_three", "regress_x_to_y", REGRESS_METHOD), ("half_plus_two", "regress_x_to_y2", REGRESS_METHOD)],
     grpc.StatusCode.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("half_plus_three", "regress_x_to_y", "tensorflow/serving/predict")],
     grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict"),
    ([("half_plus_three", "nope", REGRESS_METHOD)],
     grpc.StatusCode.INVALID_ARGUMENT, "Requested signature not found in model graph: nope"),
])
def test_multi_inference_errors(compat_stub, tasks, code, details):
    request = _multi("", xs=(1.0,))
    for model, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = model, signature, method
    with pytest.raises(grpc.RpcError) as err:
        compat_stub.MultiInference(request, timeout=30)
    assert (err.value.code(), err.value.details()) == (code, details)


# ---- JSON NaN / Infinity --------------------------------------------------------------------------

def test_nan_and_infinity_in_and_out_as_tf_serving_writes_them(compat_server):
    r = predict(compat_server, "half_plus_two", b'{"instances": [NaN, Infinity, -Infinity, 1.0]}')
    assert (r.status, r.body) == (200, b'{"predictions":[NaN,Infinity,-Infinity,2.5]}')
    columnar = predict(compat_server, "half_plus_three", b'{"inputs": {"x": [[-Infinity], [0.5]]}}')
    assert columnar.body == b'{"outputs":[[-Infinity],[3.25]]}'
    regress = http("POST", f"{compat_server.url}/v1/models/half_plus_three:regress",
                   b'{"signature_name": "regress_x_to_y", "examples": [{"x": NaN}, {"x": 1.0}]}')
    assert regress.body == b'{"results":[NaN,3.5]}'


def test_other_invalid_json_is_still_a_parse_error(compat_server):
    r = predict(compat_server, "half_plus_two", b'{"instances": [NaN, nope]}')
    assert r.status == 400 and r.json()["error"].startswith("JSON Parse error:")


# ---- OPTIONS preflight and CORS -------------------------------------------------------------------

def test_preflight_with_cors_support(main_server):
    ok = http("OPTIONS", f"{main_server.url}/v1/models/demo:predict", headers={"Origin": "https://app.example"})
    assert (ok.status, ok.body) == (200, b"")
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    assert ok.headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert ok.headers["Access-Control-Allow-Headers"] == "Content-Type"
    no_origin = http("OPTIONS", f"{main_server.url}/v1/models/demo:predict")
    assert (no_origin.status, no_origin.body) == (400, b"")
    assert no_origin.headers["Access-Control-Allow-Origin"] == "*"
    assert http("OPTIONS", f"{main_server.url}/healthz", headers={"Origin": "http://a"}).status == 404


def test_preflight_without_cors_support_has_no_cors_headers(compat_server):
    r = http("OPTIONS", f"{compat_server.url}/v1/models/half_plus_two", headers={"Origin": "http://a"})
    assert (r.status, r.body) == (200, b"")
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Origin" not in http("GET", f"{compat_server.url}/v1/models/half_plus_two").headers


# ---- gzip bodies ----------------------------------------------------------------------------------

def test_gzip_bodies_valid_and_invalid(compat_server):
    body = json.dumps({"instances": [1.0]}).encode()
    valid = predict(compat_server, "half_plus_two", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert (valid.status, valid.json()) == (200, {"predictions": [2.5]})
    invalid = predict(compat_server, "half_plus_two", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert (invalid.status, invalid.json()) == (400, {"error": "JSON Parse error: The document is empty"})
    truncated = predict(compat_server, "half_plus_two", gzip.compress(body)[:12], headers={"Content-Encoding": "gzip"})
    assert truncated.status == 400 and truncated.json()["error"].startswith("JSON Parse error")
    empty = predict(compat_server, "half_plus_two", b"")
    assert (empty.status, empty.json()) == (400, {"error": "JSON Parse error: The document is empty"})


def test_tf1_and_rank_1_requests_through_the_batching_queue(half_models, tmp_path):
    server = start_server(model_config_file=str(half_models_config(half_models, tmp_path)),
                          file_system_poll_wait_seconds=3600, enable_batching=True)
    try:
        for model, offset in (("half_plus_three", 3.0), ("half_plus_two", 2.0)):
            r = predict(server, model, {"instances": [1.0, 2.0, 5.0]})
            assert r.json() == {"predictions": [0.5 * v + offset for v in (1.0, 2.0, 5.0)]}
        regress = http("POST", f"{server.url}/v1/models/half_plus_three:regress", _examples_body("regress_x_to_y", 4.0))
        assert regress.json() == {"results": [5.0]}
    finally:
        server.stop()
