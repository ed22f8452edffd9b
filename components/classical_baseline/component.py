"""ClassicalBaseline: what a cheap classical model scores on the same train/test split as the CNN.

A CNN that a pixel SVM beats is not worth serving. This component decodes the images
of the train split to small greyscale arrays, fits scikit-learn's RBF SVM (gamma
chosen by 3-fold cross-validation on train) or logistic regression, and scores it on
the held-out test split the Evaluator uses. The Evaluator shows both accuracies and,
with ``evaluator.beat_baseline``, refuses to bless a CNN below it.
"""


import io
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf
from PIL import Image
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from components.artifact_json import read_json, write_json
from lenspipe import features
from lenspipe.artifacts import ClassicalBaseline as ClassicalBaselineResult

log = logging.getLogger("lenspipe.classical_baseline")

RESULT_FILE = "result.json"
ACCURACY_PROPERTY = "test_accuracy"
METHODS = ("svm", "logistic")
_GAMMAS = (0.03, 0.1, 0.3, 1.0)  # for pixels in [0, 1]; 'scale' is often far off for images


def load_split(examples: types.Artifact, split: str, size: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels [n, size*size] in [0, 1], label names [n]) of up to ``limit`` images of one split, in file order."""
    files = sorted(fileio.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    pixels, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        parsed = tf.io.parse_single_example(record, spec)
        with Image.open(io.BytesIO(parsed[features.IMAGE_KEY].numpy())) as image:
            grey = image.convert("L").resize((size, size), Image.BILINEAR)
        pixels.append(np.asarray(grey, np.float32).ravel() / 255.0)
        labels.append(parsed[features.LABEL_NAME_KEY].numpy().decode("utf-8"))
    return np.stack(pixels) if pixels else np.zeros((0, size * size), np.float32), np.array(labels)


def fit(method: str, x: np.ndarray, y: np.ndarray):
    """A fitted scikit-learn classifier; the SVM's gamma and C come from 3-fold CV on the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    if method == "logistic":
        return LogisticRegression(max_iter=2000).fit(x, y)
    folds = min(3, int(np.min(np.unique(y, return_counts=True)[1])))
    if folds < 2:
        return SVC(gamma=_GAMMAS[1]).fit(x, y)
    return GridSearchCV(SVC(), {"gamma": list(_GAMMAS), "C": [1.0, 10.0]}, cv=folds).fit(x, y)


@component
def ClassicalBaseline(
    examples: InputArtifact[standard_artifacts.Examples],
    result: OutputArtifact[ClassicalBaselineResult],
    method: Parameter[str] = "svm",
    image_size: Parameter[int] = 8,
    max_train_images: Parameter[int] = 5000,
    test_split: Parameter[str] = "test",
    code_version: Parameter[str] = "",
) -> None:
    """Fit on the train split, score on ``test_split``; record the accuracy. ``code_version`` only keys the cache."""
    del code_version
    if method not in METHODS:
        raise ValueError(f"classical.method must be one of {METHODS}, got {method!r}")
    started = time.monotonic()
    x_train, y_train = load_split(examples, "train", image_size, max_train_images)
    x_test, y_test = load_split(examples, test_split, image_size, 2**62)
    if len(set(y_train)) < 2 or not len(y_test):
        raise ValueError("classical baseline: need images of at least 2 classes in train and a non-empty test split")
    model = fit(method, x_train, y_train)
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    params = getattr(model, "best_params_", None) or {k: v for k, v in model.get_params().items() if k in ("C", "gamma")}
    summary = {
        "method": method,
        "params": params,
        "image_size": image_size,
        "train_images": int(len(y_train)),
        "test_images": int(len(y_test)),
        "test_accuracy": accuracy,
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("classical baseline (%s %s): test accuracy %.4f on %d images", method, params, accuracy, len(y_test))
    write_json(result.uri, RESULT_FILE, json.dumps(summary, indent=2, sort_keys=True, default=str))
    result.set_float_custom_property(ACCURACY_PROPERTY, accuracy)


def read_result(uri: str) -> dict:
    """The result.json a ClassicalBaseline run wrote under ``uri`` ({} if none)."""
    return read_json(uri, RESULT_FILE)
