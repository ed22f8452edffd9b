"""Executor: copy a blessed model to <base>/<next integer> via a temporary name and a rename.

TFX's own Pusher names versions int(time.time()) (two pushes in one second
collide) and copies in place, so a server polling the base path can see a
half-written version. Here the copy lands in ``<version>.tmp-<random>`` (not an
integer, so TF Serving ignores it) and is renamed when complete.

Clients store class ids, so a candidate whose class list differs from the newest
pushed version's is a breaking change: it is not pushed unless custom_config
``allow_class_change`` is true, and the PushedModel artifact records the classes
added and removed either way.
"""

from __future__ import annotations

import json
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

from components.versioned_pusher.rollback import ROLLED_BACK_AT_PROPERTY, ROLLED_BACK_PROPERTY
from components.versioned_pusher import model_config
from lenspipe import features

log = logging.getLogger("lenspipe.pusher")

# Optional plain-string execution property: overrides push_destination's base directory, so an
# orchestrator can make the serving directory a runtime parameter (a proto field cannot be one).
SERVING_MODEL_DIR_KEY = "serving_model_dir"

TFLITE_MODELS_KEY = "tflite_models"
TFLITE_DIR = "assets.extra/tflite"  # TF Serving ignores assets.extra/
_VERSION = re.compile(r"^[0-9]+$")
_MAX_RENAME_RACES = 5
ALLOW_CLASS_CHANGE_KEY = "allow_class_change"  # custom_config
LABEL_KEY = "label"  # custom_config: push as this version label (e.g. canary) in MODEL_CONFIG_FILE_KEY
MODEL_CONFIG_FILE_KEY = "model_config_file"
MODEL_NAME_KEY = "model_name"
CLASSES_ADDED_PROPERTY = "classes_added"  # JSON lists on the PushedModel artifact
CLASSES_REMOVED_PROPERTY = "classes_removed"
NOT_PUSHED_REASON_PROPERTY = "not_pushed_reason"


def existing_versions(base_dir: str) -> list[int]:
    """Integer version directories under ``base_dir`` (what TF Serving would load)."""
    if not fileio.exists(base_dir):
        return []
    return sorted(int(n.rstrip("/")) for n in fileio.listdir(base_dir) if _VERSION.match(n.rstrip("/")))


def taken_numbers(base_dir: str) -> list[int]:
    """Integer versions plus those renamed ``<N>.rolled-back-<time>``: a number is never reused for another model."""
    if not fileio.exists(base_dir):
        return []
    names = [n.rstrip("/") for n in fileio.listdir(base_dir)]
    return sorted(int(n.split(".", 1)[0]) for n in names if _VERSION.match(n.split(".rolled-back-", 1)[0]))


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
            version = max(taken_numbers(base_dir), default=0) + 1
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


def class_names(model_dir: str) -> list[str] | None:
    """The class names the trainer recorded beside a SavedModel, or None if it has no metadata file."""
    path = os.path.join(model_dir, features.MODEL_METADATA_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return list(json.load(f).get("class_names", []))


def class_change(model_path: str, base_dir: str) -> tuple[list[str], list[str]]:
    """(classes added, classes removed) of the candidate against the newest version under ``base_dir``."""
    versions = existing_versions(base_dir)
    if not versions:
        return [], []
    previous = class_names(os.path.join(base_dir, str(versions[-1])))
    candidate = class_names(model_path)
    if previous is None or candidate is None:
        return [], []
    return sorted(set(candidate) - set(previous)), sorted(set(previous) - set(candidate))


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


def not_blessed_reason(input_dict: dict[str, list]) -> str:
    """Which blessing is missing: the Evaluator's, or the serving check's (with its reason)."""
    for blessing in input_dict.get(standard_component_specs.MODEL_BLESSING_KEY) or []:
        if blessing.get_int_custom_property("blessed") != 1:
            return "model not blessed"
    for blessing in input_dict.get(standard_component_specs.INFRA_BLESSING_KEY) or []:
        if blessing.get_int_custom_property("blessed") != 1:
            why = blessing.get_string_custom_property("not_blessed_reason")
            return f"serving check failed: {why}" if why else "serving check failed"
    return "model not blessed"


def rollback_of(input_dict: dict[str, list]) -> str:
    """Why the candidate must not be pushed again ("" if it may): it is a version someone rolled back."""
    for model in input_dict.get(standard_component_specs.MODEL_KEY) or []:
        if model.get_int_custom_property(ROLLED_BACK_PROPERTY) == 1:
            when = model.get_string_custom_property(ROLLED_BACK_AT_PROPERTY)
            return (f"this model was rolled back{' at ' + when if when else ''} (lenspipe rollback); "
                    "train a new one, or `lenspipe rollback --undo` to serve it again")
    return ""


class Executor(tfx_pusher_executor.Executor):
    """Pushes a blessed model to a filesystem destination with integer versions."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            reason = not_blessed_reason(input_dict)
            log.info("%s: nothing pushed", reason)
            model_push.set_string_custom_property(NOT_PUSHED_REASON_PROPERTY, reason)
            self._MarkNotPushed(model_push)
            return
        rolled_back = rollback_of(input_dict)
        if rolled_back:
            log.warning("not pushed: %s", rolled_back)
            model_push.set_string_custom_property(NOT_PUSHED_REASON_PROPERTY, rolled_back)
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("VersionedPusher pushes to push_destination.filesystem only")
        model_path = self.GetModelPath(input_dict)
        base_dir = exec_properties.get(SERVING_MODEL_DIR_KEY) or destination.filesystem.base_directory
        custom_config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        added, removed = class_change(model_path, base_dir)
        model_push.set_json_value_custom_property(CLASSES_ADDED_PROPERTY, added)
        model_push.set_json_value_custom_property(CLASSES_REMOVED_PROPERTY, removed)
        if (added or removed) and not custom_config.get(ALLOW_CLASS_CHANGE_KEY, False):
            reason = (
                f"the class list changed (added: {', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}), "
                "which renumbers class ids clients may store; re-run with --allow-class-change to push it"
            )
            log.warning("not pushed: %s", reason)
            model_push.set_string_custom_property(NOT_PUSHED_REASON_PROPERTY, reason)
            self._MarkNotPushed(model_push)
            return
        serving_path, version = push_model(model_path, base_dir, tflite_files(input_dict.get(TFLITE_MODELS_KEY)))
        log.info("pushed version %d to %s", version, serving_path)
        if custom_config.get(LABEL_KEY):
            config_path = custom_config.get(MODEL_CONFIG_FILE_KEY) or model_config.default_model_config_file(base_dir)
            model_config.label_version(config_path, custom_config.get(MODEL_NAME_KEY) or os.path.basename(base_dir),
                                       base_dir, custom_config[LABEL_KEY], version)
            log.info("labelled version %d %s in %s", version, custom_config[LABEL_KEY], config_path)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy TFX's Pusher keeps
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
