"""10,000 generated REST requests against a real `lenspipe serve` subprocess (hypothesis).

The requests are built from the OpenAPI document the server itself serves at /v1/openapi.json: every
documented operation, with its path parameters replaced by known, unknown and tricky values (percent
encodings, `..`, huge version numbers, case changes), plus paths the document does not have; bodies
that are valid, of the wrong types, malformed JSON, deeply nested, huge, with bad base64; sent plain,
gzip'd, deflate'd, as broken gzip/deflate or under other Content-Encodings. Each answer is checked by
rest_oracle.check_answer: no 5xx but TF Serving's documented ones, every error `{"error": "..."}` with
TF Serving's status for its message, documented statuses only, 200 bodies matching the document's
schemas; and the server process is alive after every request.
Derandomized, so CI runs the same 10,000 requests every time.
"""
from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.parse
import zlib
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import free_port, install_version, wait_until_ready
from fixture_models import LABELS, png_bytes
from rest_oracle import Routes, check_answer

REQUESTS = 10_000
MAX_BODY = 256 * 1024
MAX_BATCH = 16
REPO = Path(__file__).resolve().parents[2]

PNGS = [png_bytes(seed) for seed in range(3)]
B64 = [base64.b64encode(p).decode() for p in PNGS]
MODELS = ["demo", "half_plus_two", "half_plus_three"]
INPUT_NAMES = ["image_bytes", "examples", "inputs", "text", "a", "b", "x", "y", "image"]
SIGNATURES = ["", "serving_default", "serving_examples", "classification", "regression", "echo", "add",
              "regress_x_to_y", "regress_x_to_y2", "classify_x_to_y", "tensorflow/serving/predict", "nope"]


class Server:
    """`lenspipe serve` (the console script) in a subprocess on free ports."""

    def __init__(self, flags: list[str], log: Path) -> None:
        self.port = free_port()
        lenspipe = Path(sys.executable).with_name("lenspipe")
        command = [str(lenspipe), "serve"] if lenspipe.exists() else [sys.executable, "-m", "serving"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([*command, f"--rest_api_port={self.port}", "--port=0", *flags],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_until_ready(f"http://127.0.0.1:{self.port}", self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def fuzz_server(model_cache: Path, half_models: Path, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz_server")
    demo = root / "demo"
    demo.mkdir()
    for v in (1, 2):
        install_version(model_cache, demo, v)
    config = root / "models.config"
    config.write_text(f"""model_config_list {{
  config {{ name: "demo" base_path: "{demo}" model_platform: "tensorflow"
           model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 2 }} }}
  config {{ name: "half_plus_two" base_path: "{half_models / 'half_plus_two'}" model_platform: "tensorflow" }}
  config {{ name: "half_plus_three" base_path: "{half_models / 'half_plus_three'}" model_platform: "tensorflow" }}
}}""")
    (root / "batching.config").write_text(f"max_batch_size {{ value: {MAX_BATCH} }} batch_timeout_micros {{ value: 0 }} "
                                          "max_enqueued_batches { value: 1000 } num_batch_threads { value: 1 }")
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }')
    server = Server([f"--model_config_file={config}", "--file_system_poll_wait_seconds=0", "--enable_batching",
                     f"--batching_parameters_file={root / 'batching.config'}",
                     f"--monitoring_config_file={root / 'monitoring.config'}", "--rest_api_enable_cors_support",
                     f"--rest_api_max_body_bytes={MAX_BODY}"], root / "server.log")
    yield server
    server.stop()


# ---- strategies --------------------------------------------------------------------------------

def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


_model_names = st.one_of(
    st.sampled_from(MODELS),
    st.sampled_from(["Demo", "DEMO", "nope", "demo%00", "..%2Fdemo", "%2e%2e%2fetc%2fpasswd", "demo%2F1", "%",
                     "%zz", "%ff%fe", "d%C3%A9mo", "demo%3Apredict", "a" * 300, "%2F", "%252F", "~", "-1"]),
    st.text(max_size=12).filter(bool).map(_quote))
_versions = st.one_of(st.sampled_from(["1", "2", "3", "0", "01", "007", "9223372036854775807", "9223372036854775808",
                                       "18446744073709551616", "9" * 40]),
                      st.integers(min_value=0, max_value=2**70).map(str))
_labels = st.one_of(st.sampled_from(["stable", "canary", "Stable", "nope", "..%2Fstable", "%", "%zz", "stable%00",
                                     "1", "latest"]), st.text(max_size=8).filter(bool).map(_quote))


def _json_scalar() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["null", "true", "false", "NaN", "Infinity", "-Infinity", "-NaN", "Inf", "1e999", "-0", "0.5",
                         "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
                         "4294967296", "-2147483649", "1e-400", '"\\ud800"', '"\\udfff\\ud800x"', '"\\u0000"',
                         '"é"', '""', '"\\"b64\\""']),
        st.integers(min_value=-2**65, max_value=2**65).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
        st.text(max_size=10).map(json.dumps),
        st.sampled_from(B64 + ["!!!!", "YWJj", "YWJ", "YQ==YQ==", "-_-_", "", "\\u00ff"]).map(
            lambda s: '{"b64": "%s"}' % s),
        st.sampled_from(['{"b64": 1}', '{"b64": null}', '{"b64": ["YWJj"]}', '{"b64": "YWJj", "x": 1}', "{}"]))


_keys = st.one_of(st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "b64",
                                   *INPUT_NAMES]), st.text(max_size=6))


