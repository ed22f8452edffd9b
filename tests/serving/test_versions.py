"""Version discovery, policies, labels, load-before-unload hot swaps and failed versions."""
from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from conftest import http, install_version, start_server
from fixture_models import png_bytes
from serving.flags import ServerOptions
from serving.model_server import ModelServer, StartupError
from serving.versions import aspired_versions, discover_versions

BODY = {"instances": [{"b64": base64.b64encode(png_bytes(1)).decode()}]}


def wait_for(predicate, what: str, limit: float = 60.0) -> None:
    """Bounded wait for a state change (never a timing assertion: the limit only stops a hung test)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def states(server, model: str = "demo") -> dict[str, str]:
    return {s["version"]: s["state"] for s in http("GET", f"{server.url}/v1/models/{model}").json()["model_version_status"]}


def test_discover_versions_ignores_non_integer_and_unfinished_dirs(tmp_path: Path):
    for name in ("1", "12", "3.tmp", "tmp-4", "-5", "07"):
        (tmp_path / name).mkdir()
    for name in ("1", "3.tmp", "tmp-4", "07"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "9").write_text("a file, not a directory")
    found = discover_versions(tmp_path)
    assert set(found) == {1, 7}  # "12" has no saved_model.pb yet
    assert found[7][0] == tmp_path / "07"  # loaded from the directory as named
    assert discover_versions(tmp_path / "missing") == {}


@pytest.mark.parametrize("policy,expected", [
    ("", {5}),
    ("model_version_policy { latest { num_versions: 2 } }", {3, 5}),
    ("model_version_policy { all {} }", {1, 3, 5}),
    ("model_version_policy { specific { versions: 1 versions: 4 } }", {1}),
])
def test_version_policies(policy, expected):
    config = text_format.Parse(f'name: "m" base_path: "/x" {policy}', model_server_config_pb2.ModelConfig())
    assert aspired_versions(config, {1, 3, 5}) == expected


@pytest.mark.parametrize("batching", [False, True], ids=["direct", "batched"])
def test_hot_swap_under_load_fails_no_request(model_cache, tmp_path, batching):
    base = tmp_path / "demo"
    base.mkdir()
    install_version(model_cache, base, 1)
    server = start_server(model_name="demo", model_base_path=str(base), file_system_poll_wait_seconds=0.2,
                          enable_batching=batching)
    stop = threading.Event()
    results: list[list[tuple[int, int | None]]] = [[] for _ in range(3)]

    def client(out: list) -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and len(out) < 5000 and time.monotonic() < deadline:
            r = http("POST", f"{server.url}/v1/models/demo:predict", BODY)
            out.append((r.status, r.json()["predictions"][0]["model_version"] if r.status == 200 else None))

    threads = [threading.Thread(target=client, args=(out,)) for out in results]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: all(len(out) >= 5 for out in results), "traffic on version 1")
        (base / "3" / "variables").mkdir(parents=True)  # an unfinished copy: no saved_model.pb
        install_version(model_cache, base, 2)            # the pusher's temp name + rename
        wait_for(lambda: states(server) == {"2": "AVAILABLE", "1": "END"}, "version 2 to replace version 1")
        seen = [len(out) for out in results]
        wait_for(lambda: all(len(out) >= n + 20 for out, n in zip(results, seen)), "traffic after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    try:
        for out in results:
            assert [s for s, _ in out if s != 200] == []
            versions = [v for _, v in out]
            assert versions == sorted(versions), "a client went back to the old version"
            assert versions[0] == 1 and versions[-1] == 2
        assert "3" not in states(server)

        # A version that fails to load is listed with its error; version 2 keeps serving.
        (base / "4.tmp").mkdir()
        (base / "4.tmp" / "saved_model.pb").write_bytes(b"garbage")
        (base / "4.tmp").rename(base / "4")
        server.poll()
        status = {s["version"]: s for s in http("GET", f"{server.url}/v1/models/demo").json()["model_version_status"]}
        assert status["4"]["state"] == "END" and status["4"]["status"]["error_code"] == "DATA_LOSS"
        assert "Could not parse" in status["4"]["status"]["error_message"]
        assert status["2"]["state"] == "AVAILABLE"
        assert http("POST", f"{server.url}/v1/models/demo:predict", BODY).json()["predictions"][0]["model_version"] == 2
        assert http("POST", f"{server.url}/v1/models/demo/versions/4:predict", BODY).status == 404
    finally:
        server.stop()


def test_gc_is_refrozen_when_the_loaded_versions_change(model_cache, tmp_path):
    """Loaded models' objects are frozen out of the cyclic GC (no 0.2 s full-collection stalls)."""
    import gc

    base = tmp_path / "demo"
    base.mkdir()
    install_version(model_cache, base, 1)
    server = start_server(model_name="demo", model_base_path=str(base), file_system_poll_wait_seconds=0.2)
    try:
        first = server.server._frozen_for
        assert first is not None and len(first) == 1 and gc.get_freeze_count() > 0
        install_version(model_cache, base, 2)
        wait_for(lambda: states(server) == {"2": "AVAILABLE", "1": "END"}
                 and server.server._frozen_for not in (None, first), "a refreeze after the swap")
        assert server.server._frozen_for == server.server._loaded_servables()
        assert len(server.server._frozen_for) == 1
    finally:
        server.stop()


