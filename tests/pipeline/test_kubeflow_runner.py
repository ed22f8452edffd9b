"""`lenspipe compile --target kubeflow`: the PipelineJob parses as kfp's PipelineSpec and runs as written.

What a Kubeflow Pipelines 2.x / Vertex AI cluster reads from the file: the tasks and their
edges, the image, caching, the runtime parameters, and the executor classes and modules
the container imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re

import pytest

from lenspipe import artifacts
from lenspipe.config import load_config
from tests.e2e.test_pipeline_e2e import lenspipe

IMAGE = "registry.example.com/ml/lenspipe:1.2.3"
ROOT = "gs://lenspipe-bucket/pipelines/lenspipe"
DATA = "gs://lenspipe-bucket/images"
KFP_TYPE_NAME = re.compile(r"^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$")  # from TFX's compiler


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    result = lenspipe(
        "compile", "--target", "kubeflow", "--output", str(out), "--image", IMAGE, "--pipeline-root", ROOT,
        "--data", DATA, "--serving-dir", "gs://lenspipe-bucket/serving", "--min-accuracy", "0.8",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(out) in result.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def spec(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(compiled["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def deployment(compiled):
    """The executors: a Struct inside PipelineSpec, a PipelineDeploymentConfig to its readers."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.ParseDict(compiled["pipelineSpec"]["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig())


def expected_edges() -> dict[str, set[str]]:
    """Upstream node ids per node, from create_pipeline itself (with Kubeflow's baseline)."""
    from pipeline.runners import kubeflow

    pipeline, _ = kubeflow.create_pipeline_for_kubeflow(load_config(None, {"data.root": DATA}), DATA, ROOT)
    return {c.id: {u.id for u in c.upstream_nodes} for c in pipeline.components}


def test_every_component_is_a_task_with_the_edges_of_create_pipeline(spec):
    tasks = spec.root.dag.tasks
    edges = expected_edges()
    # Kubeflow compiles the latest-blessed-model resolver into a model and a blessing query.
    resolver_tasks = {"baseline_resolver-model-resolver", "baseline_resolver-model-blessing-resolver"}
    assert set(tasks) == (set(edges) - {"baseline_resolver"}) | resolver_tasks
    for node, upstream in edges.items():
        if node == "baseline_resolver":
            continue
        wanted = {("baseline_resolver-model-resolver" if u == "baseline_resolver" else u) for u in upstream}
        assert set(tasks[node].dependent_tasks) == wanted, node
    assert tasks["Evaluator"].inputs.artifacts["baseline_model"].task_output_artifact.producer_task == (
        "baseline_resolver-model-resolver"
    )
    assert "Transform" in edges and "DataGate" in edges["Transform"]  # nothing trains past the gate


def test_image_caching_and_pipeline_root(compiled, spec, deployment):
    containers = [e.container for e in deployment.executors.values() if e.HasField("container")]
    # One container per component; the resolver runs in Kubeflow's own importer/resolver step.
    assert len(containers) == len([n for n in spec.root.dag.tasks if "resolver" not in n])
    assert {c.image for c in containers} == {IMAGE}
    # Every step is a fresh process: deterministic runs need oneDNN's kernels off there too.
    assert all({(e.name, e.value) for e in c.env} == {("TF_ENABLE_ONEDNN_OPTS", "0")} for c in containers)
    assert all(t.caching_options.enable_cache for n, t in spec.root.dag.tasks.items() if "resolver" not in n)
    assert compiled["runtimeConfig"]["gcsOutputDirectory"] == ROOT


