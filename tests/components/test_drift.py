"""Drift between spans: TFDV's comparators on real statistics, the gate's messages, and the MLMD lineage lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.data_gate import drift, lineage
from components.data_gate.component import DRIFT_PROPERTY, DataGateFailed, check_drift
from components.data_gate import classes
from lenspipe import features
from lenspipe.config import DriftConfig
from lenspipe.artifacts import DataGateReport

N = 300  # images per span: two samples of one distribution stay well under the default thresholds


def span(root, name, seed, brightness=(60.0, 120.0), labels=("cat", "dog"), weights=None):
    """An ExampleStatistics artifact (train split, statistics computed by TFDV) of one synthetic span of N images."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        features.LABEL_NAME_KEY: rng.choice(labels, size=N, p=weights).astype(object),
        features.BRIGHTNESS_KEY: rng.uniform(*brightness, size=N),
        features.WIDTH_KEY: rng.integers(28, 36, size=N),
        features.HEIGHT_KEY: rng.integers(28, 36, size=N),
        features.CHANNELS_KEY: np.ones(N, dtype=np.int64),
        features.FORMAT_KEY: np.array(["png"] * N, dtype=object),
    })
    stats_dir = root / name / "Split-train"
    stats_dir.mkdir(parents=True)
    stats = tfdv.generate_statistics_from_dataframe(frame, n_jobs=1)  # in-process: no Beam pipeline per span
    (stats_dir / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(root / name)
    artifact.split_names = artifact_utils.encode_split_names(["train"])
    return artifact


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    out = {
        "base": span(root, "base", 1),
        "similar": span(root, "similar", 2),
        "brighter": span(root, "brighter", 3, brightness=(160.0, 220.0)),
        # A new class and a shifted balance: L-infinity = the owl's 0.3 share
        "relabelled": span(root, "relabelled", 4, labels=("cat", "dog", "owl"), weights=[0.45, 0.25, 0.3]),
    }
    schema = tfdv.infer_schema(drift.split_statistics(out["base"]))
    schema_dir = root / "schema"
    schema_dir.mkdir()
    io_utils.write_pbtxt_file(str(schema_dir / "schema.pbtxt"), schema)
    out["schema"] = schema
    schema_artifact = standard_artifacts.Schema()
    schema_artifact.uri = str(schema_dir)
    out["schema_artifact"] = schema_artifact
    return out


def _measure(spans, name, cfg=DriftConfig(), schema=None):
    return drift.measure(drift.split_statistics(spans[name]), drift.split_statistics(spans["base"]),
                         schema or spans["schema"], cfg)


def test_a_similar_span_is_measured_on_every_feature_and_passes(spans):
    measured = _measure(spans, "similar")
    assert [m.feature for m in measured] == [key for key, _, _ in drift.COMPARED]
    assert not [m for m in measured if m.drifted], measured
    by = {m.feature: m for m in measured}
    assert by[features.BRIGHTNESS_KEY].measure == drift.JSD and by[features.LABEL_NAME_KEY].measure == drift.L_INFTY
    assert by[features.BRIGHTNESS_KEY].distance > 0  # a real measurement, not a default


def test_shifted_brightness_drifts_and_the_message_says_how_to_accept(spans):
    measured = _measure(spans, "brighter")
    drifted = [m for m in measured if m.drifted]
    assert [m.feature for m in drifted] == [features.BRIGHTNESS_KEY]
    m = drifted[0]
    assert m.distance > 0.5 and m.threshold == 0.1 and m.source == "drift.brightness_jsd"
    text = drift.drift_message(drifted, "1")
    assert "serving version 1" in text and "nothing was trained or pushed" in text
    line = text.splitlines()[1]
    assert f"feature 'brightness': Jensen-Shannon divergence {m.distance:.4f} is above the threshold 0.1" in line
    assert "--drift.brightness_jsd " in line and "data.schema_file" in line
    # Raising the threshold for one run accepts it; the suggested value does.
    suggested = float(line.split("--drift.brightness_jsd ")[1].split(",")[0])
    assert not [m for m in _measure(spans, "brighter", DriftConfig(brightness_jsd=suggested)) if m.drifted]


def test_a_shifted_label_distribution_drifts_by_l_infinity(spans):
    drifted = [m for m in _measure(spans, "relabelled") if m.drifted]
    assert [m.feature for m in drifted] == [features.LABEL_NAME_KEY]
    assert drifted[0].measure == drift.L_INFTY and 0.2 < drifted[0].distance < 0.4


def test_a_curated_schema_comparator_wins_over_the_config(spans):
    from tensorflow_metadata.proto.v0 import schema_pb2

    curated = schema_pb2.Schema()
    curated.CopyFrom(spans["schema"])
    tfdv.get_feature(curated, features.BRIGHTNESS_KEY).drift_comparator.jensen_shannon_divergence.threshold = 1.0
    by = {m.feature: m for m in _measure(spans, "brighter", schema=curated)}
    assert by[features.BRIGHTNESS_KEY].source == "schema" and by[features.BRIGHTNESS_KEY].threshold == 1.0
    assert not by[features.BRIGHTNESS_KEY].drifted
    assert "raise the drift_comparator threshold in the curated schema" in by[features.BRIGHTNESS_KEY].line()


def test_new_and_vanished_classes_are_their_own_anomaly():
    new, vanished = drift.class_changes({"train": {"cat": 3, "owl": 1}, "test": {"cat": 1}},
                                        {"train": {"cat": 2, "dog": 2}})
    assert (new, vanished) == (["owl"], ["dog"])
    text = drift.class_change_message(new, vanished, "4")
    assert "\n" not in text
    assert "new class 'owl', vanished class 'dog'" in text and "serving version 4" in text
    assert "--allow-class-change" in text and "Pusher refuses" in text


def _report(tmp_path):
    report = DataGateReport()
    report.uri = str(tmp_path)
    return report


def _push(version):
    push = standard_artifacts.PushedModel()
    push.set_string_custom_property("pushed_version", version)
    return push


def test_the_gate_stops_on_a_new_class_unless_the_change_is_allowed(spans, tmp_path):
    current = spans["relabelled"]
    counts = classes.class_counts(current)
    cfg = DriftConfig(label_linf=1.0)  # only the class list is under test here
    with pytest.raises(DataGateFailed, match="new class 'owl'.*--allow-class-change"):
        check_drift(current, spans["base"], spans["schema_artifact"], _push("3"), counts, cfg, False, _report(tmp_path))
    report = _report(tmp_path)
    check_drift(current, spans["base"], spans["schema_artifact"], _push("3"), counts, cfg, True, report)
    recorded = json.loads(report.get_string_custom_property(DRIFT_PROPERTY))
    assert recorded["new_classes"] == ["owl"] and recorded["version"] == "3"
    assert len(recorded["features"]) == len(drift.COMPARED)


def test_the_gate_stops_on_drift_and_records_the_distances(spans, tmp_path):
    report = _report(tmp_path)
    current = spans["brighter"]
    with pytest.raises(DataGateFailed, match="feature 'brightness': Jensen-Shannon divergence"):
        check_drift(current, spans["base"], spans["schema_artifact"], _push("1"), classes.class_counts(current),
                    DriftConfig(), False, report)
    recorded = json.loads(report.get_string_custom_property(DRIFT_PROPERTY))
    assert [f["feature"] for f in recorded["features"] if f["distance"] > f["threshold"]] == [features.BRIGHTNESS_KEY]


# --- lineage: the serving model's training statistics, through ML Metadata -------------------------------

class _Store:
    """A real in-memory MLMD store with a tiny helper to log executions the way TFX does."""

    def __init__(self):
        config = metadata_store_pb2.ConnectionConfig()
        config.fake_database.SetInParent()
        self.store = metadata_store.MetadataStore(config)
        self.types = {}

    def artifact(self, type_name, **props):
        if type_name not in self.types:
            self.types[type_name] = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
        a = metadata_store_pb2.Artifact(type_id=self.types[type_name])
        for k, v in props.items():
            if isinstance(v, str):
                a.custom_properties[k].string_value = v
            else:
                a.custom_properties[k].int_value = v
        (a.id,) = self.store.put_artifacts([a])
        return a

    def execution(self, inputs, outputs):
        type_id = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name="Step"))
        (eid,) = self.store.put_executions([metadata_store_pb2.Execution(type_id=type_id)])
        events = []
        for kind, items in ((metadata_store_pb2.Event.INPUT, inputs), (metadata_store_pb2.Event.OUTPUT, outputs)):
            for key, artifact in items.items():
                e = metadata_store_pb2.Event(type=kind, artifact_id=artifact.id, execution_id=eid)
                e.path.steps.add().key = key
                events.append(e)
        self.store.put_events(events)


