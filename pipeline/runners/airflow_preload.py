"""An Airflow plugin that imports lenspipe's pipeline in every Airflow process at start-up.

LocalExecutor (like Celery's prefork workers) forks each task from a long-lived process. With
TFX, TFMA and TFDV already imported there, a task parses the DAG file in about a second instead
of re-importing them (~15 s per task). Enable it with ``AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False``
and a file in Airflow's plugins folder holding
``from pipeline.runners.airflow_preload import LenspipePreload``.
"""

from airflow.plugins_manager import AirflowPlugin

import pipeline.pipeline  # noqa: F401 - the preload is the point
import pipeline.runners.airflow  # noqa: F401
import tfx.orchestration.airflow.airflow_dag_runner  # noqa: F401


class LenspipePreload(AirflowPlugin):
    name = "lenspipe_preload"
