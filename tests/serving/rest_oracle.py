"""What a correct answer of `lenspipe serve`'s REST API looks like, read from its OpenAPI document.

Shared by the OpenAPI route test and the REST fuzz test: match a raw request path to the document's
operations (case-insensitively, as TF Serving's regexes), and check one answer against the document
and TF Serving's error conventions. Returns a list of problems ([] when the answer is right).
"""
from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

# Messages whose canonical code (so HTTP status) TF Serving fixes; an error whose message starts with
# one of these must carry that status.
MESSAGE_STATUS = [
    (re.compile(r"JSON Parse error"), 400),
    (re.compile(r"Malformed request"), 400),
    (re.compile(r"Missing model name in request"), 400),
    (re.compile(r"Failed to convert version"), 400),
    (re.compile(r"Unrecognized servable version label"), 400),
    (re.compile(r"Servable not found for request"), 404),
    (re.compile(r"Could not find (any versions|version)"), 404),
    (re.compile(r'Serving signature name: ".*" not found'), 400),
    (re.compile(r"Task size \d+ is larger than maximum input batch size"), 400),
    (re.compile(r"Request body larger than \d+ bytes"), 413),
    (re.compile(r"Deadline Exceeded"), 504),
]
# The only 5xx answers TF Serving documents for these routes, by message.
DOCUMENTED_5XX = [
    (503, re.compile(r"The batch scheduling queue to which this task was submitted is full")),
    (503, re.compile(r"Servable is being unloaded")),
    (504, re.compile(r"Deadline Exceeded")),
    (500, re.compile(r"Expected prediction signature method_name to be one of")),
]
_PARAM = {"model_name": r"[^/:]+", "label": r"[^/:]+", "version": r"[0-9]+"}


class Routes:
    """The operations of an OpenAPI document, matchable against raw request paths."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._routes = []
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        for template, item in document["paths"].items():
            pattern = re.escape(template)
            for name, regex in _PARAM.items():
                pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{regex})")
            # TF Serving's regexes (and so lenspipe's) ignore case under /v1/; other paths are exact.
            flags = re.IGNORECASE if template.startswith("/v1/") else 0
            self._routes.append((re.compile(pattern, flags), template, item))

    def match(self, method: str, raw_path: str) -> tuple[str, dict[str, Any]] | None:
        """(template, operation) answering `method raw_path`, or None if the document has none."""
        path = raw_path.split("?", 1)[0]
        for regex, template, item in self._routes:
            if regex.fullmatch(path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def validator(self, ref: str) -> jsonschema.Draft202012Validator:
        """A JSON Schema validator (cached) for a `#/components/schemas/...` reference of the document."""
        if ref not in self._validators:
            schema = {"$ref": ref, "components": self.document["components"]}
            jsonschema.Draft202012Validator.check_schema(schema)
            self._validators[ref] = jsonschema.Draft202012Validator(schema)
        return self._validators[ref]


def check_answer(routes: Routes, method: str, raw_path: str, status: int, headers: dict[str, str],
                 body: bytes) -> list[str]:
    """Problems with one answer (status, lower-cased headers, body) to `method raw_path`.

    Whatever the request's Content-Encoding and body: the server decodes bodies itself (gzip only,
    as TF Serving), so no encoded body may get an answer from below the routes (aiohttp's 400
    text/plain), and an error is `{"error": ...}` like any other.
    """
    problems: list[str] = []
    path = raw_path.split("?", 1)[0]
    under_v1 = path[:4].lower() == "/v1/"
    content_type = headers.get("content-type", "")
    if method == "OPTIONS" and under_v1:
        if status not in (200, 400) or body:
            problems.append(f"preflight answered {status} with {len(body)} body bytes")
        return problems
    matched = routes.match(method, raw_path)
    if matched is None:
        if not under_v1:
            return [] if status == 404 else [f"undocumented path outside /v1/ answered {status}, not 404"]
        documented = {"400"}
    else:
        documented = set(matched[1]["responses"])
    if str(status) not in documented:
        problems.append(f"status {status} is not documented for this route (documented: {sorted(documented)})")
    if method == "HEAD":
        return problems
    if not under_v1 and matched is not None and "text/plain" in content_type:
        return problems  # the Prometheus text
    if not content_type.startswith("application/json"):
        return problems + [f"Content-Type {content_type!r}, not application/json"]
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return problems + [f"body is not JSON ({exc}): {body[:120]!r}"]
    if status >= 400:
        if not (isinstance(doc, dict) and set(doc) == {"error"} and isinstance(doc["error"], str) and doc["error"]):
            return problems + [f"error body is not {{\"error\": \"...\"}}: {body[:200]!r}"]
        message = doc["error"]
        if matched is None and not re.match(r"Malformed request|Missing model name in request", message):
            problems.append(f"unrouted /v1/ path answered {message!r}, not 'Malformed request: ...'")
        for regex, expected in MESSAGE_STATUS:
            if regex.match(message) and status != expected:
                problems.append(f"{message[:100]!r} answered {status}; TF Serving answers {expected}")
                break
        if status >= 500 and not any(s == status and regex.match(message) for s, regex in DOCUMENTED_5XX):
            problems.append(f"undocumented {status}: {message[:300]!r}")
    elif matched is not None:
        content = matched[1]["responses"][str(status)].get("content", {}).get("application/json", {})
        if "schema" in content:
            error = jsonschema.exceptions.best_match(routes.validator(content["schema"]["$ref"]).iter_errors(doc))
            if error is not None:
                problems.append(f"{status} body does not match {content['schema']['$ref']}: {error.message[:200]}")
    return problems
