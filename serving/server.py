"""The REST front end: TF Serving's /v1 URLs, JSON bodies and status codes on aiohttp.

Routing follows http_rest_api_util.cc: the two TF Serving regexes are matched case-insensitively on
the raw (still percent-encoded) path, then the model name and label are URL-decoded. Anything else
under /v1/ is 400 "Malformed request"; OPTIONS under /v1/ is a CORS preflight as in http_server.cc.
Beyond /v1/ (as KServe and BentoML do): /healthz (liveness), /readyz (readiness) and the Prometheus
path when monitoring is enabled. GET /v1/openapi.json is this API's OpenAPI description (serving/openapi.py).
Request bodies are decoded as TF Serving's net_http server decodes them: a Content-Encoding naming gzip
is gunzipped here (aiohttp's own decompression is off), any other body goes to the JSON parser as it came.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
import zlib
from typing import Any

import numpy as np
from aiohttp import hdrs, web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving import codec, openapi
from serving.core import ModelRef, ServingCore, observe_request
from serving.errors import Code, ServingError, invalid_argument
from serving.versions import VersionRecord

log = logging.getLogger(__name__)

PREDICTION_API = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE)
MODEL_STATUS_API = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE)
V1_PREFIX = re.compile(r"/v1/", re.IGNORECASE)
ORIGIN = re.compile(r"https?://")
JSON = "application/json"
CORS_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                "Access-Control-Allow-Headers": "Content-Type"}
GUNZIP_IN_THREAD_BYTES = 256 * 1024  # a larger gzip body is inflated off the event loop (zlib drops the GIL)


def gunzip_body(raw: bytes, limit: int) -> bytes:
    """`raw` gunzipped (all of its gzip members), or b"" if it is not complete, valid gzip.

    TF Serving's HTTP server drops a body it cannot gunzip, so the request parses as an empty document.
    Raises HTTPRequestEntityTooLarge once the decoded body passes `limit` bytes; inflating stops there,
    so a few KiB that would inflate to gigabytes cost at most `limit` + 1 bytes of memory.
    """
    if not raw:
        return b""
    parts: list[bytes] = []
    size = 0
    try:
        while raw:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer required
            part = inflater.decompress(raw, limit - size + 1)
            size += len(part)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            if not inflater.eof:
                raise zlib.error("incomplete or truncated stream")
            parts.append(part)
            raw = inflater.unused_data
    except zlib.error as exc:
        log.warning("Failed to uncompress the gzipped body: %s", exc)
        return b""
    return b"".join(parts)  # one member: CPython returns it as is, no copy


def _lenspipe_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lenspipe")
    except metadata.PackageNotFoundError:
        return "unknown"


def status_response(records: list[VersionRecord]) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for version records (shared with gRPC)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for record in records:
        entry = response.model_version_status.add()
        entry.version = record.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(record.state)
        entry.status.error_code = int(record.error_code)
        entry.status.error_message = record.error_message
    return response


def metadata_response(core: ServingCore, ref: ModelRef) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadataResponse with the servable's full SignatureDefMap (shared with gRPC)."""
    servable = core.servable(ref)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig_def in servable.signature_defs.items():
        sig_map.signature_def[key].CopyFrom(sig_def)
    response.metadata["signature_def"].Pack(sig_map)
    return response


def _metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> bytes:
    # Same assembly as TF Serving's ToJsonString: field names preserved, defaults printed.
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    opts = dict(preserving_proto_field_name=True, including_default_value_fields=True)
    return codec.dumps({"model_spec": json_format.MessageToDict(response.model_spec, **opts),
                        "metadata": {"signature_def": json_format.MessageToDict(sig_map, **opts)}})


