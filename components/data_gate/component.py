"""DataGate: read ExampleValidator's anomalies; pass, or fail the run with a readable list.

ExampleValidator only records anomalies; nothing in TFX stops on them. Transform
is wired downstream of this gate, so a failed gate means nothing is transformed,
trained or pushed.
"""


import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from lenspipe.artifacts import DataGateReport

REPORT_FILE = "anomalies.txt"
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


@component
def DataGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    report: OutputArtifact[DataGateReport],
) -> None:
    """Raise DataGateFailed listing every anomaly; otherwise record a clean report."""
    lines = read_anomalies(anomalies)
    with fileio.open(os.path.join(report.uri, REPORT_FILE), "w") as f:
        f.write("".join(line + "\n" for line in lines))
    report.set_int_custom_property("num_anomalies", len(lines))
    if lines:
        raise DataGateFailed(
            f"data gate: {len(lines)} anomal{'y' if len(lines) == 1 else 'ies'} against the schema; "
            "nothing was trained or pushed. Fix the data, or pass a curated schema "
            "(--set data.schema_file=schema.pbtxt):\n  " + "\n  ".join(lines)
        )
