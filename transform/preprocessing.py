"""The preprocessing_fn: raw encoded image bytes and label names to model inputs.

This is the only place an image is decoded. tf.Transform traces it once into a
graph that the Trainer applies to training data and that is saved inside every
exported signature, so serving matches training exactly and no client ever
normalizes anything.

custom_config (from pipeline/pipeline.py): ``image``, the image config section
(``height``, ``width``, ``channels`` 1 or 3), re-validated with ``lenspipe.config.ImageConfig``.

Class ids are positions in the *sorted* list of the class names seen in the train
split (Keras' ``image_dataset_from_directory`` convention), not tft's frequency
order: a class keeps its id when the class frequencies change.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from lenspipe import features
from lenspipe.config import ImageConfig

# Keeps the normalisation finite for a constant channel (e.g. an all-black dataset).
_MIN_STD = 1e-6
# ITU-R 601 luma weights, the same as tf.image.rgb_to_grayscale.
_LUMA = (0.2989, 0.5870, 0.1140)


def _to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert one decoded image with 1-4 channels to ``channels`` (1 or 3), float in [0, 1]."""
    n = tf.shape(image)[-1]
    image = tf.image.convert_image_dtype(image, tf.float32)
    # Drop alpha: grey+alpha (2) -> grey, RGBA (4) -> RGB.
    image = tf.cond(tf.equal(n % 2, 0), lambda: image[..., : n - 1], lambda: image)
    n = tf.shape(image)[-1]
    if channels == 1:
        luma = tf.constant(_LUMA, tf.float32)
        image = tf.cond(
            tf.equal(n, 3),
            lambda: tf.reduce_sum(image * luma, axis=-1, keepdims=True),
            lambda: image,
        )
    else:
        image = tf.cond(tf.equal(n, 1), lambda: tf.tile(image, [1, 1, 3]), lambda: image)
    image.set_shape([None, None, channels])
    return image


def decode_and_resize(encoded: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """Decode a batch of PNG/JPEG/GIF/BMP bytes to float32 [batch, height, width, channels] in [0, 1].

    GIFs give their first frame. Resizing is bilinear with antialiasing, so a
    large photo shrinks without aliasing and a small one grows smoothly.
    """
    encoded = tf.reshape(encoded, [-1])

    def one(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(data, channels=0, expand_animations=False)
        image = _to_channels(image, channels)
        image = tf.image.resize(image, [height, width], method="bilinear", antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0)

    return tf.map_fn(
        one, encoded, fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32)
    )


def _dense(x: Any, default: Any) -> tf.Tensor:
    """A raw feature as a dense [batch] tensor, whatever the schema made of it."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default)
    return tf.reshape(x[:, :1] if x.shape.rank == 2 else x, [-1])


class SortedVocabulary(tft_beam.experimental.PTransformAnalyzer):
    """Full-pass analyzer: the distinct values of a string tensor, sorted, as a vocabulary file.

    tft.vocabulary orders by frequency, so an id would move when the class balance
    moves; this writes ``<temp>/<name>`` with one value per line in sorted byte order
    and outputs its path, which tft.apply_vocabulary maps values through.
    """

    def __init__(self, name: str):
        super().__init__()
        self._name = name

    def expand(self, pcoll):
        return (
            pcoll
            | "Values" >> beam.FlatMap(lambda batch: batch[0].ravel().tolist())
            | "Distinct" >> beam.Distinct()
            | "Collect" >> beam.combiners.ToList()
            | "Write" >> beam.Map(_write_sorted_vocabulary, self.base_temp_dir, self._name)
        )


def _write_sorted_vocabulary(values: list, directory: str, name: str) -> np.ndarray:
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, name)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(b"".join(v + b"\n" for v in sorted(values)))
    return np.array(path.encode())


def sorted_class_ids(label_names: tf.Tensor) -> tf.Tensor:
    """Class id of each label name: its index among the sorted names of the analysed split, -1 if unseen."""
    (vocab_path,) = tft.experimental.ptransform_analyzer(
        [label_names],
        SortedVocabulary(features.LABEL_VOCAB_NAME),
        output_dtypes=[tf.string],
        output_shapes=[[]],
        # Traced before analysis with this placeholder: a lookup table needs a non-empty file.
        output_asset_default_values=[b"_"],
        name="sorted_label_vocab",
    )
    tft.annotate_asset(features.LABEL_VOCAB_NAME, features.LABEL_VOCAB_NAME)
    return tft.apply_vocabulary(label_names, vocab_path, default_value=-1)


def preprocessing_fn(inputs: Mapping[str, Any], custom_config: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    """tf.Transform entry point (referenced by dotted path from the pipeline).

    Returns ``image_xf`` (float32 [batch, H, W, C], per-channel standardised with
    the mean and standard deviation of the training split) and ``label_name_xf``
    (int64 class id: index in the sorted class names of the train split, -1 for an unknown name).
    """
    image = ImageConfig.model_validate(custom_config["image"])
    height, width, channels = image.height, image.width, image.channels

    images = decode_and_resize(_dense(inputs[features.IMAGE_KEY], b""), height, width, channels)
    # Full-pass statistics per channel, summed in float64: Beam sizes its batches by measured
    # time, so the order of the partial sums changes from run to run, and in float32 the mean
    # and variance then differed in their last bits (0.10180192 vs 0.10180193 on two runs of
    # the digits), enough to change the trained weights. In float64 the rounding to float32
    # absorbs it.
    pixels = tf.cast(tf.reshape(images, [-1, channels]), tf.float64)
    mean = tf.cast(tft.mean(pixels, reduce_instance_dims=False, name="channel_mean"), tf.float32)
    var = tft.var(pixels, reduce_instance_dims=False, name="channel_var")
    std = tf.cast(tf.sqrt(var), tf.float32)
    normalized = (images - mean) / tf.maximum(std, _MIN_STD)

    label_ids = sorted_class_ids(_dense(inputs[features.LABEL_NAME_KEY], b""))
    return {
        features.transformed_name(features.IMAGE_KEY): normalized,
        features.transformed_name(features.LABEL_NAME_KEY): label_ids,
    }
