"""Drift between spans: the new span's statistics against those of the span the serving model learned from.

TFDV measures it: each compared feature gets a ``drift_comparator`` in a copy of the
schema (L-infinity for the categorical label and format, Jensen-Shannon divergence for
the numeric image properties) and ``tfdv.validate_statistics`` runs with the serving
span's statistics as ``previous_statistics``. A curated schema's own comparator on a
feature wins over the config's threshold, so curating the schema is how a change is
accepted for good. A class that appears or vanishes is reported apart (the class ids move).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Tuple

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from lenspipe import features
from lenspipe.config import DriftConfig

SPLIT = "train"  # the model learned from the train split; every split of a span has the same distribution
L_INFTY = "L-infinity distance"
JSD = "Jensen-Shannon divergence"
# (feature, measure, the drift config field holding its threshold)
COMPARED: Tuple[Tuple[str, str, str], ...] = (
    (features.LABEL_NAME_KEY, L_INFTY, "label_linf"),
    (features.WIDTH_KEY, JSD, "width_jsd"),
    (features.HEIGHT_KEY, JSD, "height_jsd"),
    (features.BRIGHTNESS_KEY, JSD, "brightness_jsd"),
    (features.CHANNELS_KEY, JSD, "channels_jsd"),
    (features.FORMAT_KEY, L_INFTY, "format_linf"),
)
_MEASURES = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: L_INFTY,
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: JSD,
}
_STATS_FILE = "FeatureStats.pb"


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One feature's distance between the spans, and the threshold it was held to."""

    feature: str
    measure: str
    distance: float
    threshold: float
    source: str  # "drift.<field>" (the config) or "schema" (a curated schema's comparator)

    @property
    def drifted(self) -> bool:
        return self.distance > self.threshold

    def line(self) -> str:
        how = (f"raise it for this run with --{self.source} {_above(self.distance)}" if self.source != "schema"
               else "raise the drift_comparator threshold in the curated schema")
        return (f"feature '{self.feature}': {self.measure} {self.distance:.4f} is above the threshold "
                f"{self.threshold:g} ({self.source}); to accept the change, {how}, or curate the schema "
                f"(--set data.schema_file=schema.pbtxt with a drift_comparator on '{self.feature}')")


def _above(value: float) -> str:
    """A round threshold just above ``value`` (what to pass to accept this distance)."""
    return f"{min(1.0, (int(value * 100) + 1) / 100):g}"


def split_statistics(statistics: types.Artifact, split: str = SPLIT) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    """One split of an ExampleStatistics artifact as TFDV wrote it, or None if that split is absent."""
    if split not in artifact_utils.decode_split_names(statistics.split_names):
        return None
    path = os.path.join(artifact_utils.get_split_uri([statistics], split), _STATS_FILE)
    if not fileio.exists(path):
        return None
    return tfdv.load_stats_binary(path)


def schema_with_comparators(schema: schema_pb2.Schema, cfg: DriftConfig) -> tuple[schema_pb2.Schema, Dict[str, str]]:
    """A copy of ``schema`` with a drift comparator on every compared feature, and {feature: where its threshold came from}.

    A feature the schema lacks (a curated schema may leave one out) is not compared.
    """
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    by_name = {f.name: f for f in out.feature}
    sources = {}
    for key, measure, field in COMPARED:
        feature = by_name.get(key)
        if feature is None:
            continue
        comparator = feature.drift_comparator
        if comparator.HasField("infinity_norm") or comparator.HasField("jensen_shannon_divergence"):
            sources[key] = "schema"
            continue
        threshold = getattr(cfg, field)
        if measure == L_INFTY:
            comparator.infinity_norm.threshold = threshold
        else:
            comparator.jensen_shannon_divergence.threshold = threshold
        sources[key] = f"drift.{field}"
    return out, sources


def measure(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    cfg: DriftConfig,
) -> List[Measurement]:
    """Every compared feature's distance between ``current`` and ``previous`` (TFDV's comparators), in COMPARED order."""
    with_comparators, sources = schema_with_comparators(schema, cfg)
    anomalies = tfdv.validate_statistics(current, with_comparators, previous_statistics=previous)
    found: Dict[str, Measurement] = {}
    for info in anomalies.drift_skew_info:
        key = info.path.step[-1] if info.path.step else ""
        if key not in sources:
            continue
        for m in info.drift_measurements:
            if m.type in _MEASURES:
                found[key] = Measurement(key, _MEASURES[m.type], float(m.value), float(m.threshold), sources[key])
    return [found[key] for key, _, _ in COMPARED if key in found]


def class_changes(current: Mapping[str, Mapping[str, int]], previous: Mapping[str, Mapping[str, int]]) -> tuple[list, list]:
    """(new, vanished) class names between two ``classes.class_counts`` results (all splits together)."""
    now = {name for counts in current.values() for name in counts}
    before = {name for counts in previous.values() for name in counts}
    return sorted(now - before), sorted(before - now)


def class_change_message(new: list, vanished: list, version: str) -> str:
    """One line naming each new and vanished class against the serving version, and how to accept it."""
    parts = [f"new class '{name}'" for name in new] + [f"vanished class '{name}'" for name in vanished]
    return (
        f"data gate: the class list changed against the span serving version {version} was trained on: "
        + ", ".join(parts)
        + "; nothing was trained or pushed. Class ids would move, so the Pusher refuses such a model too: "
        "to accept the change, re-run with --allow-class-change (clients that stored class ids must be updated)."
    )


def drift_message(drifted: List[Measurement], version: str) -> str:
    """The gate's failure text: one line per drifted feature with its distance, threshold and how to accept it."""
    return (
        f"data gate: the new span drifted from the span serving version {version} was trained on "
        f"({len(drifted)} feature{'' if len(drifted) == 1 else 's'}); nothing was trained or pushed:\n  "
        + "\n  ".join(m.line() for m in drifted)
    )
