"""Transform parity: the graph's output equals a NumPy reference from the same statistics."""

from __future__ import annotations

import numpy as np
import pytest

from lenspipe import features
from tests.conftest import analyze

IMAGE_XF = features.transformed_name(features.IMAGE_KEY)
LABEL_XF = features.transformed_name(features.LABEL_NAME_KEY)
LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float64)


def reference(arrays: list[np.ndarray]) -> np.ndarray:
    """Scale to [0, 1] and standardise each channel with full-pass mean and std."""
    x = np.stack(arrays).astype(np.float64) / 255.0
    mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
    std = x.reshape(-1, x.shape[-1]).std(axis=0)
    return (x - mean) / std


def test_rgb_output_matches_numpy_reference(tiny_images, tiny_transform):
    transformed, _ = tiny_transform
    got = np.stack([np.asarray(row[IMAGE_XF]).reshape(8, 8, 3) for row in transformed])
    want = reference([rgb for _, _, rgb in tiny_images])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_statistics_are_full_pass_not_per_image(tiny_transform):
    transformed, _ = tiny_transform
    got = np.stack([np.asarray(row[IMAGE_XF]).reshape(8, 8, 3) for row in transformed])
    # Standardised over the whole dataset: each channel has mean 0 and std 1 overall,
    # while single images do not.
    flat = got.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0), 1.0, atol=1e-3)
    assert abs(got[0].mean()) > 1e-3


def test_greyscale_config_uses_luma(tiny_images, tmp_path):
    transformed, _ = analyze(tiny_images, tmp_path, channels=1)
    got = np.stack([np.asarray(row[IMAGE_XF]).reshape(8, 8, 1) for row in transformed])
    grey = [(rgb.astype(np.float64) @ LUMA)[..., None] for _, _, rgb in tiny_images]
    # PNG greyscale files decode to one channel already (no luma applied to them).
    for i, (_, _, rgb) in enumerate(tiny_images):
        if i % 4 == 0:
            grey[i] = rgb[..., :1].astype(np.float64)
    np.testing.assert_allclose(got, reference(grey), atol=1e-3)


def test_labels_map_through_one_vocabulary(tiny_images, tiny_transform):
    transformed, transform_dir = tiny_transform
    import tensorflow_transform as tft

    vocab = [v.decode() for v in tft.TFTransformOutput(str(transform_dir)).vocabulary_by_name(features.LABEL_VOCAB_NAME)]
    assert vocab == ["cat", "dog", "owl"]
    for row, (_, label, _) in zip(transformed, tiny_images):
        assert vocab[int(np.asarray(row[LABEL_XF]).reshape(-1)[0])] == label


def test_class_ids_follow_sorted_names_not_frequency(tiny_images, tmp_path):
    """The most frequent class does not get id 0; ids are the sorted positions, and unseen names get -1."""
    import tensorflow as tf
    import tensorflow_transform as tft

    pngs = [png for png, _, _ in tiny_images]
    labels = ["zebra"] * 7 + ["ant"] + ["bee"] * 4  # frequency order zebra, bee, ant
    images = [(png, label, None) for png, label in zip(pngs, labels)]
    transformed, transform_dir = analyze(images, tmp_path)
    output = tft.TFTransformOutput(str(transform_dir))
    assert [v.decode() for v in output.vocabulary_by_name(features.LABEL_VOCAB_NAME)] == ["ant", "bee", "zebra"]
    ids = [int(np.asarray(row[LABEL_XF]).reshape(-1)[0]) for row in transformed]
    assert ids == [{"ant": 0, "bee": 1, "zebra": 2}[label] for label in labels]
    layer = output.transform_features_layer()
    out = layer({
        features.IMAGE_KEY: tf.constant([[pngs[0]], [pngs[1]]]),
        features.LABEL_NAME_KEY: tf.constant([[b"bee"], [b"yak"]]),
    })
    assert out[LABEL_XF].numpy().tolist() == [1, -1]


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_and_resize_shapes(channels):
    import tensorflow as tf

    from tests.conftest import png_bytes
    from transform.preprocessing import decode_and_resize

    big = png_bytes(np.full((40, 20, 3), 200, dtype=np.uint8))
    out = decode_and_resize(tf.constant([big, big]), 16, 16, channels).numpy()
    assert out.shape == (2, 16, 16, channels)
    np.testing.assert_allclose(out, 200 / 255.0, atol=1e-3)  # luma weights sum to 0.9999


def test_statistics_do_not_depend_on_how_beam_batches_the_data(tmp_path):
    """Beam sizes batches by measured time, so the batching differs between runs: the
    standardised pixels must be bit-identical whatever the batch size."""
    from tests.conftest import make_images

    images = [img for seed in range(20) for img in make_images(seed)]  # 240 images, random pixels
    outputs = []
    for batch_size in (1, 7, 100):
        rows, _ = analyze(images, tmp_path / f"batch-{batch_size}", batch_size=batch_size)
        outputs.append(np.stack([r[features.transformed_name(features.IMAGE_KEY)] for r in rows]))
    for other in outputs[1:]:
        np.testing.assert_array_equal(outputs[0], other)
