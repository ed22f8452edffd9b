"""Signatures exported with every model; the transform graph is inside each.

- ``serving_default``: ``image_bytes`` (string [None], raw PNG/JPEG/GIF/BMP) ->
  ``probabilities`` [None, K], ``class_id`` [None] int64, ``label`` [None] string.
- ``serving_examples``: ``examples`` (serialized tf.Examples) -> the same outputs;
  TFMA evaluates through it.
- ``transform_features``: ``examples`` -> ``label_name_xf``, the label as the model
  numbers classes; TFMA reads labels through it (preprocessing_function_names).
- ``classification``: ``inputs`` (serialized tf.Examples) -> ``classes`` [None, K],
  ``scores`` [None, K], with method_name ``tensorflow/serving/classify`` so that
  TF Serving's ``:classify`` accepts it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2

from lenspipe import features
from trainer import warmup
from trainer.data import IMAGE_XF, LABEL_XF, raw_input_spec

CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
CLASSIFICATION_SIGNATURE = "classification"
CLASSIFY_INPUTS = "inputs"  # TF Serving's kClassifyInputs


def class_names(tft_output: tft.TFTransformOutput) -> list[str]:
    """Label names in class-id order (the tft vocabulary)."""
    return [
        v.decode() if isinstance(v, bytes) else str(v)
        for v in tft_output.vocabulary_by_name(features.LABEL_VOCAB_NAME)
    ]


def _raw_feature(values: tf.Tensor, spec: Any) -> Any:
    """Shape a [batch] tensor as the raw feature spec says the transform graph expects."""
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(values, [-1] + list(spec.shape))
    return tf.sparse.from_dense(tf.reshape(values, [-1, 1]))


def build_serving_module(model: Any, tft_output: tft.TFTransformOutput) -> tuple[tf.Module, dict[str, Callable]]:
    """A tf.Module holding the model and the transform layer, and its signature functions."""
    module = tf.Module()
    module.model = model
    module.tft_layer = tft_output.transform_features_layer()
    # Keras 3 variables reach the SavedModel only through the Keras object graph, which TF1-style
    # loaders (TF Serving's C++ loader, tfx_bsl's RunInference in BulkInferrer) do not restore:
    # "Could not find variable block0_bn0/gamma" (keras-team/keras#20095). Tracking the underlying
    # tf.Variables on the module puts them in the checkpoint those loaders read.
    module.model_variables = [v.value for v in model.variables]
    names = class_names(tft_output)
    image_spec = tft_output.raw_feature_spec()[features.IMAGE_KEY]
    example_spec = {features.IMAGE_KEY: image_spec}

    def predict(raw: Mapping[str, Any]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        xf = module.tft_layer(dict(raw))
        probs = module.model(xf[IMAGE_XF], training=False)
        class_id = tf.argmax(probs, axis=-1, output_type=tf.int64)
        label = tf.gather(tf.constant(names), class_id)
        return probs, class_id, label

    def outputs(probs, class_id, label) -> dict[str, tf.Tensor]:
        return {
            features.PROBABILITIES_OUTPUT: probs,
            features.CLASS_ID_OUTPUT: class_id,
            features.LABEL_OUTPUT: label,
        }

    # autograph=False in every signature: nothing here branches on a tensor, and AutoGraph would
    # transpile the transform layer's Keras call stack once per signature (seconds per export).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGE_BYTES_INPUT)], autograph=False)
    def serve_images(image_bytes):
        return outputs(*predict({features.IMAGE_KEY: _raw_feature(image_bytes, image_spec)}))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)], autograph=False)
    def serve_examples(examples):
        return outputs(*predict(tf.io.parse_example(examples, example_spec)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)], autograph=False)
    def transform_features(examples):
        xf = module.tft_layer(tf.io.parse_example(examples, raw_input_spec(tft_output)))
        return {LABEL_XF: xf[LABEL_XF]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUTS)], autograph=False)
    def classify(inputs):
        probs, _, _ = predict(tf.io.parse_example(inputs, example_spec))
        classes = tf.tile(tf.constant([names]), [tf.shape(probs)[0], 1])
        return {features.CLASSIFY_CLASSES_OUTPUT: classes, features.CLASSIFY_SCORES_OUTPUT: probs}

    signatures = {
        features.SERVING_SIGNATURE: serve_images.get_concrete_function(),
        features.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        features.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
        CLASSIFICATION_SIGNATURE: classify.get_concrete_function(),
    }
    return module, signatures


def _mark_classify_method(export_dir: str) -> None:
    """Give the classification signature TF Serving's classify method_name.

    tf.saved_model.save writes every signature as a predict signature; TF Serving's
    :classify checks method_name, so it is set in saved_model.pb (temp file + rename).
    """
    path = os.path.join(export_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if CLASSIFICATION_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[CLASSIFICATION_SIGNATURE].method_name = CLASSIFY_METHOD_NAME
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(proto.SerializeToString())
    tf.io.gfile.rename(tmp, path, overwrite=True)


def export_serving_model(
    model: Any,
    tft_output: tft.TFTransformOutput,
    export_dir: str,
    metadata: Mapping[str, Any],
    warmup_images: Sequence[bytes] = (),
) -> None:
    """Save ``model`` with the transform graph and all signatures to ``export_dir``.

    ``metadata`` (seed, hyperparameters, class names, metrics) is written as JSON
    to ``features.MODEL_METADATA_FILE`` beside the model; ``warmup_images`` (a few real encoded
    images) become TF Serving's warm-up file (trainer/warmup.py).
    """
    module, signatures = build_serving_module(model, tft_output)
    tf.saved_model.save(module, export_dir, signatures=signatures)
    _mark_classify_method(export_dir)
    path = os.path.join(export_dir, features.MODEL_METADATA_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(dict(metadata), indent=2, sort_keys=True, default=str))
    warmup.write_warmup_file(export_dir, list(warmup_images))
