"""`lenspipe compile --target airflow`: the DAG file loads in Airflow's DagBag with the pipeline's task graph.

Airflow reads its config (and creates AIRFLOW_HOME) at import, so the DagBag is loaded in a
child process with its own AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenspipe.config import load_config
from tests.e2e.test_pipeline_e2e import lenspipe

LOAD_DAGBAG = r"""
import json, os, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
dag = bag.dags.get("lenspipe")
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
if dag is not None:
    gen = dag.get_task("ImageExampleGen").python_callable.keywords
    out.update(
        upstream={t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        schedule=dag.schedule_interval, catchup=dag.catchup,
        driver=gen["component"].driver_class.__name__,
        metadata_password=gen["metadata_connection_config"].postgresql.password,
        beam_args=gen["beam_pipeline_args"],
        queues={t.task_id: t.queue for t in dag.tasks},
        onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    )
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("airflow-dag")
    dags = root / "dags"
    result = lenspipe(
        "compile", "--target", "airflow", "--output", str(dags), "--schedule", "0 3 * * *",
        "--work-dir", str(root / "work"), "--set", "data.embedded_per_class=3",
        "--set", "runtime.metadata=postgresql://lenspipe@db.internal:5432/mlmd",
        "--beam-arg", "--temp_location=/beam/tmp",
        "--airflow.train_queue", "gpu", "--set", "airflow.queues.Evaluator=gpu",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    env = dict(
        os.environ, AIRFLOW_HOME=str(root / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="300", LENSPIPE_METADATA_PASSWORD="pw-only-in-env",
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])),
    )
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # the DAG file sets it: a task process starts without it
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_DAGBAG, str(dags)], env=env, capture_output=True, text=True, timeout=600
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    return root, dags, json.loads(loaded.stdout.strip().splitlines()[-1])


def test_dag_folder_loads_without_import_errors(compiled):
    _, dags, bag = compiled
    assert bag["errors"] == {}
    assert bag["dag_ids"] == ["lenspipe"]
    assert [p.name for p in dags.iterdir()] == ["lenspipe_dag.py"]


def test_task_graph_is_the_pipeline_graph(compiled):
    from pipeline.runners.common import build_pipeline

    root, _, bag = compiled
    cfg = load_config(None, {"runtime.work_dir": str(root / "work")})
    pipeline = build_pipeline(cfg, str(root / "data"))
    expected = {c.id: sorted(u.id for u in c.upstream_nodes) for c in pipeline.components}
    assert bag["upstream"] == expected
    assert "baseline_resolver" in expected and "VersionedPusher" in expected


def test_schedule_driver_and_metadata_come_from_the_runner(compiled):
    _, dags, bag = compiled
    assert bag["schedule"] == "0 3 * * *" and bag["catchup"] is False
    assert bag["driver"] == "ImageExampleGenDriver"  # the legacy launcher's extra-outputs driver
    assert bag["beam_args"] == ["--direct_running_mode=in_memory", "--direct_num_workers=1", "--temp_location=/beam/tmp"]
    # The password is read when the DAG is parsed, from the environment; the file never holds it.
    assert bag["metadata_password"] == "pw-only-in-env"
    text = (dags / "lenspipe_dag.py").read_text()
    assert "pw-only-in-env" not in text and "postgresql://lenspipe@db.internal:5432/mlmd" in text


def test_a_deterministic_dag_turns_onednn_off_before_tensorflow_loads(compiled):
    _, dags, bag = compiled
    assert bag["onednn"] == "0"  # set by parsing the DAG file, as in every task process
    text = (dags / "lenspipe_dag.py").read_text()
    assert text.index("TF_ENABLE_ONEDNN_OPTS") < text.index("from pipeline.runners.airflow import")


def test_manual_schedule_by_default(tmp_path):
    result = lenspipe(
        "compile", "--target", "airflow", "--output", str(tmp_path / "dags"), "--work-dir", str(tmp_path / "w"),
        "--set", "data.embedded_per_class=2", "--set", "runtime.deterministic=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "schedule none (trigger it)" in result.stdout
    text = (tmp_path / "dags" / "lenspipe_dag.py").read_text()
    assert "'schedule': None" in text
    assert "TF_ENABLE_ONEDNN_OPTS" not in text  # not deterministic: TensorFlow's own default


def test_each_task_has_its_configured_queue(compiled):
    from tfx import v1 as tfx

    from pipeline.runners.common import build_pipeline

    root, _, bag = compiled
    pipeline = build_pipeline(load_config(None, {"runtime.work_dir": str(root / "work")}), str(root / "data"))
    training = (tfx.components.Tuner, tfx.components.Trainer)
    # --airflow.train_queue gpu moves Tuner and Trainer, airflow.queues.Evaluator=gpu one more task.
    expected = {
        c.id: "gpu" if isinstance(c, training) or c.id == "Evaluator" else "data" for c in pipeline.components
    }
    assert sum(q == "gpu" for q in expected.values()) == 3
    assert bag["queues"] == expected


def test_a_queue_for_a_missing_component_fails_at_compile(tmp_path):
    result = lenspipe(
        "compile", "--target", "airflow", "--output", str(tmp_path / "dags"), "--work-dir", str(tmp_path / "w"),
        "--set", "data.embedded_per_class=2", "--set", "airflow.queues.Trainr=gpu",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]  # after the embedded dataset's progress lines
    assert line.startswith("lenspipe: airflow.queues: no component 'Trainr' in the pipeline (did you mean Trainer?)")
    assert not (tmp_path / "dags").exists()  # nothing written
