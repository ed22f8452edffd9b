"""The VersionedPusher under faults: SIGKILL at 20 points inside real pushes, and a full serving filesystem.

Guarantees (docs/deploy.md lists them with these tests):
- a server watching the base path never sees an integer version directory that is not a complete copy;
- after any kill the next run completes, and the model is on disk exactly once (a kill after the rename
  but before ML Metadata's record is resumed, not pushed twice), every version on disk is recorded once
  in ML Metadata, and no staging directory is left behind;
- a full filesystem fails the push with one line naming the path and the free space, and leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from components.versioned_pusher.executor import (
    PUSH_RECORD_FILE, RESUMED_PROPERTY, STAGING_PREFIX, PushFailed, existing_versions, push_model,
)
from serving.versions import discover_versions

KILLS = 20
ROOT = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Watcher(threading.Thread):
    """Polls the base path with the server's own discovery and checks every version it reports, at once."""

    def __init__(self, base: Path, expected: dict[str, bytes]) -> None:
        super().__init__(daemon=True)
        self.base, self.expected = base, expected
        self.stop = threading.Event()
        self.checked: set[int] = set()
        self.polls = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.polls += 1
            for version, (path, _) in discover_versions(self.base).items():
                if version in self.checked:
                    continue
                try:
                    files = tree(path)
                except FileNotFoundError:  # only if something removes it, which must not happen
                    self.bad.append(f"{version}: vanished while read")
                    continue
                files.pop(PUSH_RECORD_FILE, None)
                if files != self.expected:
                    missing = sorted(set(self.expected) - set(files))
                    self.bad.append(f"{version}: incomplete (missing {missing[:3]}) or different")
                self.checked.add(version)
            self.stop.wait(0.002)


@pytest.fixture(scope="module")
def kills(digits_model, tmp_path_factory):
    """Run the kill driver once (20 kills + re-runs) while a watcher polls; (report, work dir, watcher)."""
    work = tmp_path_factory.mktemp("push-kills")
    base = work / "serving" / "m"
    base.mkdir(parents=True)
    watcher = Watcher(base, tree(Path(digits_model.saved_model_dir)))
    watcher.start()
    out = work / "report.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.components.push_kill_driver", digits_model.saved_model_dir, str(work),
             str(out), "--kills", str(KILLS), "--seed", "14"],
            cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )
    finally:
        watcher.stop.set()
        watcher.join()
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["done"]
    return report, work, watcher


def test_kills_land_at_twenty_points_spanning_the_push(kills):
    report, _, _ = kills
    iterations = report["iterations"]
    assert len(iterations) == KILLS and all(it["killed"] for it in iterations)
    assert len({it["kill_after"] for it in iterations}) == KILLS
    steps = report["calibration_steps"]
    assert any(s.startswith("fileio.rename") for s in steps) and any(s.startswith("mlmd.") for s in steps)
    # Every kind of leftover occurred: a staging dir (killed before the rename), and a version on disk that
    # ML Metadata had not recorded yet (killed between the rename and the launcher's record).
    assert any(any(e.startswith(STAGING_PREFIX) for e in it["after_kill"]["entries"]) for it in iterations)
    assert any(it["after_kill"]["holding"] for it in iterations)
    assert any(not it["after_kill"]["holding"] for it in iterations)


def test_a_watching_server_never_sees_an_incomplete_version(kills):
    report, work, watcher = kills
    assert watcher.bad == []
    assert watcher.polls > 100
    assert watcher.checked == set(existing_versions(str(work / "serving" / "m")))


def test_after_every_kill_the_rerun_completes_and_the_model_is_on_disk_once(kills):
    report, _, _ = kills
    for it in report["iterations"]:
        assert it["rerun_exit"] == 0, it
        assert len(it["after_rerun"]["holding"]) == 1, it
        if it["after_kill"]["holding"]:  # pushed before the kill: the re-run resumed that version
            assert it["after_rerun"]["holding"] == it["after_kill"]["holding"], it
        assert not [e for e in it["after_rerun"]["entries"] if e.startswith(STAGING_PREFIX)], it
    final = report["iterations"][-1]["after_rerun"]["entries"]
    assert sorted(final, key=int) == [str(v) for v in range(1, KILLS + 2)]  # the calibration push + one per kill