def _json_values() -> st.SearchStrategy[str]:
    return st.recursive(
        _json_scalar(),
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.dictionaries(_keys, children, max_size=4).map(
                lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}")),
        max_leaves=12)


def _image_instance(i: int) -> object:
    return {"b64": B64[i % len(B64)]}


@st.composite
def _valid_bodies(draw, method: str) -> bytes:
    """Bodies a model can answer (the request may still name a missing model or version)."""
    n = draw(st.integers(min_value=0, max_value=MAX_BATCH + 2))
    if method == "predict":
        kind = draw(st.sampled_from(["images", "images_named", "columnar", "half", "half_columnar", "echo", "add"]))
        doc: dict = {"images": {"instances": [_image_instance(i) for i in range(n)]},
                     "images_named": {"instances": [{"image_bytes": _image_instance(i)} for i in range(n)]},
                     "columnar": {"inputs": {"image_bytes": [_image_instance(i) for i in range(n)]}},
                     "half": {"instances": draw(st.lists(st.floats(width=32), max_size=n))},
                     "half_columnar": {"inputs": {"x": [[v] for v in draw(st.lists(st.floats(width=32), max_size=n))]}},
                     "echo": {"signature_name": "echo", "instances": draw(st.lists(st.text(max_size=5), max_size=n))},
                     "add": {"signature_name": "add",
                             "instances": [{"a": [1.0, 2.0], "b": float(i)} for i in range(n)]}}[kind]
    else:
        signature = draw(st.sampled_from(["classification", "regression", "serving_examples", "regress_x_to_y",
                                          "classify_x_to_y", ""]))
        image = draw(st.booleans())
        examples = [{"image": _image_instance(i)} if image else {"x": draw(st.floats(width=32))} for i in range(n)]
        doc = {"signature_name": signature, "examples": examples}
        if draw(st.booleans()):
            doc["context"] = {"x": 1.0} if not image else {"image": _image_instance(0)}
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def _bodies(draw, method: str) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "shaped", "shaped", "value", "mutated", "nested", "huge",
                                 "bytes", "empty"]))
    if kind == "valid":
        return draw(_valid_bodies(method))
    if kind == "shaped":  # the right keys with generated values
        key = draw(st.sampled_from(["instances", "inputs"] if method == "predict" else ["examples", "context"]))
        parts = [f'"{key}": {draw(_json_values())}']
        if draw(st.booleans()):
            parts.append(f'"signature_name": {draw(st.one_of(st.sampled_from(SIGNATURES).map(json.dumps), _json_scalar()))}')
        if draw(st.booleans()):
            parts.append(f'{json.dumps(draw(_keys))}: {draw(_json_values())}')
        return ("{" + ", ".join(parts) + "}").encode()
    if kind == "value":  # any JSON document
        return draw(_json_values()).encode()
    if kind == "mutated":  # a valid body, cut, spliced or re-encoded
        body = draw(_valid_bodies(method))
        how = draw(st.sampled_from(["cut", "insert", "bom", "latin1", "trailing", "duplicate"]))
        at = draw(st.integers(min_value=0, max_value=len(body)))
        if how == "cut":
            return body[:at]
        if how == "insert":
            return body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
        if how == "bom":
            return b"\xef\xbb\xbf" + body
        if how == "latin1":
            return body.replace(b"{", b"{\"\xe9\": 1, ", 1)
        if how == "trailing":
            return body + draw(st.sampled_from([b" ", b"x", b"{}", b"\x00", b"]"]))
        return body[:-1] + b', "instances": [], "examples": []}' if body.endswith(b"}") else body
    if kind == "nested":  # deep nesting, in lists or objects, with or without a non-finite token
        depth = draw(st.sampled_from([64, 513, 1025, 5000, 50_000]))
        leaf = draw(st.sampled_from(["1", "NaN", '"x"', "[]"]))
        key = draw(st.sampled_from(["instances", "inputs", "examples", "context", "signature_name"]))
        inner = "[" * depth + leaf + "]" * depth if draw(st.booleans()) else '{"a":' * depth + leaf + "}" * depth
        return f'{{"{key}": {inner}}}'.encode()
    if kind == "huge":
        size = draw(st.sampled_from([MAX_BODY - 64, MAX_BODY + 1, 4 * MAX_BODY]))
        shape = draw(st.sampled_from(["string", "numbers", "padding"]))
        if shape == "string":
            return b'{"instances": ["' + b"a" * size + b'"]}'
        if shape == "numbers":
            return b'{"instances": [' + b",".join([b"1.5"] * (size // 4)) + b"]}"
        return b'{"instances": [1.0]}' + b" " * size
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    return b""


_METHOD_WEIGHTS = ["GET"] * 3 + ["POST"] * 8 + ["OPTIONS", "HEAD", "PUT", "DELETE", "PATCH"]


@st.composite
def requests(draw, document: dict) -> tuple[str, str, dict[str, str], bytes]:
    """(method, raw path, headers, body): a documented operation with generated parts, or a path trick."""
    template = draw(st.sampled_from(sorted(document["paths"])))
    path = template.replace("{model_name}", draw(_model_names)).replace("{version}", draw(_versions)).replace(
        "{label}", draw(_labels))
    trick = draw(st.sampled_from(["none"] * 6 + ["case", "double_slash", "dot", "dotdot", "trailing", "query",
                                                  "encoded_colon", "suffix", "prefix"]))
    if trick == "case":
        path = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in path)
    elif trick == "double_slash":
        path = path.replace("/", "//", 1 + draw(st.integers(0, 2)))
    elif trick == "dot":
        path = path.replace("/models/", "/./models/")
    elif trick == "dotdot":
        path = path.replace("/models/", "/models/../models/")
    elif trick == "trailing":
        path += "/"
    elif trick == "query":
        path += "?" + draw(st.sampled_from(["x=1", "model=..%2F", "", "a=%zz"]))
    elif trick == "encoded_colon":
        path = path.replace(":", "%3A")
    elif trick == "suffix":
        path += draw(st.sampled_from([":predict", ":explain", "/metadata", "/x", ":", "%00"]))
    elif trick == "prefix":
        path = draw(st.sampled_from(["/v2", "/V1", "/api", ""])) + path
    documented = [m.upper() for m in document["paths"][template]]
    method = draw(st.sampled_from(documented)) if draw(st.integers(0, 9)) < 8 else draw(st.sampled_from(_METHOD_WEIGHTS))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "application/json", "text/plain",
                                                     "application/x-www-form-urlencoded", "application/json; charset=latin-1"]))}
    if method == "OPTIONS":
        headers["Origin"] = draw(st.sampled_from(["http://a.test", "https://b.test", "null", "file://x", ""]))
    body = b""
    if method in ("POST", "PUT", "PATCH"):
        rpc = template.rsplit(":", 1)[1] if ":" in template else "predict"
        body = draw(_bodies(rpc))
        # gzip is gunzipped (a broken one is an empty document); every other encoding reaches the JSON
        # parser as sent, as in TF Serving. A broken deflate body on a reused keep-alive connection once
        # got no answer at all (aiohttp inflated it): test_rest_fuzz_regressions.py.
        encoding = draw(st.sampled_from(["none"] * 8 + ["gzip", "bad_gzip", "deflate", "bad_deflate", "other"]))
        if encoding == "gzip":
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        elif encoding == "bad_gzip":
            headers["Content-Encoding"] = "gzip"
        elif encoding == "deflate":
            body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
        elif encoding == "bad_deflate":
            headers["Content-Encoding"] = "deflate"
        elif encoding == "other":
            headers["Content-Encoding"] = draw(st.sampled_from(["br", "zstd", "identity", "GZIP", "x-gzip",
                                                                "deflate, gzip", "compress"]))
            if "gzip" in headers["Content-Encoding"]:
                body = gzip.compress(body)
    elif method == "GET" and draw(st.integers(0, 19)) == 0:
        body = b'{"ignored": true}'
    return method, path, headers, body


