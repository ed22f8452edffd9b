"""The whole pipeline through the `lenspipe` command on ~200 embedded digits.

One pipeline run takes about a minute on 2 cores, so the runs are module fixtures
shared by the assertions about them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import report

pytestmark = pytest.mark.e2e

SMALL = [
    "--set", "data.embedded_per_class=20",
    "--image-size", "16",
    "--channels", "1",
    "--trials", "1",
    "--set", "tuner.epochs=2",
    "--epochs", "15",
    "--set", "trainer.early_stopping_patience=15",
    # One-hot targets: the value-threshold test re-evaluates this module's model against
    # --min-accuracy 0.9999, which only an imperfect model can fail. With label smoothing the
    # small model scored 1.0000 on its test images (CI of 5c973bc); the other e2e modules
    # (Airflow, Kubeflow, drift, backbone, kill) train with the default smoothing.
    "--set", "trainer.label_smoothing=0",
    "--min-accuracy", "0.5",
]
COMPONENTS = {
    "ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "DataGate",
    "Transform", "Tuner", "ClassicalBaseline", "Trainer", "Evaluator", "TFLiteCheck", "ServingCheck", "VersionedPusher",
    "Explainer", "InferenceExampleGen", "BulkInferrer", "PredictionsWriter",
}
UNLABELED_GOOD = 30  # digits written to the unlabeled folder, besides a broken PNG and a text file


def lenspipe(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import entry; entry()", *args],
        capture_output=True, text=True, env=env, timeout=1200,
    )


def summary_of(work: Path) -> report.RunSummary:
    metadata = str(work / "metadata" / "lenspipe.sqlite")
    return report.read_run(metadata, report.latest_run_id(metadata, "lenspipe"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def unlabeled(work) -> Path:
    """A folder for data.inference_root: digits in no class folders, a broken PNG, a text file."""
    from tests.conftest import png_bytes
    from tests.trained_model import digits

    root = work / "unlabeled"
    (root / "day2").mkdir(parents=True)
    images, _ = digits()
    for i in range(UNLABELED_GOOD):
        (root / ("day2" if i % 2 else "") / f"img_{i:03d}.png").write_bytes(png_bytes(images[-1 - i]))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def first_run(work, unlabeled):
    result = lenspipe("run", "--work-dir", str(work), *SMALL, "--set", f"data.inference_root={unlabeled}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, summary_of(work)


@pytest.fixture(scope="module")
def second_run(work, unlabeled, first_run):
    result = lenspipe("run", "--work-dir", str(work), *SMALL, "--set", f"data.inference_root={unlabeled}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, summary_of(work)


def test_first_run_executes_everything_and_blesses(first_run):
    result, summary = first_run
    assert set(summary.executed) == COMPONENTS
    assert summary.blessed is True
    assert summary.pushed is True and summary.pushed_version == "1"
    assert sum(summary.split_counts.values()) == 200
    assert set(summary.split_counts) == {"train", "eval", "test"}
    assert summary.overall is not None and summary.overall.accuracy >= 0.5
    assert "blessed:    yes" in result.stdout and "pushed:     version 1" in result.stdout


def test_the_serving_check_served_every_held_out_image_before_the_push(work, first_run):
    result, summary = first_run
    check = summary.serving_check
    assert check["passed"] is True
    assert check["requests"] == {"rest": summary.split_counts["test"], "grpc": summary.split_counts["test"]}
    assert check["max_abs_diff"] <= 1e-6 and check["mismatches"] == 0
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  serving check: passed;"))
    assert lines[at + 1].startswith("  pushed:     version 1")
    assert (work / "serving" / "lenspipe" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_readable_report_written_for_the_run(work, first_run):
    _, summary = first_run
    text = (work / "reports" / f"{summary.run_id}.md").read_text()
    assert "## Confusion matrix" in text and "## Per class (argmax)" in text
    assert "| label_name=7 |" in text  # slices are named by feature and value
    # Every held-out image is counted once in the matrix.
    assert sum(summary.confusion.values()) == summary.split_counts["test"]


def test_pushed_version_is_complete_and_serves_raw_png(work, first_run):
    import numpy as np
    import tensorflow as tf

    base = work / "serving" / "lenspipe"
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no temporary copies left behind
    version = base / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    meta = json.loads((version / "assets.extra" / "lenspipe.json").read_text())
    assert meta["seed"] == 42 and meta["class_names"] == [str(d) for d in range(10)]  # sorted: id = index

    png = next((work / "data" / "digits-20" / "7").glob("*.png")).read_bytes()
    out = tf.saved_model.load(str(version)).signatures["serving_default"](image_bytes=tf.constant([png]))
    probs = out["probabilities"].numpy()
    assert probs.shape == (1, 10)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    assert out["label"].numpy()[0].decode() == meta["class_names"][int(out["class_id"].numpy()[0])]
    pngs = [p.read_bytes() for p in sorted((work / "data" / "digits-20").glob("*/*.png"))]
    out = tf.saved_model.load(str(version)).signatures["serving_default"](image_bytes=tf.constant(pngs))
    labels = [v.decode() for v in out["label"].numpy()]
    assert out["class_id"].numpy().tolist() == [sorted(meta["class_names"]).index(v) for v in labels]


def test_summary_shows_the_classical_baseline_and_f1(first_run):
    result, summary = first_run
    assert 0.5 <= summary.classical["test_accuracy"] <= 1.0
    assert summary.classical["train_images"] == summary.split_counts["train"]
    assert "classical baseline: " in result.stdout and "macro F1" in result.stdout
    assert summary.class_counts["train"] == {str(d): n for d, n in summary.class_counts["train"].items()}
    assert sum(summary.class_counts["train"].values()) == summary.split_counts["train"]


def test_second_run_with_nothing_changed_is_all_cached(work, second_run):
    result, summary = second_run
    assert summary.executed == []
    assert set(summary.cached) == COMPONENTS
    assert sorted(p.name for p in (work / "serving" / "lenspipe").iterdir()) == ["1"]
    assert f"{len(COMPONENTS)} cached" in result.stdout


def test_failing_data_gate_stops_before_training_and_pushes_nothing(tmp_path, first_run, work):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from google.protobuf import text_format

    # A curated schema that wants images at least 16 px high: the 8 px digits violate it.
    inferred = next((work / "pipelines" / "lenspipe" / "SchemaGen" / "schema").glob("*/schema.pbtxt"))
    schema = text_format.Parse(inferred.read_text(), schema_pb2.Schema())
    height = next(f for f in schema.feature if f.name == "height")
    height.int_domain.min = 16
    curated = tmp_path / "schema.pbtxt"
    curated.write_text(text_format.MessageToString(schema))

    gated = tmp_path / "work"
    result = lenspipe("run", "--work-dir", str(gated), *SMALL, "--set", f"data.schema_file={curated}")
    assert result.returncode == 1
    assert "data gate: 3 anomalies" in result.stderr  # one per split
    assert "train: feature 'height'" in result.stderr
    summary = summary_of(gated)
    assert summary.failed == ["DataGate"]
    assert not {"Transform", "Tuner", "Trainer", "Evaluator", "VersionedPusher"} & set(summary.node_states)
    assert not (gated / "serving").exists()
    page = (gated / "reports" / f"{summary.run_id}.html").read_text()  # a stopped run has its page too
    assert "failed: DataGate" in page and "Unexpectedly small value: 8." in page


def test_model_behaviour_is_stable_under_a_small_brightness_change(work, first_run):
    """A model test, not a code test: +3 grey levels must not change what the model sees."""
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    predict = tf.saved_model.load(str(work / "serving" / "lenspipe" / "1")).signatures["serving_default"]
    originals, brighter = [], []
    for path in sorted((work / "data" / "digits-20").glob("*/*.png")):
        pixels = np.asarray(Image.open(path), dtype=np.int16)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels + 3, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        originals.append(path.read_bytes())
        brighter.append(buf.getvalue())
    a = predict(image_bytes=tf.constant(originals))["class_id"].numpy()
    b = predict(image_bytes=tf.constant(brighter))["class_id"].numpy()
    assert len(a) == 200
    assert (a == b).mean() >= 0.95


def _tree(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


def _first_output(work: Path, node: str, key: str) -> Path:
    return min((work / "pipelines" / "lenspipe" / node / key).iterdir(), key=lambda p: int(p.name))


def _test_images(work: Path) -> list[bytes]:
    import tensorflow as tf

    first = _first_output(work, "ImageExampleGen", "examples")
    files = sorted(first.glob("Split-test/*"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)["image"].numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


@pytest.fixture(scope="module")
def rerun_without_cache(work, unlabeled, second_run):
    result = lenspipe("run", "--work-dir", str(work), *SMALL, "--set", f"data.inference_root={unlabeled}", "--no-cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, summary_of(work)


def test_same_data_config_and_seed_give_the_same_model(work, first_run, rerun_without_cache):
    """Reproducible: a run with caching off trains the same trials, weights and metrics again."""
    import numpy as np
    import tensorflow as tf

    _, first = first_run
    _, again = rerun_without_cache
    assert set(again.executed) == COMPONENTS
    assert again.best_hyperparameters == first.best_hyperparameters
    assert again.overall.accuracy == first.overall.accuracy
    assert repr(again.per_class) == repr(first.per_class)  # repr: a class never predicted has precision nan
    assert again.classical == {**first.classical, "seconds": again.classical["seconds"]}
    assert again.pushed_version == "2"  # an equal candidate meets the change threshold
    images = tf.constant(_test_images(work))
    base = work / "serving" / "lenspipe"
    p1, p2 = (tf.saved_model.load(str(base / v)).signatures["serving_default"](image_bytes=images)["probabilities"].numpy()
              for v in ("1", "2"))
    assert len(p1) == first.split_counts["test"]
    np.testing.assert_array_equal(p1, p2)


def _weights(saved_model: Path) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(saved_model / "variables" / "variables"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_tuner_and_trainer_run_alone_in_a_fresh_process_reproduce_the_local_run(work, first_run, tmp_path):
    """The same artifacts on a cluster: each step alone in a new process (as in a Kubeflow container,
    with the environment the compiled spec gives it) tunes and trains exactly as the one-process run."""
    import numpy as np

    from lenspipe.config import load_config

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(load_config(None, {}).runtime.process_env())  # what every compiled container sets
    for node in ("Tuner", "Trainer"):
        result = subprocess.run(
            [sys.executable, "-m", "tests.e2e.rerun_component_driver", str(work / "metadata" / "lenspipe.sqlite"),
             node, str(tmp_path / node)],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    trials = _first_output(work, "Tuner", "tuner_results") / "tuner_results.json"
    assert (tmp_path / "Tuner" / "tuner_results" / "tuner_results.json").read_bytes() == trials.read_bytes()
    local = _weights(work / "serving" / "lenspipe" / "1")  # the first run's pushed Trainer model
    fresh = _weights(tmp_path / "Trainer" / "model" / "Format-Serving")
    assert sorted(fresh) == sorted(local) and len(local) > 10
    for name, value in local.items():
        np.testing.assert_array_equal(fresh[name], value, err_msg=name)


@pytest.fixture(scope="module")
def unblessed_run(work, rerun_without_cache):
    before = _tree(work / "serving")
    result = lenspipe("run", "--work-dir", str(work), *SMALL, "--min-accuracy", "0.9999")
    assert result.returncode == 0, result.stderr[-3000:]
    return result, summary_of(work), before


def test_value_threshold_failure_blesses_nothing_and_leaves_serving_untouched(work, unblessed_run):
    result, summary, before = unblessed_run
    # Same model, new thresholds: only the Evaluator and what reads its blessing re-run.
    assert "Evaluator" in summary.executed and "Trainer" in summary.cached and "Transform" in summary.cached
    assert set(summary.executed) <= {"Evaluator", "TFLiteCheck", "VersionedPusher", "BulkInferrer", "PredictionsWriter"}
    assert summary.blessed is False and summary.pushed is False
    assert f"accuracy on overall = {summary.overall.accuracy:.4f} fails lower bound 0.9999" in summary.blessing_reason
    assert "blessed:    NO (accuracy on overall" in result.stdout
    assert "pushed:     nothing (model not blessed)" in result.stdout
    assert _tree(work / "serving") == before


def test_change_threshold_failure_blesses_nothing_and_names_both_values(work, rerun_without_cache):
    before = _tree(work / "serving")
    # One epoch, no tuning: a much worse candidate than the blessed baseline, above the value threshold.
    worse = [*SMALL, "--epochs", "1", "--set", "tuner.enabled=false", "--min-accuracy", "0.0"]
    result = lenspipe("run", "--work-dir", str(work), *worse)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(work)
    assert "Trainer" in summary.executed
    assert summary.blessed is False and summary.pushed is False
    assert summary.baseline_accuracy is not None and summary.overall.accuracy < summary.baseline_accuracy - 0.01
    assert (
        f"accuracy change on overall = {summary.overall.accuracy - summary.baseline_accuracy:+.4f} "
        f"(candidate {summary.overall.accuracy:.4f}, baseline {summary.baseline_accuracy:.4f}) "
        "fails allowed change -0.01 vs baseline"
    ) in summary.blessing_reason
    assert _tree(work / "serving") == before


def test_tflite_variants_are_checked_summarised_and_pushed_beside_the_version(work, first_run):
    result, summary = first_run
    check = summary.tflite
    assert [v["variant"] for v in check["variants"]] == ["float32", "float16", "dynamic_int8", "full_int8"]
    for v in check["variants"]:
        assert f"    {v['variant']}" in result.stdout  # one summary line per variant
    passed = {v["file"] for v in check["variants"] if v["passed"]}
    assert "float32.tflite" in passed
    tflite_dir = work / "serving" / "lenspipe" / "1" / "assets.extra" / "tflite"
    assert {p.name for p in tflite_dir.glob("*.tflite")} == passed
    assert (tflite_dir / "labels.txt").read_text().split() == check["class_names"]

    png = next((work / "data" / "digits-20" / "7").glob("*.png"))
    predicted = lenspipe("predict", "--tflite", str(tflite_dir / "float32.tflite"), str(png))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    path, label, probability = predicted.stdout.strip().split("\t")
    import tensorflow as tf

    served = tf.saved_model.load(str(work / "serving" / "lenspipe" / "1")).signatures["serving_default"]
    assert path == str(png)
    assert label == served(image_bytes=tf.constant([png.read_bytes()]))["label"].numpy()[0].decode()


def test_batch_inference_predicts_every_readable_unlabeled_image_like_the_served_model(work, unlabeled, first_run):
    import tensorflow as tf

    result, summary = first_run
    rows = [json.loads(line) for line in Path(summary.predictions_path).read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(
        str(p.relative_to(unlabeled)) for p in unlabeled.rglob("img_*.png")
    )
    assert len(rows) == UNLABELED_GOOD == summary.predictions_count
    assert {r["path"] for r in summary.inference_rejected} == {"broken.png", "notes.txt"}
    assert Path(summary.predictions_path).with_suffix(".csv").read_text().count("\n") == UNLABELED_GOOD + 1
    assert f"predictions: {UNLABELED_GOOD} image(s)" in result.stdout

    served = tf.saved_model.load(str(work / "serving" / "lenspipe" / "1")).signatures["serving_default"]
    out = served(image_bytes=tf.constant([(unlabeled / r["path"]).read_bytes() for r in rows]))
    assert [r["label"] for r in rows] == [v.decode() for v in out["label"].numpy()]
    for row, probs in zip(rows, out["probabilities"].numpy()):
        assert abs(row["probability"] - float(probs.max())) < 1e-5


def test_after_a_rollback_the_next_run_compares_with_the_serving_version(work, first_run, rerun_without_cache):
    """v1 (first run) and v2 (the no-cache re-run) are pushed; v2 is rolled back; the next baseline is v1."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import deploy

    metadata = work / "metadata" / "lenspipe.sqlite"
    base = work / "serving" / "lenspipe"
    rolled = lenspipe("rollback", "--work-dir", str(work))
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    assert "rolled back version(s) 2" in rolled.stdout and "1 model(s) marked" in rolled.stdout
    assert deploy.integer_versions(base) == [1]
    listed = lenspipe("versions", "--work-dir", str(work))
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("2", "rolled"), ("1", "latest")]

    pushes = deploy.pushes(deploy._store(metadata), base)
    assert pushes[2].rolled_back and not pushes[1].rolled_back
    # A new candidate (no tuning: the Trainer re-runs) is compared with v1, the version serving.
    result = lenspipe("run", "--work-dir", str(work), *SMALL, "--set", "tuner.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(work)
    assert "Trainer" in summary.executed and "Evaluator" in summary.executed
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata)
    store = mlmd.MetadataStore(config)
    run = store.get_context_by_type_and_name("pipeline_run", summary.run_id)
    evaluator = next(e for e in store.get_executions_by_context(run.id)
                     if any(c.name == "lenspipe.Evaluator" for c in store.get_contexts_by_execution(e.id)))
    baseline = [e.artifact_id for e in store.get_events_by_execution_ids([evaluator.id])
                if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == "baseline_model"]
    assert baseline == [pushes[1].model_id]


