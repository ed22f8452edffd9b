"""Executor: copy a blessed model to <base>/<next integer> via a temporary name and a rename.

TFX's own Pusher names versions int(time.time()) (two pushes in one second
collide) and copies in place, so a server polling the base path can see a
half-written version. Here the copy lands in ``<version>.tmp-<random>`` (not an
integer, so TF Serving ignores it) and is renamed when complete.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from typing import Any, Mapping, Optional

from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

log = logging.getLogger("lenspipe.pusher")

TFLITE_MODELS_KEY = "tflite_models"
TFLITE_DIR = "assets.extra/tflite"  # TF Serving ignores assets.extra/
_VERSION = re.compile(r"^[0-9]+$")
_MAX_RENAME_RACES = 5


def existing_versions(base_dir: str) -> list[int]:
    """Integer version directories under ``base_dir`` (what TF Serving would load)."""
    if not fileio.exists(base_dir):
        return []
    return sorted(int(n.rstrip("/")) for n in fileio.listdir(base_dir) if _VERSION.match(n.rstrip("/")))


def push_model(model_path: str, base_dir: str, extra_files: Optional[Mapping[str, str]] = None) -> tuple[str, int]:
    """Copy ``model_path`` to ``base_dir/<max existing + 1>`` atomically; returns (path, version).

    ``extra_files`` maps a path inside the version to a source file; they land in the
    same temporary copy, so they appear with the version, never after it.

    If another pusher takes the same number first, the rename fails and the next
    number is tried, so two concurrent pushes never overwrite each other.
    """
    fileio.makedirs(base_dir)
    tmp = os.path.join(base_dir, f".tmp-{uuid.uuid4().hex}")
    # saved_model.pb last: anything that watches files sees it only after variables/.
    io_utils.copy_dir(model_path, tmp, deny_regex_patterns=[r"saved_model\.pb"])
    for rel, source in (extra_files or {}).items():
        io_utils.copy_file(source, os.path.join(tmp, rel))
    io_utils.copy_file(os.path.join(model_path, "saved_model.pb"), os.path.join(tmp, "saved_model.pb"))
    try:
        for _ in range(_MAX_RENAME_RACES):
            version = max(existing_versions(base_dir), default=0) + 1
            target = os.path.join(base_dir, str(version))
            if fileio.exists(target):
                continue
            try:
                fileio.rename(tmp, target, overwrite=False)
            except Exception:  # noqa: BLE001 - a concurrent push took this number
                if fileio.exists(target):
                    continue
                raise
            return target, version
        raise RuntimeError(f"could not claim a version under {base_dir} after {_MAX_RENAME_RACES} tries")
    finally:
        if fileio.exists(tmp):
            fileio.rmtree(tmp)


def tflite_files(artifacts: Optional[list]) -> dict[str, str]:
    """Files of the TFLite variants that passed their check (plus labels and check), by path in the version."""
    from components.tflite_check.executor import CHECK_FILE, read_check
    from inference.tflite_model import LABELS_FILE

    if not artifacts:
        return {}
    uri = artifacts[0].uri
    check = read_check(uri) or {}
    passed = [v["file"] for v in check.get("variants", []) if v.get("passed")]
    for v in check.get("variants", []):
        if not v.get("passed"):
            log.warning("TFLite %s not pushed: %s", v["variant"], v.get("reason"))
    if not passed:
        return {}
    return {os.path.join(TFLITE_DIR, name): os.path.join(uri, name) for name in [*passed, LABELS_FILE, CHECK_FILE]}


class Executor(tfx_pusher_executor.Executor):
    """Pushes a blessed model to a filesystem destination with integer versions."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            log.info("model not blessed: nothing pushed")
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("VersionedPusher pushes to push_destination.filesystem only")
        model_path = self.GetModelPath(input_dict)
        serving_path, version = push_model(
            model_path, destination.filesystem.base_directory, tflite_files(input_dict.get(TFLITE_MODELS_KEY))
        )
        log.info("pushed version %d to %s", version, serving_path)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy TFX's Pusher keeps
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
