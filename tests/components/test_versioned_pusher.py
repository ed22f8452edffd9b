"""VersionedPusher: consecutive integer versions, published by rename, never half-written."""

from __future__ import annotations

import json
import os
import threading
import uuid

from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.versioned_pusher.executor import Executor, existing_versions, push_model


def fake_model(root):
    (root / "variables").mkdir(parents=True)
    (root / "variables" / "variables.index").write_bytes(b"idx")
    (root / "saved_model.pb").write_bytes(b"pb")
    return root


def test_versions_count_up_from_one_and_ignore_non_integer_dirs(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "serving" / "m"
    (base / "123.tmp").mkdir(parents=True)  # TF Serving ignores it; so do we
    assert push_model(str(model), str(base)) == (str(base / "1"), 1)
    assert push_model(str(model), str(base)) == (str(base / "2"), 2)
    assert existing_versions(str(base)) == [1, 2]
    assert (base / "2" / "saved_model.pb").read_bytes() == b"pb"
    assert (base / "2" / "variables" / "variables.index").read_bytes() == b"idx"
    assert sorted(p.name for p in base.iterdir()) == ["1", "123.tmp", "2"]  # no temp copy left


def test_next_version_follows_the_highest_existing(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    (base / "41").mkdir(parents=True)
    assert push_model(str(model), str(base))[1] == 42


def test_concurrent_pushes_get_distinct_versions(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    results = []
    threads = [threading.Thread(target=lambda: results.append(push_model(str(model), str(base)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for _, v in results) == [1, 2, 3, 4]
    for version in range(1, 5):
        assert (base / str(version) / "saved_model.pb").is_file()


def _model_with_classes(root, classes):
    fake_model(root / "Format-Serving")
    meta = root / "Format-Serving" / "assets.extra" / "lenspipe.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"class_names": classes}))
    model = standard_artifacts.Model()
    model.uri = str(root)
    return model


def _push(tmp_path, model, base, allow=False):
    """Run the executor on a blessed model; returns the PushedModel artifact."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{uuid.uuid4().hex}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    Executor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": json.dumps({"allow_class_change": allow})},
    )
    return pushed


def _tree(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


def test_a_changed_class_list_is_not_pushed_unless_allowed(tmp_path):
    base = tmp_path / "serving" / "m"
    first = _push(tmp_path, _model_with_classes(tmp_path / "a", ["cat", "dog"]), base)
    assert first.get_int_custom_property("pushed") == 1
    before = _tree(base)

    changed = _model_with_classes(tmp_path / "b", ["cat", "dog", "owl"])
    refused = _push(tmp_path, changed, base)
    assert refused.get_int_custom_property("pushed") == 0
    assert refused.get_json_value_custom_property("classes_added") == ["owl"]
    assert refused.get_json_value_custom_property("classes_removed") == []
    assert "--allow-class-change" in refused.get_string_custom_property("not_pushed_reason")
    assert _tree(base) == before  # the serving directory is byte-for-byte unchanged

    allowed = _push(tmp_path, changed, base, allow=True)
    assert allowed.get_int_custom_property("pushed") == 1
    assert existing_versions(str(base)) == [1, 2]


def test_the_same_class_list_pushes_without_a_flag(tmp_path):
    base = tmp_path / "m"
    _push(tmp_path, _model_with_classes(tmp_path / "a", ["cat", "dog"]), base)
    again = _push(tmp_path, _model_with_classes(tmp_path / "b", ["cat", "dog"]), base)
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_json_value_custom_property("classes_added") == []


def test_a_canary_push_labels_the_new_version_canary_and_keeps_stable(tmp_path):
    from components.versioned_pusher import model_config

    base = tmp_path / "serving" / "m"
    _push(tmp_path, _model_with_classes(tmp_path / "a", ["cat", "dog"]), base)
    model = _model_with_classes(tmp_path / "b", ["cat", "dog"])
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed-canary")
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination),
         "custom_config": json.dumps({"label": "canary", "model_name": "m"})},
    )
    assert pushed.get_string_custom_property("pushed_version") == "2"
    config = model_config.read_config(str(tmp_path / "serving" / "models.config"))
    (entry,) = config.model_config_list.config
    assert entry.name == "m" and dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert list(entry.model_version_policy.specific.versions) == [1, 2]


def test_a_killed_pushs_staging_dir_is_removed_and_a_live_pushs_is_kept(tmp_path):
    import fcntl
    import os

    from components.versioned_pusher.executor import STAGING_PREFIX

    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    dead = base / f"{STAGING_PREFIX}dead" / "version"  # what a SIGKILL mid-copy leaves
    dead.mkdir(parents=True)
    (dead / "saved_model.pb").write_bytes(b"half")
    live = base / f"{STAGING_PREFIX}live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a push in progress holds its staging dir
    try:
        assert push_model(str(model), str(base)) == (str(base / "1"), 1)
        assert sorted(p.name for p in base.iterdir()) == sorted(["1", f"{STAGING_PREFIX}live"])
    finally:
        os.close(fd)


def test_a_rerun_finding_its_model_already_on_disk_records_that_version_instead_of_pushing_again(tmp_path):
    from components.versioned_pusher.executor import PUSH_RECORD_FILE, RESUMED_PROPERTY

    base = tmp_path / "serving" / "m"
    model = _model_with_classes(tmp_path / "a", ["cat", "dog"])
    first = _push(tmp_path, model, base)
    assert json.loads((base / "1" / PUSH_RECORD_FILE).read_text()) == {"source": str(tmp_path / "a" / "Format-Serving")}
    assert RESUMED_PROPERTY not in first.mlmd_artifact.custom_properties
    # The kill came after the rename, before ML Metadata's record: the re-run's executor gets the same model.
    again = _push(tmp_path, model, base)
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_string_custom_property("pushed_version") == "1"
    assert again.get_int_custom_property(RESUMED_PROPERTY) == 1
    assert existing_versions(str(base)) == [1]
    other = _push(tmp_path, _model_with_classes(tmp_path / "b", ["cat", "dog"]), base)  # a new model still pushes
    assert other.get_string_custom_property("pushed_version") == "2"


def test_a_staging_dir_swept_before_it_is_locked_is_made_again(tmp_path, monkeypatch):
    # CI once lost a push this way: another push's sweep ran between this push creating its
    # staging dir and locking it, removed it, and the push failed on FileNotFoundError.
    from components.versioned_pusher import executor

    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    base.mkdir()
    made = []
    real_makedirs = executor.fileio.makedirs

    def makedirs_then_swept(path):
        real_makedirs(path)
        if os.path.basename(path).startswith(executor.STAGING_PREFIX):
            made.append(path)
            if len(made) == 1:  # the other push's sweep, in the window before the lock
                assert executor.sweep_stale_staging(str(base)) == [os.path.basename(path)]

    monkeypatch.setattr(executor.fileio, "makedirs", makedirs_then_swept)
    path, version = push_model(str(model), str(base))
    assert version == 1 and len(made) == 2 and os.path.isdir(path)
    assert not [n for n in os.listdir(base) if n.startswith(executor.STAGING_PREFIX)]