def test_html_report_opens_cleanly_in_chromium_at_desktop_and_phone_width(work, first_run, tmp_path_factory):
    from components.explainer import read_explanation
    from pipeline import html_report
    from tests import chromium

    result, summary = first_run
    page = work / "reports" / f"{summary.run_id}.html"
    assert f"html:       {page}" in result.stdout
    if chromium.chromium_binary() is None:
        pytest.fail("chromium is not installed: `make test-deps` installs Debian's chromium")
    explained = _first_output(work, "Explainer", "explanation")
    explanation, heatmaps = read_explanation(str(explained))
    assert len(heatmaps) == len(explanation["items"]) > 0
    shots = tmp_path_factory.mktemp("report-screenshots")
    for width in (1024, 390):
        seen = chromium.inspect_page(page, shots / f"report-{width}px.png", width=width)
        print(f"full-page screenshot at {width}px: {seen.screenshot}")
        probe = seen.probe
        assert seen.console_errors == [] and seen.failed_requests == []
        assert all(u == page.as_uri() or u.startswith("data:image/") for u in seen.requested_urls)
        assert probe["scripts"] == 0
        assert [(s["id"], s["heading"]) for s in probe["sections"]] == list(html_report.SECTIONS)
        assert all(s["text"] > 40 for s in probe["sections"])
        for image in probe["images"]:
            assert image["complete"] and min(image["natural"]) > 0 and min(image["shown"]) > 0, image
        # 6 samples for each of the 10 classes, each explained image once in Evaluation (if wrong)
        # and twice in Why (the image and its heatmap).
        wrong = sum(not it["correct"] for it in explanation["items"])
        assert len(probe["images"]) == 60 + wrong + 2 * len(explanation["items"])
        titles = [s["title"] for s in probe["svgs"]]
        assert {"Images per class and split", "Objective per trial", "Loss per epoch", "Accuracy per epoch",
                "Confusion matrix (test split)"} <= set(titles)
        assert all(min(s["shown"]) > 0 for s in probe["svgs"])
        assert probe["scrollWidth"] <= probe["innerWidth"]  # nothing wider than a phone's screen
        text = probe["text"]
        assert "Blessed." in text and f"{summary.overall.accuracy:.4f} test accuracy" in text
        assert "Version 1 at" in text and "serving_default" in text and "image_bytes" in text
        assert ":predict -d" in text and "classical baseline" in text
        assert seen.screenshot.stat().st_size > 10_000


