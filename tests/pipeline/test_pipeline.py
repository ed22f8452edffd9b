"""create_pipeline: the wiring that keeps bad data and weak models away from serving."""

from __future__ import annotations

import pytest
import tensorflow_model_analysis as tfma

from lenspipe import features
from lenspipe.config import load_config
from pipeline.pipeline import ACCURACY, EVAL_SPLIT, create_pipeline, eval_config


def build(**overrides):
    cfg = load_config(None, overrides)
    return create_pipeline(cfg, data_root="/data", pipeline_root="/root", serving_model_dir="/serving/m")


def by_id(pipeline):
    return {c.id: c for c in pipeline.components}


def test_every_stage_present_and_gate_precedes_transform():
    nodes = by_id(build())
    assert set(nodes) == {
        "ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "drift_resolver", "DataGate", "Transform",
        "Tuner", "ClassicalBaseline", "Trainer", "baseline_resolver", "Evaluator", "TFLiteCheck", "ServingCheck",
        "VersionedPusher", "Explainer",
    }
    assert "DataGate" in {n.id for n in nodes["Transform"].upstream_nodes}
    assert "DataGate" in {n.id for n in nodes["ClassicalBaseline"].upstream_nodes}
    assert nodes["Evaluator"].inputs["classical_baseline"].producer_component_id == "ClassicalBaseline"


def test_classical_baseline_can_be_turned_off():
    cfg = load_config(None, {"classical.enabled": "false"})
    nodes = by_id(create_pipeline(cfg, data_root="/d", pipeline_root="/r", serving_model_dir="/s"))
    assert "ClassicalBaseline" not in nodes and "classical_baseline" not in nodes["Evaluator"].inputs
    with pytest.raises(Exception, match="beat_baseline needs classical.enabled"):
        load_config(None, {"classical.enabled": "false", "evaluator.beat_baseline": "true"})


def test_pusher_needs_the_blessing_and_evaluator_uses_held_out_split():
    nodes = by_id(build())
    pusher_inputs = nodes["VersionedPusher"].inputs
    assert pusher_inputs["model_blessing"].producer_component_id == "Evaluator"
    assert nodes["Evaluator"].exec_properties["example_splits"] == f'["{EVAL_SPLIT}"]'


def test_tflite_check_sits_between_evaluator_and_pusher_and_can_be_turned_off():
    nodes = by_id(build())
    assert nodes["TFLiteCheck"].inputs["model_blessing"].producer_component_id == "Evaluator"
    assert nodes["VersionedPusher"].inputs["tflite_models"].producer_component_id == "TFLiteCheck"
    off = by_id(build(**{"tflite.enabled": "false"}))
    assert "TFLiteCheck" not in off and "tflite_models" not in off["VersionedPusher"].inputs


def test_tflite_config_typo_fails_when_the_pipeline_is_built():
    import pytest
    from lenspipe.config import ConfigError

    with pytest.raises(ConfigError, match="tflite.variants"):
        build(**{"tflite.variants": "[float64]"})


def test_pusher_needs_the_serving_check_which_serves_the_trainers_model_on_the_held_out_split():
    nodes = by_id(build(**{"serving_check.max_p99_ms": "80"}))
    assert nodes["VersionedPusher"].inputs["infra_blessing"].producer_component_id == "ServingCheck"
    check = nodes["ServingCheck"]
    assert check.inputs["model"].producer_component_id == "Trainer"
    assert check.exec_properties["split"] == EVAL_SPLIT and check.exec_properties["max_p99_ms"] == 80.0
    off = by_id(build(**{"serving_check.enabled": "false"}))
    assert "ServingCheck" not in off and "infra_blessing" not in off["VersionedPusher"].inputs


def test_tuner_off_means_no_tuner_and_trainer_without_hyperparameters():
    nodes = by_id(build(**{"tuner.enabled": "false"}))
    assert "Tuner" not in nodes
    assert "hyperparameters" not in nodes["Trainer"].inputs


def test_curated_schema_replaces_schema_inference():
    nodes = by_id(build(**{"data.schema_file": "/s/schema.pbtxt"}))
    assert "SchemaGen" not in nodes
    assert nodes["ImportSchemaGen"].exec_properties["schema_file"] == "/s/schema.pbtxt"


def test_value_and_change_thresholds_gate_the_overall_slice_only():
    cfg = load_config(None, {"evaluator.min_accuracy": "0.93", "evaluator.max_accuracy_drop": "0.02"})
    config = eval_config(cfg)
    accuracy = [m for spec in config.metrics_specs for m in spec.metrics if m.class_name == "SparseCategoricalAccuracy"]
    assert len(accuracy) == 1 and ACCURACY in accuracy[0].config
    (gate,) = accuracy[0].per_slice_thresholds
    assert list(gate.slicing_specs) == [tfma.SlicingSpec()]
    assert gate.threshold.value_threshold.lower_bound.value == 0.93
    assert gate.threshold.change_threshold.absolute.value == -0.02
    assert gate.threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    slices = {tuple(s.feature_keys) for s in config.slicing_specs}
    assert {(), (features.LABEL_NAME_KEY,), (features.BRIGHTNESS_BUCKET_KEY,)} <= slices


def test_class_recall_gate_only_when_asked():
    cfg = load_config(None, {"evaluator.min_class_recall": "0.8"})
    accuracy = next(m for spec in eval_config(cfg).metrics_specs for m in spec.metrics if m.class_name == "SparseCategoricalAccuracy")
    by_label = [t for t in accuracy.per_slice_thresholds if list(t.slicing_specs) == [tfma.SlicingSpec(feature_keys=[features.LABEL_NAME_KEY])]]
    assert len(by_label) == 1 and by_label[0].threshold.value_threshold.lower_bound.value == 0.8


def test_explainer_reads_the_held_out_split_and_the_trainers_run():
    nodes = by_id(build(**{"explainer.correct_per_class": "2"}))
    explainer = nodes["Explainer"]
    assert explainer.inputs["model_run"].producer_component_id == "Trainer"
    assert explainer.inputs["transform_graph"].producer_component_id == "Transform"
    assert explainer.exec_properties["split"] == EVAL_SPLIT and explainer.exec_properties["correct_per_class"] == 2
    assert "Explainer" not in by_id(build(**{"explainer.enabled": "false"}))


def test_the_gate_gets_the_serving_spans_statistics_unless_drift_is_off_or_unsupported():
    nodes = by_id(build())
    gate = nodes["DataGate"]
    assert gate.inputs["baseline_statistics"].producer_component_id == "drift_resolver"
    assert gate.inputs["serving_push"].producer_component_id == "drift_resolver"
    assert gate.exec_properties["drift_config"] == load_config().drift.model_dump_json()
    off = by_id(create_pipeline(load_config(None, {"drift.enabled": "false"}), data_root="/d", pipeline_root="/r",
                                serving_model_dir="/s"))
    latest = by_id(create_pipeline(load_config(), data_root="/d", pipeline_root="/r", serving_model_dir="/s",
                                   baseline="latest"))
    for nodes in (off, latest):
        assert "drift_resolver" not in nodes and "baseline_statistics" not in nodes["DataGate"].inputs


def test_building_the_pipeline_does_not_import_the_vertex_ai_sdk():
    """tfx.v1 pulls in google.cloud.aiplatform (~4.5 CPU s per process); the pipeline imports TFX's modules directly."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, pipeline.pipeline, pipeline.runners.local, pipeline.runners.airflow; "
            "print(sorted(m for m in sys.modules if m.startswith('google.cloud.aiplatform'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