# ---- the test ----------------------------------------------------------------------------------

class Client:
    """One keep-alive connection; reconnects when the server said it closes it (`Connection: close`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.last: tuple | None = None

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            self.conn.request(method, path, body=body or None, headers=headers)
            response = self.conn.getresponse()
            payload = response.read()
        except (http.client.HTTPException, OSError) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            raise AssertionError(f"{method} {path[:200]}: no answer ({type(exc).__name__}: {exc}); the request "
                                 f"before on this connection: {self.last}") from exc
        self.last = (method, path[:200], headers, body[:200], response.status, response.getheader("Connection"))
        if response.will_close:  # (a 413 with its body left unread)
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def test_10000_generated_requests_get_documented_answers_and_the_server_survives(fuzz_server: Server) -> None:
    client = Client(fuzz_server.port)
    status, _, body = client.send("GET", "/v1/openapi.json", {}, b"")
    assert status == 200
    document = json.loads(body)
    routes = Routes(document)
    sent = {"requests": 0, "by_status": {}}

    @settings(max_examples=REQUESTS, deadline=None, database=None, derandomize=True,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(request=requests(document))
    def one_request(request: tuple[str, str, dict[str, str], bytes]) -> None:
        method, path, headers, body = request
        status, answer_headers, payload = client.send(method, path, headers, body)
        sent["requests"] += 1
        sent["by_status"][status] = sent["by_status"].get(status, 0) + 1
        assert fuzz_server.proc.poll() is None, f"the server exited after {method} {path[:200]}"
        problems = check_answer(routes, method, path, status, answer_headers, payload)
        assert not problems, f"{method} {path[:200]} {headers} body {body[:300]!r}: {problems}"

    one_request()
    assert sent["requests"] >= REQUESTS
    # The server is alive and still answers correctly after everything it was sent.
    assert client.send("GET", "/healthz", {}, b"")[0] == 200
    status, _, payload = client.send("POST", "/v1/models/demo:predict", {"Content-Type": "application/json"},
                                     json.dumps({"instances": [{"b64": B64[0]}]}).encode())
    assert status == 200 and json.loads(payload)["predictions"][0]["label"] in LABELS
    # The generated traffic reached the models, not only the error paths.
    assert sent["by_status"].get(200, 0) > REQUESTS // 20, sent["by_status"]
