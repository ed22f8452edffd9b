"""The run summary: read one pipeline run back from MLMD and its artifacts.

Everything printed at the end of ``lenspipe run`` comes from here: the state of
every node (executed, cached, failed), counts per split, rejected files,
anomalies, the best tuning trial, metrics overall and the worst slice, whether
the model was blessed and why, and where it was pushed.
"""

from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from lenspipe import features


# A run's context: "pipeline_run" from the IR-based launchers (local, Kubeflow), "run" from
# TFX's legacy launcher (Airflow), whose executions name their node in a component_run context.
_RUN_CONTEXT_TYPES = ("pipeline_run", "run")
INFERENCE_NODE = "InferenceExampleGen"  # reads data.inference_root; its rejections are not the training data's
_STATE_NAMES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}


@dataclass
class SliceMetric:
    slice_name: str  # "overall" or "feature=value"
    accuracy: float
    count: int


@dataclass
class RunSummary:
    """What one pipeline run did, as read from MLMD."""

    run_id: str
    node_states: dict[str, str] = field(default_factory=dict)  # node id -> complete | cached | failed ...
    node_seconds: dict[str, float] = field(default_factory=dict)  # node id -> wall time MLMD recorded
    split_counts: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, str]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    best_hyperparameters: dict[str, Any] = field(default_factory=dict)
    best_trial_score: Optional[float] = None
    trials: list[dict[str, Any]] = field(default_factory=list)  # every tuning trial: hyperparameters and score
    overall: Optional[SliceMetric] = None
    worst_slice: Optional[SliceMetric] = None
    slices: list[SliceMetric] = field(default_factory=list)
    baseline_accuracy: Optional[float] = None  # the previous blessed model's overall accuracy, when compared
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)  # class id -> precision/recall/support
    confusion: dict[tuple[int, int], float] = field(default_factory=dict)  # (actual, predicted) -> count
    blessed: Optional[bool] = None
    blessing_reason: str = ""
    pushed: Optional[bool] = None
    pushed_path: str = ""
    pushed_version: str = ""
    not_pushed_reason: str = ""
    classes_added: list[str] = field(default_factory=list)
    classes_removed: list[str] = field(default_factory=list)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class name -> images
    drift: dict[str, Any] = field(default_factory=dict)  # DataGate: distances to the serving model's span
    empty_class_folders: list[str] = field(default_factory=list)
    classical: dict[str, Any] = field(default_factory=dict)  # the ClassicalBaseline's result.json
    model_dir: str = ""  # the Trainer's exported SavedModel
    architecture: dict[str, Any] = field(default_factory=dict)  # from the model's metadata file
    tflite: Optional[dict] = None  # TFLiteCheck's check.json: per-variant accuracy, size, latency, passed
    predictions_path: str = ""  # batch inference over data.inference_root: predictions.jsonl (+ .csv twin)
    predictions_count: Optional[int] = None
    inference_rejected: list[dict[str, str]] = field(default_factory=list)
    serving_check: dict[str, Any] = field(default_factory=dict)  # the ServingCheck's result.json

    @property
    def macro_f1(self) -> Optional[float]:
        """Mean F1 over the classes with test images (undefined F1 counts as 0, as scikit-learn does)."""
        scores = [0.0 if math.isnan(v["f1"]) else v["f1"] for v in self.per_class.values() if v["support"]]
        return sum(scores) / len(scores) if scores else None

    @property
    def executed(self) -> list[str]:
        return sorted(n for n, s in self.node_states.items() if s in ("complete", "running", "new"))

    @property
    def cached(self) -> list[str]:
        return sorted(n for n, s in self.node_states.items() if s == "cached")

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, s in self.node_states.items() if s == "failed")


