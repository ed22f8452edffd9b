"""Explainer: what the trained network looked at, computed once per run for the report.

Reads the held-out split through the run's transform graph, classifies every image with
the Keras classifier the Trainer saved beside its run (``classifier.keras``), and writes a
Grad-CAM heatmap for each misclassified image and for a few correct ones per class, with
the original image bytes, so the HTML report can show them without TensorFlow.
"""

import json
import logging
import os
import time

import numpy as np
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from lenspipe import features
from lenspipe.artifacts import Explanation

log = logging.getLogger("lenspipe.explainer")

RESULT_FILE = "explanations.json"
HEATMAPS_FILE = "heatmaps.npy"  # float16 [n, H, W], row i for items[i]
IMAGES_DIR = "images"


def _read_split(examples: types.Artifact, split: str, tft_output):
    """(standardised images, class ids, paths, encoded bytes) of one split, in file order."""
    import tensorflow as tf

    from trainer.data import IMAGE_XF, LABEL_XF, raw_input_spec

    files = sorted(fileio.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    spec = dict(raw_input_spec(tft_output))
    spec[features.PATH_KEY] = tf.io.FixedLenFeature([], tf.string, default_value="")
    layer = tft_output.transform_features_layer()
    images, labels, paths, raw = [], [], [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(256):
        parsed = tf.io.parse_example(batch, spec)
        xf = layer({k: parsed[k] for k in (features.IMAGE_KEY, features.LABEL_NAME_KEY)})
        images.append(xf[IMAGE_XF].numpy())
        labels.append(xf[LABEL_XF].numpy())
        paths += [p.decode("utf-8") for p in parsed[features.PATH_KEY].numpy()]
        image = parsed[features.IMAGE_KEY]
        raw += [b for b in (tf.sparse.to_dense(image) if isinstance(image, tf.SparseTensor) else image).numpy().reshape(-1)]
    if not images:
        raise ValueError(f"explainer: split {split!r} holds no examples")
    return np.concatenate(images), np.concatenate(labels).astype(int), paths, raw


def choose(true: np.ndarray, predicted: np.ndarray, correct_per_class: int, max_misclassified: int) -> list[int]:
    """Indices to explain: every misclassified one (up to the cap), then the first correct ones of each class."""
    wrong = [int(i) for i in np.flatnonzero(true != predicted)][:max_misclassified]
    right = []
    for c in sorted(set(true.tolist())):
        right += [int(i) for i in np.flatnonzero((true == c) & (predicted == c))][:correct_per_class]
    return wrong + right


@component
def Explainer(
    examples: InputArtifact[standard_artifacts.Examples],
    transform_graph: InputArtifact[standard_artifacts.TransformGraph],
    model_run: InputArtifact[standard_artifacts.ModelRun],
    explanation: OutputArtifact[Explanation],
    split: Parameter[str] = "test",
    correct_per_class: Parameter[int] = 3,
    max_misclassified: Parameter[int] = 100,
    code_version: Parameter[str] = "",
) -> None:
    """Classify ``split`` and write Grad-CAM heatmaps. ``code_version`` only keys the cache."""
    del code_version
    import keras
    import tensorflow_transform as tft

    from components.explainer.gradcam import gradcam, last_feature_map_layer

    started = time.monotonic()
    path = os.path.join(model_run.uri, features.CLASSIFIER_FILE)
    if not fileio.exists(path):
        raise FileNotFoundError(f"explainer: {path} is missing; the Trainer (trainer/task.py) saves it beside its run")
    classifier = keras.models.load_model(path, compile=False)
    tft_output = tft.TFTransformOutput(transform_graph.uri)
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in tft_output.vocabulary_by_name(features.LABEL_VOCAB_NAME)]
    x, true, paths, raw = _read_split(examples, split, tft_output)
    probs = classifier.predict(x, verbose=0, batch_size=256)
    predicted = probs.argmax(axis=1)
    chosen = choose(true, predicted, correct_per_class, max_misclassified)
    heatmaps = gradcam(classifier, x[chosen], predicted[chosen]) if chosen else np.zeros((0,) + x.shape[1:3])

    fileio.makedirs(os.path.join(explanation.uri, IMAGES_DIR))
    items = []
    for row, i in enumerate(chosen):
        name = f"{IMAGES_DIR}/{row:05d}.img"
        with fileio.open(os.path.join(explanation.uri, name), "wb") as f:
            f.write(raw[i])
        items.append({
            "path": paths[i], "true": int(true[i]), "predicted": int(predicted[i]),
            "confidence": float(probs[i, predicted[i]]), "correct": bool(true[i] == predicted[i]), "image": name,
        })
    with fileio.open(os.path.join(explanation.uri, HEATMAPS_FILE), "wb") as f:
        np.save(f, heatmaps.astype(np.float16))
    result = {
        "split": split,
        "class_names": names,
        "layer": last_feature_map_layer(classifier),
        "images": int(len(true)),
        "misclassified": int((true != predicted).sum()),
        "predictions": [
            {"path": p, "true": int(t), "predicted": int(q), "confidence": float(probs[k, q])}
            for k, (p, t, q) in enumerate(zip(paths, true, predicted))
        ],
        "items": items,
        "seconds": round(time.monotonic() - started, 2),
    }
    tmp = os.path.join(explanation.uri, f".{RESULT_FILE}.tmp")
    with fileio.open(tmp, "w") as f:
        f.write(json.dumps(result, indent=1))
    fileio.rename(tmp, os.path.join(explanation.uri, RESULT_FILE), overwrite=True)
    log.info("explained %d of %d %s images (%d misclassified) in %.1fs", len(items), len(true), split,
             result["misclassified"], result["seconds"])


def read_explanation(uri: str) -> tuple[dict, np.ndarray]:
    """(explanations.json, heatmaps) an Explainer run wrote under ``uri``; ({}, empty) if none."""
    path = os.path.join(uri, RESULT_FILE)
    if not fileio.exists(path):
        return {}, np.zeros((0, 1, 1), np.float32)
    with fileio.open(path, "r") as f:
        result = json.load(f)
    with fileio.open(os.path.join(uri, HEATMAPS_FILE), "rb") as f:
        heatmaps = np.load(f).astype(np.float32)
    return result, heatmaps
