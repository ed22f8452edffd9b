"""Decides whether encoded bytes are a usable image, and measures the ones that are.

TensorFlow's ``tf.io.decode_image(..., expand_animations=False)`` is the authority: it is
what the Transform graph runs, so an image it cannot decode would fail training later.
PIL's full ``load()`` runs first because TensorFlow accepts some truncated files.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, TypeVar

import numpy as np
import tensorflow as tf
from PIL import Image

from lenspipe import features

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)
# ITU-R BT.601 luma, the weights tf.image.rgb_to_grayscale and PIL's "L" mode use.
_LUMA = np.array([0.2989, 0.5870, 0.1140])

T = TypeVar("T")


class BadImage(ValueError):
    """The bytes are not an image this pipeline can use; ``str(error)`` is the one-line reason."""


@dataclass(frozen=True)
class ImageInfo:
    """Properties of a decoded image, as TensorFlow decodes it."""

    height: int
    width: int
    channels: int
    format: str  # "png" | "jpeg" | "gif" | "bmp"
    brightness: float  # mean grey level in [0, 255]

    @property
    def brightness_bucket(self) -> str:
        return bucket(self.brightness, features.BRIGHTNESS_BUCKETS)

    @property
    def size_bucket(self) -> str:
        return bucket(min(self.height, self.width), features.SIZE_BUCKETS)


def bucket(value: float, buckets: Sequence[Tuple[float, T]]) -> T:
    """Name of the first bucket whose (exclusive) upper bound exceeds ``value``."""
    for upper, name in buckets:
        if value < upper:
            return name
    raise ValueError(f"{value} is above every bucket bound {[upper for upper, _ in buckets]}")


def detect_format(data: bytes) -> Optional[str]:
    """The image format named by the file signature, or None."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def one_line(error: Exception) -> str:
    """The first line of an error message without TF op decorations or object addresses."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    # TF errors carry "{{function_node ...}} " before and " [Op:DecodeImage] name: " after the message;
    # PIL names "<_io.BytesIO object at 0x...>", which would make rejected.jsonl differ run to run.
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text)
    return re.sub(r"\s*<[^<>]* object at 0x[0-9a-fA-F]+>", "", text)


def property_values(info: ImageInfo) -> dict[str, tuple[str, object]]:
    """The image-property features as feature key -> (kind, value); kind is "int", "float" or "bytes".

    The one definition of those features: ExampleGen writes them beside the image and its label,
    and `lenspipe serve --request_log_dir` writes the same ones for served requests, so training and
    serving statistics compare key by key.
    """
    return {
        features.HEIGHT_KEY: ("int", info.height),
        features.WIDTH_KEY: ("int", info.width),
        features.CHANNELS_KEY: ("int", info.channels),
        features.FORMAT_KEY: ("bytes", info.format),
        features.BRIGHTNESS_KEY: ("float", info.brightness),
        features.BRIGHTNESS_BUCKET_KEY: ("bytes", info.brightness_bucket),
        features.SIZE_BUCKET_KEY: ("bytes", info.size_bucket),
    }


def feature(kind: str, value) -> tf.train.Feature:
    """A one-value tf.train.Feature of `kind` ("int", "float" or "bytes"; str values are UTF-8 encoded)."""
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8") if isinstance(value, str) else value]))


def property_features(info: ImageInfo) -> dict:
    """The image-property features of a tf.Example (feature key -> tf.train.Feature)."""
    return {key: feature(kind, value) for key, (kind, value) in property_values(info).items()}


def inspect_image(data: bytes) -> ImageInfo:
    """Decodes ``data`` and measures it; raises BadImage with a one-line reason if unusable."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    image_format = detect_format(data)
    if image_format is None:
        raise BadImage("not an image: no PNG, JPEG, GIF or BMP signature in the first bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... on bad data
        raise BadImage(f"truncated or corrupt {image_format}: {one_line(error)}") from None
    return measure_image(data, image_format)


def measure_images(datas: Sequence[bytes], formats: Sequence[str]) -> list:
    """``measure_image`` of each image (its ImageInfo, or the BadImage it raises), in one TensorFlow call.

    For a batch of served requests: the per-image Python around each eager decode costs more than
    decoding a small image does.
    """
    if not datas:
        return []
    try:
        shapes, means = _batch_measure()(tf.constant(list(datas), tf.string))
    except (tf.errors.OpError, ValueError):  # one of them does not decode: find which, one by one
        return [_measured(data, image_format) for data, image_format in zip(datas, formats)]
    infos: list = []
    for (height, width, channels), mean, image_format in zip(shapes.numpy(), means.numpy(), formats):
        try:
            _check_pixels(height, width, image_format)
        except BadImage as error:
            infos.append(error)
            continue
        infos.append(ImageInfo(height=int(height), width=int(width), channels=int(channels),
                               format=image_format, brightness=float(mean)))
    return infos


def _check_pixels(height: int, width: int, image_format: str) -> None:
    if height == 0 or width == 0:
        raise BadImage(f"{image_format} has no pixels ({height}x{width})")


def _measured(data: bytes, image_format: str):
    try:
        return measure_image(data, image_format)
    except BadImage as error:
        return error


@functools.lru_cache(maxsize=1)
def _batch_measure():
    """measure_image's decode and arithmetic as one tf.function over a vector of images (built on first use)."""
    luma = tf.constant(_LUMA, tf.float64)

    def one(data):
        pixels = tf.io.decode_image(data, expand_animations=False)
        shape = tf.shape(pixels, out_type=tf.int64)
        values = tf.cast(pixels, tf.float64)
        grey = tf.cond(shape[2] < 3, lambda: values[..., 0], lambda: tf.tensordot(values[..., :3], luma, 1))
        return shape, tf.reduce_mean(grey)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def measure(data):
        return tf.map_fn(one, data, fn_output_signature=(tf.TensorSpec([3], tf.int64), tf.TensorSpec([], tf.float64)))

    return measure


def measure_image(data: bytes, image_format: str) -> ImageInfo:
    """The properties of ``data`` as TensorFlow decodes it, without PIL's stricter check.

    For bytes already known to be usable: a served request, which the model's graph decoded.
    Raises BadImage if TensorFlow cannot decode them.
    """
    try:
        # A tensor, not the bytes: with raw bytes the op misses TF's eager fast path (about 2x the time).
        pixels = tf.io.decode_image(tf.constant(data), expand_animations=False).numpy()
    except (tf.errors.OpError, ValueError) as error:
        raise BadImage(f"TensorFlow cannot decode this {image_format}: {one_line(error)}") from None
    height, width, channels = pixels.shape
    _check_pixels(height, width, image_format)
    # 1 = grey, 2 = grey + alpha, 3 = RGB, 4 = RGBA; alpha does not count towards brightness.
    grey = pixels[..., 0] if channels < 3 else pixels[..., :3] @ _LUMA
    return ImageInfo(
        height=int(height),
        width=int(width),
        channels=int(channels),
        format=image_format,
        brightness=float(np.mean(grey)),
    )
