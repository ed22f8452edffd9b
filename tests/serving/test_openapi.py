"""GET /v1/openapi.json describes exactly the REST routes the server answers.

Every documented operation answers a real request with a documented status and a body that matches
its schema; any path the document does not have gets the not-routed answer (400 `Malformed request`
under /v1/, 404 elsewhere), for generated paths built from the routes' own words.
"""
from __future__ import annotations

import base64
import re
import urllib.parse

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import http
from fixture_models import png_bytes
from rest_oracle import Routes, check_answer
from serving import server as rest_server
from serving.openapi import OPENAPI_PATH

IMAGE_B64 = base64.b64encode(png_bytes(1)).decode()
EXAMPLE = {"image": {"b64": IMAGE_B64}}
BODIES = {"predict": {"instances": [{"b64": IMAGE_B64}]},
          "classify": {"signature_name": "classification", "examples": [EXAMPLE]},
          "regress": {"signature_name": "regression", "examples": [EXAMPLE]}}
PARAMS = {"model_name": "demo", "version": "1", "label": "stable"}


def _document(url: str) -> dict:
    answer = http("GET", url + OPENAPI_PATH)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def test_the_document_is_openapi_3_1_with_valid_schemas(main_server):
    doc = _document(main_server.url)
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"]
    for name in doc["components"]["schemas"]:
        jsonschema.Draft202012Validator.check_schema({"$ref": f"#/components/schemas/{name}",
                                                      "components": doc["components"]})
    # Every prediction method the server routes (its own regex) is documented in all three URL forms.
    methods = re.search(r"\((\w+(?:\|\w+)+)\)", rest_server.PREDICTION_API.pattern).group(1).split("|")
    for method in methods:
        for base in ("/v1/models/{model_name}", "/v1/models/{model_name}/versions/{version}",
                     "/v1/models/{model_name}/labels/{label}"):
            assert "post" in doc["paths"][f"{base}:{method}"]
    assert "/monitoring/prometheus/metrics" in doc["paths"]  # main_server has monitoring on


def test_no_metrics_route_is_documented_without_monitoring(compat_server):
    assert not any("prometheus" in path for path in _document(compat_server.url)["paths"])
    assert http("GET", compat_server.url + "/monitoring/prometheus/metrics").status == 404


def test_every_documented_route_answers(main_server):
    doc = _document(main_server.url)
    routes = Routes(doc)
    answered = []
    for template, item in doc["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], template)
        for method in item:
            body = BODIES[template.rsplit(":", 1)[1]] if method == "post" else None
            headers = {"Origin": "http://example.test"} if method == "options" else {}
            answer = http(method.upper(), main_server.url + path, body, headers=headers)
            assert answer.status == 200, f"{method.upper()} {path}: {answer.status} {answer.body[:200]!r}"
            lowered = {k.lower(): v for k, v in answer.headers.items()}
            assert check_answer(routes, method.upper(), path, answer.status, lowered, answer.body) == []
            answered.append((method, template))
    assert len(answered) == sum(len(item) for item in doc["paths"].values())


_WORDS = ["v1", "V1", "models", "MODELS", "demo", "latest", "nope", "versions", "1", "2", "07", "labels", "stable",
          "canary", "metadata", "METADATA", "openapi.json", "healthz", "readyz", "monitoring", "prometheus",
          "metrics", "", "..", ".", "%2F", "%3A"]
_SUFFIX = ["", ":predict", ":classify", ":regress", ":PREDICT", ":explain", ":", "/", "?x=1", "%3Apredict"]


@st.composite
def _paths(draw) -> str:
    segments = draw(st.lists(st.one_of(st.sampled_from(_WORDS), st.text(
        st.characters(codec="ascii", exclude_characters="/?#"), max_size=6).map(
        lambda s: urllib.parse.quote(s, safe=""))), min_size=1, max_size=6))
    return "/" + "/".join(segments) + draw(st.sampled_from(_SUFFIX))


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=_paths())
def test_no_route_beyond_the_document(main_server, method, path):
    """A request the document has no operation for answers as unrouted; one it has answers as documented."""
    routes = Routes(_cached_document(main_server.url))
    body = BODIES["predict"] if method in ("POST", "PUT", "PATCH") else None
    answer = http(method, main_server.url + path, body)
    lowered = {k.lower(): v for k, v in answer.headers.items()}
    assert check_answer(routes, method, path, answer.status, lowered, answer.body) == [], (method, path)


_DOCS: dict[str, dict] = {}


def _cached_document(url: str) -> dict:
    if url not in _DOCS:
        _DOCS[url] = _document(url)
    return _DOCS[url]

