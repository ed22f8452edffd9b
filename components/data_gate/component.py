"""DataGate: read ExampleValidator's anomalies; pass, or fail the run with a readable list.

ExampleValidator only records anomalies; nothing in TFX stops on them. Transform
is wired downstream of this gate, so a failed gate means nothing is transformed,
trained or pushed. The gate also stops a run whose eval or test split shows a class
the train split does not (it would get no class id), naming the class and its files,
and records the images per class and split (``class_counts``) for the summary.

Given the statistics of the span the serving model was trained on (``baseline_statistics``,
resolved through ML Metadata by lineage.ServingSpanStatisticsStrategy), it also stops a run
whose class list changed (unless ``allow_class_change``) or whose label distribution or image
properties drifted above the ``drift`` config's thresholds (drift.py), and records every
measured distance (``drift``) for the summary.
"""


import json
import os
from typing import Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from components.data_gate import classes, drift
from lenspipe.artifacts import DataGateReport
from lenspipe.config import DriftConfig

REPORT_FILE = "anomalies.txt"
CLASS_COUNTS_PROPERTY = "class_counts"  # JSON {split: {class name: images}}
DRIFT_PROPERTY = "drift"  # JSON {"version": serving version, "features": [{feature, measure, distance, threshold, source}]}
_SCHEMA_DIFF = "SchemaDiff.pb"


class DataGateFailed(RuntimeError):
    """The data has anomalies against the schema; the message lists them."""


def read_anomalies(anomalies: types.Artifact) -> list[str]:
    """One line per anomaly, ``split: feature: description``, from an ExampleAnomalies artifact."""
    lines = []
    for split in sorted(artifact_utils.decode_split_names(anomalies.split_names)):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), _SCHEMA_DIFF)
        if not fileio.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        with fileio.open(path, "rb") as f:
            proto.ParseFromString(f.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            detail = info.description or info.short_description
            lines.append(f"{split}: feature '{feature}': {detail}")
        if proto.HasField("dataset_anomaly_info"):
            info = proto.dataset_anomaly_info
            lines.append(f"{split}: dataset: {info.description or info.short_description}")
    return lines


def unseen_class_message(examples: types.Artifact, unseen: dict) -> str:
    """One line naming each class missing from train, the split that shows it, and a few of its files."""
    parts = []
    for split, names in sorted(unseen.items()):
        paths = classes.files_of(examples, split, names)
        for name in names:
            shown = ", ".join(paths[name]) + (", ..." if len(paths[name]) >= classes.FILES_NAMED else "")
            parts.append(f"class '{name}' is in the {split} split but not in train ({shown})")
    return (
        "data gate: " + "; ".join(parts) + ". Add training images of it (more files in its folder), "
        "or remove its folder; nothing was trained or pushed."
    )


@component
def DataGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    examples: InputArtifact[standard_artifacts.Examples],
    report: OutputArtifact[DataGateReport],
    schema: InputArtifact[standard_artifacts.Schema] = None,
    baseline_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    serving_push: InputArtifact[standard_artifacts.PushedModel] = None,
    drift_config: Parameter[str] = "{}",
    allow_class_change: Parameter[bool] = False,
    code_version: Parameter[str] = "",
) -> None:
    """Raise DataGateFailed for anomalies, a class missing from train, a changed class list or drift; else record a clean report.

    ``drift_config`` is the ``drift`` config section as JSON (re-validated here);
    ``code_version`` (the hash of this component's sources) only keys the cache.
    """
    del code_version
    cfg = DriftConfig.model_validate_json(drift_config)
    lines = read_anomalies(anomalies)
    with fileio.open(os.path.join(report.uri, REPORT_FILE), "w") as f:
        f.write("".join(line + "\n" for line in lines))
    report.set_int_custom_property("num_anomalies", len(lines))
    counts = classes.class_counts(statistics)
    report.set_string_custom_property(CLASS_COUNTS_PROPERTY, json.dumps(counts, sort_keys=True))
    unseen = classes.unseen_in_train(counts)
    if unseen:
        raise DataGateFailed(unseen_class_message(examples, unseen))
    if lines:
        raise DataGateFailed(
            f"data gate: {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} against the schema; "
            "nothing was trained or pushed. Fix the data, or pass a curated schema "
            "(--set data.schema_file=schema.pbtxt):\n  " + "\n  ".join(lines)
        )
    if cfg.enabled and baseline_statistics is not None and schema is not None:
        check_drift(statistics, baseline_statistics, schema, serving_push, counts, cfg, allow_class_change, report)


def _serving_version(push: Optional[types.Artifact]) -> str:
    if push is None:
        return "?"
    return push.get_string_custom_property("pushed_version") or "?"


def check_drift(
    statistics: types.Artifact,
    baseline_statistics: types.Artifact,
    schema: types.Artifact,
    serving_push: Optional[types.Artifact],
    counts: dict,
    cfg: DriftConfig,
    allow_class_change: bool,
    report: types.Artifact,
) -> None:
    """Compare this span with the serving model's span: record every distance, raise DataGateFailed past a threshold."""
    from tfx.utils import io_utils

    version = _serving_version(serving_push)
    new, vanished = drift.class_changes(counts, classes.class_counts(baseline_statistics))
    current, previous = drift.split_statistics(statistics), drift.split_statistics(baseline_statistics)
    measured = []
    if current is not None and previous is not None:
        schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
        measured = drift.measure(current, previous, schema_proto, cfg)
    report.set_string_custom_property(DRIFT_PROPERTY, json.dumps({
        "version": version,
        "new_classes": new,
        "vanished_classes": vanished,
        "features": [m.__dict__ for m in measured],
    }, sort_keys=True))
    if (new or vanished) and not allow_class_change:
        raise DataGateFailed(drift.class_change_message(new, vanished, version))
    drifted = [m for m in measured if m.drifted]
    if drifted:
        raise DataGateFailed(drift.drift_message(drifted, version))
