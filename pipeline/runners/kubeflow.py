"""Compile the pipeline for Kubeflow Pipelines 2.x / Vertex AI Pipelines (TFX's KubeflowV2DagRunner).

The output is a PipelineJob JSON. The data root, the serving directory and the Evaluator's
config (which holds the accuracy thresholds) are runtime parameters: a user changes them
when starting a run, without recompiling. The cluster supplies ML Metadata itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from lenspipe.config import LenspipeConfig
from pipeline.runners.common import RunPaths, build_pipeline

DEFAULT_IMAGE = "lenspipe:0.1.0"  # built from the repository's Dockerfile; --image names the pushed one

# Runtime parameter names, as the Kubeflow UI and `parameterValues` of a run show them.
DATA_ROOT = "data_root"
SERVING_MODEL_DIR = "serving_model_dir"
EVAL_CONFIG = "eval_config"
# The only resolver Kubeflow V2 compiles besides LatestArtifactStrategy; see docs/orchestration.md.
BASELINE = "latest"


def _uri_or_path(value: str) -> str:
    return value if "://" in value else str(Path(value).expanduser().resolve())


def _defaults(cfg: LenspipeConfig, data_root: Optional[str], pipeline_root: Optional[str]) -> dict[str, str]:
    paths = RunPaths.from_config(cfg)
    root = pipeline_root or str(paths.pipeline_root)
    serving = cfg.pusher.serving_model_dir
    return {
        "pipeline_root": root,
        DATA_ROOT: _uri_or_path(data_root) if data_root else f"{root.rstrip('/')}/data",
        SERVING_MODEL_DIR: (
            f"{serving.rstrip('/')}/{cfg.pusher.model_name}" if serving and "://" in serving
            else str(paths.serving_model_dir)
        ),
    }


def create_pipeline_for_kubeflow(
    cfg: LenspipeConfig, data_root: Optional[str] = None, pipeline_root: Optional[str] = None
):
    """(pipeline, {runtime parameter: default}): lenspipe with Kubeflow's paths, baseline and parameters."""
    from google.protobuf import json_format
    from tfx import v1 as tfx

    from components.versioned_pusher import executor as pusher_executor
    from components.versioned_pusher import VersionedPusher
    from pipeline.pipeline import eval_config

    defaults = _defaults(cfg, data_root, pipeline_root)
    defaults[EVAL_CONFIG] = json.dumps(json_format.MessageToDict(eval_config(cfg)), sort_keys=True)
    pipeline = build_pipeline(
        cfg,
        data_root=tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT, ptype=str, default=defaults[DATA_ROOT]),
        pipeline_root=defaults["pipeline_root"],
        metadata=False,
        baseline=BASELINE,
    )
    # Thresholds cannot be runtime parameters inside the pydantic config or the TFMA proto;
    # the whole EvalConfig as one JSON string can, and the Evaluator parses it at run time.
    for component in pipeline.components:
        if isinstance(component, tfx.components.Evaluator):
            component.exec_properties["eval_config"] = tfx.dsl.experimental.RuntimeParameter(
                name=EVAL_CONFIG, ptype=str, default=defaults[EVAL_CONFIG]
            )
        elif isinstance(component, VersionedPusher):
            # A path inside the PushDestination proto cannot be a parameter; this plain
            # string property overrides it (see the VersionedPusher executor).
            component.exec_properties[pusher_executor.SERVING_MODEL_DIR_KEY] = tfx.dsl.experimental.RuntimeParameter(
                name=SERVING_MODEL_DIR, ptype=str, default=defaults[SERVING_MODEL_DIR]
            )
    return pipeline, {name: defaults[name] for name in (DATA_ROOT, SERVING_MODEL_DIR, EVAL_CONFIG)}


def compile_pipeline(
    cfg: LenspipeConfig,
    output: Path,
    *,
    data_root: Optional[str] = None,
    image: Optional[str] = None,
    pipeline_root: Optional[str] = None,
) -> Path:
    """Write the PipelineJob JSON to ``output`` (temp file + rename); returns ``output``."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_v2

    pipeline, defaults = create_pipeline_for_kubeflow(cfg, data_root, pipeline_root)
    runner = kfp_v2.KubeflowV2DagRunner(
        config=kfp_v2.KubeflowV2DagRunnerConfig(
            default_image=image or DEFAULT_IMAGE,
            use_pipeline_spec_2_1=True,  # the schema Kubeflow Pipelines 2.x backends read; Vertex takes it too
        )
    )
    job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    # Vertex reads defaults from the job's runtimeConfig; Kubeflow's UI and client from the
    # spec's own input definitions, which TFX leaves without them.
    parameters = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    for name, value in defaults.items():
        parameters[name]["defaultValue"] = value
    env = [{"name": name, "value": value} for name, value in cfg.runtime.process_env().items()]
    if env:  # each step is a fresh process: it needs what `lenspipe run` sets before TensorFlow loads
        for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
            if "container" in executor:
                executor["container"].setdefault("env", []).extend(env)
    output = Path(output).expanduser().resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    tmp.replace(output)
    return output
