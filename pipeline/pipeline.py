"""create_pipeline: the one pure pipeline factory.

It takes every path, threshold and module reference as an argument and returns a
``tfx.orchestration.pipeline.Pipeline``; it reads no environment and no files. Runners
(pipeline/runners/) supply paths, the metadata connection and Beam arguments.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import tensorflow_model_analysis as tfma
from tensorflow_data_validation.statistics import stats_options as tfdv_options
from tensorflow_metadata.proto.v0 import schema_pb2
# Not ``from tfx import v1``: that imports the Vertex AI SDK through tfx.v1.extensions, about
# 4.5 CPU s in every process that builds the pipeline (each `lenspipe run`, each Airflow task).
from tfx.components import BulkInferrer, ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform, Tuner
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import bulk_inferrer_pb2, pusher_pb2, trainer_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components.baseline import CANDIDATE_KEY, MODEL_BLESSING_KEY, MODEL_KEY, PreviousBlessedModelStrategy
from components.classical_baseline import ClassicalBaseline
from components.data_gate import DataGate
from components.data_gate import lineage
from components.evaluator import Evaluator
from components.tflite_check import TFLiteCheck
from components.explainer import Explainer
from components.image_example_gen.component import ImageExampleGen, make_input_config, make_output_config
from components.predictions_writer import PredictionsWriter
from components.serving_check import ServingCheck
from components.versioned_pusher import VersionedPusher
from lenspipe import features
from lenspipe.config import LenspipeConfig

PREPROCESSING_FN = "transform.preprocessing.preprocessing_fn"
TUNER_FN = "trainer.tuner.tuner_fn"
RUN_FN = "trainer.task.run_fn"

ACCURACY = "accuracy"
EVAL_SPLIT = "test"  # the Evaluator gates on the held-out split, never seen by tuning or early stopping


def stats_options() -> tfdv_options.StatsOptions:
    """TFDV options: statistics for the image properties and the image bytes as bytes.

    Per-file paths are left out (unique per image: they would become a string
    domain on small data and every new file an anomaly); the encoded image is
    marked with image_domain so TFDV does not try to read it as UTF-8 text.
    """
    schema = schema_pb2.Schema()
    image = schema.feature.add(name=features.IMAGE_KEY, type=schema_pb2.BYTES)
    image.image_domain.SetInParent()
    return tfdv_options.StatsOptions(
        schema=schema,
        feature_allowlist=[features.IMAGE_KEY, *features.STATS_FEATURES],
    )


def eval_config(cfg: LenspipeConfig) -> tfma.EvalConfig:
    """TFMA config: metrics by slice, the value gate overall and the change gate against the baseline.

    Per-class recall is the accuracy on each label slice; per-class precision and
    recall at the argmax both come from the multi-class confusion matrix (the report
    reads them there), so the class count need not be known when compiling.
    """
    overall = tfma.SlicingSpec()
    by_label = tfma.SlicingSpec(feature_keys=[features.LABEL_NAME_KEY])
    slices = [
        overall,
        by_label,
        tfma.SlicingSpec(feature_keys=[features.BRIGHTNESS_BUCKET_KEY]),
        tfma.SlicingSpec(feature_keys=[features.SIZE_BUCKET_KEY]),
    ]
    accuracy = tfma.MetricConfig(class_name="SparseCategoricalAccuracy", config=f'{{"name": "{ACCURACY}"}}')
    # Thresholds are checked on every slice they name: the overall slice carries the
    # value and change gates; per-class recall (accuracy on a label slice) only if asked.
    accuracy.per_slice_thresholds.append(
        tfma.PerSliceMetricThreshold(
            slicing_specs=[overall],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.evaluator.min_accuracy}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                    absolute={"value": -cfg.evaluator.max_accuracy_drop},
                ),
            ),
        )
    )
    if cfg.evaluator.min_class_recall is not None:
        accuracy.per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=[by_label],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.evaluator.min_class_recall})
                ),
            )
        )
    metrics_specs = [
        tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                accuracy,
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]
        )
    ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=features.EXAMPLES_SIGNATURE,
                model_type="tf_generic",
                label_key=features.transformed_name(features.LABEL_NAME_KEY),
                prediction_key=features.PROBABILITIES_OUTPUT,
                preprocessing_function_names=[features.TRANSFORM_SIGNATURE],
            )
        ],
        slicing_specs=slices,
        metrics_specs=metrics_specs,
    )


def batch_inference(inference_root: str, model: Any, blessing: Any, code_version: str = "") -> list[Any]:
    """TFX's BulkInferrer on the blessed model over an unlabeled folder, then predictions.jsonl + CSV.

    The same ImageExampleGen reads the folder, so unreadable files are listed, not fatal.
    """
    from components.image_example_gen.component import INFERENCE_SPLIT, make_inference_output_config
    from trainer.signatures import CLASSIFICATION_SIGNATURE

    images = ImageExampleGen(
        input_base=inference_root,
        input_config=make_input_config(None, "unlabeled"),
        output_config=make_inference_output_config(),
        input_format="unlabeled",
        code_version=code_version,
    ).with_id("InferenceExampleGen")
    bulk_inferrer = BulkInferrer(
        examples=images.outputs["examples"],
        model=model,
        model_blessing=blessing,
        data_spec=bulk_inferrer_pb2.DataSpec(example_splits=[INFERENCE_SPLIT]),
        # classify, not predict: tfx_bsl cannot log the predict signature's rank-1 string output (label).
        model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[CLASSIFICATION_SIGNATURE]),
    )
    writer = PredictionsWriter(inference_result=bulk_inferrer.outputs["inference_result"])
    return [images, bulk_inferrer, writer]


def serving_span_statistics(cfg: LenspipeConfig, statistics: Any, baseline: str) -> tuple[list[Any], dict[str, Any]]:
    """The resolver that finds the serving model's training statistics in MLMD, and the gate inputs it feeds.

    Nothing under ``baseline="latest"`` (Kubeflow V2 compiles no custom resolver strategy) or
    with ``drift.enabled=false``: the gate then checks no drift.
    """
    if baseline != "previous" or not cfg.drift.enabled:
        return [], {}
    resolver = Resolver(
        strategy_class=lineage.ServingSpanStatisticsStrategy,
        **{
            lineage.PUSHED_MODEL_KEY: Channel(type=standard_artifacts.PushedModel),
            lineage.STATISTICS_KEY: Channel(type=standard_artifacts.ExampleStatistics),
            lineage.CURRENT_KEY: statistics,
        },
    ).with_id("drift_resolver")
    return [resolver], {
        "baseline_statistics": resolver.outputs[lineage.STATISTICS_KEY],
        "serving_push": resolver.outputs[lineage.PUSHED_MODEL_KEY],
    }


def create_pipeline(
    cfg: LenspipeConfig,
    *,
    data_root: str,
    pipeline_root: str,
    serving_model_dir: str,
    metadata_connection_config: Any = None,
    beam_pipeline_args: Optional[Sequence[str]] = None,
    code_versions: Optional[Mapping[str, str]] = None,
    baseline: str = "previous",
) -> Pipeline:
    """Build the lenspipe pipeline.

    ``data_root`` holds the images (or TFRecords); ``serving_model_dir`` is the model
    base path the Pusher writes versions into. ``code_versions`` maps a step
    (pipeline/code_hash.py SOURCES) to the hash of the code it runs; each hash goes
    into that step's properties, so a code change invalidates exactly the cache of
    the steps that run it even though the code is referenced by dotted path.
    ``baseline`` = "previous" (skip the candidate; local and Airflow) or "latest"
    (TFX's LatestBlessedModelStrategy, the one Kubeflow V2 compiles).
    """
    code = dict(code_versions or {})
    example_gen = ImageExampleGen(
        input_base=data_root,
        input_config=make_input_config(cfg.data.span_pattern, cfg.data.format),
        output_config=make_output_config(cfg.data.split_train, cfg.data.split_eval, cfg.data.split_test),
        input_format=cfg.data.format,
        code_version=code.get("example_gen", ""),
    )
    examples = example_gen.outputs["examples"]
    statistics_gen = StatisticsGen(examples=examples, stats_options=stats_options())
    if cfg.data.schema_file:
        schema_gen = ImportSchemaGen(schema_file=cfg.data.schema_file)
    else:
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    schema = schema_gen.outputs["schema"]
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema)
    drift_nodes, drift_inputs = serving_span_statistics(cfg, statistics_gen.outputs["statistics"], baseline)
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        examples=examples,
        schema=schema,
        drift_config=cfg.drift.model_dump_json(),
        allow_class_change=cfg.pusher.allow_class_change,
        code_version=code.get("data_gate", ""),
        **drift_inputs,
    )

    transform = Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        materialize=False,
        disable_statistics=True,
        custom_config={"image": cfg.image.model_dump(), "code_version": code.get("transform", "")},
    )
    transform.add_upstream_node(data_gate)  # nothing is transformed, trained or pushed past a failed gate

    model_config = cfg.training_custom_config(code.get("trainer", ""))
    # The Tuner searches and the Trainer trains on the same inputs and config.
    training_inputs = dict(
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config=model_config,
    )
    components: list[Any] = [example_gen, statistics_gen, schema_gen, example_validator, *drift_nodes, data_gate, transform]
    hyperparameters = None
    if cfg.tuner.enabled:
        tuner = Tuner(tuner_fn=TUNER_FN, **training_inputs)
        components.append(tuner)
        hyperparameters = tuner.outputs["best_hyperparameters"]
    trainer = Trainer(run_fn=RUN_FN, hyperparameters=hyperparameters, **training_inputs)
    baseline_channels = {
        MODEL_KEY: Channel(type=standard_artifacts.Model),
        MODEL_BLESSING_KEY: Channel(type=standard_artifacts.ModelBlessing),
    }
    if baseline == "previous":
        strategy = PreviousBlessedModelStrategy
        baseline_channels[CANDIDATE_KEY] = trainer.outputs["model"]
    elif baseline == "latest":
        strategy = LatestBlessedModelStrategy
    else:
        raise ValueError(f"baseline must be 'previous' or 'latest', got {baseline!r}")
    baseline_resolver = Resolver(strategy_class=strategy, **baseline_channels).with_id("baseline_resolver")
    classical = None
    if cfg.classical.enabled:
        classical = ClassicalBaseline(
            examples=examples,
            method=cfg.classical.method,
            image_size=cfg.classical.image_size,
            max_train_images=cfg.classical.max_train_images,
            test_split=EVAL_SPLIT,
            code_version=code.get("classical_baseline", ""),
        )
        classical.add_upstream_node(data_gate)
        components.append(classical)
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs[MODEL_KEY],
        schema=schema,
        eval_config=eval_config(cfg),
        example_splits=[EVAL_SPLIT],
        classical_baseline=classical.outputs["result"] if classical else None,
        beat_baseline=cfg.evaluator.beat_baseline,
        code_version=code.get("evaluator", ""),
    )
    tflite_check = None
    if cfg.tflite.enabled:
        tflite_check = TFLiteCheck(
            model=trainer.outputs["model"],
            transform_graph=transform.outputs["transform_graph"],
            examples=examples,
            model_blessing=evaluator.outputs["blessing"],
            config=cfg.tflite.model_dump(),
            code_version=code.get("tflite_check", ""),
        )
    serving_check = None
    if cfg.serving_check.enabled:
        # InfraValidator's role without Docker: the candidate is served by `lenspipe serve` before any push.
        serving_check = ServingCheck(
            model=trainer.outputs["model"],
            examples=examples,
            model_name=cfg.pusher.model_name,
            split=EVAL_SPLIT,
            max_images=cfg.serving_check.max_images,
            max_abs_diff=cfg.serving_check.max_abs_diff,
            max_p99_ms=cfg.serving_check.max_p99_ms,
            start_timeout_seconds=cfg.serving_check.start_timeout_seconds,
            code_version=code.get("serving_check", ""),
        )
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],  # always wired: Cond is ignored under Airflow
        infra_blessing=serving_check.outputs["infra_blessing"] if serving_check else None,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)
        ),
        custom_config={
            "allow_class_change": cfg.pusher.allow_class_change,
            "label": cfg.pusher.label,
            "model_config_file": cfg.pusher.model_config_file,
            "model_name": cfg.pusher.model_name,
            "code_version": code.get("pusher", ""),
        },
        tflite_models=tflite_check.outputs["tflite_models"] if tflite_check else None,
    )
    checks = [c for c in (tflite_check, serving_check) if c is not None]
    components += [trainer, baseline_resolver, evaluator, *checks, pusher]
    if cfg.data.inference_root:
        components += batch_inference(
            cfg.data.inference_root, trainer.outputs["model"], evaluator.outputs["blessing"], code.get("example_gen", "")
        )
    if cfg.explainer.enabled:
        components.append(Explainer(
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            model_run=trainer.outputs["model_run"],
            split=EVAL_SPLIT,
            correct_per_class=cfg.explainer.correct_per_class,
            max_misclassified=cfg.explainer.max_misclassified,
            code_version=code.get("explainer", ""),
        ))
    return Pipeline(
        pipeline_name=cfg.runtime.pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=cfg.runtime.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or []),
    )
