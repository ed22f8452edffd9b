"""decoding.measure_images (the request log's batched measurement) against measure_image, image by image."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from components.image_example_gen.decoding import BadImage, ImageInfo, detect_format, measure_image, measure_images


def _encode(array: np.ndarray, mode: str, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, fmt)
    return buffer.getvalue()


def _images() -> list[bytes]:
    rng = np.random.default_rng(3)

    def noise(*shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    return [
        _encode(noise(7, 5), "L", "PNG"),  # grey: channel 0
        _encode(noise(6, 9, 2), "LA", "PNG"),  # grey + alpha: channel 0, alpha ignored
        _encode(noise(10, 4, 3), "RGB", "PNG"),  # luma of RGB
        _encode(noise(3, 8, 4), "RGBA", "PNG"),  # luma of RGB, alpha ignored
        _encode(noise(16, 12, 3), "RGB", "JPEG"),
        _encode(noise(5, 5), "L", "GIF"),  # TensorFlow decodes GIFs to RGB
        _encode(noise(4, 6, 3), "RGB", "BMP"),
        _encode(noise(28, 28), "L", "PNG"),
    ]


def test_a_batch_measures_each_image_as_measure_image_does():
    images = _images()
    batch = measure_images(images, [detect_format(data) for data in images])
    assert len(batch) == len(images)
    for data, info in zip(images, batch):
        one = measure_image(data, detect_format(data))
        assert isinstance(info, ImageInfo)
        assert (info.height, info.width, info.channels, info.format) == (one.height, one.width, one.channels, one.format)
        assert info.brightness == pytest.approx(one.brightness, rel=1e-12)
        assert (info.brightness_bucket, info.size_bucket) == (one.brightness_bucket, one.size_bucket)
    assert {info.channels for info in batch} == {1, 2, 3, 4}  # every branch of the grey level was taken


def test_an_image_tensorflow_cannot_decode_is_a_bad_image_and_the_rest_are_still_measured():
    images = _images()[:3]
    one_bit_bmp = _encode(np.ones((8, 8), dtype=bool), "1", "BMP")  # PIL writes it; TensorFlow cannot decode it
    truncated = images[2][: len(images[2]) // 2]
    batch = measure_images([images[0], one_bit_bmp, images[1], truncated, images[2]], ["png", "bmp", "png", "png", "png"])
    assert [type(x) for x in batch] == [ImageInfo, BadImage, ImageInfo, BadImage, ImageInfo]
    assert "TensorFlow cannot decode this bmp" in str(batch[1])
    assert [x.brightness for x in batch if isinstance(x, ImageInfo)] == \
        [measure_image(data, "png").brightness for data in images]
    assert measure_images([], []) == []
