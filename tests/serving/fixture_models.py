"""Small SavedModels in the TF Serving layout, shaped like the ones lenspipe's pipeline pushes.

`serving_default(image_bytes)` decodes PNG bytes inside the graph and returns probabilities, class_id
and label (plus `model_version`, so tests can tell which version answered); `serving_examples`,
`classification` (method_name rewritten to tensorflow/serving/classify), `regression` (.../regress),
and two extra signatures for codec corners: `echo` (a `_bytes` output) and `add` (two inputs).
Also TF Serving's own test models: a TF1 `half_plus_three` (tf.compat.v1 + SavedModelBuilder, a
ParseExample graph) and a native TF2 `half_plus_two`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

LABELS = ["zero", "one", "two"]
SIDE = 8


class DemoModel(tf.Module):
    def __init__(self, version: int) -> None:
        super().__init__()
        rng = np.random.RandomState(7)
        self.w = tf.Variable(rng.randn(SIDE * SIDE, len(LABELS)).astype(np.float32))
        self.b = tf.Variable(np.float32(version) * np.array([0.5, -0.25, 0.1], np.float32))
        self.labels = tf.constant(LABELS)
        self.version = version

    def _from_images(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def decode(b: tf.Tensor) -> tf.Tensor:
            image = tf.cast(tf.io.decode_png(b, channels=1), tf.float32) / 255.0
            return tf.image.resize(image, [SIDE, SIDE])
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([SIDE, SIDE, 1], tf.float32))
        probs = tf.nn.softmax(tf.reshape(images, [-1, SIDE * SIDE]) @ self.w + self.b)
        class_id = tf.argmax(probs, axis=1)
        return {"probabilities": probs, "class_id": class_id, "label": tf.gather(self.labels, class_id),
                "model_version": tf.fill(tf.shape(class_id), tf.constant(self.version, tf.int64))}

    def _images_from_examples(self, examples: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(examples, {"image": tf.io.FixedLenFeature([], tf.string)})
        return parsed["image"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image_bytes):
        return self._from_images(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve_examples(self, examples):
        return self._from_images(self._images_from_examples(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        probs = self._from_images(self._images_from_examples(inputs))["probabilities"]
        classes = tf.tile(self.labels[tf.newaxis, :], [tf.shape(probs)[0], 1])
        return {"classes": classes, "scores": probs}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(self, inputs):
        return {"outputs": self._from_images(self._images_from_examples(inputs))["probabilities"][:, 0]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def echo(self, text):
        return {"text_bytes": text, "length": tf.strings.length(text)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.float32)])
    def add(self, a, b):
        return {"sum": a + b[:, tf.newaxis]}


def save_demo_model(export_dir: Path, version: int) -> Path:
    """Write a DemoModel SavedModel to export_dir and rewrite classify/regress method names."""
    model = DemoModel(version)
    tf.saved_model.save(model, str(export_dir), signatures={
        "serving_default": model.serve, "serving_examples": model.serve_examples,
        "classification": model.classify, "regression": model.regress, "echo": model.echo, "add": model.add})
    pb = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    sigs = saved.meta_graphs[0].signature_def
    sigs["classification"].method_name = "tensorflow/serving/classify"
    sigs["regression"].method_name = "tensorflow/serving/regress"
    pb.write_bytes(saved.SerializeToString())
    return export_dir


def png_bytes(seed: int, side: int = 12) -> bytes:
    """A deterministic grayscale PNG."""
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=(side, side, 1), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def example_bytes(image: bytes) -> bytes:
    """A serialized tf.Example with the `image` feature the examples signatures parse."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature={"image": feature})).SerializeToString()


