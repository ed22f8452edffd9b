"""Model versions: discovery on disk, version policies, labels, and load-before-unload swaps.

Mirrors TF Serving's FileSystemStoragePathSource + AspiredVersionsManager with the
availability-preserving policy: a child directory whose name is an integer is a version; the policy
picks the aspired versions; a new version is fully loaded and AVAILABLE before an old one is
unloaded, so requests never see a gap. A version that fails to load is listed as END with its error,
never takes traffic, and is not retried until its saved_model.pb changes.

All routing state is mutated on the event loop thread only; loads run in a worker thread.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Awaitable, Callable

from tensorflow_serving.config import model_server_config_pb2

from serving.errors import Code, ServingError, invalid_argument, not_found
from serving.metrics import ServingMetrics
from serving.servable import Servable

log = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^[0-9]+$")

# ModelVersionStatus.State names (get_model_status.proto).
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class VersionRecord:
    """What the status API reports about one version."""

    version: int
    state: str = START
    error_code: Code = Code.OK
    error_message: str = ""
    servable: Servable | None = None
    pb_mtime_ns: int = 0  # saved_model.pb mtime at the last load attempt; a change allows a retry


def discover_versions(base_path: Path) -> dict[int, tuple[Path, int]]:
    """Map version -> (directory, saved_model.pb mtime) for ready version directories under `base_path`.

    Only integer-named children count (`123.tmp` and other in-progress pushes are ignored). A version
    directory is ready once saved_model.pb exists in it; until then it is skipped, so a copy that is
    still being written never takes traffic.
    """
    versions: dict[int, tuple[Path, int]] = {}
    try:
        children = list(base_path.iterdir())
    except OSError:
        return versions
    for child in children:
        if not _VERSION_DIR.match(child.name):
            continue
        try:
            versions[int(child.name)] = (child, (child / "saved_model.pb").stat().st_mtime_ns)
        except OSError:
            continue
    return versions


def aspired_versions(policy: model_server_config_pb2.ModelConfig, candidates: set[int]) -> set[int]:
    """Apply a ModelConfig's model_version_policy (default: latest 1) to the candidate versions."""
    which = policy.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        return set(candidates)
    if which == "specific":
        return candidates & set(policy.model_version_policy.specific.versions)
    num = policy.model_version_policy.latest.num_versions if which == "latest" else 1
    return set(sorted(candidates, reverse=True)[:max(num, 1)])


class ModelEntry:
    """One configured model: its config and every version the server has seen."""

    def __init__(self, config: model_server_config_pb2.ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, VersionRecord] = {}
        self.lock = asyncio.Lock()  # one reconcile at a time per model
        self._labels: dict[str, int] = dict(config.version_labels)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._labels)

    def move_labels(self) -> None:
        """Point each configured label at its version once that version is AVAILABLE.

        Until then a label keeps the version it pointed at, if that one still serves: retargeting
        `stable` or `canary` in the config file never answers NOT_FOUND while the new version loads
        (TF Serving refuses a label on a version that is not yet available, to the same effect).
        """
        wanted = dict(self.config.version_labels)
        moved = {}
        for label, version in wanted.items():
            old = self._labels.get(label)
            target_ready = version in self.versions and self.versions[version].state == AVAILABLE
            old_serving = old is not None and old in self.versions and self.versions[old].state == AVAILABLE
            moved[label] = old if (not target_ready and old_serving) else version
        self._labels = moved

    def available(self) -> list[int]:
        return sorted(v for v, r in self.versions.items() if r.state == AVAILABLE)


