"""An Airflow plugin that imports lenspipe's pipeline in every Airflow process at start-up.

LocalExecutor (like Celery's prefork workers) forks each task from a long-lived process. With
TFX, TFMA and TFDV already imported there, a task parses the DAG file in about a second instead
of re-importing them (~15 s per task). Enable it with ``AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False``
and a file in Airflow's plugins folder holding
``from pipeline.runners.airflow_preload import LenspipePreload``.
"""

# TensorFlow loads below, before any DAG file runs: the default of runtime.deterministic
# (oneDNN's kernels off, see RuntimeConfig.process_env) is set here. TF_ENABLE_ONEDNN_OPTS=1
# in Airflow's environment turns them back on for DAGs compiled with deterministic=false.
from lenspipe.config import RuntimeConfig

RuntimeConfig().apply_process_env()

from airflow.plugins_manager import AirflowPlugin  # noqa: E402

import pipeline.pipeline  # noqa: F401,E402 - the preload is the point
import pipeline.runners.airflow  # noqa: F401,E402
import tfx.orchestration.airflow.airflow_dag_runner  # noqa: F401,E402


class LenspipePreload(AirflowPlugin):
    name = "lenspipe_preload"
