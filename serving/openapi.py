"""The OpenAPI 3.1 description of `lenspipe serve`'s REST API, served at GET /v1/openapi.json.

One document per server, built once when the REST API starts (not at import): it lists exactly the
routes server.py answers with these options (the Prometheus path only when monitoring is on). Path
templates follow TF Serving's regexes (server.PREDICTION_API, server.MODEL_STATUS_API); those are
matched case-insensitively, as in TF Serving, which OpenAPI cannot say, so the description says it.
tests/serving/test_openapi.py checks the document against the running server's routes.
"""
from __future__ import annotations

from typing import Any

from serving.flags import ServerOptions

OPENAPI_PATH = "/v1/openapi.json"
PREDICTION_METHODS = ("predict", "classify", "regress")

_REF = "#/components/schemas/"
_MODEL_NAME = {"name": "model_name", "in": "path", "required": True,
               "description": "A configured model name (percent-decoded; `/` and `:` must be encoded).",
               "schema": {"type": "string", "pattern": "^[^/:]+$"}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "description": "A version number (int64). Larger than int64 is 400 `Failed to convert version`.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_LABEL = {"name": "label", "in": "path", "required": True,
          "description": "A `version_labels` key of the model config (percent-decoded).",
          "schema": {"type": "string", "pattern": "^[^/:]+$"}}
# The three ways a request names a servable, as TF Serving's URLs do.
_SPECS = (("/v1/models/{model_name}", [_MODEL_NAME]),
          ("/v1/models/{model_name}/versions/{version}", [_MODEL_NAME, _VERSION]),
          ("/v1/models/{model_name}/labels/{label}", [_MODEL_NAME, _LABEL]))

# TF Serving's REST mapping of canonical codes (errors.py), per status a client can get from a route.
_STATUS_TEXT = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE: a malformed body, a bad value or shape, "
           "an unknown signature or label, a version number too large",
    "404": "NOT_FOUND: no such model, or the version is not AVAILABLE",
    "413": "The body, gunzipped if its Content-Encoding names gzip, is larger than --rest_api_max_body_bytes "
           "(lenspipe addition)",
    "429": "RESOURCE_EXHAUSTED from the model",
    "500": "INTERNAL / UNKNOWN / DATA_LOSS from the model, or a signature whose method_name fails "
           "--enable_signature_method_name_check",
    "503": "UNAVAILABLE: the batch queue is full, or the version is being unloaded",
    "504": "DEADLINE_EXCEEDED: longer than --rest_api_timeout_in_ms",
}


