"""Start-up, background polling and graceful shutdown of one model server (REST + gRPC).

Like TF Serving, the ports open only once every configured model has an AVAILABLE version. On stop,
readiness turns false, both listeners stop accepting, in-flight requests (including those waiting in
batch queues) finish, then models are unloaded.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import grpc
from aiohttp import web

from serving import flags
from serving.core import ServingCore
from serving.flags import ConfigError, ServerOptions
from serving.grpc_service import add_services
from serving.server import RestApi

log = logging.getLogger(__name__)


def refreeze_gc() -> None:
    """Collect, then move every surviving object out of the cyclic GC's reach (gc.freeze).

    A loaded TF model is ~400k long-lived Python objects; a full collection walks all of them (about
    0.2 s with the GIL held, i.e. a 0.2 s stall of every request) and the request path's allocations
    trigger one every few seconds. Frozen objects are still freed by reference counting; only cycles
    among them wait for the next refreeze, which runs whenever the set of loaded versions changes.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class StartupError(RuntimeError):
    """The server could not start (a model failed to load, a port is taken...)."""


class ModelServer:
    """One server instance. Use from a running event loop: `await start()`, then `await stop()`."""

    def __init__(self, options: ServerOptions, drain_seconds: float = 30.0) -> None:
        self.options = options
        self.core = ServingCore(options)
        self.rest = RestApi(self.core)
        self._drain_seconds = drain_seconds
        self._runner: web.ServerRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._config_text = ""
        self._frozen_for: frozenset[int] | None = None  # the loaded servables at the last refreeze_gc

    async def start(self) -> None:
        """Load the initial config, wait for every model to serve, then open the ports."""
        config = flags.initial_model_config(self.options)
        if self.options.model_config_file:
            self._config_text = Path(self.options.model_config_file).read_text()
        await self.core.manager.apply_config(config)
        await self._wait_until_available()
        await self._refreeze_if_changed()
        if self.options.rest_api_port:
            self._runner = web.ServerRunner(self.rest.make_server())
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.options.host, self.options.rest_api_port,
                               shutdown_timeout=self._drain_seconds)
            try:
                await site.start()
            except OSError as exc:
                raise StartupError(f"cannot bind REST port {self.options.host}:{self.options.rest_api_port}: "
                                   f"{exc.strerror}") from exc
            log.info("REST API listening on http://%s:%d", self.options.host, self.options.rest_api_port)
        addresses = ([f"{self.options.host}:{self.options.port}"] if self.options.port else []) + \
            ([f"unix:{self.options.grpc_socket_path}"] if self.options.grpc_socket_path else [])
        if addresses:
            # TF Serving lifts gRPC's message size limits, then applies --grpc_channel_arguments.
            arguments = {"grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1,
                         **dict(self.options.grpc_channel_arguments)}
            self._grpc = grpc.aio.server(options=list(arguments.items()))
            add_services(self._grpc, self.core)
            for address in addresses:
                try:
                    self._grpc.add_insecure_port(address)
                except RuntimeError as exc:
                    raise StartupError(f"cannot bind gRPC address {address}") from exc
            await self._grpc.start()
            log.info("gRPC listening on %s", ", ".join(addresses))
        if self.options.file_system_poll_wait_seconds > 0:  # 0: TF Serving polls once, not periodically
            self._tasks.append(asyncio.create_task(self._poll_versions()))
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(self._poll_config()))

    async def _wait_until_available(self) -> None:
        manager = self.core.manager
        waited_log = False
        while not manager.all_models_available():
            failed = manager.failed_models()
            if failed:
                errors = "; ".join(f"{name}: {r.error_message}" for name in failed
                                   for r in manager.models[name].versions.values())
                raise StartupError(f"no version of {', '.join(failed)} could be loaded: {errors}")
            if not waited_log:
                missing = [n for n, e in manager.models.items() if not e.available()]
                log.info("waiting for an AVAILABLE version of %s (no integer version directory with "
                         "saved_model.pb yet under %s)", ", ".join(missing),
                         ", ".join(manager.models[n].config.base_path for n in missing))
                waited_log = True
            await asyncio.sleep(self.options.file_system_poll_wait_seconds or 1.0)
            await manager.poll_once()

    async def _poll_versions(self) -> None:
        while True:
            await asyncio.sleep(self.options.file_system_poll_wait_seconds)
            try:
                await self.core.manager.poll_once()
                await self._refreeze_if_changed()
            except Exception:  # keep serving what is loaded; the next poll retries
                log.exception("version poll failed")

    async def _poll_config(self) -> None:
        path = Path(self.options.model_config_file)
        while True:
            await asyncio.sleep(self.options.model_config_file_poll_wait_seconds)
            try:
                text = path.read_text()
                if text == self._config_text:
                    continue
                config = flags.read_model_server_config(str(path))
            except (OSError, ConfigError) as exc:
                log.error("keeping the current model config: %s", exc)
                continue
            self._config_text = text
            log.info("model config file changed: applying %d models", len(config.model_config_list.config))
            await self.core.manager.apply_config(config)
            await self._refreeze_if_changed()

    def _loaded_servables(self) -> frozenset[int]:
        return frozenset(id(record.servable) for entry in self.core.manager.models.values()
                         for record in entry.versions.values() if record.servable is not None)

    async def _refreeze_if_changed(self) -> None:
        loaded = self._loaded_servables()
        if loaded != self._frozen_for:
            self._frozen_for = loaded
            await asyncio.to_thread(refreeze_gc)

    async def stop(self) -> None:
        """Graceful shutdown: refuse new work, finish in-flight requests, unload models."""
        self.rest.draining = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        closing = []
        if self._grpc is not None:
            closing.append(self._grpc.stop(grace=self._drain_seconds))
        if self._runner is not None:
            closing.append(self._runner.cleanup())  # stops listening, waits for running handlers
        await asyncio.gather(*closing)
        await self.core.shutdown()
        log.info("server stopped")
