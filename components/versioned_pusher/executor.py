"""Executor: copy a blessed model to <base>/<next integer> via a temporary name and a rename.

TFX's own Pusher names versions int(time.time()) (two pushes in one second
collide) and copies in place, so a server polling the base path can see a
half-written version. Here the copy lands in ``.tmp-<random>/version`` (not an
integer, so TF Serving ignores it) and is renamed when complete. The version records
which model it holds, so a run killed between the rename and ML Metadata's record
records that version on its re-run instead of pushing the model twice; staging
directories of killed pushes are removed by the next push.

Clients store class ids, so a candidate whose class list differs from the newest
pushed version's is a breaking change: it is not pushed unless custom_config
``allow_class_change`` is true, and the PushedModel artifact records the classes
added and removed either way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
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
STAGING_PREFIX = ".tmp-"  # <base>/.tmp-<random>/version: not an integer, so no server loads it
PUSH_RECORD_FILE = "assets.extra/lenspipe_push.json"  # {"source": <model path>}; TF Serving ignores assets.extra/
RESUMED_PROPERTY = "lenspipe_push_resumed"  # int on PushedModel: 1 = the version was already on disk
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


class PushFailed(RuntimeError):
    """A push cannot complete (e.g. the serving filesystem is full); the message says where and what to do."""


def _is_local(path: str) -> bool:
    return "://" not in path


def _tree_bytes(sources: list[str], block: int) -> int:
    """Bytes ``sources`` (files or directories) take on a filesystem with ``block``-byte blocks."""
    total = 0
    for source in sources:
        walk = os.walk(source) if os.path.isdir(source) else [(os.path.dirname(source), [], [os.path.basename(source)])]
        for root, _, files in walk:
            total += block  # the directory itself
            for name in files:
                total += -(-os.path.getsize(os.path.join(root, name)) // block) * block
    return total


def _space_text(base_dir: str) -> str:
    st = os.statvfs(base_dir)
    return f"{st.f_bavail * st.f_frsize / 1e6:.2f} MB and {st.f_favail} inodes free"


def check_free_space(base_dir: str, sources: list[str]) -> None:
    """PushFailed naming ``base_dir`` and its free space if copying ``sources`` there cannot fit."""
    if not (_is_local(base_dir) and all(_is_local(s) for s in sources)):
        return
    st = os.statvfs(base_dir)
    needed = _tree_bytes(sources, st.f_frsize)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise PushFailed(
            f"{base_dir}: not enough free space to push: the model needs {needed / 1e6:.2f} MB, "
            f"{_space_text(base_dir)}; nothing was pushed (free space there or set pusher.serving_model_dir)"
        )


def _out_of_space(exc: BaseException) -> bool:
    text = str(exc)
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text or "ENOSPC" in text


@contextlib.contextmanager
def _staging_dir(base_dir: str):
    """A fresh ``<base>/.tmp-<random>`` held under an exclusive flock for as long as the push runs.

    The lock tells a later push whether a staging directory is a live push's or the remains of a
    killed one (the kernel drops a dead process's locks); see ``sweep_stale_staging``.
    """
    while True:
        path = os.path.join(base_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
        fileio.makedirs(path)
        fd = None
        if _is_local(path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:  # another push's sweep removed it before we could open it
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # a sweeper removed it before we locked it
                same = False
            if not same:
                os.close(fd)
                continue
        try:
            yield path
        finally:
            try:
                if fileio.exists(path):
                    fileio.rmtree(path)
            finally:
                if fd is not None:
                    os.close(fd)
        return


def sweep_stale_staging(base_dir: str) -> list[str]:
    """Remove staging directories no live push holds (left by a killed push); returns their names."""
    if not _is_local(base_dir) or not os.path.isdir(base_dir):
        return []
    removed = []
    for name in sorted(os.listdir(base_dir)):
        path = os.path.join(base_dir, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a push in progress
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
        finally:
            os.close(fd)
    if removed:
        log.warning("removed %d staging dir(s) of interrupted pushes under %s: %s", len(removed), base_dir,
                    ", ".join(removed))
    return removed


def pushed_source(version_dir: str) -> Optional[str]:
    """The source model path recorded in a pushed version (None for versions pushed without a record)."""
    path = os.path.join(version_dir, PUSH_RECORD_FILE)
    if not fileio.exists(path):
        return None
    try:
        with fileio.open(path, "r") as f:
            return json.load(f).get("source")
    except (ValueError, OSError):
        return None


def version_holding(base_dir: str, source: str) -> Optional[int]:
    """The newest integer version under ``base_dir`` that was pushed from ``source``, or None."""
    for version in reversed(existing_versions(base_dir)):
        if pushed_source(os.path.join(base_dir, str(version))) == source:
            return version
    return None


def push_model(model_path: str, base_dir: str, extra_files: Optional[Mapping[str, str]] = None,
               source: Optional[str] = None) -> tuple[str, int]:
    """Copy ``model_path`` to ``base_dir/<max existing + 1>`` atomically; returns (path, version).

    ``extra_files`` maps a path inside the version to a source file; they land in the
    same temporary copy, so they appear with the version, never after it. ``source`` (the
    model's identity, e.g. its artifact path) is recorded in ``PUSH_RECORD_FILE`` inside the
    version, so a re-run after a kill finds the version (``version_holding``) instead of pushing it twice.

    If another pusher takes the same number first, the rename fails and the next
    number is tried, so two concurrent pushes never overwrite each other. PushFailed when the
    filesystem is full (before copying if it is known not to fit); nothing partial stays behind.
    """
    fileio.makedirs(base_dir)
    sweep_stale_staging(base_dir)
    check_free_space(base_dir, [model_path, *(extra_files or {}).values()])
    try:
        with _staging_dir(base_dir) as staging:
            return _copy_and_rename(model_path, base_dir, os.path.join(staging, "version"), extra_files, source)
    except Exception as exc:  # noqa: BLE001 - re-raised; as PushFailed when the disk is full
        if not _out_of_space(exc):
            raise
        # The staging copy is gone by now, so the message reports the space the failed push leaves.
        where = _space_text(base_dir) if _is_local(base_dir) else str(exc).splitlines()[-1]
        raise PushFailed(f"{base_dir}: the filesystem filled up during the push ({where}); "
                         "nothing was pushed (free space there or set pusher.serving_model_dir)") from exc


def _copy_and_rename(model_path: str, base_dir: str, tmp: str, extra_files: Optional[Mapping[str, str]],
                     source: Optional[str]) -> tuple[str, int]:
    # saved_model.pb last: anything that watches files sees it only after variables/.
    io_utils.copy_dir(model_path, tmp, deny_regex_patterns=[r"saved_model\.pb"])
    for rel, src in (extra_files or {}).items():
        io_utils.copy_file(src, os.path.join(tmp, rel))
    if source is not None:
        io_utils.write_string_file(os.path.join(tmp, PUSH_RECORD_FILE), json.dumps({"source": source}))
    io_utils.copy_file(os.path.join(model_path, "saved_model.pb"), os.path.join(tmp, "saved_model.pb"))
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
        sweep_stale_staging(base_dir)  # here too: a resumed push copies nothing, but a kill may have left one
        resumed = version_holding(base_dir, model_path)
        if resumed is not None:
            # A run killed after its rename but before ML Metadata recorded the push: record that
            # version instead of copying the same model again under a new number.
            serving_path, version = os.path.join(base_dir, str(resumed)), resumed
            log.warning("version %d under %s already holds this model (a push interrupted before ML Metadata "
                        "recorded it); recording it, not pushing again", version, base_dir)
            model_push.set_int_custom_property(RESUMED_PROPERTY, 1)
            self._finish_push(model_path, model_push, base_dir, serving_path, version, custom_config)
            return
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
        serving_path, version = push_model(model_path, base_dir, tflite_files(input_dict.get(TFLITE_MODELS_KEY)),
                                           source=model_path)
        log.info("pushed version %d to %s", version, serving_path)
        self._finish_push(model_path, model_push, base_dir, serving_path, version, custom_config)

    def _finish_push(self, model_path: str, model_push, base_dir: str, serving_path: str, version: int,
                     custom_config: dict) -> None:
        """Label the version (if asked), keep TFX's archive copy, mark the artifact pushed: safe to repeat."""
        if custom_config.get(LABEL_KEY):
            config_path = custom_config.get(MODEL_CONFIG_FILE_KEY) or model_config.default_model_config_file(base_dir)
            model_config.label_version(config_path, custom_config.get(MODEL_NAME_KEY) or os.path.basename(base_dir),
                                       base_dir, custom_config[LABEL_KEY], version)
            log.info("labelled version %d %s in %s", version, custom_config[LABEL_KEY], config_path)
        io_utils.copy_dir(model_path, model_push.uri)  # the archive copy TFX's Pusher keeps
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