def _half_example_features() -> dict:
    # TF Serving's testdata/saved_model_half_plus_two.py feature spec.
    return {"x": tf.io.FixedLenFeature([1], tf.float32),
            "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}


def save_tf1_half_plus_three(export_dir: Path) -> Path:
    """TF Serving's TF1 `saved_model_half_plus_three`: y = 0.5 x + 3 behind a ParseExample graph.

    Built with tf.compat.v1 and SavedModelBuilder as TF Serving's testdata generator builds it
    (predict x -> y as serving_default; classify/regress signatures take serialized tf.Examples).
    """
    v1 = tf.compat.v1
    builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
    with tf.Graph().as_default(), v1.Session() as sess:
        a, b, c = v1.Variable(0.5, name="a"), v1.Variable(3.0, name="b"), v1.Variable(4.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example", shape=[None])
        # The v1 ParseExample op, as TF 1.x graphs have it (tf.io.parse_example now emits ParseExampleV2).
        _, _, _, (x,) = tf.raw_ops.ParseExample(
            serialized=serialized, names=tf.constant([], tf.string), sparse_keys=[], dense_keys=[tf.constant("x")],
            dense_defaults=[tf.constant([], tf.float32)], sparse_types=[], dense_shapes=[[1]])
        x = tf.identity(x, name="x")
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        utils = v1.saved_model.signature_def_utils
        regress, classify = utils.regression_signature_def(serialized, y), \
            utils.classification_signature_def(serialized, None, y)
        # Keyed as in TF Serving's testdata, so its REST docs' :regress/:classify requests replay as is.
        sigs = {"serving_default": utils.predict_signature_def({"x": x}, {"y": y}),
                "tensorflow/serving/regress": regress, "regress_x_to_y": regress,
                "regress_x_to_y2": utils.regression_signature_def(serialized, y2),
                "tensorflow/serving/classify": classify, "classify_x_to_y": classify}
        sess.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(sess, [v1.saved_model.tag_constants.SERVING], signature_def_map=sigs)
    builder.save()
    # Make it a TF 1.0-era graph like TF Serving's own half_plus_three: GraphDef producer 21, where an
    # empty Placeholder shape means "unknown", and TensorInfos without shapes. The TF2 loader builds its
    # feeds from those TensorInfos (scalars) and fails at load: "Shape must be rank 1 but is rank 0".
    pb = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    meta_graph = saved.meta_graphs[0]
    meta_graph.graph_def.versions.producer = 21
    for node in meta_graph.graph_def.node:
        if node.name == "tf_example":
            node.attr["shape"].shape.Clear()
    for sig in meta_graph.signature_def.values():
        for info in sig.inputs.values():
            info.ClearField("tensor_shape")
    # ...and, as there, the examples input of tensorflow/serving/regress is declared DT_FLOAT.
    meta_graph.signature_def["tensorflow/serving/regress"].inputs["inputs"].dtype = types_pb2.DT_FLOAT
    pb.write_bytes(saved.SerializeToString())
    return export_dir


class HalfPlusTwo(tf.Module):
    """TF Serving's native TF2 half_plus_two: every signature has method_name predict."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = tf.Variable(0.5), tf.Variable(2.0), tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    def _x(self, examples: tf.Tensor) -> tf.Tensor:
        return tf.io.parse_example(examples, _half_example_features())["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress_y2(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.c}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        return {"scores": self.a * self._x(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def matmul(self, x):
        return {"y": tf.matmul(x, tf.ones([1, 1]))}


def save_tf2_half_plus_two(export_dir: Path) -> Path:
    """HalfPlusTwo, plus `matmul` (needs rank 2) whose method_name is rewritten to a custom one."""
    model = HalfPlusTwo()
    tf.saved_model.save(model, str(export_dir), signatures={
        "serving_default": model.predict, "regress_x_to_y": model.regress, "regress_x_to_y2": model.regress_y2,
        "classify_x_to_y": model.classify, "matmul": model.matmul})
    pb = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(pb.read_bytes())
    saved.meta_graphs[0].signature_def["matmul"].method_name = "custom/matmul"
    pb.write_bytes(saved.SerializeToString())
    return export_dir


def half_example(x: float) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[x]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString()
