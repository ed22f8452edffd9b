"""`lenspipe run` killed with SIGKILL after each component in turn: every re-run resumes from the cache,
the last one completes, and exactly one version is pushed (docs/deploy.md lists the guarantee).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The smallest run that still blesses and pushes: 8 digits a class at 16x16, one trial, two epochs.
TINY = [
    "--set", "data.embedded_per_class=8",
    "--image-size", "16",
    "--channels", "1",
    "--trials", "1",
    "--set", "tuner.epochs=1",
    "--epochs", "2",
    "--min-accuracy", "0.0",
    "--set", "serving_check.max_images=8",
]


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    work = tmp_path_factory.mktemp("kill-between")
    out = work / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.kill_between_components_driver", str(work), str(out), "--", *TINY],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text()), work


def _config(work: Path):
    from pipeline import cli

    args, _ = cli.build_parser().parse_known_args(["run", "--work-dir", str(work), *TINY])
    return cli._load(args)


def test_a_kill_after_each_component_in_turn(kills):
    from pipeline.runners.common import build_pipeline

    report, work = kills
    cfg = _config(work)
    data_root = cfg.work_path / "data" / f"digits-{cfg.data.embedded_per_class}"
    nodes = {c.id for c in build_pipeline(cfg, str(data_root), metadata=False).components}
    assert sorted(report["killed_after"]) == sorted(nodes)  # each node once, every node of the pipeline
    assert all(run["killed"] for run in report["runs"][:-1])


def test_the_run_after_the_last_kill_completes_from_the_cache(kills):
    from pipeline import report as run_report
    from pipeline.runners.common import RunPaths

    report, work = kills
    last = report["runs"][-1]
    assert not last["killed"] and last["exit_code"] == 0, Path(last["log"]).read_text()[-3000:]
    cfg = _config(work)
    metadata = str(RunPaths.from_config(cfg).metadata_path)
    summary = run_report.read_run(metadata, run_report.latest_run_id(metadata, cfg.runtime.pipeline_name))
    assert summary.executed == [] and summary.failed == []
    assert summary.cached and set(summary.node_states.values()) <= {"cached", "resolved"}
    assert summary.pushed is True and summary.pushed_version == "1"


def test_exactly_one_version_is_pushed_and_recorded_once(kills):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    from components.versioned_pusher.executor import existing_versions
    from pipeline.runners.common import RunPaths

    _, work = kills
    paths = RunPaths.from_config(_config(work))
    assert sorted(p.name for p in paths.serving_model_dir.iterdir()) == ["1"]  # no second version, no staging dir
    assert existing_versions(str(paths.serving_model_dir)) == [1]
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(paths.metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(config)
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if "pushed" in a.custom_properties and a.custom_properties["pushed"].int_value == 1]
    assert [a.custom_properties["pushed_version"].string_value for a in pushed] == ["1"]