class Deadlines:
    """REST request deadlines with at most ONE pending loop timer.

    Every request gets the same timeout, so deadlines expire in arrival order: the oldest in-flight
    request's deadline is the only timer needed. Per request this is a dict insert and delete instead
    of a timer handle on the loop's heap (asyncio.timeout costs ~15 us per request).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._pending: dict[asyncio.Task, float] = {}  # insertion order = deadline order
        self._expired: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        deadline = loop.time() + self._timeout
        self._pending[task] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire, loop)

    def expired(self, task: asyncio.Task) -> bool:
        """True if `task` was cancelled because its deadline passed."""
        return task in self._expired

    def discard(self, task: asyncio.Task) -> None:
        self._pending.pop(task, None)
        self._expired.discard(task)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._pending:
            task, deadline = next(iter(self._pending.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire, loop)
                return
            del self._pending[task]
            self._expired.add(task)
            task.cancel()


class RestApi:
    """aiohttp handlers bound to one ServingCore."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core
        self.draining = False
        options = core.options
        self._deadlines = Deadlines(options.rest_api_timeout_in_ms / 1000) \
            if options.rest_api_timeout_in_ms > 0 else None
        self._cors = options.rest_api_enable_cors_support
        self._prometheus_path = options.prometheus_path
        self._openapi = codec.dumps(openapi.openapi_document(options, _lenspipe_version()))

    def make_server(self) -> web.Server:
        """aiohttp's low-level server with `handle` for every request.

        `handle` routes with TF Serving's own regexes, so aiohttp's router and Application (a catch-all
        route's regex match and match-info per request, ~8% of the event loop's time) are skipped.
        """
        limit = self.core.options.rest_api_max_body_bytes
        loop = asyncio.get_running_loop()

        def request_factory(message, payload, protocol, writer, task) -> web.BaseRequest:  # type: ignore[no-untyped-def]
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=limit)
        # auto_decompress=False: bodies arrive as sent, and _v1 decodes what TF Serving decodes (gzip).
        # aiohttp's inflater answered a broken deflate body on a reused connection with nothing at all.
        return web.Server(self.handle, request_factory=request_factory, access_log=None, auto_decompress=False)

    def _json(self, status: int, body: bytes) -> web.Response:
        response = web.Response(status=status, body=body, content_type=JSON)
        if self._cors:
            response.headers.update(CORS_HEADERS)
        return response

    def _error(self, error: ServingError) -> web.Response:
        return self._json(error.http_status, codec.dumps({"error": error.message}))

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if V1_PREFIX.match(path):
            if request.method == "OPTIONS":
                return self._preflight(request)
            return await self._v1(request, path)
        return self._beyond_v1(request, path)

    def _beyond_v1(self, request: web.BaseRequest, path: str) -> web.Response:
        if request.method == "GET" and path == "/healthz":
            return self._json(200, b'{"status":"alive"}')
        if request.method == "GET" and path == "/readyz":
            ready = not self.draining and self.core.manager.all_models_available()
            return self._json(200 if ready else 503, codec.dumps({"ready": ready}))
        if request.method == "GET" and self._prometheus_path and path == self._prometheus_path:
            return web.Response(body=self.core.metrics.render().encode(), content_type="text/plain",
                                charset="utf-8")
        return web.Response(status=404, text="404 Not Found")

    def _preflight(self, request: web.BaseRequest) -> web.Response:
        # TF Serving answers any OPTIONS under /v1/ with an empty body: 200 if Origin names an http(s)
        # origin, else 400 (FAILED_PRECONDITION); CORS headers only with --rest_api_enable_cors_support.
        status = 200 if ORIGIN.search(request.headers.get("Origin", "")) else 400
        return web.Response(status=status, headers=CORS_HEADERS if self._cors else None)

    async def _gunzip(self, raw: bytes) -> bytes:
        limit = self.core.options.rest_api_max_body_bytes
        if len(raw) <= GUNZIP_IN_THREAD_BYTES:
            return gunzip_body(raw, limit)
        return await asyncio.get_running_loop().run_in_executor(None, gunzip_body, raw, limit)

    async def _v1(self, request: web.BaseRequest, path: str) -> web.Response:
        try:
            if request.method == "POST" and (m := PREDICTION_API.fullmatch(path)):
                name, version, label, method = m.groups()
                try:
                    body = await request.read()
                    # One header lookup is all a plain body costs. TF Serving gunzips when the header
                    # contains "gzip" (case-sensitive) and passes any other encoding on as it came.
                    if (encoding := request.headers.get(hdrs.CONTENT_ENCODING)) is not None and "gzip" in encoding:
                        body = await self._gunzip(body)
                except web.HTTPRequestEntityTooLarge:  # as sent, or once gunzipped
                    response = self._json(413, codec.dumps(
                        {"error": f"Request body larger than {self.core.options.rest_api_max_body_bytes} bytes"}))
                    if not request.content.at_eof():
                        response.force_close()  # the unread rest of the body makes the connection unusable: say so
                    return response
                ref = self._ref(name, version, label)
                return await self._predictionish(ref, method.lower(), body)
            if request.method == "GET" and (m := MODEL_STATUS_API.fullmatch(path)):
                name, version, label, sub = m.groups()
                if not name:
                    raise invalid_argument("Missing model name in request.")
                ref = self._ref(name, version, label)
                if sub == "metadata":  # case-sensitive, as TF Serving compares the subresource
                    return self._json(200, _metadata_json(metadata_response(self.core, ref)))
                records = self.core.manager.status(ref.name, ref.version, ref.label)
                body = json_format.MessageToJson(status_response(records),
                                                 including_default_value_fields=True, indent=1)
                return self._json(200, body.encode())
            if request.method == "GET" and path.lower() == openapi.OPENAPI_PATH:  # after the API routes: costs them nothing
                return self._json(200, self._openapi)
            raise invalid_argument(f"Malformed request: {request.method} {path}")
        except ServingError as error:
            return self._error(error)
        except Exception as exc:  # a bug must still answer in TF Serving's error shape
            log.exception("internal error on %s %s", request.method, path)
            return self._error(ServingError(Code.INTERNAL, f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _ref(name: str, version: str | None, label: str | None) -> ModelRef:
        if version and int(version) >= 2**63:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        return ModelRef(name=urllib.parse.unquote(name), version=int(version) if version else None,
                        label=urllib.parse.unquote(label) if label else None)

    async def _predictionish(self, ref: ModelRef, method: str, body: bytes) -> web.Response:
        started = time.perf_counter()
        error: ServingError | None = None
        try:
            handler = self._predict if method == "predict" else self._classify if method == "classify" \
                else self._regress
            if self._deadlines is None:
                doc = await handler(ref, body)
            else:
                task = asyncio.current_task()
                assert task is not None
                self._deadlines.add(task)
                try:
                    doc = await handler(ref, body)
                except asyncio.CancelledError:
                    if not self._deadlines.expired(task):
                        raise
                    task.uncancel()
                    raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
                finally:
                    self._deadlines.discard(task)
            return self._json(200, codec.dumps(doc))
        except ServingError as exc:
            error = exc
            return self._error(exc)
        except Exception as exc:
            log.exception("internal error in %s", method)
            error = ServingError(Code.INTERNAL, f"{type(exc).__name__}: {exc}")
            return self._error(error)
        finally:
            observe_request(self.core.metrics, ref.name, method.capitalize(), "REST", started, error)

    async def _predict(self, ref: ModelRef, body: bytes) -> dict[str, Any]:
        doc = codec.parse_json_body(body)  # JSON first: bad JSON is 400 even for an unknown model
        signature_name = codec.signature_name_of(doc)
        servable = self.core.servable(ref)
        signature = servable.signature(signature_name)
        inputs, row_format = codec.parse_predict_request(doc, signature.inputs)
        _, _, outputs = await self.core.predict(ref, signature_name, inputs, servable=servable)
        return codec.predict_response(outputs, row_format)

    async def _classify(self, ref: ModelRef, body: bytes) -> dict[str, Any]:
        doc = codec.parse_json_body(body)
        signature_name = codec.signature_name_of(doc)
        _, _, classes, scores = await self.core.classify(ref, signature_name, codec.parse_examples(doc))
        rows = (scores if scores is not None else classes).shape[0]
        width = (scores if scores is not None else classes).shape[1]
        results = []
        for i in range(rows):
            # numpy float32 scores serialize as the shortest float32 repr, like TF Serving's output
            results.append([[classes[i, j].decode("utf-8", "replace") if classes is not None else "",
                             scores[i, j] if scores is not None else 0.0] for j in range(width)])
        return {"results": results}

    async def _regress(self, ref: ModelRef, body: bytes) -> dict[str, Any]:
        doc = codec.parse_json_body(body)
        signature_name = codec.signature_name_of(doc)
        _, _, values = await self.core.regress(ref, signature_name, codec.parse_examples(doc))
        return {"results": values.astype(np.float32, copy=False)}