def _error(status: str) -> dict[str, Any]:
    return {"description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def _preflight(cors: bool) -> dict[str, Any]:
    headers = " with Access-Control-Allow-* headers" if cors else ""
    return {"summary": "CORS preflight (as TF Serving's http_server.cc)",
            "parameters": [{"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": {"description": f"Origin names an http(s) origin: empty body{headers}"},
                          "400": {"description": f"No http(s) Origin: empty body{headers}"}}}


def _schemas() -> dict[str, Any]:
    tensor = {"description": "A JSON tensor: a (nested) list or scalar of numbers, booleans, strings, "
                             "`{\"b64\": ...}` objects for bytes; NaN, Infinity and -Infinity are read bare."}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                  "properties": {"error": {"type": "string"}}},
        "PredictRequest": {
            "type": "object",
            "description": "Row format (`instances`) or columnar (`inputs`), exactly one of them.",
            "properties": {"signature_name": {"type": "string"},
                           "instances": {"type": "array", "items": tensor},
                           "inputs": tensor}},
        "PredictResponse": {"type": "object", "description": "`predictions` for row requests, `outputs` for columnar.",
                            "minProperties": 1, "maxProperties": 1,
                            "properties": {"predictions": {"type": "array"}, "outputs": {}}},
        "ExamplesRequest": {
            "type": "object", "required": ["examples"],
            "properties": {"signature_name": {"type": "string"},
                           "context": {"type": "object", "description": "Features common to every example."},
                           "examples": {"type": "array", "items": {
                               "type": "object", "description": "feature name -> value or list of values "
                                                                "(numbers, strings, {\"b64\": ...})"}}}},
        "ClassifyResponse": {"type": "object", "required": ["results"], "additionalProperties": False,
                             "properties": {"results": {"type": "array", "items": {"type": "array", "items": {
                                 "type": "array", "prefixItems": [{"type": "string"}, {}], "minItems": 2,
                                 "maxItems": 2}}}}},
        "RegressResponse": {"type": "object", "required": ["results"], "additionalProperties": False,
                            "properties": {"results": {"type": "array"}}},
        "ModelStatus": {
            "type": "object", "required": ["model_version_status"],
            "properties": {"model_version_status": {"type": "array", "items": {
                "type": "object", "required": ["version", "state", "status"],
                "properties": {
                    "version": {"type": "string", "pattern": "^[0-9]+$"},
                    "state": {"enum": ["UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]},
                    "status": {"type": "object", "required": ["error_code", "error_message"],
                               "properties": {"error_code": {"type": "string"},
                                              "error_message": {"type": "string"}}}}}}}},
        "ModelMetadata": {
            "type": "object", "required": ["model_spec", "metadata"],
            "properties": {"model_spec": {"type": "object", "required": ["name", "version"]},
                           "metadata": {"type": "object", "required": ["signature_def"],
                                        "properties": {"signature_def": {
                                            "type": "object", "required": ["signature_def"]}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    }


def openapi_document(options: ServerOptions, version: str = "") -> dict[str, Any]:
    """The OpenAPI document for a server started with `options`."""
    cors = options.rest_api_enable_cors_support
    paths: dict[str, Any] = {}
    for base, params in _SPECS:
        paths[base] = {"get": {"summary": "Model version status (GetModelStatus), newest first",
                               "operationId": f"status{len(params)}", "parameters": params,
                               "responses": {"200": _ok("ModelStatus", "model_version_status"),
                                             "400": _error("400"), "404": _error("404")}},
                       "options": _preflight(cors)}
        paths[base + "/metadata"] = {
            "get": {"summary": "Model metadata (GetModelMetadata): every SignatureDef",
                    "operationId": f"metadata{len(params)}", "parameters": params,
                    "responses": {"200": _ok("ModelMetadata", "model_spec and metadata.signature_def"),
                                  "400": _error("400"), "404": _error("404")}},
            "options": _preflight(cors)}
        for method in PREDICTION_METHODS:
            request, response = ("PredictRequest", "PredictResponse") if method == "predict" else \
                ("ExamplesRequest", "ClassifyResponse" if method == "classify" else "RegressResponse")
            paths[f"{base}:{method}"] = {
                "post": {"summary": f"{method.capitalize()} (TF Serving's :{method})",
                         "operationId": f"{method}{len(params)}", "parameters": params,
                         "requestBody": {"required": True, "content": {
                             "application/json": {"schema": {"$ref": _REF + request}}}},
                         "responses": {"200": _ok(response, "results"),
                                       **{s: _error(s) for s in ("400", "404", "413", "429", "500", "503", "504")}}},
                "options": _preflight(cors)}
    paths[OPENAPI_PATH] = {"get": {"summary": "This document", "operationId": "openapi",
                                   "responses": {"200": {"description": "OpenAPI 3.1 JSON",
                                                         "content": {"application/json": {}}}}},
                           "options": _preflight(cors)}
    paths["/healthz"] = {"get": {"summary": "Liveness (lenspipe addition)", "operationId": "healthz",
                                 "responses": {"200": _ok("Health", "the process answers")}}}
    paths["/readyz"] = {"get": {"summary": "Readiness: every model has an AVAILABLE version and the server is "
                                           "not draining (lenspipe addition)", "operationId": "readyz",
                                "responses": {"200": _ok("Ready", "ready"), "503": _ok("Ready", "not ready")}}}
    if options.prometheus_path:
        paths[options.prometheus_path] = {"get": {
            "summary": "Prometheus metrics with TF Serving's names (--monitoring_config_file)",
            "operationId": "metrics",
            "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lenspipe serve REST API (TensorFlow Serving compatible)",
                 "version": version or "1",
                 "description": (
                     "TF Serving's REST API as `lenspipe serve` answers it. URLs under /v1/ are matched "
                     "case-insensitively (TF Serving's regexes); model names and labels are percent-decoded. "
                     "Every error body is {\"error\": \"...\"} with TF Serving's status for its canonical code. "
                     "A /v1/ path matching none of these is 400 `Malformed request: <METHOD> <path>`; "
                     "OPTIONS on any /v1/ path is the CORS preflight; any other path is 404 (text).")},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