class ModelManager:
    """Owns every model's versions; resolves model specs to loaded servables.

    `loader(name, version, path)` builds a Servable (blocking); `on_unload(servable)` is awaited after a
    version stops taking traffic (the batching layer drains its queue there).
    """

    def __init__(self, loader: Callable[[str, int, Path], Servable], executor: Executor,
                 metrics: ServingMetrics, on_unload: Callable[[Servable], Awaitable[None]] | None = None) -> None:
        self._loader, self._executor, self._metrics, self._on_unload = loader, executor, metrics, on_unload
        self.models: dict[str, ModelEntry] = {}

    # ---- configuration -------------------------------------------------------------------------

    async def apply_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Make the served models match `config`: add new models, update policies/labels, drop removed ones."""
        wanted = {m.name: m for m in config.model_config_list.config}
        for name in [n for n in self.models if n not in wanted]:
            entry = self.models.pop(name)
            async with entry.lock:
                for record in entry.versions.values():
                    await self._unload(entry, record)
            log.info("model %s removed from config; all versions unloaded", name)
        for name, model_config in wanted.items():
            entry = self.models.get(name)
            if entry is None:
                self.models[name] = ModelEntry(model_config)
                log.info("model %s added: base_path=%s", name, model_config.base_path)
            else:
                entry.config = model_config
        await self.poll_once()

    async def poll_once(self) -> None:
        """Scan every base path once and reconcile loaded versions with the policy."""
        await asyncio.gather(*(self._reconcile(entry) for entry in list(self.models.values())))

    async def _reconcile(self, entry: ModelEntry) -> None:
        async with entry.lock:
            base = Path(entry.config.base_path)
            on_disk = await asyncio.get_running_loop().run_in_executor(self._executor, discover_versions, base)
            while True:  # a failed load makes the policy pick again among the remaining versions
                failed = {v for v, r in entry.versions.items()
                          if r.error_code != Code.OK and v in on_disk and r.pb_mtime_ns == on_disk[v][1]}
                aspired = aspired_versions(entry.config, set(on_disk) - failed)
                to_load = [v for v in sorted(aspired, reverse=True)  # newest first: the default moves soonest
                           if entry.versions.get(v) is None or entry.versions[v].state not in (AVAILABLE, LOADING)]
                for version in to_load:
                    await self._load(entry, version, *on_disk[version])
                if all(entry.versions[v].error_code == Code.OK for v in to_load):
                    break
            entry.move_labels()
            settled = all(entry.versions[v].state == AVAILABLE or entry.versions[v].error_code != Code.OK
                          for v in aspired)
            serving_aspired = any(entry.versions[v].state == AVAILABLE for v in aspired)
            if not (settled and serving_aspired):
                return  # availability preserving: keep old versions until the new ones serve
            for version, record in sorted(entry.versions.items()):
                if record.state == AVAILABLE and version not in aspired:
                    await self._unload(entry, record)

    async def _load(self, entry: ModelEntry, version: int, path: Path, pb_mtime_ns: int) -> None:
        record = VersionRecord(version=version, state=LOADING, pb_mtime_ns=pb_mtime_ns)
        entry.versions[version] = record
        log.info("loading servable: {name: %s version: %d} from %s", entry.name, version, path)
        started = time.monotonic()
        try:
            servable = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._loader, entry.name, version, path)
        except Exception as exc:  # any load failure is reported through the status API
            code = exc.code if isinstance(exc, ServingError) else Code.UNKNOWN
            message = exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            record.state, record.error_code, record.error_message = END, code, message
            self._metrics.load_attempt_count.inc(str(path), "FAILED")
            log.error("loading servable: {name: %s version: %d} failed: %s", entry.name, version, message)
            return
        record.servable, record.state = servable, AVAILABLE
        self._metrics.load_attempt_count.inc(str(path), "OK")
        log.info("successfully loaded servable version {name: %s version: %d} in %.1fs",
                 entry.name, version, time.monotonic() - started)

    async def _unload(self, entry: ModelEntry, record: VersionRecord) -> None:
        if record.state != AVAILABLE or record.servable is None:
            return
        record.state = UNLOADING  # stops routing now; in-flight calls keep their reference
        servable, record.servable = record.servable, None
        if self._on_unload is not None:
            await self._on_unload(servable)
        record.state = END
        log.info("unloaded servable version {name: %s version: %d}", entry.name, record.version)

    async def unload_all(self) -> None:
        """Unload every version (shutdown)."""
        for entry in self.models.values():
            async with entry.lock:
                for record in entry.versions.values():
                    await self._unload(entry, record)

    # ---- lookups (event loop thread) -------------------------------------------------------------

    def all_models_available(self) -> bool:
        """True when every configured model has at least one AVAILABLE version."""
        return all(entry.available() for entry in self.models.values())

    def failed_models(self) -> list[str]:
        """Models with versions on disk that all failed to load and nothing serving (start-up fails)."""
        return [e.name for e in self.models.values()
                if e.versions and not e.available()
                and all(r.error_code != Code.OK for r in e.versions.values())]

    def resolve_version(self, name: str, version: int | None, label: str | None) -> int | None:
        """Turn a label into a version number (INVALID_ARGUMENT if unknown, as TF Serving)."""
        if label is None:
            return version
        entry = self.models.get(name)
        if entry is None or label not in entry.labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return entry.labels[label]

    def servable(self, name: str, version: int | None, label: str | None) -> Servable:
        """The servable a request goes to: a specific AVAILABLE version, or the highest one."""
        version = self.resolve_version(name, version, label)
        entry = self.models.get(name)
        if version is None:
            available = entry.available() if entry else []
            if not available:
                raise not_found(f"Servable not found for request: Latest({name})")
            version = available[-1]
        record = entry.versions.get(version) if entry else None
        if record is None or record.state != AVAILABLE or record.servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return record.servable

    def status(self, name: str, version: int | None, label: str | None) -> list[VersionRecord]:
        """Version records for the status API, newest first (NOT_FOUND messages as TF Serving)."""
        version = self.resolve_version(name, version, label)
        entry = self.models.get(name)
        records = entry.versions if entry else {}
        if version is not None:
            if version not in records:
                raise not_found(f"Could not find version {version} of model {name}")
            return [records[version]]
        if not records:
            raise not_found(f"Could not find any versions of model {name}")
        return [records[v] for v in sorted(records, reverse=True)]
