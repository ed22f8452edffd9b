"""The local runner with ML Metadata on PostgreSQL: `lenspipe run --set runtime.metadata=postgresql://...`."""

from __future__ import annotations

import json


import pytest

from lenspipe.config import load_config
from pipeline import report
from pipeline.runners import common
from tests import postgres as pg
from tests.e2e.test_airflow_postgres import TINY, pipeline_resolvers, pipeline_tasks
from tests.e2e.test_pipeline_e2e import lenspipe

pytestmark = pytest.mark.e2e


def test_local_run_keeps_its_lineage_in_postgresql(tmp_path, postgres, monkeypatch):
    url = postgres.url("mlmd_local")
    secret = tmp_path / "pg-password"
    secret.write_text(pg.PASSWORD + "\n")
    monkeypatch.delenv("LENSPIPE_METADATA_PASSWORD", raising=False)
    args = (
        "run", "--work-dir", str(tmp_path / "work"), "--set", "data.embedded_per_class=10",
        "--set", f"runtime.metadata={url}", "--set", f"runtime.metadata_password_file={secret}", *TINY,
    )
    result = lenspipe(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "blessed:    yes" in result.stdout and "pushed:     version 1" in result.stdout
    assert not (tmp_path / "work" / "metadata").exists()  # no SQLite file beside it
    assert pg.PASSWORD not in result.stdout + result.stderr

    cfg = load_config(None, {"runtime.metadata": url, "runtime.metadata_password_file": str(secret)})
    connection = common.metadata_connection(cfg)
    summary = report.read_run(connection, report.latest_run_id(connection, "lenspipe"))
    components = pipeline_tasks() - pipeline_resolvers()
    assert set(summary.executed) == components
    assert summary.pushed_version == "1" and sum(summary.split_counts.values()) == 100

    again = lenspipe(*args)  # the cache lookup works against PostgreSQL too
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{len(components)} cached" in again.stdout

    # `lenspipe runs` reads the same server, not a SQLite file under the work dir.
    store_args = ["--work-dir", str(tmp_path / "work"), "--set", f"runtime.metadata={url}",
                  "--set", f"runtime.metadata_password_file={secret}"]
    listed = lenspipe("runs", "--json", *store_args)
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and rows[0]["run_id"] == summary.run_id  # both runs, oldest first
    assert rows[0]["blessed"] is True and rows[1]["cached"] == len(components)
