"""The run summary: reading MLMD (a real store built here) and what the summary says."""

from __future__ import annotations

import math

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from pipeline import report


def _store(path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return mlmd.MetadataStore(config)


def test_read_run_collects_states_push_outcome_and_class_change(tmp_path):
    path = tmp_path / "m.sqlite"
    store = _store(path)
    ctx_types = {n: store.put_context_type(metadata_store_pb2.ContextType(name=n)) for n in ("pipeline", "pipeline_run", "node")}
    exec_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="VersionedPusher"))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    pushed.set_int_custom_property("pushed", 0)
    pushed.set_json_value_custom_property("classes_added", ["owl"])
    pushed.set_json_value_custom_property("classes_removed", [])
    pushed.set_string_custom_property("not_pushed_reason", "the class list changed")
    artifact = pushed.mlmd_artifact
    artifact.type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    execution = metadata_store_pb2.Execution(
        type_id=exec_type, last_known_state=metadata_store_pb2.Execution.COMPLETE
    )
    contexts = [
        metadata_store_pb2.Context(type_id=ctx_types["pipeline"], name="lenspipe"),
        metadata_store_pb2.Context(type_id=ctx_types["pipeline_run"], name="run-1"),
        metadata_store_pb2.Context(type_id=ctx_types["node"], name="lenspipe.VersionedPusher"),
    ]
    event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
    event.path.steps.add().key = "pushed_model"
    store.put_execution(execution, [(artifact, event)], contexts)
    del store

    assert report.latest_run_id(str(path), "lenspipe") == "run-1"
    assert report.latest_run_id(str(path), "other") is None
    summary = report.read_run(str(path), "run-1")
    assert summary.node_states == {"VersionedPusher": "complete"}
    assert summary.pushed is False
    assert summary.classes_added == ["owl"] and summary.classes_removed == []
    text = report.format_summary(summary)
    assert "classes changed vs the serving version: added owl; removed none" in text
    assert "pushed:     nothing (the class list changed)" in text


def test_f1_and_macro_f1():
    assert report.f1_score(1.0, 0.5) == 2 / 3
    assert report.f1_score(0.0, 0.0) == 0.0
    assert math.isnan(report.f1_score(float("nan"), 1.0))
    summary = report.RunSummary(run_id="r")
    summary.per_class = {
        0: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 5},
        1: {"precision": float("nan"), "recall": 0.0, "f1": float("nan"), "support": 2},  # never predicted
        2: {"precision": 0.0, "recall": float("nan"), "f1": float("nan"), "support": 0},  # no test images
    }
    assert summary.macro_f1 == 0.5  # classes with images only; an undefined F1 counts as 0


def test_summary_lines_for_the_classical_baseline_and_a_failed_gate():
    summary = report.RunSummary(run_id="r")
    summary.overall = report.SliceMetric("overall", 0.9, 100)
    summary.classical = {"test_accuracy": 0.95, "method": "svm", "image_size": 8, "params": {"C": 10.0, "gamma": 0.3}}
    summary.blessed, summary.blessing_reason = False, "the CNN's test accuracy 0.9000 is below the classical baseline's 0.9500"
    summary.pushed, summary.not_pushed_reason = False, "model not blessed"
    summary.class_counts = {"train": {"a": 3, "b": 4}}
    summary.empty_class_folders = ["hollow"]
    text = report.format_summary(summary)
    assert "classical baseline: 0.9500 (svm on 8x8 grey pixels, C=10, gamma=0.3; same split)" in text
    assert "blessed:    NO (the CNN's test accuracy 0.9000 is below" in text
    assert "classes:    2; train images per class: a 3, b 4" in text
    assert "empty class folders (not classes): hollow" in text


def test_summary_prints_the_serving_check_before_the_push_and_why_it_failed():
    passed = {"passed": True, "requests": {"rest": 181, "grpc": 181}, "max_abs_diff": 2.9e-08,
              "max_abs_diff_allowed": 1e-06, "latency_ms": {"rest": {"p50": 1.5, "p99": 4.25}, "grpc": {"p50": 1.2, "p99": 3.0}},
              "max_p99_ms": 250.0}
    summary = report.RunSummary(run_id="r", serving_check=passed, pushed=True, pushed_version="3", pushed_path="/s/3")
    lines = report.format_summary(summary).splitlines()
    check = next(i for i, line in enumerate(lines) if line.startswith("  serving check:"))
    assert lines[check] == ("  serving check: passed; 181 REST + 181 gRPC requests; max |dp| 2.9e-08 (limit 1e-06); "
                            "grpc p50 1.2 ms, p99 3.0 ms; rest p50 1.5 ms, p99 4.2 ms; budget p99 250 ms")
    assert lines[check + 1].startswith("  pushed:     version 3")

    failed = {"passed": False, "reason": "load: the server exited (code 1)", "requests": {"rest": 0, "grpc": 0}}
    reason = "serving check failed: load: the server exited (code 1)"
    text = report.format_summary(report.RunSummary(run_id="r", serving_check=failed, pushed=False, not_pushed_reason=reason))
    assert "  serving check: FAILED (load: the server exited (code 1)); 0 REST + 0 gRPC requests" in text
    assert f"  pushed:     nothing ({reason})" in text