def test_ml_metadata_records_each_version_on_disk_exactly_once(kills):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import deploy

    report, work, _ = kills
    base = work / "serving" / "m"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(work / "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(config)
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if "pushed" in a.custom_properties and a.custom_properties["pushed"].int_value == 1]
    assert all(a.state == metadata_store_pb2.Artifact.LIVE for a in pushed)
    versions = sorted(int(a.custom_properties["pushed_version"].string_value) for a in pushed)
    assert versions == existing_versions(str(base))  # one record per version, none twice, none missing
    resumed = sum(1 for a in pushed if RESUMED_PROPERTY in a.custom_properties)
    assert resumed == sum(1 for it in report["iterations"] if it["after_kill"]["holding"])
    (pusher_type,) = [t.name for t in store.get_execution_types() if t.name.endswith(".VersionedPusher")]
    states = [e.last_known_state for e in store.get_executions_by_type(pusher_type)]
    assert states.count(metadata_store_pb2.Execution.COMPLETE) == KILLS + 1  # each re-run, and the calibration
    assert len(states) == 2 * KILLS + 1  # the killed executions stay unfinished: none became COMPLETE
    rows = deploy.list_versions(base, "m", work / "metadata.sqlite")  # what `lenspipe versions` shows
    assert len(rows) == KILLS + 1 and all(row.push.run_id for row in rows)


# ---- a full serving filesystem ---------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (``mount(size=..., inodes=...)``); unmounted after. Skips only if mount is refused."""
    mounted = []

    def mount(size: str, inodes: int = 10000) -> Path:
        point = tmp_path / f"tmpfs-{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_a_push_that_cannot_fit_fails_with_the_path_and_free_space_and_writes_nothing(digits_model, tmpfs):
    disk = tmpfs("64k")
    base = disk / "serving" / "m"
    with pytest.raises(PushFailed) as raised:
        push_model(digits_model.saved_model_dir, str(base), source="model-a")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{base}: not enough free space to push")
    assert re.search(r"the model needs \d+\.\d\d MB, \d+\.\d\d MB and \d+ inodes free", message), message
    assert "nothing was pushed" in message
    assert os.listdir(base) == []


def test_a_filesystem_that_fills_during_the_copy_leaves_nothing_partial(digits_model, tmpfs):
    # Plenty of bytes, too few inodes: the space check passes, the copy itself hits ENOSPC.
    files = sum(len(f) for _, _, f in os.walk(digits_model.saved_model_dir))
    disk = tmpfs("50m", inodes=files)
    base = disk / "m"
    with pytest.raises(PushFailed) as raised:
        push_model(digits_model.saved_model_dir, str(base), source="model-a")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{base}: the filesystem filled up during the push") and "inodes free" in message
    assert os.listdir(base) == []
    assert discover_versions(base) == {}


def test_the_pusher_executor_reports_a_full_disk_as_one_line(digits_model, tmpfs, tmp_path):
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.versioned_pusher.executor import Executor

    disk = tmpfs("64k")
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(digits_model.saved_model_dir, tmp_path / "model" / "Format-Serving")
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{uuid.uuid4().hex}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(disk / "m")))
    with pytest.raises(PushFailed, match=r"not enough free space to push"):
        Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                      {"push_destination": proto_utils.proto_to_json(destination)})
    assert os.listdir(disk / "m") == []


def test_lenspipe_run_shows_a_full_disk_as_the_pushers_one_line():
    from pipeline import cli

    message = "/srv/m: not enough free space to push: the model needs 0.32 MB, 0.07 MB and 998 inodes free; nothing was pushed"
    wrapped = RuntimeError("outer [while running 'Run[VersionedPusher]']")
    wrapped.__cause__ = PushFailed(message)
    assert cli._root_message(wrapped) == message
