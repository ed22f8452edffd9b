"""The exported signatures: raw bytes in, the in-memory model's answer out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from lenspipe import features
from lenspipe.config import TrainerConfig
from trainer import data, hparams, model, signatures

TRAINER_CFG = TrainerConfig(conv_blocks=2, base_filters=8, dense_units=16, dropout=0.2, learning_rate=1e-3)


@pytest.fixture(scope="module")
def exported(tiny_transform, tmp_path_factory):
    import tensorflow_transform as tft

    _, transform_dir = tiny_transform
    tft_output = tft.TFTransformOutput(str(transform_dir))
    net = model.build_model(
        hparams.search_space(TRAINER_CFG), input_shape=(8, 8, 3), num_classes=3, trainer_cfg=TRAINER_CFG, seed=1
    )
    export_dir = str(tmp_path_factory.mktemp("export") / "model")
    signatures.export_serving_model(model.inference_model(net), tft_output, export_dir, metadata={"seed": 1})
    return net, tft_output, export_dir


def _in_memory(net, tft_output, pngs):
    raw = {features.IMAGE_KEY: tf.reshape(tf.constant(pngs), [-1, 1])}
    xf = tft_output.transform_features_layer()(raw)
    return net(xf[data.IMAGE_XF], training=False).numpy()


def test_serving_default_predicts_from_png_bytes_like_the_in_memory_model(exported, tiny_images):
    net, tft_output, export_dir = exported
    pngs = [png for png, _, _ in tiny_images[:5]]
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures[features.SERVING_SIGNATURE](**{features.IMAGE_BYTES_INPUT: tf.constant(pngs)})
    probs = out[features.PROBABILITIES_OUTPUT].numpy()
    np.testing.assert_allclose(probs, _in_memory(net, tft_output, pngs), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    ids = out[features.CLASS_ID_OUTPUT].numpy()
    assert list(ids) == list(probs.argmax(axis=1))
    names = signatures.class_names(tft_output)
    assert [v.decode() for v in out[features.LABEL_OUTPUT].numpy()] == [names[i] for i in ids]


def _examples(pngs):
    """Serialized tf.Examples holding each PNG under the image key."""
    return [
        tf.train.Example(features=tf.train.Features(feature={
            features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[p])),
        })).SerializeToString()
        for p in pngs
    ]


def test_examples_signature_agrees_with_bytes_signature(exported, tiny_images):
    _, _, export_dir = exported
    pngs = [png for png, _, _ in tiny_images[:4]]
    examples = _examples(pngs)
    loaded = tf.saved_model.load(export_dir)
    by_bytes = loaded.signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(pngs))
    by_examples = loaded.signatures[features.EXAMPLES_SIGNATURE](examples=tf.constant(examples))
    np.testing.assert_allclose(
        by_bytes[features.PROBABILITIES_OUTPUT].numpy(), by_examples[features.PROBABILITIES_OUTPUT].numpy(), atol=1e-6
    )
    classified = loaded.signatures[signatures.CLASSIFICATION_SIGNATURE](inputs=tf.constant(examples))
    np.testing.assert_allclose(
        classified[features.CLASSIFY_SCORES_OUTPUT].numpy(), by_bytes[features.PROBABILITIES_OUTPUT].numpy(), atol=1e-6
    )


def test_saved_model_declares_classify_method_and_metadata(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    _, _, export_dir = exported
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(tf.io.gfile.GFile(f"{export_dir}/saved_model.pb", "rb").read())
    defs = proto.meta_graphs[0].signature_def
    assert defs[signatures.CLASSIFICATION_SIGNATURE].method_name == "tensorflow/serving/classify"
    assert defs[features.SERVING_SIGNATURE].method_name == "tensorflow/serving/predict"
    assert set(defs[features.SERVING_SIGNATURE].inputs) == {features.IMAGE_BYTES_INPUT}
    meta = json.loads(open(f"{export_dir}/assets.extra/lenspipe.json").read())
    assert meta["seed"] == 1


def test_augmentation_is_inactive_at_inference(exported):
    net, _, _ = exported
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(net(x, training=False).numpy(), net(x, training=False).numpy())
    assert not np.allclose(net(x, training=True).numpy(), net(x, training=False).numpy())


def test_tf1_style_loader_finds_the_variables(exported, tiny_images):
    """TF Serving's C++ loader and BulkInferrer (tfx_bsl) load through a TF1 session and the saver."""
    _, _, export_dir = exported
    pngs = [png for png, _, _ in tiny_images[:3]]
    examples = _examples(pngs)
    with tf.compat.v1.Session(graph=tf.compat.v1.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        sig = meta.signature_def[features.EXAMPLES_SIGNATURE]
        probs = sess.run(sig.outputs[features.PROBABILITIES_OUTPUT].name,
                         feed_dict={sig.inputs[features.EXAMPLES_INPUT].name: examples})
    by_bytes = tf.saved_model.load(export_dir).signatures[features.SERVING_SIGNATURE](image_bytes=tf.constant(pngs))
    np.testing.assert_allclose(probs, by_bytes[features.PROBABILITIES_OUTPUT].numpy(), atol=1e-6)


def test_export_writes_tf_serving_warmup_requests_of_real_images(tiny_transform, tiny_images, tmp_path):
    import tensorflow_transform as tft
    from tensorflow_serving.apis import prediction_log_pb2

    from trainer import warmup

    _, transform_dir = tiny_transform
    tft_output = tft.TFTransformOutput(str(transform_dir))
    net = model.build_model(
        hparams.search_space(TRAINER_CFG), input_shape=(8, 8, 3), num_classes=3, trainer_cfg=TRAINER_CFG, seed=1
    )
    pngs = [png for png, _, _ in tiny_images[:3]]
    export_dir = str(tmp_path / "model")
    signatures.export_serving_model(model.inference_model(net), tft_output, export_dir, metadata={}, warmup_images=pngs)
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(f"{export_dir}/{warmup.WARMUP_FILE}")]
    assert [len(r.predict_log.request.inputs[features.IMAGE_BYTES_INPUT].string_val) for r in records] == [1, 1, 1, 8]
    sent = [v for r in records for v in r.predict_log.request.inputs[features.IMAGE_BYTES_INPUT].string_val]
    assert set(sent) == set(pngs)
    # Each logged request is a valid call of the exported signature.
    request = records[-1].predict_log.request
    fn = tf.saved_model.load(export_dir).signatures[request.model_spec.signature_name]
    out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    assert out[features.PROBABILITIES_OUTPUT].shape == (8, 3)
