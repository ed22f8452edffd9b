"""Rollback, undo and promote against a running `lenspipe serve` (a subprocess) under continuous load.

Clients send one-image :predict requests over REST and gRPC the whole time; every answer names the
version that computed it (the demo models' model_version output). Zero requests may fail.
"""
from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from fixture_models import png_bytes
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components.serving_check.check import ServerProcess
from pipeline import deploy

from conftest import install_version

IMAGE = png_bytes(3)


class Load:
    """Client threads sending requests until stopped; records failures and which version answered."""

    def __init__(self, server: ServerProcess, label: str | None = None) -> None:
        self.server, self.label = server, label
        self.answered: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rest, daemon=True), threading.Thread(target=self._grpc, daemon=True)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _rest(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.rest_port, timeout=30)
        path = f"/v1/models/{self.server.model_name}" + (f"/labels/{self.label}" if self.label else "") + ":predict"
        body = json.dumps({"instances": [{"b64": base64.b64encode(IMAGE).decode()}]})
        while not self._stop.is_set():
            try:
                conn.request("POST", path, body)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    self.failures.append(f"REST {response.status}: {payload[:200]!r}")
                else:
                    self.answered.append(json.loads(payload)["predictions"][0]["model_version"])
            except OSError as exc:
                self.failures.append(f"REST {exc!r}")
                conn = http.client.HTTPConnection("127.0.0.1", self.server.rest_port, timeout=30)

    def _grpc(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = self.server.model_name
            if self.label:
                request.model_spec.version_label = self.label
            request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([IMAGE]))
            while not self._stop.is_set():
                try:
                    response = stub.Predict(request, timeout=30)
                    self.answered.append(int(tf.make_ndarray(response.outputs["model_version"])[0]))
                except grpc.RpcError as exc:
                    self.failures.append(f"gRPC {exc.code().name}: {exc.details()}")

    def wait_for_answers_from(self, version: int, count: int = 20, timeout: float = 120) -> None:
        """Block until the last ``count`` answers all came from ``version``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = self.answered[-count:]
            if len(recent) == count and set(recent) == {version}:
                return
            time.sleep(0.1)
        raise AssertionError(f"answers did not move to version {version}: last {self.answered[-count:]}")


@pytest.fixture
def base(model_cache, tmp_path) -> Path:
    base = tmp_path / "serving" / "demo"
    base.mkdir(parents=True)
    for v in (1, 2):
        install_version(model_cache, base, v)
    return base


def test_rollback_and_undo_under_load_fail_no_request(base, tmp_path):
    with ServerProcess("demo", base, tmp_path / "server.log", ["--file_system_poll_wait_seconds", "0.2"]) as server:
        server.wait_available(180)
        url = f"http://127.0.0.1:{server.rest_port}"
        with Load(server) as load:
            load.wait_for_answers_from(2)
            target, moved, _ = deploy.rollback(base)
            assert (target, moved) == (1, [2])
            deploy.wait_available(url, "demo", 1, 60, gone=(2,))
            load.wait_for_answers_from(1)
            deploy.undo_rollback(base)
            deploy.wait_available(url, "demo", 2, 60, gone=(1,))
            load.wait_for_answers_from(2)
        assert load.failures == []
        assert len(load.answered) > 100
        assert deploy.server_states(url, "demo") == {2: "AVAILABLE", 1: "END"}


def test_promote_under_load_moves_the_stable_label_without_a_failed_request(base, tmp_path):
    config = tmp_path / "models.config"
    deploy.promote(base, "demo", 1, config)  # stable -> 1, the only version loaded
    flags = ["--model_config_file", str(config), "--model_config_file_poll_wait_seconds", "0.2",
             "--file_system_poll_wait_seconds", "0.2"]
    with ServerProcess("demo", base, tmp_path / "server.log", flags) as server:
        server.wait_available(180)
        url = f"http://127.0.0.1:{server.rest_port}"
        assert deploy.server_states(url, "demo") == {1: "AVAILABLE"}
        with Load(server, label="stable") as load:
            load.wait_for_answers_from(1)
            assert deploy.promote(base, "demo", 2, config, url=url) == {"stable": 2}
            load.wait_for_answers_from(2)
            deploy.wait_available(url, "demo", 2, 60, gone=(1,))  # the old version is unloaded after
        assert load.failures == []
        assert 1 in load.answered and 2 in load.answered