def test_runs_and_report_cover_a_blessed_and_an_unblessed_run(work, first_run, unblessed_run):
    _, blessed = first_run
    _, unblessed, _ = unblessed_run
    listed = lenspipe("runs", "--work-dir", str(work), "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows = {r["run_id"]: r for r in json.loads(listed.stdout)}
    first, last = rows[blessed.run_id], rows[unblessed.run_id]
    assert first["blessed"] is True and first["pushed_version"] == "1" and first["examples"] == 200
    assert first["test_accuracy"] == blessed.overall.accuracy and first["executed"] == len(COMPONENTS)
    assert first["data_root"].endswith("digits-20") and first["date"].startswith("20")
    assert last["blessed"] is False and last["pushed_version"] is None
    # Same model, new threshold: the Evaluator and what reads its blessing ran, the rest came from the cache.
    assert (last["executed"], last["cached"]) == (len(unblessed.executed), len(unblessed.cached))
    assert 2 <= last["executed"] <= 5 and last["cached"] >= 9
    assert list(rows)[0] == blessed.run_id  # oldest first

    page = work / "reports" / f"{unblessed.run_id}.html"
    page.unlink()
    written = lenspipe("report", unblessed.run_id, "--work-dir", str(work))
    assert written.returncode == 0, written.stderr[-3000:]
    assert written.stdout.strip() == str(page)
    text = page.read_text()
    assert "<strong>Not blessed.</strong>" in text and "fails lower bound 0.9999" in text
    assert "Nothing pushed" in text and "accuracy on overall ≥ 0.9999" in text

    missing = lenspipe("report", "no-such-run", "--work-dir", str(work))
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr


def test_skew_served_requests_like_the_training_data_pass_inverted_or_darker_ones_are_reported(
        work, first_run, tmp_path_factory, capsys):
    """`lenspipe serve --request_log_dir` logs real served requests; `lenspipe skew` compares them with the
    training statistics of the version that served them (found through ML Metadata)."""
    import base64
    import shutil
    import urllib.request

    import numpy as np

    from pipeline import deploy
    from pipeline.cli import main
    from pipeline.datasets import _digits
    from serving.flags import ServerOptions
    from serving.request_log import RequestLogOptions
    from tests.conftest import png_bytes
    from tests.serving.conftest import ServerThread, free_port

    # A work dir of its own (metadata and reports copied), so the skew section lands in a copy of the report.
    scratch = tmp_path_factory.mktemp("skew")
    (scratch / "work" / "metadata").mkdir(parents=True)
    shutil.copy(work / "metadata" / "lenspipe.sqlite", scratch / "work" / "metadata")
    shutil.copytree(work / "reports", scratch / "work" / "reports")
    base = work / "serving" / "lenspipe"
    version = deploy.integer_versions(base)[-1]
    trained = {p.name for p in (work / "data" / "digits-20").glob("*/*.png")}
    held_out = [img for img, digit, index in _digits(None) if f"{digit}_{index:04d}.png" not in trained][:60]
    cases = {"like-training": held_out, "inverted": [255 - img for img in held_out],
             "darker": [(img * 0.3).astype(np.uint8) for img in held_out]}
    logs = {}
    for name, pixels in cases.items():
        logs[name] = scratch / name
        server = ServerThread(ServerOptions(
            model_name="lenspipe", model_base_path=str(base), port=0, rest_api_port=free_port(),
            file_system_poll_wait_seconds=0, request_log=RequestLogOptions(str(logs[name]), sample_rate=1.0)))
        try:
            for i in range(0, len(pixels), 10):  # :predict requests of 10 images
                body = json.dumps({"instances": [{"b64": base64.b64encode(png_bytes(p)).decode()} for p in pixels[i:i + 10]]})
                request = urllib.request.Request(f"{server.url}/v1/models/lenspipe:predict", data=body.encode())
                with urllib.request.urlopen(request, timeout=60) as response:
                    assert len(json.loads(response.read())["predictions"]) == len(pixels[i:i + 10])
        finally:
            server.stop()  # closes the log's open file: it appears under its final name

    def skew(name: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["skew", "--request-log", str(logs[name]), "--work-dir", str(scratch / "work"),
                     "--serving-dir", str(work / "serving"), "--model-name", "lenspipe"])
        return code, capsys.readouterr().out

    code, out = skew("like-training")
    assert code == 0, out
    assert f"lenspipe version {version}" in out and "60 logged image(s)" in out and "no skew" in out
    assert "brightness" in out and "anomaly" not in out  # measured, and below every threshold
    for name in ("inverted", "darker"):
        code, out = skew(name)
        assert code == 1, out
        assert "SKEW" in out and "anomaly: brightness:" in out
        assert "anomaly: height" not in out and "anomaly: format" not in out  # what did not change is not flagged
        if name == "inverted":  # dark digits on white: the brightness buckets move too
            assert "anomaly: brightness_bucket:" in out
    run_id = next(line.split("(run ")[1].split(")")[0] for line in out.splitlines() if "(run " in line)
    page = (scratch / "work" / "reports" / f"{run_id}.html").read_text()
    assert page.count('<section id="skew">') == 1 and "Serving skew" in page and "brightness" in page
