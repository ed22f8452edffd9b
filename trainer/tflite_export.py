"""TensorFlow Lite twins of an exported model: decoded uint8 pixels in, probabilities out.

The Transform graph decodes bytes (no TFLite builtin does), so each TFLite model starts one
step later: a decoded ``uint8 [1, H_in, W_in, C]`` image. The rest of the Transform is rebuilt
from builtin ops only (no Flex ops, so stock Android/iOS/MCU runtimes load it): the
antialiased bilinear resize as two constant matrices (the Transform's own resize, applied
to unit images, so it is exact for that input size), the clip, and the per-channel
standardisation, whose mean and std are read out of the Transform graph itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from lenspipe import features

VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")
INPUT_NAME = "image"
OUTPUT_NAME = features.PROBABILITIES_OUTPUT
# Keras 3 saves a model's inference call (training=False) under this name; the Trainer's
# SavedModel keeps the classifier as its ``model`` attribute.
_KERAS_CALL = "_default_save_signature"

RepresentativeData = Callable[[], Iterable[np.ndarray]]  # yields uint8 [1, H_in, W_in, C]


class TFLiteExportError(RuntimeError):
    """The SavedModel or the Transform graph cannot be turned into a builtin-ops TFLite model."""


@dataclass(frozen=True)
class Preprocessing:
    """What the TFLite graph does before the classifier, as numbers (recorded in the metadata)."""

    input_shape: tuple[int, int, int]  # H_in, W_in, C the TFLite model takes
    model_shape: tuple[int, int, int]  # H, W, C the classifier takes
    mean: tuple[float, ...]  # per channel, pixels scaled to [0, 1]
    std: tuple[float, ...]


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what the TFLite converter and interpreter print from C++ straight to fd 2.

    They log through absl before it is initialised ("Ignored output_format", "Created
    TensorFlow Lite XNNPACK delegate"), past TF_CPP_MIN_LOG_LEVEL; errors still arrive as
    Python exceptions.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def read_normalisation(tft_output, model_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) the Transform graph applies, read by running it on flat images.

    A black image maps to -mean/std and a white one to (1 - mean)/std; a mid-grey image
    checks that the map is the per-channel affine one this export rebuilds. Raises
    TFLiteExportError if it is not (e.g. the preprocessing_fn changed shape).
    """
    h, w, c = (int(v) for v in model_shape)
    levels = (0, 255, 128)
    pngs = [_png(np.full((h, w, c), v, np.uint8)) for v in levels]
    raw = {features.IMAGE_KEY: tf.reshape(tf.constant(pngs), [-1, 1])}
    xf = tft_output.transform_features_layer()(raw)[features.transformed_name(features.IMAGE_KEY)].numpy()
    black, white, grey = (xf[i].reshape(-1, c) for i in range(3))
    if not all(np.allclose(v, v[0], atol=1e-5) for v in (black, white, grey)):
        raise TFLiteExportError("the Transform graph does not map a flat image to a flat image; cannot rebuild it in TFLite")
    black, white, grey = black[0], white[0], grey[0]
    std = 1.0 / (white - black)
    mean = -black * std
    expected = (128 / 255.0 - mean) / std
    if not np.allclose(grey, expected, atol=1e-4):
        raise TFLiteExportError("the Transform graph's image normalisation is not per-channel (x - mean) / std")
    return mean.astype(np.float32), std.astype(np.float32)


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of the Transform's antialiased bilinear resize along one axis."""
    basis = np.eye(size_in, dtype=np.float32).reshape(size_in, 1, size_in)  # unit image per input row
    resized = tf.image.resize(basis, [size_out, 1], method="bilinear", antialias=True).numpy()
    return resized[:, 0, :]


