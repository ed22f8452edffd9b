"""Compile the pipeline into an Airflow DAG file (TFX's AirflowDagRunner, one PythonOperator per component).

The DAG file holds the resolved config and data root; at parse time it builds the same
``create_pipeline`` with the config's metadata connection (SQLite, PostgreSQL or MySQL;
the password is read from the environment or a file then, never written into the file).
"""

from __future__ import annotations

import datetime
import pprint
from pathlib import Path
from typing import Any

from lenspipe.config import ConfigError, LenspipeConfig, suggest
from pipeline.runners.common import RunPaths

# A fixed past start with catchup off: a schedule starts with its latest interval, not a backfill.
START_DATE = datetime.datetime(2026, 1, 1)

_DAG_TEMPLATE = '''"""Airflow DAG of the lenspipe pipeline {name!r}, written by `lenspipe compile --target airflow`.

Put this file in Airflow's dags/ folder; the scheduler and workers need lenspipe installed.
Recompile instead of editing: the config below is the validated one.
"""
{env}
from pipeline.runners.airflow import create_dag

CONFIG = {config}
DATA_ROOT = {data_root!r}

DAG = create_dag(CONFIG, DATA_ROOT)
'''


def resolved_config(cfg: LenspipeConfig) -> dict[str, Any]:
    """The config with every path absolute: Airflow's workers run in another directory."""
    paths = RunPaths.from_config(cfg)
    tree = cfg.model_dump(mode="json")
    tree["runtime"]["work_dir"] = str(cfg.work_path)
    tree["runtime"]["metadata"] = paths.metadata
    tree["pusher"]["serving_model_dir"] = str(cfg.serving_model_path)
    if cfg.data.schema_file:
        tree["data"]["schema_file"] = str(Path(cfg.data.schema_file).expanduser().resolve())
    return tree


def create_dag(config: dict[str, Any], data_root: str):
    """The Airflow DAG for ``config`` (a dumped LenspipeConfig) on ``data_root``."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

    from components.image_example_gen.component import ImageExampleGen
    from components.image_example_gen.driver import ImageExampleGenDriver
    from pipeline.runners.common import build_pipeline

    cfg = LenspipeConfig.model_validate(config)
    pipeline = build_pipeline(cfg, data_root)
    for component in pipeline.components:
        if isinstance(component, ImageExampleGen):
            # The legacy launcher Airflow uses needs a driver that prepares the `rejected` output too.
            component.driver_class = ImageExampleGenDriver
    dag_config = {"schedule": cfg.runtime.schedule, "start_date": START_DATE, "catchup": False}
    dag = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_config)).run(pipeline)
    for task_id, queue in task_queues(cfg, pipeline).items():
        dag.get_task(task_id).queue = queue  # CeleryExecutor sends the task there; LocalExecutor ignores it
    return dag


def task_queues(cfg: LenspipeConfig, pipeline) -> dict[str, str]:
    """The Airflow queue of each of ``pipeline``'s nodes, by node id (= task id).

    Tuner and Trainer go to ``airflow.train_queue``, every other node to ``airflow.data_queue``;
    ``airflow.queues`` overrides single nodes. An id there that names no node is a ConfigError.
    """
    from tfx.components import Trainer, Tuner  # not tfx.v1: see pipeline/pipeline.py (every task parses the DAG)

    ids = [node.id for node in pipeline.components]
    unknown = sorted(set(cfg.airflow.queues) - set(ids))
    if unknown:
        raise ConfigError(
            f"airflow.queues: no component {unknown[0]!r} in the pipeline{suggest(unknown[0], ids)}; "
            f"its components are {', '.join(ids)}"
        )
    train = (Tuner, Trainer)
    return {
        node.id: cfg.airflow.queues.get(
            node.id, cfg.airflow.train_queue if isinstance(node, train) else cfg.airflow.data_queue
        )
        for node in pipeline.components
    }


def check_queues(cfg: LenspipeConfig, data_root: str) -> dict[str, str]:
    """``task_queues`` of the pipeline ``cfg`` builds: what `lenspipe compile` checks before writing the DAG."""
    from pipeline.runners.common import build_pipeline

    return task_queues(cfg, build_pipeline(cfg, data_root, metadata=False))


def _env_lines(cfg: LenspipeConfig) -> str:
    """The DAG file's first statements: what `lenspipe run` sets before TensorFlow loads.

    A task parses this file in a fresh (forked) process and TensorFlow loads on the import below;
    an Airflow process that imported TensorFlow earlier (the preload plugin) sets the same itself.
    """
    env = cfg.runtime.process_env()
    if not env:
        return ""
    lines = [f"os.environ.setdefault({name!r}, {value!r})" for name, value in env.items()]
    return "\nimport os\n\n# runtime.deterministic: before TensorFlow is imported\n" + "\n".join(lines) + "\n"


def compile_dag(cfg: LenspipeConfig, data_root: str, output_dir: Path) -> Path:
    """Write ``<output_dir>/<pipeline_name>_dag.py`` (temp file + rename); returns its path."""
    check_queues(cfg, data_root)  # a misspelt component in airflow.queues fails here, not in the scheduler
    output_dir = Path(output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{cfg.runtime.pipeline_name}_dag.py"
    config = pprint.pformat(resolved_config(cfg), width=100, sort_dicts=True)  # a Python literal
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        _DAG_TEMPLATE.format(name=cfg.runtime.pipeline_name, config=config, data_root=data_root, env=_env_lines(cfg))
    )
    tmp.replace(path)
    return path
