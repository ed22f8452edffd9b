"""Executor of TFLiteCheck: convert each variant, run it with the interpreter on the test split.

Per variant it records test accuracy, the drop versus the SavedModel on the same images,
file size, mean interpreter latency per image, top-1 agreement with the SavedModel and the
largest probability difference. A variant whose drop exceeds ``max_accuracy_drop``, or that
fails to convert, is marked not passed (with the reason) and the Pusher leaves it out; the
SavedModel push never depends on it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from inference.tflite_model import LABELS_FILE, TFLiteClassifier, decode_pixels, write_labels
from lenspipe import features
from trainer import tflite_export

log = logging.getLogger("lenspipe.tflite")

TFLITE_MODELS_KEY = "tflite_models"
CONFIG_KEY = "config"
CHECK_FILE = "check.json"
PASSED_PROPERTY = "passed_variants"  # comma-separated, on the output artifact
TRAIN_SPLIT, TEST_SPLIT = "train", "test"
_BATCH = 64

Example = tuple[bytes, str]  # (encoded image, label name)


def read_examples(examples_artifact: Any, split: str) -> Iterator[Example]:
    """(image bytes, label name) of every tf.Example in one split, file by file (streaming)."""
    uri = artifact_utils.get_split_uri([examples_artifact], split)
    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    if not files:
        raise FileNotFoundError(f"no {split} examples under {uri}")
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feats = tf.train.Example.FromString(record.numpy()).features.feature
        label = feats[features.LABEL_NAME_KEY].bytes_list.value if features.LABEL_NAME_KEY in feats else []
        yield feats[features.IMAGE_KEY].bytes_list.value[0], (label[0].decode() if label else "")


def _batches(items: Iterable[Any], size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


@dataclass
class _Tally:
    correct: int = 0
    agree: int = 0
    count: int = 0
    max_abs_diff: float = 0.0

    def add(self, probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> None:
        top = probs.argmax(axis=1)
        self.correct += int((top == labels).sum())
        self.agree += int((top == reference.argmax(axis=1)).sum())
        self.count += len(labels)
        self.max_abs_diff = max(self.max_abs_diff, float(np.abs(probs - reference).max()))


@dataclass
class CheckResult:
    """What check.json holds."""

    input_shape: list[int]
    class_names: list[str]
    reference_accuracy: Optional[float] = None
    images: int = 0
    variants: list[dict] = field(default_factory=list)
    skipped: str = ""  # why nothing was converted (e.g. the model is not blessed)

    @property
    def passed(self) -> list[str]:
        return [v["variant"] for v in self.variants if v["passed"]]

    def to_json(self) -> dict:
        return {
            "input_shape": self.input_shape, "class_names": self.class_names, "images": self.images,
            "reference_accuracy": self.reference_accuracy, "variants": self.variants, "skipped": self.skipped,
        }


def representative_from(examples: Iterable[Example], count: int, input_shape: Sequence[int]) -> Callable:
    """A representative-dataset callable: the first ``count`` images decoded to the TFLite input."""
    pixels = [decode_pixels([png], *input_shape) for png, _ in itertools.islice(examples, count)]

    def images() -> Iterator[np.ndarray]:
        yield from pixels

    return images


def build_and_check(
    saved_model_dir: str,
    transform_dir: str,
    test_examples: Iterable[Example],
    representative: Callable[[], Iterable[np.ndarray]],
    cfg: Any,
    out_dir: str,
    input_shape: Optional[Sequence[int]] = None,
) -> CheckResult:
    """Convert every ``cfg.variants`` (a TFLiteConfig) into ``out_dir`` and check it on ``test_examples``.

    ``representative`` yields uint8 [1, H_in, W_in, C] images for full_int8; ``input_shape``
    overrides (H_in, W_in, C) (default: cfg.input_height/width, else the model's size).
    Writes ``<variant>.tflite``, ``labels.txt`` and ``check.json``; returns the result.
    """
    import tensorflow_transform as tft

    with open(os.path.join(saved_model_dir, features.MODEL_METADATA_FILE)) as f:
        meta = json.load(f)
    class_names = list(meta["class_names"])
    model_shape = tuple(int(v) for v in meta["input_shape"])
    if input_shape is None:
        input_shape = (cfg.input_height or model_shape[0], cfg.input_width or model_shape[1], model_shape[2])
    mean, std = tflite_export.read_normalisation(tft.TFTransformOutput(transform_dir), model_shape)
    prep = tflite_export.Preprocessing(
        tuple(int(v) for v in input_shape), model_shape, tuple(map(float, mean)), tuple(map(float, std))
    )
    os.makedirs(out_dir, exist_ok=True)
    result = CheckResult(input_shape=[1, *prep.input_shape], class_names=class_names)
    write_labels(os.path.join(out_dir, LABELS_FILE), class_names)

    converter = tflite_export.Converter(saved_model_dir, prep)  # one load and trace for every variant
    classifiers: dict[str, TFLiteClassifier] = {}
    errors: dict[str, str] = {}
    for variant in cfg.variants:
        started = time.monotonic()
        try:
            flatbuffer = converter.convert(variant, representative)
        except tflite_export.TFLiteExportError as e:
            errors[variant] = str(e)
            log.warning("TFLite %s: %s", variant, e)
            continue
        path = os.path.join(out_dir, f"{variant}.tflite")
        tflite_export.write_atomic(path, flatbuffer)
        classifiers[variant] = TFLiteClassifier(path, num_threads=1, labels=class_names)
        log.info("TFLite %s: %d bytes, converted in %.1fs", variant, len(flatbuffer), time.monotonic() - started)

    serve = converter.loaded.signatures[features.SERVING_SIGNATURE]
    ids = {name: i for i, name in enumerate(class_names)}
    reference_correct, tallies = 0, {v: _Tally() for v in classifiers}
    for batch in _batches(((png, ids[label]) for png, label in test_examples if label in ids), _BATCH):
        encoded = [png for png, _ in batch]
        labels = np.array([label for _, label in batch])
        reference = serve(**{features.IMAGE_BYTES_INPUT: tf.constant(encoded)})[features.PROBABILITIES_OUTPUT].numpy()
        reference_correct += int((reference.argmax(axis=1) == labels).sum())
        result.images += len(batch)
        pixels = decode_pixels(encoded, *prep.input_shape)
        for variant, classifier in classifiers.items():
            tallies[variant].add(classifier.predict_pixels(pixels), reference, labels)
    if not result.images:
        raise ValueError("the test split holds no image with a known label: nothing to check the TFLite models on")
    result.reference_accuracy = reference_correct / result.images

    for variant in cfg.variants:
        if variant in errors:
            result.variants.append({"variant": variant, "passed": False, "reason": errors[variant]})
            continue
        t, classifier = tallies[variant], classifiers[variant]
        accuracy = t.correct / t.count
        drop = result.reference_accuracy - accuracy
        passed = drop <= cfg.max_accuracy_drop + 1e-9
        reason = "" if passed else (
            f"test accuracy {accuracy:.4f} is {100 * drop:.1f} points below the SavedModel's "
            f"{result.reference_accuracy:.4f} (tflite.max_accuracy_drop is {100 * cfg.max_accuracy_drop:.1f}): not pushed"
        )
        if not passed:
            log.warning("TFLite %s: %s", variant, reason)
        result.variants.append({
            "variant": variant,
            "file": f"{variant}.tflite",
            "size_bytes": os.path.getsize(classifier.path),
            "accuracy": accuracy,
            "accuracy_drop": drop,
            "top1_agreement": t.agree / t.count,
            "max_abs_diff": t.max_abs_diff,
            "latency_ms": 1000.0 * classifier.invoke_seconds / max(classifier.invokes, 1),
            "passed": passed,
            "reason": reason,
        })
    doc = result.to_json()
    doc["contract"] = tflite_export.metadata(prep, class_names)
    tflite_export.write_json(os.path.join(out_dir, CHECK_FILE), doc)
    return result


def read_check(uri: str) -> Optional[dict]:
    """check.json of a TFLiteModels artifact, or None if the component never wrote one."""
    path = os.path.join(uri, CHECK_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _skip(out: Any, reason: str) -> None:
    """Record on the output artifact that no variant was built, and why."""
    tflite_export.write_json(os.path.join(out.uri, CHECK_FILE), CheckResult([], [], skipped=reason).to_json())
    out.set_string_custom_property(PASSED_PROPERTY, "")


class Executor(base_executor.BaseExecutor):
    """Runs build_and_check on the Trainer's SavedModel; skips an unblessed model."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        from lenspipe.config import TFLiteConfig

        self._log_startup(input_dict, output_dict, exec_properties)
        cfg = TFLiteConfig.model_validate(json.loads(exec_properties[CONFIG_KEY]))
        out = artifact_utils.get_single_instance(output_dict[TFLITE_MODELS_KEY])
        blessing = input_dict.get("model_blessing") or []
        if blessing and blessing[0].get_int_custom_property("blessed") != 1:
            log.info("model not blessed: no TFLite variants built")
            _skip(out, "model not blessed")
            return
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        transform_dir = artifact_utils.get_single_uri(input_dict["transform_graph"])
        saved_model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        try:
            with open(os.path.join(saved_model_dir, features.MODEL_METADATA_FILE)) as f:
                model_shape = json.load(f)["input_shape"]
            input_shape = (cfg.input_height or model_shape[0], cfg.input_width or model_shape[1], model_shape[2])
            representative = representative_from(
                read_examples(examples, TRAIN_SPLIT), cfg.representative_images, input_shape
            )
            result = build_and_check(
                saved_model_dir, transform_dir, read_examples(examples, TEST_SPLIT), representative, cfg, out.uri,
                input_shape,
            )
        except Exception as e:  # noqa: BLE001 - the SavedModel push must not depend on the TFLite twins
            reason = f"TFLite check failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
            log.warning("%s", reason, exc_info=True)
            _skip(out, reason)
            return
        out.set_string_custom_property(PASSED_PROPERTY, ",".join(result.passed))
        for v in result.variants:
            log.info("TFLite %s: %s", v["variant"], json.dumps(v, sort_keys=True))
