"""Fixtures for serving tests: demo SavedModels built once per session, servers on free 127.0.0.1 ports.

Servers run in-process on their own event loop thread (starting a subprocess costs a TensorFlow
import); the CLI and graceful-shutdown tests start real subprocesses.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixture_models import save_demo_model, save_tf1_half_plus_three, save_tf2_half_plus_two  # noqa: E402

from serving.flags import ServerOptions  # noqa: E402
from serving.model_server import ModelServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class HttpResult:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | dict | None = None, timeout: float = 60.0,
         headers: dict[str, str] | None = None) -> HttpResult:
    """One HTTP request; never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, exc.read(), dict(exc.headers))


def wait_until_ready(url: str, process: subprocess.Popen, limit: float = 180.0) -> None:
    """Poll `url`/readyz until it answers 200; fail if `process` exits first or `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if http("GET", f"{url}/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


class ServerThread:
    """A ModelServer running on its own event loop in a daemon thread."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ModelServer(options, drain_seconds=10)
        self._call(self.server.start(), timeout=120)

    def _call(self, coro, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.rest_api_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.options.port}"

    def poll(self) -> None:
        """Run one version poll now (tests use it instead of sleeping for the poll interval)."""
        self._call(self.server.core.manager.poll_once(), timeout=120)

    def stop(self) -> None:
        self._call(self.server.stop(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_server(**overrides: Any) -> ServerThread:
    options = ServerOptions(port=free_port(), rest_api_port=free_port(), **overrides)
    return ServerThread(options)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Export dirs of demo versions 1 and 2, built once; copy them into base paths with `install_version`."""
    root = tmp_path_factory.mktemp("model_cache")
    for version in (1, 2):
        save_demo_model(root / str(version), version)
    return root


def install_version(cache: Path, base: Path, version: int, as_version: int | None = None,
                    atomic: bool = True) -> Path:
    """Copy demo `version` to base/<as_version>, via a temp name + rename as the pipeline's pusher does."""
    target = base / str(as_version or version)
    if atomic:
        tmp = base / f"{as_version or version}.tmp"
        shutil.copytree(cache / str(version), tmp)
        tmp.rename(target)
    else:
        shutil.copytree(cache / str(version), target)
    return target


@pytest.fixture(scope="session")
def main_server(model_cache: Path, tmp_path_factory) -> Iterator[ServerThread]:
    """Two models from a model_config_file, monitoring on, CORS on, signature method_name check on.

    demo:   versions 1, 2 with policy `all`, labels stable -> 1, canary -> 2.
    latest: versions 1, 2, "3" (no saved_model.pb), "4" (corrupt saved_model.pb), "5.tmp" (ignored);
            default policy (latest 1): serves 2, lists 4 as failed.
    """
    root = tmp_path_factory.mktemp("main_server")
    demo, latest = root / "demo", root / "latest"
    demo.mkdir()
    latest.mkdir()
    for v in (1, 2):
        install_version(model_cache, demo, v)
        install_version(model_cache, latest, v)
    (latest / "3" / "variables").mkdir(parents=True)
    (latest / "4").mkdir()
    (latest / "4" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    install_version(model_cache, latest, 1, as_version=5, atomic=False)
    (latest / "5").rename(latest / "5.tmp")
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "demo"
    base_path: "{demo}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "latest"
    base_path: "{latest}"
    model_platform: "tensorflow"
  }}
}}
""")
    server = start_server(model_config_file=str(config), prometheus_path="/monitoring/prometheus/metrics",
                          rest_api_enable_cors_support=True, file_system_poll_wait_seconds=3600,
                          rest_api_max_body_bytes=1024 * 1024, enable_signature_method_name_check=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def half_models(tmp_path_factory) -> Path:
    """Base paths of TF Serving's test models: half_plus_three (TF1, SavedModelBuilder) and
    half_plus_two (native TF2, every signature method_name predict)."""
    root = tmp_path_factory.mktemp("half_models")
    save_tf1_half_plus_three(root / "half_plus_three" / "123")
    save_tf2_half_plus_two(root / "half_plus_two" / "1")
    return root


def half_models_config(root: Path, directory: Path) -> Path:
    config = directory / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("half_plus_three", "half_plus_two")) + "}\n")
    return config


@pytest.fixture(scope="session")
def compat_server(half_models: Path, tmp_path_factory) -> Iterator[ServerThread]:
    """TF Serving's defaults (no method_name check, no CORS) serving the half_plus models."""
    config = half_models_config(half_models, tmp_path_factory.mktemp("compat_server"))
    server = start_server(model_config_file=str(config), file_system_poll_wait_seconds=3600)
    yield server
    server.stop()
