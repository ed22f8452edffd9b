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


def test_an_undecodable_deflate_body_closes_the_connection(main_server):
    # aiohttp's parser cannot go on past a body it failed to inflate; the 400 answer must close the
    # connection (it did for gzip, not for deflate, and the client's next request hit a dead socket).
    parsed = urllib.parse.urlsplit(main_server.url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("POST", "/v1/models/demo:predict", body=b"not deflate",
                 headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 400 and payload["error"].startswith("Malformed request body")
    assert response.getheader("Connection", "").lower() == "close"


def test_an_unread_bad_gzip_body_on_an_unrouted_path_closes_the_connection(main_server):
    # A POST to a path that matches no API is answered without reading its body; aiohttp then fails
    # to gunzip the body while draining it and dropped the connection without `Connection: close`.
    response, payload, next_status = _keep_alive_pair(main_server.url, ("POST", "/v1/models/demo:predict/", b""))
    assert response.status == 400  # (a plain body: the connection stays usable)
    parsed = urllib.parse.urlsplit(main_server.url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("POST", "/v1/models/demo:predict/", body=b"\x04]\xe3\n\x80",
                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 400 and payload["error"].startswith("Malformed request: POST")
    assert response.getheader("Connection", "").lower() == "close"
    assert next_status == 200


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
    assert answer[0] == 400 and json.loads(answer[1])["error"].startswith("JSON Parse error")


def http_post(url: str, body: bytes) -> tuple[int, bytes]:
    parsed = urllib.parse.urlsplit(url)
    conn = httplib.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("POST", parsed.path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


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