def _store(metadata_path) -> mlmd.MetadataStore:
    # A database server's store comes as its ConnectionConfig (pipeline.runners.common).
    if isinstance(metadata_path, metadata_store_pb2.ConnectionConfig):
        return mlmd.MetadataStore(metadata_path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def latest_run_id(metadata_path: str, pipeline_name: str) -> Optional[str]:
    """The newest pipeline_run context in the store, or None.

    Each pipeline has its own store (``metadata/<pipeline_name>.sqlite``); a store
    that never saw ``pipeline_name`` has no run of it.
    """
    if isinstance(metadata_path, str) and not os.path.exists(metadata_path):
        return None
    store = _store(metadata_path)
    if store.get_context_by_type_and_name("pipeline", pipeline_name) is None:
        return None
    runs = [c for t in _RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(t)]
    if not runs:
        return None
    return max(runs, key=lambda c: (c.create_time_since_epoch, c.id)).name


def _outputs(store: mlmd.MetadataStore, execution_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    events = store.get_events_by_execution_ids([execution_id])
    keyed: dict[str, list[int]] = {}
    for e in events:
        if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT):
            key = e.path.steps[0].key if e.path.steps else ""
            keyed.setdefault(key, []).append(e.artifact_id)
    arts = {a.id: a for a in store.get_artifacts_by_id([i for ids in keyed.values() for i in ids])}
    return {k: [arts[i] for i in ids if i in arts] for k, ids in keyed.items()}


def _prop(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            v = props[name]
            return getattr(v, v.WhichOneof("value"))
    return None


def _json_prop(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    """A custom property TFX stored as a JSON value (a protobuf Struct/ListValue), as plain Python."""
    from google.protobuf import json_format

    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    if value.WhichOneof("value") == "proto_value":
        return None
    if value.HasField("struct_value"):
        struct = json_format.MessageToDict(value.struct_value)
        # TFX wraps a non-dict JSON value as {"__value__": ...}
        return struct.get("__value__", struct)
    return _prop(artifact, name)


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _split_counts(stats_uri: str) -> dict[str, int]:
    from tensorflow_data_validation.utils import stats_util

    counts = {}
    if not os.path.isdir(stats_uri):
        return counts
    for entry in sorted(os.listdir(stats_uri)):
        path = os.path.join(stats_uri, entry, "FeatureStats.pb")
        if entry.startswith("Split-") and os.path.exists(path):
            stats = stats_util.load_stats_binary(path)
            counts[entry[len("Split-"):]] = sum(d.num_examples for d in stats.datasets)
    return counts


def _slice_name(slice_key: Any) -> str:
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind)
        parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or "overall"


def _metrics(summary: RunSummary, evaluation_uri: str) -> None:
    import tensorflow_model_analysis as tfma

    try:
        all_metrics = list(tfma.load_metrics(evaluation_uri))
    except Exception:  # noqa: BLE001 - a run that failed before writing metrics
        return
    for m in all_metrics:
        name = _slice_name(m.slice_key)
        acc, count = None, 0
        for kv in m.metric_keys_and_values:
            key = kv.key
            value = kv.value.double_value.value
            if key.model_name == "baseline" and not key.is_diff and key.name == "accuracy" and name == "overall":
                summary.baseline_accuracy = value
            if key.model_name not in ("", "candidate") or key.is_diff:
                continue
            if key.name == "accuracy" and not key.HasField("sub_key"):
                acc = value
            elif key.name == "example_count" and not key.HasField("sub_key"):
                count = int(value)
        if acc is None:
            continue
        metric = SliceMetric(name, acc, count)
        summary.slices.append(metric)
        if name == "overall":
            summary.overall = metric
    _per_class(summary, evaluation_uri)
    others = [s for s in summary.slices if s.slice_name != "overall"]
    if others:
        summary.worst_slice = min(others, key=lambda s: (s.accuracy, -s.count))


def _per_class(summary: RunSummary, evaluation_uri: str) -> None:
    """Per-class precision and recall at the argmax, from the overall confusion matrix."""
    import tensorflow_model_analysis as tfma

    try:
        plots = list(tfma.load_plots(evaluation_uri))
    except Exception:  # noqa: BLE001
        return
    for p in plots:
        if p.slice_key.single_slice_keys:
            continue
        for kv in p.plot_keys_and_values:
            if kv.key.model_name not in ("", "candidate") or not kv.value.HasField(
                "multi_class_confusion_matrix_at_thresholds"
            ):
                continue
            matrix: dict[tuple[int, int], float] = {}
            for entry in kv.value.multi_class_confusion_matrix_at_thresholds.matrices[0].entries:
                matrix[(entry.actual_class_id, entry.predicted_class_id)] = entry.num_weighted_examples
            summary.confusion = matrix
            actual: collections.Counter = collections.Counter()
            predicted: collections.Counter = collections.Counter()
            for (a, b), n in matrix.items():
                actual[a] += n
                predicted[b] += n
            for c in sorted(actual.keys() | predicted.keys()):
                tp = matrix.get((c, c), 0.0)
                precision = tp / predicted[c] if predicted[c] else float("nan")
                recall = tp / actual[c] if actual[c] else float("nan")
                summary.per_class[c] = {
                    "precision": precision,
                    "recall": recall,
                    "f1": f1_score(precision, recall),
                    "support": actual[c],
                }


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall; nan where either is undefined, 0 where both are 0."""
    if math.isnan(precision) or math.isnan(recall):
        return float("nan")
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _blessing_reason(evaluation_uri: str, summary: RunSummary) -> str:
    import tensorflow_model_analysis as tfma

    try:
        result = tfma.load_validation_result(evaluation_uri)
    except Exception:  # noqa: BLE001
        return ""
    if result.validation_ok:
        return "first model: change threshold skipped" if result.rubber_stamp else "all thresholds met"
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            slice_name = _slice_name(per_slice.slice_key)
            value = failure.metric_value.double_value.value
            if failure.metric_key.is_diff:
                both = ""
                if slice_name == "overall" and summary.overall and summary.baseline_accuracy is not None:
                    both = f" (candidate {summary.overall.accuracy:.4f}, baseline {summary.baseline_accuracy:.4f})"
                reasons.append(f"{failure.metric_key.name} change on {slice_name} = {value:+.4f}{both} "
                               f"fails {_threshold_text(failure.metric_threshold)}")
            else:
                reasons.append(f"{failure.metric_key.name} on {slice_name} = {value:.4f} "
                               f"fails {_threshold_text(failure.metric_threshold)}")
    return "; ".join(reasons) or "validation failed"


def _threshold_text(threshold: Any) -> str:
    if threshold.HasField("value_threshold"):
        return f"lower bound {threshold.value_threshold.lower_bound.value:g}"
    if threshold.HasField("change_threshold"):
        return f"allowed change {threshold.change_threshold.absolute.value:+g} vs baseline"
    return "threshold"


def _node_name(store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == "node":
            return context.name.split(".", 1)[-1]
        if context.type == "component_run" and "component_id" in context.properties:
            return context.properties["component_id"].string_value
    return str(execution.id)


def read_run(metadata_path: str, run_id: str) -> RunSummary:
    """Collect a RunSummary for pipeline run ``run_id`` from MLMD at ``metadata_path``."""
    summary = RunSummary(run_id=run_id)
    store = _store(metadata_path)
    run_ctx = next(filter(None, (store.get_context_by_type_and_name(t, run_id) for t in _RUN_CONTEXT_TYPES)), None)
    if run_ctx is None:
        return summary
    execution_types = {t.id: t.name for t in store.get_execution_types()}
    for execution in sorted(store.get_executions_by_context(run_ctx.id), key=lambda e: e.id):
        node = _node_name(store, execution)
        state = _STATE_NAMES.get(execution.last_known_state, "unknown")
        if execution_types.get(execution.type_id, "").endswith(".Resolver"):
            state = "resolved"  # a resolver is an input query, not a component run
        summary.node_states[node] = state
        summary.node_seconds[node] = max(0.0, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000)
        outputs = _outputs(store, execution.id)
        if node == INFERENCE_NODE:
            from components.image_example_gen.executor import read_rejected

            for artifact in outputs.get("rejected", []):
                summary.inference_rejected = read_rejected(artifact.uri)
            continue
        for artifact in outputs.get("predictions", []):
            from components.predictions_writer.component import NUM_PREDICTIONS_PROPERTY, PREDICTIONS_FILE

            summary.predictions_path = os.path.join(artifact.uri, PREDICTIONS_FILE)
            summary.predictions_count = _prop(artifact, NUM_PREDICTIONS_PROPERTY)
        for artifact in outputs.get("rejected", []):
            from components.image_example_gen.executor import EMPTY_CLASS_FOLDERS_PROPERTY, read_rejected

            summary.rejected = read_rejected(artifact.uri)
            summary.empty_class_folders = _json_prop(artifact, EMPTY_CLASS_FOLDERS_PROPERTY) or []
        for artifact in outputs.get("report", []):
            from components.data_gate.component import CLASS_COUNTS_PROPERTY, DRIFT_PROPERTY

            summary.class_counts = json.loads(_prop(artifact, CLASS_COUNTS_PROPERTY) or "{}")
            summary.drift = json.loads(_prop(artifact, DRIFT_PROPERTY) or "{}")
        for artifact in outputs.get("result", []):
            from components.classical_baseline import read_result

            summary.classical = read_result(artifact.uri)
        for artifact in outputs.get("statistics", []):
            summary.split_counts = _split_counts(artifact.uri)
        for artifact in outputs.get("anomalies", []):
            from tfx.types import standard_artifacts

            from components.data_gate import read_anomalies

            tfx_artifact = standard_artifacts.ExampleAnomalies()
            tfx_artifact.set_mlmd_artifact(artifact)
            summary.anomalies = read_anomalies(tfx_artifact)
        for artifact in outputs.get("best_hyperparameters", []):
            config = _read_json(os.path.join(artifact.uri, "best_hyperparameters.txt")) or {}
            summary.best_hyperparameters = config.get("values", {})
        for artifact in outputs.get("tuner_results", []):
            rows = _read_json(os.path.join(artifact.uri, "tuner_results.json")) or []
            summary.trials = rows
            if rows:
                summary.best_trial_score = rows[0].get("score")
        for artifact in outputs.get("evaluation", []):
            _metrics(summary, artifact.uri)
            summary.blessing_reason = _blessing_reason(artifact.uri, summary)
        for artifact in outputs.get("blessing", []):
            summary.blessed = _prop(artifact, "blessed") == 1
            if _prop(artifact, "not_blessed_reason"):
                summary.blessing_reason = _prop(artifact, "not_blessed_reason")
        for artifact in outputs.get("infra_blessing", []):
            from components.serving_check import read_result as read_serving_check

            summary.serving_check = read_serving_check(artifact.uri)
        for artifact in outputs.get("model", []):
            summary.model_dir = os.path.join(artifact.uri, "Format-Serving")
            meta = _read_json(os.path.join(summary.model_dir, features.MODEL_METADATA_FILE)) or {}
            summary.architecture = meta.get("architecture") or {}
        for artifact in outputs.get("tflite_models", []):
            from components.tflite_check.executor import read_check

            summary.tflite = read_check(artifact.uri)
        for artifact in outputs.get("pushed_model", []):
            summary.pushed = _prop(artifact, "pushed") == 1
            summary.pushed_path = _prop(artifact, "pushed_destination") or ""
            summary.pushed_version = _prop(artifact, "pushed_version") or ""
            summary.not_pushed_reason = _prop(artifact, "not_pushed_reason") or ""
            summary.classes_added = _json_prop(artifact, "classes_added") or []
            summary.classes_removed = _json_prop(artifact, "classes_removed") or []
    return summary


def format_summary(summary: RunSummary, class_names: Optional[list[str]] = None) -> str:
    """The short human summary printed at the end of a run."""
    lines = [f"lenspipe run {summary.run_id}"]
    lines.append(
        f"  components: {len(summary.executed)} executed, {len(summary.cached)} cached"
        + (f", FAILED: {', '.join(summary.failed)}" if summary.failed else "")
    )
    if summary.split_counts:
        lines.append("  examples:   " + ", ".join(f"{k} {v}" for k, v in summary.split_counts.items()))
    train_counts = summary.class_counts.get("train", {})
    if train_counts:
        shown = ", ".join(f"{name} {n}" for name, n in list(train_counts.items())[:20])
        more = f", ... ({len(train_counts)} classes)" if len(train_counts) > 20 else ""
        lines.append(f"  classes:    {len(train_counts)}; train images per class: {shown}{more}")
    if summary.empty_class_folders:
        lines.append(f"  empty class folders (not classes): {', '.join(summary.empty_class_folders)}")
    lines.append(f"  skipped:    {len(summary.rejected)} file(s)")
    for row in summary.rejected[:10]:
        lines.append(f"    - {row.get('path')}: {row.get('reason')}")
    if len(summary.rejected) > 10:
        lines.append(f"    ... and {len(summary.rejected) - 10} more (see the ImageExampleGen 'rejected' artifact)")
    lines.append(f"  anomalies:  {len(summary.anomalies) or 'none'}")
    if summary.drift.get("features"):
        shown = ", ".join(f"{f['feature']} {'JSD' if 'Jensen' in f['measure'] else 'L-inf'} {f['distance']:.3f} "
                          f"(max {f['threshold']:g})" for f in summary.drift["features"])
        lines.append(f"  drift:      vs the span of serving version {summary.drift.get('version')}: {shown}")
    for line in summary.anomalies[:10]:
        lines.append(f"    - {line}")
    if summary.best_hyperparameters:
        hp = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(summary.best_hyperparameters.items()))
        score = f" (val_accuracy {summary.best_trial_score:.4f})" if summary.best_trial_score is not None else ""
        lines.append(f"  best trial: {hp}{score}")
    if summary.architecture.get("name", "cnn") != "cnn":
        lines.append(f"  model:      {architecture_text(summary.architecture)}")
    if summary.overall:
        f1 = summary.macro_f1
        lines.append(
            f"  test accuracy: {summary.overall.accuracy:.4f} on {summary.overall.count} held-out images"
            + (f" (macro F1 {f1:.4f})" if f1 is not None else "")
        )
    if summary.classical.get("test_accuracy") is not None:
        c = summary.classical
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted((c.get("params") or {}).items()))
        lines.append(
            f"  classical baseline: {c['test_accuracy']:.4f} ({c.get('method')} on {c.get('image_size')}x{c.get('image_size')} "
            f"grey pixels{', ' + params if params else ''}; same split)"
        )
    if summary.worst_slice:
        w = summary.worst_slice
        lines.append(f"  worst slice:   {w.slice_name}: accuracy {w.accuracy:.4f} ({w.count} images)")
    measured = {c: v for c, v in summary.per_class.items() if not math.isnan(v["recall"])}
    if measured:
        cid = min(measured, key=lambda c: measured[c]["recall"])
        vals = measured[cid]
        lines.append(
            f"  weakest class: {_class_label(cid, class_names)}: recall {_ratio(vals['recall'])}, "
            f"precision {_ratio(vals['precision'])}"
        )
    if summary.blessed is not None:
        lines.append(f"  blessed:    {'yes' if summary.blessed else 'NO'} ({summary.blessing_reason})")
    if summary.classes_added or summary.classes_removed:
        lines.append(
            f"  classes changed vs the serving version: added {', '.join(summary.classes_added) or 'none'}; "
            f"removed {', '.join(summary.classes_removed) or 'none'}"
        )
    lines += _tflite_lines(summary)
    if summary.predictions_path:
        lines.append(f"  predictions: {summary.predictions_count or 0} image(s) -> {summary.predictions_path} (+ .csv); "
                     f"skipped {len(summary.inference_rejected)} file(s)")
        lines += [f"    - {r.get('path')}: {r.get('reason')}" for r in summary.inference_rejected[:10]]
    if summary.serving_check:
        lines.append(format_serving_check(summary.serving_check))
    if summary.pushed:
        lines.append(f"  pushed:     version {summary.pushed_version} -> {summary.pushed_path}")
    elif summary.pushed is not None:
        lines.append(f"  pushed:     nothing ({summary.not_pushed_reason or 'model not blessed'})")
    elif summary.failed:
        lines.append("  pushed:     nothing (the run stopped before the Pusher)")
    return "\n".join(lines)


def format_serving_check(result: dict[str, Any]) -> str:
    """One line: the serving check's verdict, requests, max |dp| and latencies (or which check failed)."""
    requests = result.get("requests") or {}
    parts = [f"{requests.get('rest', 0)} REST + {requests.get('grpc', 0)} gRPC requests"]
    if result.get("max_abs_diff") is not None:
        parts.append(f"max |dp| {result['max_abs_diff']:.2g} (limit {result.get('max_abs_diff_allowed', 0):g})")
    for api, stats in sorted((result.get("latency_ms") or {}).items()):
        parts.append(f"{api} p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms")
    if result.get("latency_ms"):
        parts.append(f"budget p99 {result.get('max_p99_ms', 0):g} ms")
    verdict = "passed" if result.get("passed") else f"FAILED ({result.get('reason') or 'unknown'})"
    return f"  serving check: {verdict}; " + "; ".join(parts)


def architecture_text(architecture: dict[str, Any]) -> str:
    """'mobilenet_v3_small, weights <file> (sha256 ab12...); trained: head (backbone frozen) 10 epochs, then ...'."""
    weights = architecture.get("weights") or {}
    source = weights.get("source", "?") + (f" (sha256 {weights['sha256'][:12]}...)" if weights.get("sha256") else "")
    phases = "; then ".join(f"{p['trained']}, {p['epochs']} epochs" for p in architecture.get("phases", []))
    note = f"; {architecture['note']}" if architecture.get("note") else ""
    return f"{architecture.get('name')}, weights {source}; trained: {phases}{note}"


def format_markdown(summary: RunSummary, class_names: Optional[list[str]] = None) -> str:
    """The full evaluation report of a run as Markdown: slices, per-class table, confusion matrix."""
    def name(cid: int) -> str:
        return _class_label(cid, class_names)

    lines = [f"# lenspipe run {summary.run_id}", "", "```", format_summary(summary, class_names), "```", ""]
    if summary.slices:
        lines += ["## Accuracy by slice (held-out test split)", "", "| slice | accuracy | images |", "|---|---:|---:|"]
        for s in sorted(summary.slices, key=lambda s: (s.slice_name != "overall", s.slice_name)):
            lines.append(f"| {s.slice_name} | {s.accuracy:.4f} | {s.count} |")
        lines.append("")
    if summary.per_class:
        lines += ["## Per class (argmax)", "", "| class | precision | recall | F1 | images |", "|---|---:|---:|---:|---:|"]
        for cid, v in sorted(summary.per_class.items()):
            lines.append(
                f"| {name(cid)} | {_ratio(v['precision'])} | {_ratio(v['recall'])} | {_ratio(v['f1'])} | {int(v['support'])} |"
            )
        lines += ["", f"Macro F1: {_ratio(summary.macro_f1)}", ""]
    if summary.confusion:
        ids = sorted({a for a, _ in summary.confusion} | {b for _, b in summary.confusion})
        lines += ["## Confusion matrix (rows: true class, columns: predicted)", ""]
        lines.append("| true \\ predicted | " + " | ".join(name(i) for i in ids) + " |")
        lines.append("|---|" + "---:|" * len(ids))
        for a in ids:
            lines.append(f"| {name(a)} | " + " | ".join(str(int(summary.confusion.get((a, b), 0))) for b in ids) + " |")
        lines.append("")
    if summary.tflite and summary.tflite.get("variants"):
        lines += ["## TensorFlow Lite variants (held-out test split)", "",
                  "| variant | accuracy | drop (points) | size (KiB) | latency (ms/image) | top-1 agreement | pushed |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for v in summary.tflite["variants"]:
            if "accuracy" not in v:
                lines.append(f"| {v['variant']} | | | | | | no: {v.get('reason', '')} |")
                continue
            lines.append(
                f"| {v['variant']} | {v['accuracy']:.4f} | {100 * v['accuracy_drop']:+.2f} | {v['size_bytes'] / 1024:.1f} "
                f"| {v['latency_ms']:.3f} | {100 * v['top1_agreement']:.1f}% | {'yes' if v['passed'] else 'no: ' + v['reason']} |"
            )
        lines.append("")
    if summary.rejected:
        lines += ["## Skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| {r.get('path')} | {r.get('reason')} |" for r in summary.rejected]
        lines.append("")
    if summary.anomalies:
        lines += ["## Anomalies", ""] + [f"- {a}" for a in summary.anomalies] + [""]
    return "\n".join(lines)


def _tflite_lines(summary: RunSummary) -> list[str]:
    """One line per TFLite variant: accuracy, drop vs the SavedModel, size, latency, agreement, pushed."""
    check = summary.tflite
    if not check:
        return []
    if check.get("skipped"):
        return [f"  tflite:     none built ({check['skipped']})"]
    ref = check.get("reference_accuracy")
    lines = [f"  tflite:     input uint8 {check.get('input_shape')}, {check.get('images')} test images, "
             f"SavedModel accuracy {ref:.4f}" if ref is not None else "  tflite:"]
    for v in check.get("variants", []):
        if "accuracy" not in v:
            lines.append(f"    {v['variant']:<13} NOT pushed: {v.get('reason', '')}")
            continue
        verdict = "pushed" if v["passed"] and summary.pushed else ("passed" if v["passed"] else f"NOT pushed: {v['reason']}")
        lines.append(
            f"    {v['variant']:<13} accuracy {v['accuracy']:.4f} ({100 * v['accuracy_drop']:+.2f} pt drop), "
            f"{v['size_bytes'] / 1024:.0f} KiB, {v['latency_ms']:.2f} ms/image, "
            f"top-1 agreement {100 * v['top1_agreement']:.1f}%: {verdict}"
        )
    return lines


def write_markdown(summary: RunSummary, path: str, class_names: Optional[list[str]] = None) -> None:
    """Write format_markdown() to ``path`` (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(format_markdown(summary, class_names))
    os.replace(tmp, path)


def _class_label(class_id: int, class_names: Optional[list[str]]) -> str:
    """A class id as its name (from the model's vocabulary) when known."""
    names = class_names or []
    return names[class_id] if class_id < len(names) else f"class {class_id}"


def _ratio(v: Optional[float]) -> str:
    """A metric in [0, 1]; 'n/a' where it is undefined (e.g. precision of a class never predicted)."""
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def class_names_of(model_dir: str) -> list[str]:
    """Class names recorded by the trainer beside the model, if any."""
    meta = _read_json(os.path.join(model_dir, features.MODEL_METADATA_FILE)) or {}
    return list(meta.get("class_names", []))


__all__ = [
    "RunSummary", "SliceMetric", "class_names_of", "format_markdown", "format_summary", "latest_run_id", "read_run",
    "write_markdown",
]
