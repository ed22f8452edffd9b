"""REST conformance with TF Serving: URLs, JSON shapes, status codes and error bodies, over real HTTP."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import http
from fixture_models import LABELS, png_bytes


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


# ---- status ----------------------------------------------------------------------------------------

def test_status_lists_all_versions_newest_first_with_string_versions(main_server):
    r = http("GET", f"{main_server.url}/v1/models/demo")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_status_of_one_version_and_of_a_label(main_server):
    by_version = http("GET", f"{main_server.url}/v1/models/demo/versions/1").json()
    by_label = http("GET", f"{main_server.url}/v1/models/demo/labels/stable").json()
    assert by_version == by_label
    assert [s["version"] for s in by_version["model_version_status"]] == ["1"]


def test_failed_version_is_listed_with_its_error_and_unready_dirs_are_not(main_server):
    statuses = http("GET", f"{main_server.url}/v1/models/latest").json()["model_version_status"]
    by_version = {s["version"]: s for s in statuses}
    assert by_version["2"]["state"] == "AVAILABLE"
    assert by_version["4"]["state"] == "END"
    assert by_version["4"]["status"]["error_code"] != "OK" and by_version["4"]["status"]["error_message"]
    assert "3" not in by_version and "5" not in by_version  # no saved_model.pb / "5.tmp" is not a version


@pytest.mark.parametrize("path,status,message", [
    ("/v1/models/nope", 404, "Could not find any versions of model nope"),
    ("/v1/models/demo/versions/9", 404, "Could not find version 9 of model demo"),
    ("/v1/models/demo/labels/nope", 400, "Unrecognized servable version label: nope"),
    ("/v1/models", 400, "Missing model name in request."),
    ("/v1/models/demo/versions/x", 400, "Malformed request: GET /v1/models/demo/versions/x"),
    ("/v1/models/demo:predict", 400, "Malformed request: GET /v1/models/demo:predict"),
    ("/v1/modelz/demo", 400, "Malformed request: GET /v1/modelz/demo"),
])
def test_status_errors(main_server, path, status, message):
    r = http("GET", main_server.url + path)
    assert (r.status, r.json()) == (status, {"error": message})


def test_urls_are_case_insensitive_like_tf_serving(main_server):
    assert http("GET", f"{main_server.url}/V1/MODELS/demo/VERSIONS/2").status == 200


# ---- metadata --------------------------------------------------------------------------------------

def test_metadata_has_model_spec_and_signature_defs_with_int64_as_strings(main_server):
    r = http("GET", f"{main_server.url}/v1/models/demo/versions/1/metadata")
    doc = r.json()
    assert r.status == 200
    assert doc["model_spec"] == {"name": "demo", "version": "1", "signature_name": ""}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert default["inputs"]["image_bytes"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert set(default["outputs"]) == {"probabilities", "class_id", "label", "model_version"}
    assert sigs["classification"]["method_name"] == "tensorflow/serving/classify"


def test_metadata_of_latest_and_label(main_server):
    assert http("GET", f"{main_server.url}/v1/models/demo/metadata").json()["model_spec"]["version"] == "2"
    assert http("GET", f"{main_server.url}/v1/models/demo/labels/stable/metadata").json()["model_spec"]["version"] == "1"
    r = http("GET", f"{main_server.url}/v1/models/nope/metadata")
    assert (r.status, r.json()) == (404, {"error": "Servable not found for request: Latest(nope)"})


# ---- predict ---------------------------------------------------------------------------------------

def test_predict_row_format_b64_matches_saved_model(main_server, model_cache):
    """Parity: REST predictions from raw bytes == tf.saved_model.load on the same bytes (<= 1e-6)."""
    images = [png_bytes(seed) for seed in range(5)]
    r = http("POST", f"{main_server.url}/v1/models/demo/versions/2:predict",
             {"instances": [b64(i) for i in images]})
    assert r.status == 200
    predictions = r.json()["predictions"]
    expected = tf.saved_model.load(str(model_cache / "2")).signatures["serving_default"](
        image_bytes=tf.constant(images))
    got = np.array([p["probabilities"] for p in predictions], dtype=np.float32)
    assert np.max(np.abs(got - expected["probabilities"].numpy())) <= 1e-6
    assert [p["class_id"] for p in predictions] == expected["class_id"].numpy().tolist()
    assert [p["label"] for p in predictions] == [b.decode() for b in expected["label"].numpy()]
    assert all(p["label"] in LABELS for p in predictions)


def test_predict_columnar_returns_outputs(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo:predict", {"inputs": {"image_bytes": [b64(png_bytes(1))]}})
    doc = r.json()
    assert r.status == 200 and set(doc) == {"outputs"}
    assert set(doc["outputs"]) == {"probabilities", "class_id", "label", "model_version"}
    assert doc["outputs"]["model_version"] == [2]  # unversioned -> highest AVAILABLE
    single = http("POST", f"{main_server.url}/v1/models/demo:predict", {"inputs": [b64(png_bytes(1))]}).json()
    assert single == doc


def test_predict_by_label_and_version(main_server):
    body = {"instances": [b64(png_bytes(3))]}
    stable = http("POST", f"{main_server.url}/v1/models/demo/labels/stable:predict", body).json()
    canary = http("POST", f"{main_server.url}/v1/models/demo/labels/canary:predict", body).json()
    v1 = http("POST", f"{main_server.url}/v1/models/demo/versions/1:predict", body).json()
    assert stable == v1 and stable["predictions"][0]["model_version"] == 1
    assert canary["predictions"][0]["model_version"] == 2


def test_predict_bytes_alias_is_b64_and_other_strings_are_plain(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo:predict",
             {"signature_name": "echo", "instances": ["plain", b64(b"\x00\xffraw")]})
    assert r.json() == {"predictions": [{"text_bytes": b64(b"plain"), "length": 5},
                                        {"text_bytes": b64(b"\x00\xffraw"), "length": 5}]}


def test_predict_multiple_inputs_rows_and_columns(main_server):
    rows = http("POST", f"{main_server.url}/v1/models/demo:predict",
                {"signature_name": "add", "instances": [{"a": [1, 2], "b": 10}, {"a": [3, 4], "b": 0.5}]})
    assert rows.json() == {"predictions": [[11.0, 12.0], [3.5, 4.5]]}
    cols = http("POST", f"{main_server.url}/v1/models/demo:predict",
                {"signature_name": "add", "inputs": {"a": [[1, 2]], "b": [10]}})
    assert cols.json() == {"outputs": [[11.0, 12.0]]}


@pytest.mark.parametrize("path,body,status,message", [
    ("/v1/models/nope:predict", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/nope:predict", b'{"instances": [1]}', 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/demo/versions/7:predict", b'{"instances": [1]}', 404,
     "Servable not found for request: Specific(demo, 7)"),
    ("/v1/models/demo/labels/nope:predict", b'{"instances": [1]}', 400, "Unrecognized servable version label: nope"),
    ("/v1/models/demo:predict", b'{"signature_name": 100, "instances": []}', 400,
     "'signature_name' key must be a string value."),
    ("/v1/models/demo:predict", b'{"signature_name": "nope", "instances": ["x"]}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("/v1/models/demo:predict", b'{"foo": 1}', 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/demo:predict", b'{"inputs": [], "instances": []}', 400,
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"),
    ("/v1/models/demo:predict", b'{"signature_name": "add", "instances": [[1.0, 2.0]]}', 400,
     "signature must have exactly one input"),
    ("/v1/models/demo:predict", b'{"signature_name": "add", "instances": [{"a": ["x", "y"], "b": 1}]}', 400,
     "not of expected type: float"),
    ("/v1/models/demo:predict", b'{"signature_name": "add", "inputs": {"a": [[1, 2]]}}', 400,
     "Missing but required: {b}"),
    ("/v1/models/demo:predict", b'{"instances": [{"b64": "%%%"}]}', 400, "Unable to base64 decode"),
    ("/v1/models/demo:predict", b'{"instances": [{"b64": "aGk="}]}', 400, "png"),  # not an image: TF's error
    ("/v1/models/demo:explain", b"{}", 400, "Malformed request: POST /v1/models/demo:explain"),
    ("/v1/models/demo", b"{}", 400, "Malformed request: POST /v1/models/demo"),
])
def test_predict_errors(main_server, path, body, status, message):
    r = http("POST", main_server.url + path, body)
    assert r.status == status, r.body
    assert set(r.json()) == {"error"} and message.lower() in r.json()["error"].lower()


def test_other_methods_are_malformed(main_server):
    r = http("PUT", f"{main_server.url}/v1/models/demo", b"{}")
    assert (r.status, r.json()) == (400, {"error": "Malformed request: PUT /v1/models/demo"})


def test_body_size_limit_is_413_json(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo:predict", b" " * (2 * 1024 * 1024))
    assert r.status == 413 and "error" in r.json()


# ---- classify / regress ----------------------------------------------------------------------------

def test_classify_returns_label_score_pairs(main_server):
    body = {"signature_name": "classification", "examples": [{"image": b64(png_bytes(1))}, {"image": b64(png_bytes(2))}]}
    r = http("POST", f"{main_server.url}/v1/models/demo:classify", body)
    predict = http("POST", f"{main_server.url}/v1/models/demo:predict",
                   {"instances": [b64(png_bytes(1)), b64(png_bytes(2))]}).json()["predictions"]
    results = r.json()["results"]
    assert r.status == 200 and len(results) == 2
    for result, pred in zip(results, predict):
        assert [label for label, _ in result] == LABELS
        assert np.allclose([score for _, score in result], pred["probabilities"], atol=1e-6)


def test_classify_context_is_merged_into_examples(main_server):
    body = {"signature_name": "classification", "context": {"image": b64(png_bytes(4))}, "examples": [{}]}
    direct = {"signature_name": "classification", "examples": [{"image": b64(png_bytes(4))}]}
    a = http("POST", f"{main_server.url}/v1/models/demo:classify", body)
    b = http("POST", f"{main_server.url}/v1/models/demo:classify", direct)
    assert a.status == 200 and a.json() == b.json()


def test_regress_returns_one_value_per_example(main_server):
    body = {"signature_name": "regression", "examples": [{"image": b64(png_bytes(1))}]}
    r = http("POST", f"{main_server.url}/v1/models/demo:regress", body)
    assert r.status == 200 and isinstance(r.json()["results"][0], float)


@pytest.mark.parametrize("method,signature,message", [
    ("classify", "serving_default",
     "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ("regress", "classification",
     "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/classify"),
])
def test_classify_and_regress_check_method_name(main_server, method, signature, message):
    r = http("POST", f"{main_server.url}/v1/models/demo:{method}",
             {"signature_name": signature, "examples": [{"image": b64(png_bytes(1))}]})
    assert (r.status, r.json()) == (400, {"error": message})


def test_classify_needs_examples_array(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo:classify", {"signature_name": "classification"})
    assert r.status == 400 and "examples" in r.json()["error"]


# ---- beyond /v1: health, readiness, metrics, CORS, path safety ------------------------------------

def test_liveness_readiness_and_unknown_paths(main_server):
    assert http("GET", f"{main_server.url}/healthz").status == 200
    assert http("GET", f"{main_server.url}/readyz").json() == {"ready": True}
    assert http("GET", f"{main_server.url}/nope").status == 404


def test_prometheus_metrics_use_tf_serving_names(main_server):
    http("POST", f"{main_server.url}/v1/models/demo:predict", {"instances": [b64(png_bytes(1))]})
    http("POST", f"{main_server.url}/v1/models/demo/versions/9:predict", {"instances": [b64(png_bytes(1))]})
    r = http("GET", f"{main_server.url}/monitoring/prometheus/metrics")
    text = r.body.decode()
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="demo",status="OK"}' in text
    assert ':tensorflow:serving:request_count{model_name="demo",status="NOT_FOUND"}' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="demo",API="Predict",entrypoint="REST",le="10"}' in text
    assert ":tensorflow:serving:runtime_latency_count" in text


def test_cors_headers_when_enabled(main_server):
    r = http("GET", f"{main_server.url}/v1/models/demo")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    error = http("GET", f"{main_server.url}/v1/models/nope")
    assert error.status == 404 and error.headers["Access-Control-Allow-Origin"] == "*"  # errors too, as TF Serving


@pytest.mark.parametrize("path", [
    "/v1/models/..%2Flatest", "/v1/models/%2E%2E", "/v1/models/..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/models/demo%2F..%2Flatest/versions/2",
])
def test_model_names_never_reach_the_filesystem(main_server, path):
    r = http("GET", main_server.url + path)
    assert r.status == 404 and "Could not find" in r.json()["error"]


def test_labels_never_reach_the_filesystem(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo/labels/..%2F..%2F1:predict", {"instances": ["x"]})
    assert (r.status, r.json()) == (400, {"error": "Unrecognized servable version label: ../../1"})


def test_error_body_is_valid_json_even_with_quotes(main_server):
    r = http("POST", f"{main_server.url}/v1/models/demo:predict", b'{"signature_name": "a\\"b", "instances": [1]}')
    assert json.loads(r.body) == {"error": 'Serving signature name: "a"b" not found in signature def'}
