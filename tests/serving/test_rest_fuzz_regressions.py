"""Regression tests for the server bugs the REST fuzz test (test_rest_fuzz.py) found, one per bug."""
from __future__ import annotations

import http.client as httplib
import json
import urllib.parse




def _keep_alive_pair(url: str, first: tuple[str, str, bytes]) -> tuple[httplib.HTTPResponse, bytes, int]:
    """Send `first` then a GET /healthz on ONE keep-alive connection, as clients do; returns the first
    answer, its body, and the second answer's status (a client that honours `Connection: close`
    reconnects first, as http.client does when `will_close` is set)."""
    parsed = urllib.parse.urlsplit(url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    method, path, body = first
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.will_close:
        conn.close()
        conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("GET", "/healthz")
    second = conn.getresponse()
    second.read()
    conn.close()
    return response, payload, second.status


def test_a_413_answer_closes_the_connection_it_cannot_reuse(main_server):
    # The unread rest of a too-large body makes the connection unusable: the server closed it after
    # answering but did not say so, and the client's next request on it failed with a broken pipe.
    body = b'{"instances": ["' + b"a" * (2 * 1024 * 1024) + b'"]}'
    response, payload, next_status = _keep_alive_pair(main_server.url, ("POST", "/v1/models/demo:predict", body))
    assert response.status == 413 and json.loads(payload)["error"].startswith("Request body larger than")
    assert response.getheader("Connection", "").lower() == "close"
    assert next_status == 200


def _on_one_connection(url: str, requests: list[tuple[str, str, bytes, dict[str, str]]],
                       timeout: float = 5.0) -> list[tuple[int, dict[str, str], bytes]]:
    """Send `requests` one after the other on ONE keep-alive connection; (status, headers, body) of each.

    A short client timeout: a request that gets no answer fails the test in seconds instead of hanging.
    """
    parsed = urllib.parse.urlsplit(url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    answers = []
    try:
        for method, path, body, headers in requests:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
            response = conn.getresponse()
            answers.append((response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()))
            assert not response.will_close, f"{method} {path} {headers}: the server closed the connection"
    finally:
        conn.close()
    return answers


def test_a_deflate_body_on_a_reused_connection_is_answered_as_undecoded_json(main_server):
    # The fuzz found it: aiohttp inflated `Content-Encoding: deflate` bodies itself, and a body that
    # was not deflate (`{}`) sent on a connection that had already carried a request got no answer at
    # all. TF Serving decodes only gzip and hands any other body to the JSON parser as it came.
    import zlib

    valid = json.dumps({"instances": [{"b64": "YWJj"}]}).encode()
    answers = _on_one_connection(main_server.url, [
        ("GET", "/healthz", b"", {}),
        ("POST", "/v1/models/demo:predict", b"{}", {"Content-Encoding": "deflate"}),
        ("POST", "/v1/models/demo:predict", zlib.compress(valid), {"Content-Encoding": "deflate"}),
        ("POST", "/v1/models/demo:predict", b"{}", {"Content-Encoding": "br"}),
        ("GET", "/v1/models/demo", b"\x00not deflate", {"Content-Encoding": "deflate"}),  # unread body
        ("GET", "/healthz", b"", {}),
    ])
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 400, 400, 400, 200, 200]
    errors = [json.loads(body)["error"] for _, _, body in answers[1:4]]
    # `{}` is JSON: the same answer as without the header; deflate'd bytes are a JSON parse error.
    assert errors[0] == errors[2] == "Missing 'inputs' or 'instances' key"
    assert errors[1].startswith("JSON Parse error")
    assert all(headers["content-type"].startswith("application/json") for _, headers, _ in answers[1:5])


def test_gzip_bodies_are_gunzipped_within_the_body_limit_and_bad_ones_keep_the_connection(main_server):
    # lenspipe gunzips (aiohttp's decoder is off). A broken gzip body is dropped, as TF Serving drops
    # it (an empty document); the connection stays usable. A small gzip body that inflates beyond
    # --rest_api_max_body_bytes (1 MiB here) is a 413, as an uncompressed one that large is.
    import gzip
    import random

    valid = json.dumps({"instances": [{"b64": "YWJj"}]}).encode()
    answers = _on_one_connection(main_server.url, [
        ("POST", "/v1/models/demo:predict", gzip.compress(b"{}"), {"Content-Encoding": "gzip"}),
        ("POST", "/v1/models/demo:predict", b"not gzip", {"Content-Encoding": "gzip"}),
        ("POST", "/v1/models/demo:predict", gzip.compress(valid)[:-6], {"Content-Encoding": "gzip"}),
        ("GET", "/v1/models/demo", b"not gzip", {"Content-Encoding": "gzip"}),  # unread body
        ("GET", "/healthz", b"", {}),
    ])
    assert [status for status, _, _ in answers] == [400, 400, 400, 200, 200]
    assert [json.loads(body)["error"] for _, _, body in answers[:3]] == [
        "Missing 'inputs' or 'instances' key"] + ["JSON Parse error: The document is empty"] * 2
    exact = b'{"instances": [1.0]}' + b" " * (1024 * 1024 - 20)
    bomb = gzip.compress(exact + b" ")
    assert len(exact) == 1024 * 1024 and len(bomb) < 4096
    status, headers, body = http_post(main_server.url + "/v1/models/demo:predict", bomb,
                                      {"Content-Encoding": "gzip"})
    assert status == 413 and json.loads(body)["error"] == "Request body larger than 1048576 bytes"
    status, _, body = http_post(main_server.url + "/v1/models/demo:predict", gzip.compress(exact),
                                {"Content-Encoding": "gzip"})
    assert status != 413, body  # exactly the limit is allowed
    # A gzip body too large to inflate on the event loop is inflated on a worker thread, the same way.
    from serving.server import GUNZIP_IN_THREAD_BYTES

    text = random.Random(14).randbytes(300_000).hex()
    large = gzip.compress(json.dumps({"signature_name": "echo", "instances": [text]}).encode())
    assert GUNZIP_IN_THREAD_BYTES < len(large) < 1024 * 1024
    status, _, body = http_post(main_server.url + "/v1/models/demo:predict", large, {"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(body)["predictions"][0]["length"] == len(text), body[:200]


def test_gunzip_of_a_gzip_bomb_stops_at_the_limit():
    # A few KiB of gzip that inflate to 64 MiB must not allocate 64 MiB: decoding stops past the limit.
    import gzip
    import tracemalloc

    import pytest

    from aiohttp import web

    from serving.server import gunzip_body

    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 128 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(web.HTTPRequestEntityTooLarge):
            gunzip_body(bomb, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak
    assert gunzip_body(gzip.compress(b"{}"), 2) == b"{}"
    assert gunzip_body(gzip.compress(b"a") + gzip.compress(b"b"), 2) == b"ab"  # concatenated members
    assert gunzip_body(b"not gzip", 1024) == b""


def test_an_unread_bad_gzip_body_on_an_unrouted_path_keeps_the_connection(main_server):
    # A POST to a path that matches no API is answered without reading its body. aiohttp used to
    # gunzip the body while draining it, failed, and dropped the connection without a word; the body
    # is now drained as it came, so the connection goes on.
    answers = _on_one_connection(main_server.url, [
        ("POST", "/v1/models/demo:predict/", b"\x04]\xe3\n\x80", {"Content-Encoding": "gzip"}),
        ("GET", "/healthz", b"", {}),
    ])
    assert [status for status, _, _ in answers] == [400, 200]
    assert json.loads(answers[0][2])["error"].startswith("Malformed request: POST")


def test_deeply_nested_json_with_a_non_finite_token_is_a_400_parse_error(main_server):
    # orjson refuses > 1024 levels; the NaN fallback (Python's json) then raised RecursionError: a 500.
    import pytest

    from serving import codec
    from serving.errors import ServingError

    body = b'{"instances": ' + b'{"a":' * 5000 + b"NaN" + b"}" * 5000 + b"}"
    with pytest.raises(ServingError, match="JSON Parse error") as raised:
        codec.parse_json_body(body)
    assert raised.value.http_status == 400
    answer = http_post(main_server.url + "/v1/models/demo:predict", body)
    assert answer[0] == 400 and json.loads(answer[2])["error"].startswith("JSON Parse error")


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parsed = urllib.parse.urlsplit(url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("POST", parsed.path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


def test_strings_nested_near_orjsons_limit_are_a_400_not_a_recursion_error():
    # Found reading the code after the fuzz's RecursionError: orjson reads up to 1024 levels, but the
    # string walk recursed past Python's stack, and orjson cannot print a value nested > 255 levels
    # for an error message. Both were 500s.
    import orjson
    import pytest

    from serving import codec
    from serving.errors import ServingError
    from serving.servable import TensorSpec

    spec = TensorSpec(dtype=7, shape=(-1,))  # DT_STRING
    deep_list = orjson.loads(b"[" * 1000 + b'"x"' + b"]" * 1000)
    with pytest.raises(ServingError, match="nested too deeply") as raised:
        codec.to_array(deep_list, spec, "image_bytes")
    assert raised.value.http_status == 400
    deep_object = orjson.loads(b'{"a":' * 600 + b"1" + b"}" * 600)
    with pytest.raises(ServingError, match="not of expected type") as raised:
        codec.to_array([deep_object], spec, "image_bytes")
    assert raised.value.http_status == 400
