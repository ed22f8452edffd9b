"""Airflow on Celery workers: the DAG's data tasks go to one queue, Tuner/Trainer to another.

CeleryExecutor with a Redis broker (tests/redis_server.py) and PostgreSQL for Airflow's database,
Celery's results and MLMD; two `airflow celery worker` processes serve one queue each. A triggered
run must succeed; Airflow's and Celery's records must show each task on its queue and the worker
serving that queue; MLMD must hold the complete lineage from the examples to the pushed model.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from lenspipe.config import LenspipeConfig
from pipeline import datasets
from tests import redis_server
from tests.e2e.test_airflow_postgres import DAG_ID, TINY, Airflow, mlmd
from tests.e2e.test_pipeline_e2e import lenspipe

# The fixture's set-up (compile, migrate, three processes importing TFX) and the run count against
# the first test: more than pytest's 1200 s default on a 2-core machine other jobs load.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

QUEUES = ("data", "train")
MLMD_DB = "mlmd_celery"


def worker_name(queue: str) -> str:
    return f"lenspipe-{queue}@localhost"


@pytest.fixture(scope="module")
def redis():
    server = redis_server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def celery_deployment(tmp_path_factory, postgres, redis):
    """Compile the DAG (manual runs, default queues), start the scheduler and one worker per queue."""
    root = tmp_path_factory.mktemp("airflow-celery")
    data, work, dags, home = root / "data", root / "work", root / "dags", root / "home"
    home.mkdir()
    datasets.write_digits(data, per_class=10)
    postgres.create_database("airflow_celery")
    result = lenspipe(
        "compile", "--target", "airflow", "--output", str(dags), "--data", str(data), "--work-dir", str(work),
        "--set", f"runtime.metadata={postgres.url(MLMD_DB)}", *TINY, "--epochs", "2",
        # Orchestration is the point: the optional checks (each tested in test_pipeline_e2e) stay off.
        "--set", "serving_check.enabled=false", "--set", "tflite.enabled=false", "--set", "explainer.enabled=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    backend = "db+" + postgres.sqlalchemy_url("airflow_celery")
    airflow = Airflow(
        home, dags, postgres, database="airflow_celery", executor="CeleryExecutor",
        extra_env={
            "AIRFLOW__CELERY__BROKER_URL": redis.url(),
            "AIRFLOW__CELERY__RESULT_BACKEND": backend,
            # Celery then records the worker that ran each task (celery_taskmeta.worker).
            "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": '{"result_extended": true}',
            "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",  # sending a task on a busy 2-core machine
        },
    )
    airflow.run("db", "migrate")
    for queue in QUEUES:
        airflow.start(
            f"worker-{queue}", "celery", "worker", "--queues", queue, "--concurrency", "1",
            "--celery-hostname", worker_name(queue), "--skip-serve-logs", "--without-mingle", "--without-gossip",
        )
    airflow.start_scheduler()
    try:
        yield airflow, work, dags / "lenspipe_dag.py"
    finally:
        airflow.stop_all()


@pytest.fixture(scope="module")
def triggered_run(celery_deployment):
    airflow, _, _ = celery_deployment
    deadline = time.monotonic() + 600
    while not airflow.query("SELECT 1 FROM dag WHERE dag_id=%s", DAG_ID):  # the scheduler parsed the file
        airflow.assert_running()
        assert time.monotonic() < deadline, "the DAG never appeared: " + airflow.scheduler_log()
        time.sleep(3)
    airflow.run("dags", "trigger", DAG_ID)
    run_id, state = airflow.wait_for_run("manual", set())
    assert state == "success", airflow.task_logs(run_id)
    return run_id


def dag_config(dag_file: Path) -> tuple[LenspipeConfig, str]:
    """The validated config and data root the compiled DAG file holds (read, not imported: no Airflow here)."""
    tree = ast.parse(dag_file.read_text())
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("CONFIG", "DATA_ROOT")
    }
    return LenspipeConfig.model_validate(values["CONFIG"]), values["DATA_ROOT"]


@pytest.fixture(scope="module")
def dag_pipeline(celery_deployment):
    """The pipeline the DAG runs, built by the runner's code from the DAG file's config."""
    from pipeline.runners.common import build_pipeline

    cfg, data_root = dag_config(celery_deployment[2])
    return build_pipeline(cfg, data_root, metadata=False)


@pytest.fixture(scope="module")
def queues(celery_deployment, dag_pipeline):
    """The queue of each task, from the runner's own mapping of the DAG file's config."""
    from pipeline.runners.airflow import task_queues

    return task_queues(dag_config(celery_deployment[2])[0], dag_pipeline)


def test_tasks_ran_on_their_queues_by_the_workers_serving_them(celery_deployment, triggered_run, dag_pipeline, queues):
    from tfx import v1 as tfx

    airflow, _, _ = celery_deployment
    training = {n.id for n in dag_pipeline.components if isinstance(n, (tfx.components.Tuner, tfx.components.Trainer))}
    assert len(training) == 2 and {queues[t] for t in training} == {"train"}
    assert {q for t, q in queues.items() if t not in training} == {"data"}
    rows = airflow.query(
        "SELECT ti.task_id, ti.state, ti.queue, ti.hostname, m.worker, m.queue FROM task_instance ti "
        "LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id WHERE ti.dag_id=%s AND ti.run_id=%s",
        DAG_ID, triggered_run,
    )
    ran = {task: (state, queue, hostname, worker, routed) for task, state, queue, hostname, worker, routed in rows}
    assert set(ran) == set(queues)
    for task, (state, queue, hostname, worker, routed) in ran.items():
        assert state == "success", task
        assert queue == queues[task], task  # the queue Airflow sent it to
        assert routed == queue, task  # the queue Celery delivered it from
        assert worker == worker_name(queue), task  # the worker started for that queue ran it
        assert hostname, task  # Airflow recorded the machine the task ran on
    assert {queue for _, queue, *_ in ran.values()} == set(QUEUES)


def data_ancestors(nodes: dict, node_id: str) -> set[str]:
    """Ids of the nodes whose outputs ``node_id`` consumes, directly or through others.

    Only data edges (an input channel's producer): an ordering edge such as DataGate -> Transform
    (add_upstream_node) passes no artifact, so MLMD's lineage does not show it.
    """
    seen, stack = set(), [node_id]
    while stack:
        for channel in nodes[stack.pop()].inputs.values():
            producer = getattr(channel, "producer_component_id", None)
            if producer and producer not in seen:
                seen.add(producer)
                stack.append(producer)
    return seen


def test_mlmd_lineage_is_complete_from_examples_to_pushed_model(celery_deployment, triggered_run, postgres, dag_pipeline):
    import ml_metadata as mlmd_lib
    from ml_metadata.proto import metadata_store_pb2 as pb
    from tfx.dsl.components.common.resolver import Resolver

    from components.image_example_gen.component import ImageExampleGen
    from components.versioned_pusher import VersionedPusher
    from pipeline import report

    _, work, _ = celery_deployment
    store = mlmd_lib.MetadataStore(mlmd(postgres, MLMD_DB))
    run = store.get_context_by_type_and_name("run", f"{DAG_ID}.{triggered_run}")
    assert run is not None
    executions = {report._node_name(store, e): e for e in store.get_executions_by_context(run.id)}
    nodes = {n.id: n for n in dag_pipeline.components}
    assert set(executions) == set(nodes)
    done = {pb.Execution.COMPLETE, pb.Execution.CACHED}
    assert {n for n, e in executions.items() if e.last_known_state not in done} == set()
    events = store.get_events_by_execution_ids([e.id for e in executions.values()])
    resolvers = {i for i, n in nodes.items() if isinstance(n, Resolver)}  # run 1's finds no baseline: no output
    without_output = {n for n, e in executions.items() if not any(
        ev.execution_id == e.id and ev.type == pb.Event.OUTPUT for ev in events)}
    assert without_output <= resolvers

    # Walk back from the pushed model: artifact -> the execution that wrote it -> its inputs -> ...
    (pusher,) = [i for i, n in nodes.items() if isinstance(n, VersionedPusher)]
    (pushed,) = [
        ev.artifact_id for ev in events
        if ev.execution_id == executions[pusher].id and ev.type == pb.Event.OUTPUT
        and ev.path.steps[0].key == "pushed_model"
    ]
    seen, frontier = set(), {pushed}
    while frontier:
        writers = {ev.execution_id for ev in store.get_events_by_artifact_ids(list(frontier)) if ev.type == pb.Event.OUTPUT}
        writers -= seen
        seen |= writers
        frontier = {
            ev.artifact_id for ev in store.get_events_by_execution_ids(list(writers)) if ev.type == pb.Event.INPUT
        }
    by_id = {e.id: n for n, e in executions.items()}
    assert all(i in by_id for i in seen)  # the lineage stays inside this run
    ancestors = {by_id[i] for i in seen}
    # Every node whose outputs flow into the pusher wrote an artifact on the way to the pushed model.
    assert ancestors == (data_ancestors(nodes, pusher) - resolvers) | {pusher}
    assert any(isinstance(nodes[a], ImageExampleGen) for a in ancestors)  # back to the examples
    summary = report.read_run(mlmd(postgres, MLMD_DB), f"{DAG_ID}.{triggered_run}")
    assert summary.pushed is True and summary.pushed_version == "1"
    assert (work / "serving" / "lenspipe" / "1" / "saved_model.pb").is_file()
