"""The serving check itself: serve a candidate with `lenspipe serve` and compare every answer with the model.

No TFX here (the component wraps it): copy the SavedModel into a temporary model base path as version 1,
start `python -m serving` on free ports in a subprocess, wait until the version is AVAILABLE, send each
image as a one-image request over REST (b64) and over gRPC (tensorflow-serving-api stubs), and compare
each answer with the exported signature called in this process. It passes when every float output is
within ``max_abs_diff``, every other output is equal, and the p99 latency of both APIs is within budget.
"""
from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger("lenspipe.serving_check")

REPO_ROOT = Path(__file__).resolve().parents[2]  # where the `serving` package lives
SIGNATURE = "serving_default"
_INPROCESS_BATCH = 64


@dataclasses.dataclass
class CheckResult:
    """What the check measured; ``reason`` names the failed check and why ("" when it passed)."""

    passed: bool = False
    reason: str = ""
    images: int = 0
    requests: dict[str, int] = dataclasses.field(default_factory=lambda: {"rest": 0, "grpc": 0})
    max_abs_diff: float | None = None  # over every float output, both APIs
    mismatches: int = 0  # answers with a different class id, label or other exact output
    latency_ms: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # api -> p50/p99
    differences: dict[str, dict] = dataclasses.field(default_factory=dict)  # api -> max |dp|, mismatches, first
    max_abs_diff_allowed: float = 0.0
    max_p99_ms: float = 0.0
    seconds_to_available: float | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_process_predictions(model_dir: str, images: Sequence[bytes]) -> tuple[str, dict[str, np.ndarray]]:
    """(the signature's input name, every output for ``images``) from the SavedModel loaded here."""
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[SIGNATURE]
    (input_name,) = fn.structured_input_signature[1].keys()
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), _INPROCESS_BATCH):
        out = fn(**{input_name: tf.constant(list(images[start:start + _INPROCESS_BATCH]))})
        for key, value in out.items():
            parts.setdefault(key, []).append(value.numpy())
    return input_name, {k: np.concatenate(v) for k, v in parts.items()}


class ServerProcess:
    """`python -m serving` on one model base path, on free ports, logging to a file; a context manager."""

    def __init__(self, model_name: str, base_path: Path, log_path: Path, extra_flags: Sequence[str] = ()) -> None:
        self.model_name, self.base_path, self.log_path = model_name, base_path, log_path
        self.extra_flags = list(extra_flags)
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                   TF_CPP_MIN_LOG_LEVEL="2")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving", "--model_name", self.model_name,
                 "--model_base_path", str(self.base_path), "--port", str(self.grpc_port),
                 "--rest_api_port", str(self.rest_port), "--enable_model_warmup=true", *self.extra_flags],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 3) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path.exists() else []
        errors = [line for line in text if " ERROR " in line or "Error" in line] or text
        return " | ".join(errors[-lines:])

    def wait_available(self, timeout: float) -> None:
        """Return once the version is AVAILABLE; RuntimeError if the server exits or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited (code {self.proc.returncode}) before the model was "
                                   f"AVAILABLE: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=5)
                conn.request("GET", f"/v1/models/{self.model_name}")
                body = json.loads(conn.getresponse().read())
                conn.close()
                if any(v.get("state") == "AVAILABLE" for v in body.get("model_version_status", [])):
                    return
            except (OSError, ValueError):
                pass  # the ports open only once the model is AVAILABLE
            time.sleep(0.2)
        raise RuntimeError(f"the model was not AVAILABLE within {timeout:g}s: {self.log_tail()}")


def _rest_answers(server: ServerProcess, images: Sequence[bytes]) -> tuple[list[dict], list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    answers, latencies = [], []
    try:
        for image in images:
            body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]})
            started = time.perf_counter()
            conn.request("POST", f"/v1/models/{server.model_name}:predict", body,
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"REST :predict answered HTTP {response.status}: {payload[:300].decode(errors='replace')}")
            answers.append(json.loads(payload)["predictions"][0])
    finally:
        conn.close()
    return answers, latencies


def _grpc_answers(server: ServerProcess, images: Sequence[bytes], input_name: str) -> tuple[list[dict], list[float]]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    answers, latencies = [], []
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for image in images:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = server.model_name
            request.model_spec.signature_name = SIGNATURE
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
            started = time.perf_counter()
            try:
                response = stub.Predict(request, timeout=60)
            except grpc.RpcError as exc:
                raise RuntimeError(f"gRPC Predict failed: {exc.code().name}: {exc.details()}") from None
            latencies.append((time.perf_counter() - started) * 1000)
            answers.append({k: tf.make_ndarray(v)[0] for k, v in response.outputs.items()})
    return answers, latencies


def compare(expected: dict[str, np.ndarray], answers: list[dict], api: str) -> tuple[float, int, str]:
    """(max |difference| of float outputs, answers with an exact output unequal, first difference described)."""
    worst, mismatched, first = 0.0, 0, ""
    for i, answer in enumerate(answers):
        if not isinstance(answer, dict) and len(expected) == 1:  # REST row format drops a lone output's name
            answer = {next(iter(expected)): answer}
        bad = False
        for key, values in expected.items():
            want = values[i]
            if key not in answer:
                bad, first = True, first or f"{api} answer {i} lacks output {key!r}"
                continue
            got = answer[key]
            if np.issubdtype(np.asarray(want).dtype, np.floating):
                got = np.asarray(got, dtype=np.float64)
                if got.shape != np.shape(want):
                    bad, first = True, first or f"{api} output {key!r} has shape {got.shape}, expected {np.shape(want)}"
                    continue
                worst = max(worst, float(np.max(np.abs(got - np.asarray(want, np.float64)), initial=0.0)))
            else:
                want_v = want.decode() if isinstance(want, bytes) else want.item() if hasattr(want, "item") else want
                got_v = got.decode() if isinstance(got, bytes) else got.item() if hasattr(got, "item") else got
                if want_v != got_v:
                    bad, first = True, first or f"{api} output {key!r} of image {i} is {got_v!r}, in-process {want_v!r}"
        mismatched += bad
    return worst, mismatched, first


def judge(result: CheckResult) -> CheckResult:
    """Set ``passed`` and ``reason`` from the measurements against the result's own limits."""
    result.passed, result.reason = False, ""
    for api, diff in result.differences.items():
        if diff["max_abs_diff"] > result.max_abs_diff_allowed:
            result.reason = (f"{api}: answers differ from the in-process predictions: max |dp| "
                             f"{diff['max_abs_diff']:.3g} > {result.max_abs_diff_allowed:g}")
            return result
        if diff["mismatches"]:
            result.reason = f"{api}: {diff['mismatches']} of {result.images} answers differ: {diff['first']}"
            return result
    for api, stats in result.latency_ms.items():
        if stats["p99"] > result.max_p99_ms:
            result.reason = (f"{api}: p99 latency {stats['p99']:.1f} ms of one-image requests > budget "
                             f"{result.max_p99_ms:g} ms")
            return result
    result.passed = True
    return result


