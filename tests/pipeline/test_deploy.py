"""lenspipe versions / rollback / promote on a model base path and a real ML Metadata store built here."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from components.versioned_pusher import model_config
from components.versioned_pusher.executor import push_model, taken_numbers
from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY
from pipeline import deploy

NOW = dt.datetime(2026, 12, 2, 3, 30, 0, tzinfo=dt.timezone.utc)


def _version(base: Path, v: int) -> Path:
    (base / str(v) / "variables").mkdir(parents=True)
    (base / str(v) / "saved_model.pb").write_bytes(b"pb%d" % v)
    return base / str(v)


@pytest.fixture
def base(tmp_path) -> Path:
    base = tmp_path / "serving" / "m"
    for v in (1, 2, 3):
        _version(base, v)
    return base


def test_rollback_renames_the_newest_out_of_service_and_undo_restores(base):
    assert deploy.rollback(base, now=NOW) == (2, [3], "20261202T033000Z")
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "3.rolled-back-20261202T033000Z"]
    assert deploy.integer_versions(base) == [1, 2]
    assert deploy.undo_rollback(base) == ([3], "20261202T033000Z")
    assert sorted(p.name for p in base.iterdir()) == ["1", "2", "3"]
    assert (base / "3" / "saved_model.pb").read_bytes() == b"pb3"


def test_rollback_to_takes_every_newer_version_out_and_undo_restores_only_the_last_rollback(base):
    deploy.rollback(base, to=2, now=NOW)
    assert deploy.rollback(base, to=1, now=NOW + dt.timedelta(seconds=5)) == (1, [2], "20261202T033005Z")
    assert deploy.integer_versions(base) == [1]
    assert deploy.undo_rollback(base)[0] == [2]
    assert deploy.integer_versions(base) == [1, 2]
    assert deploy.undo_rollback(base)[0] == [3]
    assert deploy.integer_versions(base) == [1, 2, 3]


def test_rollback_refuses_what_it_cannot_do_with_a_clear_message(base, tmp_path):
    with pytest.raises(deploy.DeployError, match="version 7 is not on disk"):
        deploy.rollback(base, to=7)
    with pytest.raises(deploy.DeployError, match="version 3 is already the newest"):
        deploy.rollback(base, to=3)
    with pytest.raises(deploy.DeployError, match="no rolled-back versions"):
        deploy.undo_rollback(base)
    single = tmp_path / "single"
    _version(single, 1)
    with pytest.raises(deploy.DeployError, match="only version 1 is on disk"):
        deploy.rollback(single)


def test_a_push_after_a_rollback_never_reuses_the_rolled_back_number(base, tmp_path):
    deploy.rollback(base, now=NOW)
    assert taken_numbers(str(base)) == [1, 2, 3]
    model = _version(tmp_path / "model", 0).parent / "0"
    assert push_model(str(model), str(base))[1] == 4


def _store(path: Path) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return mlmd.MetadataStore(config)


def _record_push(store, base: Path, version: int, run_id: str, accuracy: float) -> int:
    """What a pipeline run leaves in MLMD for one push: a pusher execution with model/blessing in, push out."""
    types = {n: store.put_artifact_type(metadata_store_pb2.ArtifactType(name=n))
             for n in ("Model", "ModelBlessing", "PushedModel")}
    model, blessing, pushed = standard_artifacts.Model(), standard_artifacts.ModelBlessing(), standard_artifacts.PushedModel()
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_float_custom_property("candidate_accuracy", accuracy)
    pushed.set_int_custom_property("pushed", 1)
    pushed.set_string_custom_property("pushed_destination", str(base / str(version)))
    pushed.set_string_custom_property("pushed_version", str(version))
    arts = []
    for name, a in (("Model", model), ("ModelBlessing", blessing), ("PushedModel", pushed)):
        a.mlmd_artifact.type_id = types[name]
        arts.append(a.mlmd_artifact)
    exec_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="VersionedPusher"))
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
    event = metadata_store_pb2.Event

    def ev(kind, key):
        e = event(type=kind)
        e.path.steps.add().key = key
        return e

    _, artifact_ids, _ = store.put_execution(
        metadata_store_pb2.Execution(type_id=exec_type, last_known_state=metadata_store_pb2.Execution.COMPLETE),
        artifact_and_events=[(arts[0], ev(event.INPUT, "model")), (arts[1], ev(event.INPUT, "model_blessing")),
                             (arts[2], ev(event.OUTPUT, "pushed_model"))],
        contexts=[metadata_store_pb2.Context(type_id=run_type, name=run_id)])
    return artifact_ids[0]


def test_rollback_is_recorded_in_ml_metadata_and_versions_lists_it(base, tmp_path):
    path = tmp_path / "metadata.sqlite"
    store = _store(path)
    ids = {v: _record_push(store, base, v, f"run-{v}", 0.9 + v / 100) for v in (1, 2, 3)}
    _, versions, stamp = deploy.rollback(base, now=NOW)
    assert deploy.record_rollback(path, base, versions, True, stamp) == [ids[3]]
    (model,) = _store(path).get_artifacts_by_id([ids[3]])
    assert model.custom_properties[ROLLED_BACK_PROPERTY].int_value == 1
    rollbacks = _store(path).get_executions_by_type(deploy.ROLLBACK_EXECUTION_TYPE)
    assert [e.custom_properties["versions"].string_value for e in rollbacks] == ["[3]"]

    rows = deploy.list_versions(base, "m", path)
    assert [(r.version, bool(r.rolled_back_at)) for r in rows] == [(3, True), (2, False), (1, False)]
    assert rows[1].push.run_id == "run-2" and rows[1].push.test_accuracy == pytest.approx(0.92)
    assert rows[0].push.rolled_back and rows[0].rolled_back_at == "2026-12-02 03:30:00"
    table = deploy.format_versions(rows, with_server=False).splitlines()
    assert table[0].split() == ["version", "on", "disk", "pushed", "(UTC)", "run", "id", "test", "acc", "blessed", "labels"]
    assert "rolled back 2026-12-02 03:30:00" in table[1] and "latest" in table[2] and "0.9200" in table[2]

    deploy.undo_rollback(base)
    deploy.record_rollback(path, base, versions, False, stamp)
    (model,) = _store(path).get_artifacts_by_id([ids[3]])
    assert model.custom_properties[ROLLED_BACK_PROPERTY].int_value == 0


def test_a_rolled_back_candidate_is_not_pushed_again():
    from components.versioned_pusher.executor import rollback_of

    model = standard_artifacts.Model()
    assert rollback_of({"model": [model]}) == ""
    model.set_int_custom_property(ROLLED_BACK_PROPERTY, 1)
    assert "rolled back" in rollback_of({"model": [model]})


def test_promote_writes_a_specific_policy_with_labels_atomically(base, tmp_path):
    config = tmp_path / "models.config"
    assert deploy.promote(base, "m", 2, config, canary=3) == {"stable": 2, "canary": 3}
    parsed = model_config.read_config(str(config))
    (entry,) = parsed.model_config_list.config
    assert entry.name == "m" and entry.base_path == str(base)
    assert list(entry.model_version_policy.specific.versions) == [2, 3]
    assert dict(entry.version_labels) == {"stable": 2, "canary": 3}
    # Promoting the canary makes it stable and drops the canary label.
    assert deploy.promote(base, "m", 3, config) == {"stable": 3}
    entry = model_config.read_config(str(config)).model_config_list.config[0]
    assert list(entry.model_version_policy.specific.versions) == [3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("models.config")] == ["models.config"]
    with pytest.raises(deploy.DeployError, match="no such version directory"):
        deploy.promote(base, "m", 9, config)


def test_the_cli_commands_parse_and_fail_with_one_line(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["rollback", "--work-dir", str(tmp_path), "--to", "1"]) == 1
    assert "no version directories" in capsys.readouterr().err
    assert main(["versions", "--work-dir", str(tmp_path)]) == 0
    assert "no versions under" in capsys.readouterr().out
