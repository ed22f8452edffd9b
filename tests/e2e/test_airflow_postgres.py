"""A real Airflow scheduler runs the compiled DAG twice, with PostgreSQL as Airflow's and MLMD's database.

Run 1 is the one the `@daily` schedule creates; run 2 is `airflow dags trigger` after new
images arrived. LocalExecutor runs each task in its own `airflow tasks run` process, which
parses the DAG file (TFX imports, ~15 s) first: the two runs take several minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lenspipe.config import load_config
from pipeline import datasets, report
from tests import postgres as pg
from tests.e2e.test_pipeline_e2e import lenspipe

pytestmark = pytest.mark.e2e

DAG_ID = "lenspipe"


def pipeline_tasks() -> set[str]:
    """The node ids of the pipeline the DAG runs (which nodes exist depends on no value in TINY)."""
    from pipeline.runners.common import build_pipeline

    return {c.id for c in build_pipeline(load_config(), "/data", metadata=False).components}


def pipeline_resolvers() -> set[str]:
    """The node ids of the pipeline's resolvers (input queries, not component runs)."""
    from tfx.dsl.components.common.resolver import Resolver

    from pipeline.runners.common import build_pipeline

    return {c.id for c in build_pipeline(load_config(), "/data", metadata=False).components if isinstance(c, Resolver)}


TINY = [
    "--image-size", "16", "--channels", "1", "--trials", "1", "--set", "tuner.epochs=1",
    "--epochs", "8", "--set", "trainer.early_stopping_patience=8",
    # 8 epochs on 167 images is no model worth a bar (its accuracy swings around 0.25 with the
    # seed and the kernels), and any drop is allowed: every run is blessed whatever its accuracy.
    # What the test checks is the orchestration, and that run 2's Evaluator had run 1's model as
    # the baseline at all.
    "--min-accuracy", "0.0",
    "--set", "evaluator.max_accuracy_drop=1.0",
]
RUN_TIMEOUT_S = 1500