def build_tflite_function(classifier, prep: Preprocessing, *, float_input: bool = False) -> tf.types.experimental.ConcreteFunction:
    """The function TFLite converts: pixels -> resize -> clip -> (x - mean) / std -> classifier.

    ``float_input`` (full-integer variant): the input is float32 pinned to the uint8 grid by a
    fake-quant node, so the converter gives the uint8 input scale 1 and zero point 0 whatever
    the representative data hold.
    """
    hi, wi, c = prep.input_shape
    h, w, _ = prep.model_shape
    resize_rows = tf.constant(resize_matrix(hi, h)) if hi != h else None
    resize_cols = tf.constant(resize_matrix(wi, w).T) if wi != w else None
    scale = tf.constant(1.0 / np.asarray(prep.std, np.float32))
    offset = tf.constant(-np.asarray(prep.mean, np.float32) / np.asarray(prep.std, np.float32))

    def pixels_to_probabilities(image):
        if float_input:
            x = tf.quantization.fake_quant_with_min_max_args(image, min=0.0, max=255.0, num_bits=8)
        else:
            x = tf.cast(image, tf.float32)
        x = x * (1.0 / 255.0)  # what tf.image.convert_image_dtype does to uint8
        if resize_rows is not None or resize_cols is not None:
            x = tf.reshape(x, [hi, wi * c])
            if resize_rows is not None:
                x = tf.matmul(resize_rows, x)  # [h, wi * c]
            x = tf.transpose(tf.reshape(x, [h, wi, c]), [0, 2, 1])  # [h, c, wi]
            x = tf.reshape(x, [h * c, wi])
            if resize_cols is not None:
                x = tf.matmul(x, resize_cols)  # [h * c, w]
            x = tf.transpose(tf.reshape(x, [h, c, w]), [0, 2, 1])[tf.newaxis]
            x = tf.clip_by_value(x, 0.0, 1.0)
        x = x * scale + offset
        return {OUTPUT_NAME: classifier(x)}

    spec = tf.TensorSpec([1, hi, wi, c], tf.float32 if float_input else tf.uint8, name=INPUT_NAME)
    return tf.function(pixels_to_probabilities, input_signature=[spec], autograph=False).get_concrete_function()


class Converter:
    """Converts one SavedModel's classifier into any of the VARIANTS.

    The SavedModel is loaded once and each input kind's function (uint8 pixels, or the
    full-integer variant's fake-quantised floats) is traced once, however many variants are
    converted: a load and a trace per variant cost a few seconds each.
    """

    def __init__(self, saved_model_dir: str, prep: Preprocessing) -> None:
        self.saved_model_dir = saved_model_dir
        self.prep = prep
        self._loaded = None
        self._functions: dict[bool, tf.types.experimental.ConcreteFunction] = {}

    @property
    def loaded(self):
        """The loaded SavedModel (its serving signatures too)."""
        if self._loaded is None:
            self._loaded = tf.saved_model.load(self.saved_model_dir)
        return self._loaded

    def _function(self, float_input: bool) -> tf.types.experimental.ConcreteFunction:
        if float_input not in self._functions:
            call = getattr(getattr(self.loaded, "model", None), _KERAS_CALL, None)
            if call is None:
                raise TFLiteExportError(
                    f"{self.saved_model_dir}: no Keras classifier under 'model' (export it with trainer/signatures.py)"
                )
            self._functions[float_input] = build_tflite_function(call, self.prep, float_input=float_input)
        return self._functions[float_input]

    def convert(self, variant: str, representative: Optional[RepresentativeData] = None) -> bytes:
        """One TFLite flatbuffer of the classifier with ``prep`` baked in.

        ``full_int8`` needs ``representative`` (uint8 images at ``prep.input_shape``). Builtin
        ops only: a graph needing Flex ops fails the conversion (TFLiteExportError).
        """
        if variant not in VARIANTS:
            raise ValueError(f"TFLite variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "full_int8" and representative is None:
            raise ValueError("the full_int8 variant needs a representative dataset")
        converter = tf.lite.TFLiteConverter.from_concrete_functions([self._function(variant == "full_int8")], self.loaded)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif variant == "dynamic_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "full_int8":

            def floats() -> Iterator[list[np.ndarray]]:
                for image in representative():
                    yield [np.asarray(image, np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = floats
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        try:
            with quiet_native_stderr():
                return converter.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises many types; one line for the user
            message = str(e).strip().splitlines()
            raise TFLiteExportError(f"TFLite conversion of {variant} failed: {message[0] if message else type(e).__name__}") from e


def convert(
    saved_model_dir: str,
    prep: Preprocessing,
    variant: str,
    representative: Optional[RepresentativeData] = None,
) -> bytes:
    """One variant of the SavedModel's classifier (Converter.convert; use a Converter for several)."""
    return Converter(saved_model_dir, prep).convert(variant, representative)


def metadata(prep: Preprocessing, class_names: Sequence[str]) -> dict:
    """The input contract of every variant, and the labels (written into check.json beside them)."""
    h, w, c = prep.input_shape
    return {
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": [1, h, w, c],
                  "layout": "decoded image, channels converted (alpha dropped; grey = ITU-R 601 luma), "
                            f"resized to {h}x{w} with antialiased bilinear if it is another size"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [1, len(class_names)]},
        "preprocessing": asdict(prep),
        "class_names": list(class_names),
    }


def write_atomic(path: str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename."""
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path: str, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True))
