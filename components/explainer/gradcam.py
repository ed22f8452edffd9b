"""Grad-CAM for the trained Keras classifier: where in an image the evidence for a class lies.

Selvaraju et al. 2017: the gradient of the class score (the logit, before softmax)
with respect to the last convolutional feature map, averaged over space, weighs
each channel of that map; the ReLU of the weighted sum, scaled to [0, 1] and
resized to the input, is the heatmap. No TFX here, so it is tested on its own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def last_feature_map_layer(classifier) -> str:
    """Name of the last layer with a spatial (rank-4) output, pooling aside: the map Grad-CAM explains.

    The map before the last pooling has twice its resolution and the same evidence.
    """
    for layer in reversed(classifier.layers):
        if "Pooling" in type(layer).__name__:
            continue
        if getattr(layer, "output", None) is not None and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"model {classifier.name!r} has no layer with a [batch, h, w, c] output to explain")


def gradcam(classifier, images: np.ndarray, class_ids: Sequence[int], batch_size: int = 64) -> np.ndarray:
    """Heatmaps [n, H, W] in [0, 1] for ``class_ids[i]`` on standardised ``images[i]`` ([n, H, W, C]).

    The classifier's last layer must be a Dense layer with softmax (as trainer/model.py builds
    it): its logits are recomputed from the layer's input so the softmax does not saturate the
    gradient. An image with no positive evidence gets an all-zero map.
    """
    import keras
    import tensorflow as tf

    head = classifier.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"the classifier's last layer must be Dense (got {type(head).__name__})")
    feature_layer = classifier.get_layer(last_feature_map_layer(classifier))
    feature_map = feature_layer.output
    if isinstance(feature_layer, keras.Model):
        # A nested backbone's `output` lives in its own graph; in the classifier's graph its map
        # is what the global pooling reads.
        feature_map = next(l.input for l in classifier.layers if isinstance(l, keras.layers.GlobalAveragePooling2D))
    probe = keras.Model(classifier.inputs, [feature_map, head.input])
    height, width = images.shape[1:3]
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        ids = tf.constant(list(class_ids[start:start + batch_size]), tf.int32)
        with tf.GradientTape() as tape:
            maps, penultimate = probe(x, training=False)
            logits = tf.matmul(penultimate, head.kernel) + head.bias
            score = tf.gather(logits, ids, axis=1, batch_dims=1)
        grads = tape.gradient(score, maps)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, (height, width), method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        out.append(tf.math.divide_no_nan(cam, peak).numpy())
    return np.concatenate(out) if out else np.zeros((0, height, width), np.float32)