class Airflow:
    """`airflow` commands against one AIRFLOW_HOME, and the scheduler as a child process group."""

    def __init__(
        self, home: Path, dags: Path, cluster: pg.Cluster, *, database: str = "airflow",
        executor: str = "LocalExecutor", extra_env: dict[str, str] | None = None,
    ):
        self.home = home
        self.cluster = cluster
        self.database = database
        self.bin = str(Path(sys.executable).parent / "airflow")
        repo = str(Path(__file__).parents[2])
        self.env = dict(
            os.environ,
            AIRFLOW_HOME=str(home),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=cluster.sqlalchemy_url(database),
            AIRFLOW__CORE__EXECUTOR=executor,
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__PARALLELISM="2",
            # Parsing the DAG imports TFX (~15 s on a busy machine): allow it, and parse once.
            AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="300",
            AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT="600",
            AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="3600",
            AIRFLOW__SCHEDULER__PARSING_PROCESSES="1",
            LENSPIPE_METADATA_PASSWORD=pg.PASSWORD,
            PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
            TF_CPP_MIN_LOG_LEVEL="3",
            AIRFLOW__CORE__LAZY_LOAD_PLUGINS="False",
            AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
            **(extra_env or {}),
        )
        (home / "plugins").mkdir(exist_ok=True)
        # As docs/orchestration.md advises: tasks fork with TFX imported (~1 s each, not ~15 s).
        (home / "plugins" / "lenspipe_preload.py").write_text(
            "from pipeline.runners.airflow_preload import LenspipePreload  # noqa: F401\n"
        )
        self.processes: dict[str, subprocess.Popen] = {}  # long-running `airflow ...` commands by name

    @property
    def scheduler(self) -> subprocess.Popen | None:
        return self.processes.get("scheduler")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A one-shot command (`db migrate`, `dags trigger`): it forks no task, so no TFX preload either."""
        env = dict(self.env, AIRFLOW__CORE__LAZY_LOAD_PLUGINS="True")
        result = subprocess.run([self.bin, *args], env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"airflow {' '.join(args)}: {result.stderr[-3000:]}"
        return result

    def start(self, name: str, *args: str) -> None:
        """Start `airflow <args>` in its own process group, output in <home>/<name>.out."""
        log = open(self.home / f"{name}.out", "w")
        self.processes[name] = subprocess.Popen(
            [self.bin, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_scheduler(self) -> None:
        self.start("scheduler", "scheduler")

    def stop_all(self) -> None:
        """SIGTERM every started process group (SIGKILL after 60 s), the scheduler last."""
        for name in sorted(self.processes, key=lambda n: n == "scheduler"):
            process = self.processes[name]
            if process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


    def assert_running(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"airflow {name} exited: " + self.log_of(name)

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(
            host="127.0.0.1", port=self.cluster.port, user=pg.USER, password=pg.PASSWORD, dbname=self.database
        ) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def wait_for_run(self, run_type: str, known: set[str]) -> tuple[str, str]:
        """(run_id, final state) of the first run of ``run_type`` not in ``known``."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            self.assert_running()
            rows = self.query("SELECT run_id, state FROM dag_run WHERE dag_id=%s AND run_type=%s", DAG_ID, run_type)
            for run_id, state in rows:
                if run_id not in known and state in ("success", "failed"):
                    return run_id, state
            time.sleep(5)
        raise AssertionError(f"no {run_type} run finished within {RUN_TIMEOUT_S}s: {self.scheduler_log()}")

    def task_states(self, run_id: str) -> dict[str, str]:
        return dict(self.query("SELECT task_id, state FROM task_instance WHERE dag_id=%s AND run_id=%s", DAG_ID, run_id))

    def task_logs(self, run_id: str) -> str:
        """The tail of every failed task's log, for the assertion message."""
        out = []
        for task, state in self.task_states(run_id).items():
            if state != "success":
                for path in (self.home / "logs").rglob(f"*{task}*/*.log"):
                    if run_id in str(path):
                        out.append(f"--- {task} ({state}) {path}\n{path.read_text()[-4000:]}")
        return "\n".join(out)

    def log_of(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text()[-3000:]

    def scheduler_log(self) -> str:
        return self.log_of("scheduler")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, postgres):
    """Compile the DAG (schedule @daily, metadata on PostgreSQL) and start Airflow on it."""
    root = tmp_path_factory.mktemp("airflow")
    data, work, dags, home = root / "data", root / "work", root / "dags", root / "home"
    home.mkdir()
    datasets.write_digits(data, per_class=20)
    postgres.create_database("airflow")
    result = lenspipe(
        "compile", "--target", "airflow", "--output", str(dags), "--schedule", "@daily",
        "--data", str(data), "--work-dir", str(work),
        "--set", f"runtime.metadata={postgres.url('mlmd_airflow')}", *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"postgresql://{pg.USER}@" in (dags / "lenspipe_dag.py").read_text()
    assert pg.PASSWORD not in (dags / "lenspipe_dag.py").read_text()
    airflow = Airflow(home, dags, postgres)
    airflow.run("db", "migrate")
    airflow.start_scheduler()
    try:
        yield airflow, data, work
    finally:
        airflow.stop_all()


@pytest.fixture(scope="module")
def first_run(deployment):
    airflow, _, _ = deployment
    run_id, state = airflow.wait_for_run("scheduled", set())
    assert state == "success", airflow.task_logs(run_id)
    return run_id


@pytest.fixture(scope="module")
def second_run(deployment, first_run):
    airflow, data, _ = deployment
    datasets.write_digits(data, per_class=24)  # new images arrived: every component re-executes
    airflow.run("dags", "trigger", DAG_ID)
    run_id, state = airflow.wait_for_run("manual", set())
    assert state == "success", airflow.task_logs(run_id)
    return run_id


def mlmd(cluster: pg.Cluster, database: str = "mlmd_airflow"):
    from lenspipe.config import load_config
    from pipeline.runners import common

    os.environ.setdefault("LENSPIPE_METADATA_PASSWORD", pg.PASSWORD)
    cfg = load_config(None, {"runtime.metadata": cluster.url(database)})
    return common.metadata_connection(cfg)


def test_scheduled_run_succeeds_and_pushes_a_blessed_model(deployment, first_run, postgres):
    airflow, _, work = deployment
    assert airflow.task_states(first_run) == {task: "success" for task in pipeline_tasks()}
    summary = report.read_run(mlmd(postgres), f"{DAG_ID}.{first_run}")  # lineage read back from PostgreSQL
    assert set(summary.executed) == pipeline_tasks() - pipeline_resolvers()
    assert {summary.node_states[r] for r in pipeline_resolvers()} == {"resolved"}
    assert sum(summary.split_counts.values()) == 200
    assert summary.blessed is True
    assert summary.pushed is True and summary.pushed_version == "1"
    assert (work / "serving" / "lenspipe" / "1" / "saved_model.pb").is_file()
    assert "mlmd_airflow" in postgres.databases()  # MLMD created its database on the server


def test_second_run_compares_with_the_previous_blessed_model(deployment, first_run, second_run, postgres):
    import ml_metadata as mlmd_lib
    import tensorflow_model_analysis as tfma
    from ml_metadata.proto import metadata_store_pb2

    airflow, _, work = deployment
    assert airflow.task_states(second_run) == {task: "success" for task in pipeline_tasks()}
    store = mlmd_lib.MetadataStore(mlmd(postgres))

    def node_execution(run_id: str, node: str):
        run = store.get_context_by_type_and_name("run", f"{DAG_ID}.{run_id}")
        (execution,) = [
            e for e in store.get_executions_by_context(run.id) if report._node_name(store, e) == node
        ]
        return execution

    def artifacts(execution, event_type, key):
        events = store.get_events_by_execution_ids([execution.id])
        ids = [e.artifact_id for e in events if e.type == event_type and e.path.steps[0].key == key]
        return store.get_artifacts_by_id(ids)

    (first_model,) = artifacts(node_execution(first_run, "Trainer"), metadata_store_pb2.Event.OUTPUT, "model")
    (second_model,) = artifacts(node_execution(second_run, "Trainer"), metadata_store_pb2.Event.OUTPUT, "model")
    evaluator = node_execution(second_run, "Evaluator")
    assert [a.id for a in artifacts(evaluator, metadata_store_pb2.Event.INPUT, "model")] == [second_model.id]
    # The baseline is run 1's blessed model, not empty (which would skip the change threshold).
    assert [a.id for a in artifacts(evaluator, metadata_store_pb2.Event.INPUT, "baseline_model")] == [first_model.id]
    (evaluation,) = artifacts(evaluator, metadata_store_pb2.Event.OUTPUT, "evaluation")
    keys = [kv.key for m in tfma.load_metrics(evaluation.uri) for kv in m.metric_keys_and_values]
    assert any(k.name == "accuracy" and k.is_diff for k in keys)  # the change threshold had a baseline
    summary = report.read_run(mlmd(postgres), f"{DAG_ID}.{second_run}")
    assert summary.pushed is True and summary.pushed_version == "2"
    assert sorted(p.name for p in (work / "serving" / "lenspipe").iterdir()) == ["1", "2"]
