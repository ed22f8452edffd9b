"""What runners share: runtime.metadata as a SQLite path or a database URL, the password kept out of both."""

from __future__ import annotations

from pathlib import Path

import pytest

from lenspipe.config import ConfigError, load_config
from pipeline.runners import common, mlmd_postgres


def test_default_metadata_is_the_sqlite_file_under_the_work_dir(tmp_path):
    cfg = load_config(None, {"runtime.work_dir": str(tmp_path)})
    connection = common.metadata_connection(cfg)
    assert connection.sqlite.filename_uri == str(tmp_path / "metadata" / "lenspipe.sqlite")
    assert common.RunPaths.from_config(cfg).metadata_path == tmp_path / "metadata" / "lenspipe.sqlite"


def test_a_relative_sqlite_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"runtime.metadata": "store/m.db"})
    assert common.metadata_connection(cfg).sqlite.filename_uri == str(tmp_path / "store" / "m.db")


def test_postgresql_url_with_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("MY_PG_PASSWORD", "pw from env")
    cfg = load_config(
        None, {"runtime.metadata": "postgresql://ml%40team@db.internal:6543/mlmd", "runtime.metadata_password_env": "MY_PG_PASSWORD"}
    )
    db = common.metadata_connection(cfg).postgresql
    assert (db.host, db.port, db.dbname, db.user, db.password) == ("db.internal", "6543", "mlmd", "ml@team", "pw from env")
    with pytest.raises(ValueError, match="database server"):
        common.RunPaths.from_config(cfg).metadata_path


def test_mysql_url_with_the_password_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LENSPIPE_METADATA_PASSWORD", raising=False)
    secret = tmp_path / "secret"
    secret.write_text("pw from file\n")
    cfg = load_config(None, {"runtime.metadata": "mysql://root@mysql:3306/metadb", "runtime.metadata_password_file": str(secret)})
    db = common.metadata_connection(cfg).mysql
    assert (db.host, db.port, db.database, db.user, db.password) == ("mysql", 3306, "metadb", "root", "pw from file")


def test_an_unreadable_password_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LENSPIPE_METADATA_PASSWORD", raising=False)
    cfg = load_config(None, {"runtime.metadata": "postgresql://u@h/db", "runtime.metadata_password_file": str(tmp_path / "nope")})
    with pytest.raises(common.MetadataConfigError, match=r"runtime.metadata_password_file .*nope: cannot read it"):
        common.metadata_connection(cfg)


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://u:hunter2@h/db", "no password in the URL"),
        ("sqlite://x.db", "scheme 'sqlite' not supported"),
        ("postgresql://u@h:5432/", "give a database name"),
    ],
)
def test_bad_metadata_urls_name_the_field(url, message):
    with pytest.raises(ConfigError, match=f"runtime.metadata: .*{message}"):
        load_config(None, {"runtime.metadata": url})


@pytest.mark.parametrize("text", ["plain", 'a\\"b', "\\\\", "mark \ue05c and \\ both", "\ue05c1"])
def test_postgres_string_encoding_round_trips_and_removes_backslashes(text):
    encoded = mlmd_postgres.encode(text)
    assert "\\" not in encoded
    assert mlmd_postgres.decode(encoded) == text


def test_every_string_value_survives_a_postgresql_store(postgres, monkeypatch):
    """MLMD 1.16 alone fails on these (see mlmd_postgres); through metadata_connection they round-trip."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb

    from tests import postgres as pg

    monkeypatch.setenv("LENSPIPE_METADATA_PASSWORD", pg.PASSWORD)
    cfg = load_config(None, {"runtime.metadata": postgres.url("mlmd_strings")})
    store = mlmd.MetadataStore(common.metadata_connection(cfg))
    type_id = store.put_execution_type(pb.ExecutionType(name="Probe", properties={"config": pb.STRING}))
    execution = pb.Execution(type_id=type_id)
    execution.properties["config"].string_value = '{"metrics": "{\\"name\\": \\"accuracy\\"}"}'
    execution.custom_properties["path"].string_value = "C:\\data\\images"
    (execution_id,) = store.put_executions([execution])
    (back,) = store.get_executions_by_id([execution_id])
    assert back.properties["config"].string_value == execution.properties["config"].string_value
    assert back.custom_properties["path"].string_value == "C:\\data\\images"
    assert "mlmd_strings" in postgres.databases()  # MLMD created the database itself