def _tfx(artifact, cls):
    out = cls()
    out.set_mlmd_artifact(artifact)
    return out


def _run(db, rolled_back=False, pushed=1, files="span-1 files"):
    """One run's lineage: ExampleGen -> StatisticsGen -> Trainer -> Pusher; returns (statistics, pushed model)."""
    examples = db.artifact("Examples", input_fingerprint=files)
    db.execution({}, {"examples": examples})
    stats = db.artifact("ExampleStatistics")
    db.execution({"examples": examples}, {"statistics": stats})
    model = db.artifact("Model", **({"lenspipe_rolled_back": 1} if rolled_back else {}))
    db.execution({"examples": examples}, {"model": model})
    push = db.artifact("PushedModel", pushed=pushed)
    db.execution({"model": model}, {"pushed_model": push})
    return _tfx(stats, standard_artifacts.ExampleStatistics), _tfx(push, standard_artifacts.PushedModel)


def _resolve(db, stats, pushes, current):
    return lineage.ServingSpanStatisticsStrategy().resolve_artifacts(db.store, {
        lineage.STATISTICS_KEY: stats, lineage.PUSHED_MODEL_KEY: pushes, lineage.CURRENT_KEY: current})


def test_lineage_finds_the_statistics_of_the_newest_serving_push():
    from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

    assert ROLLED_BACK_PROPERTY == "lenspipe_rolled_back"  # the name _run writes
    db = _Store()
    s1, p1 = _run(db)
    s2, p2 = _run(db, rolled_back=True, files="span-2 files")  # pushed, then taken out of service
    s3, p3 = _run(db, pushed=0, files="span-3 files")  # not pushed (not blessed)
    new_examples = db.artifact("Examples", input_fingerprint="span-4 files")
    current = db.artifact("ExampleStatistics")
    db.execution({"examples": new_examples}, {"statistics": current})
    current = _tfx(current, standard_artifacts.ExampleStatistics)
    got = _resolve(db, [s1, s2, s3, current], [p1, p2, p3], [current])
    assert [a.id for a in got[lineage.STATISTICS_KEY]] == [s1.id]
    assert [a.id for a in got[lineage.PUSHED_MODEL_KEY]] == [p1.id]


def test_lineage_resolves_nothing_on_a_first_run_or_against_this_runs_own_files():
    db = _Store()
    assert _resolve(db, [], [], [])[lineage.STATISTICS_KEY] == []
    s1, p1 = _run(db)
    assert _resolve(db, [s1], [p1], [s1])[lineage.STATISTICS_KEY] == []  # unchanged re-run: nothing to compare
    # The same files ingested again (a --no-cache run): new artifacts, same input fingerprint.
    again = db.artifact("Examples", input_fingerprint="span-1 files")
    s2 = db.artifact("ExampleStatistics")
    db.execution({"examples": again}, {"statistics": s2})
    s2 = _tfx(s2, standard_artifacts.ExampleStatistics)
    assert _resolve(db, [s1, s2], [p1], [s2])[lineage.STATISTICS_KEY] == []
    other = db.artifact("Examples", input_fingerprint="span-2 files")
    s3 = db.artifact("ExampleStatistics")
    db.execution({"examples": other}, {"statistics": s3})
    s3 = _tfx(s3, standard_artifacts.ExampleStatistics)
    assert [a.id for a in _resolve(db, [s1, s2, s3], [p1], [s3])[lineage.STATISTICS_KEY]] == [s1.id]