def test_no_cache_and_no_determinism_compile_plain_tasks(tmp_path):
    out = tmp_path / "p.json"
    result = lenspipe(
        "compile", "--target", "kubeflow", "--output", str(out), "--data", DATA, "--no-cache",
        "--set", "runtime.deterministic=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())
    container = json.loads(out.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert container["image"] == "lenspipe:0.1.0"  # the Dockerfile's default tag
    assert "env" not in container  # not deterministic: oneDNN stays as TensorFlow sets it


def test_data_root_serving_dir_and_thresholds_are_runtime_parameters(compiled, spec):
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    params = spec.root.input_definitions.parameters
    assert set(params) == {"data_root", "serving_model_dir", "eval_config"}
    assert params["data_root"].default_value.string_value == DATA
    assert params["serving_model_dir"].default_value.string_value == "gs://lenspipe-bucket/serving/lenspipe"
    # Vertex reads the same defaults from the job's runtime config.
    assert compiled["runtimeConfig"]["parameterValues"]["data_root"] == DATA
    tasks = spec.root.dag.tasks
    wiring = {
        ("ImageExampleGen", "input_base"): "data_root",
        ("VersionedPusher", "serving_model_dir"): "serving_model_dir",
        ("Evaluator", "eval_config"): "eval_config",
    }
    for (task, name), parameter in wiring.items():
        assert tasks[task].inputs.parameters[name].component_input_parameter == parameter
    eval_config = json_format.Parse(params["eval_config"].default_value.string_value, tfma.EvalConfig())
    (threshold,) = [m for m in eval_config.metrics_specs[0].metrics if m.per_slice_thresholds]
    bounds = threshold.per_slice_thresholds[0].threshold
    assert bounds.value_threshold.lower_bound.value == pytest.approx(0.8)  # --min-accuracy 0.8
    assert bounds.change_threshold.absolute.value == pytest.approx(-0.01)


def test_every_executor_and_module_named_in_the_spec_imports(spec, deployment):
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
    from tfx.utils import import_utils

    executors, modules = set(), set()
    for executor in deployment.executors.values():
        if not executor.HasField("container"):
            continue
        container = executor.container
        args = list(container.args)
        executors.add(args[args.index("--executor_class_path") + 1])
        for command in (container.command, container.lifecycle.pre_cache_check.command):
            if command:
                assert list(command[:2]) == ["python", "-m"]
                modules.add(command[2])
    assert "components.data_gate.component.DataGate_Executor" in executors
    assert "components.image_example_gen.executor.Executor" in executors
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in modules
    for path in executors:
        assert import_utils.import_class_by_path(path)
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    # The user code Transform, Tuner and Trainer load by dotted name.
    for task, name in (("Transform", "preprocessing_fn"), ("Tuner", "tuner_fn"), ("Trainer", "run_fn")):
        dotted = spec.root.dag.tasks[task].inputs.parameters[name].runtime_value.constant.string_value
        module, _, attr = dotted.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr)), dotted
    # Artifact types: the container imports each one by the title in its schema.
    titles = set()
    for component in spec.components.values():
        for definitions in (component.input_definitions.artifacts, component.output_definitions.artifacts):
            for artifact in definitions.values():
                titles.add(kubeflow_v2_entrypoint_utils._retrieve_class_path(artifact.artifact_type))
    assert {"lenspipe.RejectedFiles", "lenspipe.DataGateReport"} <= titles
    for title in titles:
        assert import_utils.import_class_by_path(title)


@pytest.mark.parametrize("artifact_class", artifacts.ARTIFACT_TYPES)
def test_custom_artifact_type_names_are_kubeflow_names_importable_by_that_name(artifact_class):
    assert KFP_TYPE_NAME.match(artifact_class.TYPE_NAME)
    module, _, name = artifact_class.TYPE_NAME.partition(".")
    assert getattr(importlib.import_module(module), name) is artifact_class


def test_kubeflow_uses_the_latest_blessed_model_strategy():
    from tfx import v1 as tfx

    from pipeline.runners import kubeflow

    pipeline, _ = kubeflow.create_pipeline_for_kubeflow(load_config(None, {}), DATA, ROOT)
    (resolver,) = [c for c in pipeline.components if c.id == "baseline_resolver"]
    assert resolver.exec_properties["resolver_class"] is tfx.dsl.experimental.LatestBlessedModelStrategy
