"""A stand-in for a pipeline push: a Keras 3 CNN shaped like the trainer's default (32x32x3, 10 classes) whose signatures
decode PNG bytes in the graph, exported in the TF Serving layout with the pipeline's signature shape.

Used by the serving benchmark before (or without) `make run`: weights are random, so the numbers
measure serving, not accuracy.
"""
from __future__ import annotations

import os
from pathlib import Path

SIDE = 32
CHANNELS = 3
CLASSES = [str(i) for i in range(10)]


def make_demo_model(base_path: Path, version: int = 1) -> Path:
    """Write `<base_path>/<version>` (temp name + rename, as the pusher does) and return it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    keras.utils.set_random_seed(0)
    # Same architecture as lenspipe's trainer defaults (lenspipe/config.py): 32x32x3 input,
    # 3 blocks of 2x (conv-BN-ReLU) with 32/64/128 filters and a pool, dense 128, softmax.
    inputs = keras.Input((SIDE, SIDE, CHANNELS))
    x = inputs
    for block in range(3):
        for _ in range(2):
            x = keras.layers.Conv2D(32 * 2**block, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))
    module = tf.Module()
    module.model = model
    names = tf.constant(CLASSES)

    def predict(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def decode(b: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(b, channels=CHANNELS, expand_animations=False)
            return tf.image.resize(tf.cast(image, tf.float32) / 255.0, [SIDE, SIDE])
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([SIDE, SIDE, CHANNELS], tf.float32))
        probs = module.model(images, training=False)
        class_id = tf.argmax(probs, axis=-1, output_type=tf.int64)
        return {"probabilities": probs, "class_id": class_id, "label": tf.gather(names, class_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(image_bytes):
        return predict(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, {"image": tf.io.FixedLenFeature([], tf.string)})
        return predict(parsed["image"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        parsed = tf.io.parse_example(inputs, {"image": tf.io.FixedLenFeature([], tf.string)})
        probs = predict(parsed["image"])["probabilities"]
        return {"classes": tf.tile(names[tf.newaxis, :], [tf.shape(probs)[0], 1]), "scores": probs}

    base_path.mkdir(parents=True, exist_ok=True)
    tmp, final = base_path / f"{version}.tmp", base_path / str(version)
    tf.saved_model.save(module, str(tmp), signatures={
        "serving_default": serve_images.get_concrete_function(),
        "serving_examples": serve_examples.get_concrete_function(),
        "classification": classify.get_concrete_function()})
    pb = tmp / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    for meta_graph in proto.meta_graphs:
        meta_graph.signature_def["classification"].method_name = "tensorflow/serving/classify"
    pb.write_bytes(proto.SerializeToString())
    tmp.rename(final)
    return final