def test_reload_config_switches_policy_and_labels(model_cache, tmp_path):
    base = tmp_path / "demo"
    base.mkdir()
    for v in (1, 2):
        install_version(model_cache, base, v)
    server = start_server(model_name="demo", model_base_path=str(base), file_system_poll_wait_seconds=3600)
    try:
        assert states(server) == {"2": "AVAILABLE"}
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(f"""model_config_list {{ config {{
            name: "demo" base_path: "{base}" model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 1 }} }}
            version_labels {{ key: "stable" value: 1 }} }} }}""", request.config)
        with grpc.insecure_channel(server.grpc_target) as channel:
            response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60)
        assert response.status.error_code == 0
        assert states(server) == {"2": "END", "1": "AVAILABLE"}
        r = http("POST", f"{server.url}/v1/models/demo/labels/stable:predict", BODY)
        assert r.json()["predictions"][0]["model_version"] == 1
    finally:
        server.stop()


def test_model_config_file_is_polled(model_cache, tmp_path):
    base = tmp_path / "demo"
    base.mkdir()
    install_version(model_cache, base, 1)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "demo" base_path: "{base}" }} }}')
    server = start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.2,
                          file_system_poll_wait_seconds=3600)
    try:
        assert http("POST", f"{server.url}/v1/models/demo/labels/prod:predict", BODY).status == 400
        config.write_text(f'model_config_list {{ config {{ name: "demo" base_path: "{base}" '
                          'version_labels { key: "prod" value: 1 } } }')
        wait_for(lambda: http("POST", f"{server.url}/v1/models/demo/labels/prod:predict", BODY).status == 200,
                 "the new label")
        config.write_text("not a text proto {")  # a broken edit keeps the last good config
        time.sleep(0.5)
        assert http("POST", f"{server.url}/v1/models/demo/labels/prod:predict", BODY).status == 200
    finally:
        server.stop()


def test_start_fails_when_every_version_fails_to_load(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"garbage")

    async def start() -> None:
        server = ModelServer(ServerOptions(model_name="m", model_base_path=str(tmp_path), port=0, rest_api_port=0))
        try:
            await server.start()
        finally:
            await server.stop()

    with pytest.raises(StartupError, match="no version of m could be loaded"):
        asyncio.run(start())


def test_a_relabelled_version_takes_the_label_only_once_it_is_available(model_cache, tmp_path: Path):
    """A config rewrite that moves `stable` 1 -> 2 in one step: requests for `stable` keep getting 1 while 2 loads."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.metrics import ServingMetrics
    from serving.servable import Servable
    from serving.versions import LOADING, ModelManager

    base = tmp_path / "demo"
    base.mkdir()
    for v in (1, 2):
        install_version(model_cache, base, v)
    release = threading.Event()

    def loader(name: str, version: int, path: Path) -> Servable:
        if version == 2:
            release.wait(60)  # hold version 2 in LOADING until the test has looked
        return Servable(name, version, path)

    def config(stable: int) -> model_server_config_pb2.ModelServerConfig:
        return text_format.Parse(f"""model_config_list {{ config {{ name: "demo" base_path: "{base}"
            model_version_policy {{ specific {{ versions: {stable} }} }}
            version_labels {{ key: "stable" value: {stable} }} }} }}""", model_server_config_pb2.ModelServerConfig())

    async def scenario() -> None:
        manager = ModelManager(loader, ThreadPoolExecutor(1), ServingMetrics())
        await manager.apply_config(config(1))
        assert manager.servable("demo", None, "stable").version == 1
        applying = asyncio.create_task(manager.apply_config(config(2)))
        entry = manager.models["demo"]
        while entry.versions.get(2) is None or entry.versions[2].state != LOADING:
            await asyncio.sleep(0.01)
        assert manager.servable("demo", None, "stable").version == 1
        release.set()
        await applying
        assert manager.servable("demo", None, "stable").version == 2
        assert entry.versions[1].state == "END"
        await manager.unload_all()

    asyncio.run(scenario())