def run_serving_check(model_dir: str, images: Sequence[bytes], *, model_name: str = "candidate",
                      max_abs_diff: float = 1e-6, max_p99_ms: float = 250.0,
                      start_timeout_seconds: float = 180.0) -> CheckResult:
    """Serve ``model_dir`` with `lenspipe serve`, send ``images`` over REST and gRPC, compare; never raises."""
    result = CheckResult(images=len(images), max_abs_diff_allowed=max_abs_diff, max_p99_ms=max_p99_ms)
    if not images:
        result.reason = "no held-out images to send"
        return result
    try:
        input_name, expected = in_process_predictions(model_dir, images)
    except Exception as exc:  # noqa: BLE001 - any failure of the exported signature fails the check
        result.reason = f"the exported {SIGNATURE} signature failed in-process: {type(exc).__name__}: {exc}"
        return result
    work = Path(tempfile.mkdtemp(prefix="lenspipe-serving-check-"))
    try:
        base = work / model_name
        shutil.copytree(model_dir, base / "1")
        with ServerProcess(model_name, base, work / "server.log") as server:
            started = time.monotonic()
            try:
                server.wait_available(start_timeout_seconds)
            except RuntimeError as exc:
                result.reason = f"load: {exc}"
                return result
            result.seconds_to_available = round(time.monotonic() - started, 2)
            for api, call in (("rest", lambda: _rest_answers(server, images)),
                              ("grpc", lambda: _grpc_answers(server, images, input_name))):
                try:
                    answers, latencies = call()
                except RuntimeError as exc:
                    result.reason = f"{api}: {exc}"
                    return result
                result.requests[api] = len(answers)
                result.latency_ms[api] = {"p50": round(percentile(latencies, 50), 3),
                                          "p99": round(percentile(latencies, 99), 3)}
                worst, mismatched, first = compare(expected, answers, api.upper())
                result.differences[api] = {"max_abs_diff": worst, "mismatches": mismatched, "first": first}
        result.max_abs_diff = max(d["max_abs_diff"] for d in result.differences.values())
        result.mismatches = sum(d["mismatches"] for d in result.differences.values())
        return judge(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
