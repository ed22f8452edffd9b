"""TFLite variants of a trained digits model: parity, quantization quality, and the push gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from components.tflite_check.executor import CHECK_FILE, build_and_check, representative_from
from components.tflite_check import TFLiteModels
from components.versioned_pusher.executor import TFLITE_DIR, push_model, tflite_files
from inference.tflite_model import LABELS_FILE, TFLiteClassifier, read_labels
from lenspipe.config import TFLiteConfig
from trainer import tflite_export

SOURCE_SHAPE = (8, 8, 1)  # the digits as decoded; the model takes 16x16, so the TFLite graph resizes


def _pngs(pixels):
    return [tflite_export._png(p) for p in pixels]


def _saved_model_probs(saved_model_dir, pngs):
    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    return serve(image_bytes=tf.constant(pngs))["probabilities"].numpy()


@pytest.fixture(scope="module")
def checked(digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    cfg = TFLiteConfig()
    representative = representative_from(iter(digits_model.train), 100, SOURCE_SHAPE)
    result = build_and_check(
        digits_model.saved_model_dir, digits_model.transform_dir, iter(digits_model.test), representative, cfg,
        str(out), input_shape=SOURCE_SHAPE,
    )
    return result, out


def test_float32_matches_the_saved_model_on_the_same_decoded_pixels(digits_model, checked):
    _, out = checked
    classifier = TFLiteClassifier(str(out / "float32.tflite"))
    pixels = digits_model.test_pixels[:100]
    tflite = classifier.predict_pixels(pixels)
    reference = _saved_model_probs(digits_model.saved_model_dir, _pngs(pixels))
    assert np.abs(tflite - reference).max() <= 1e-5
    assert classifier.input_shape == SOURCE_SHAPE
    assert classifier.class_names == digits_model.class_names  # from labels.txt beside the file


def test_every_variant_uses_builtin_ops_only(checked):
    _, out = checked
    for variant in tflite_export.VARIANTS:
        interpreter = tf.lite.Interpreter(model_path=str(out / f"{variant}.tflite"))
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (variant, ops)


def test_check_measures_every_variant_and_int8_agrees_with_the_saved_model(digits_model, checked):
    result, out = checked
    by_name = {v["variant"]: v for v in result.variants}
    assert list(by_name) == list(tflite_export.VARIANTS)
    assert result.images == len(digits_model.test)
    assert result.reference_accuracy >= 0.95
    for v in by_name.values():
        assert v["passed"], v
        assert 0 < v["size_bytes"] == (out / v["file"]).stat().st_size
        assert v["latency_ms"] > 0
        assert abs(v["accuracy_drop"] - (result.reference_accuracy - v["accuracy"])) < 1e-9
    assert by_name["full_int8"]["top1_agreement"] >= 0.98
    assert by_name["dynamic_int8"]["top1_agreement"] >= 0.98
    assert by_name["float32"]["max_abs_diff"] <= 1e-5 and by_name["float32"]["top1_agreement"] == 1.0
    assert by_name["full_int8"]["size_bytes"] < by_name["float16"]["size_bytes"] < by_name["float32"]["size_bytes"]
    check = json.loads((out / CHECK_FILE).read_text())
    assert check["contract"]["input"] == {**check["contract"]["input"], "dtype": "uint8", "shape": [1, 8, 8, 1]}
    assert read_labels(str(out / LABELS_FILE)) == digits_model.class_names


def test_full_int8_is_integer_inside(checked):
    _, out = checked
    interpreter = tf.lite.Interpreter(model_path=str(out / "full_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    conv = [t for t in interpreter.get_tensor_details() if "conv" in t["name"].lower() and len(t["shape"]) == 4]
    assert conv and {t["dtype"] for t in conv} == {np.int8}  # weights and activations alike
    float32 = tf.lite.Interpreter(model_path=str(out / "float32.tflite"))
    assert np.float32 in {t["dtype"] for t in float32.get_tensor_details() if "conv" in t["name"].lower()}


def test_blank_calibration_fails_the_check_and_is_not_pushed(digits_model, tmp_path):
    blank = np.zeros((1, *SOURCE_SHAPE), np.uint8)
    cfg = TFLiteConfig(variants=["float32", "full_int8"])
    out = tmp_path / "tflite"
    result = build_and_check(
        digits_model.saved_model_dir, digits_model.transform_dir, iter(digits_model.test), lambda: [blank] * 20, cfg,
        str(out), input_shape=SOURCE_SHAPE,
    )
    by_name = {v["variant"]: v for v in result.variants}
    assert by_name["float32"]["passed"]
    bad = by_name["full_int8"]
    assert not bad["passed"]
    assert "points below the SavedModel" in bad["reason"] and "tflite.max_accuracy_drop" in bad["reason"]
    assert "not pushed" in bad["reason"]

    artifact = TFLiteModels()
    artifact.uri = str(out)
    version_dir, _ = push_model(digits_model.saved_model_dir, str(tmp_path / "serving"), tflite_files([artifact]))
    pushed = sorted(p.name for p in (tmp_path / "serving" / "1" / TFLITE_DIR).iterdir())
    assert pushed == sorted(["float32.tflite", LABELS_FILE, CHECK_FILE])


def test_a_failing_check_is_recorded_and_never_raises(digits_model, tmp_path):
    """The SavedModel push must not depend on the TFLite twins: the executor records the failure."""
    import shutil

    from tfx.types import standard_artifacts

    from components.tflite_check.executor import CONFIG_KEY, Executor, read_check
    from pipeline import report

    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(digits_model.saved_model_dir, tmp_path / "model" / "Format-Serving")
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "no-examples")
    examples.split_names = '["train", "test"]'
    transform = standard_artifacts.TransformGraph()
    transform.uri = digits_model.transform_dir
    out = TFLiteModels()
    out.uri = str(tmp_path / "out")
    Executor().Do(
        {"model": [model], "examples": [examples], "transform_graph": [transform]},
        {"tflite_models": [out]},
        {CONFIG_KEY: TFLiteConfig().model_dump_json()},
    )
    check = read_check(out.uri)
    assert check["skipped"].startswith("TFLite check failed: no train examples under")
    assert tflite_files([out]) == {}
    summary = report.RunSummary(run_id="r", tflite=check)
    assert "  tflite:     none built (TFLite check failed: no train examples" in report.format_summary(summary)
