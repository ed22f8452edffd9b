"""Run a lenspipe .tflite model with the TFLite interpreter: decode as documented, classify.

The documented input is a decoded uint8 image ``[1, H, W, C]``: decoded like the Transform
graph (first GIF frame, alpha dropped, grey = ITU-R 601 luma or grey tiled to RGB), and
resized to H x W with antialiased bilinear only if it is another size. ``decode_pixels``
does exactly that with the Transform's own functions.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

LABELS_FILE = "labels.txt"


def read_labels(path: str) -> list[str]:
    """Class names, one a line, in class-id order."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def write_labels(path: str, class_names: Sequence[str]) -> None:
    from trainer.tflite_export import write_atomic

    write_atomic(path, "".join(f"{name}\n" for name in class_names))


@functools.lru_cache(maxsize=8)
def _decoder(height: int, width: int, channels: int):
    from transform.preprocessing import decode_and_resize

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def decode(encoded):
        images = decode_and_resize(encoded, height, width, channels)
        return tf.cast(tf.round(images * 255.0), tf.uint8)

    return decode


def decode_pixels(encoded: Sequence[bytes], height: int, width: int, channels: int) -> np.ndarray:
    """uint8 [N, height, width, channels] of encoded images; raises tf.errors.OpError on a bad one."""
    return _decoder(height, width, channels)(tf.constant(list(encoded), tf.string)).numpy()


class TFLiteClassifier:
    """One .tflite file and its interpreter (one image per invoke, as the model's batch is 1).

    Labels come from ``labels.txt`` beside the file; without it classes are named by id.
    """

    def __init__(self, path: str, num_threads: Optional[int] = None, labels: Optional[Sequence[str]] = None):
        self.path = path
        from trainer.tflite_export import quiet_native_stderr

        try:
            with quiet_native_stderr():
                self.interpreter = tf.lite.Interpreter(model_path=path, num_threads=num_threads)
                self.interpreter.allocate_tensors()
                self.interpreter.invoke()  # the XNNPACK delegate announces itself on the first invoke
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: not a loadable TFLite model ({str(e).splitlines()[0]})") from None
        (inp,) = self.interpreter.get_input_details()
        (out,) = self.interpreter.get_output_details()
        if len(inp["shape"]) != 4 or inp["dtype"] not in (np.uint8, np.float32):
            raise ValueError(f"{path}: expected an image input [1, H, W, C], got {inp['shape']} {inp['dtype']}")
        self._in, self._out = inp["index"], out["index"]
        self._in_dtype = inp["dtype"]
        self._out_quant = out["quantization"] if out["dtype"] != np.float32 else None
        _, h, w, c = (int(v) for v in inp["shape"])
        self.input_shape = (h, w, c)
        if labels is None:
            labels_path = os.path.join(os.path.dirname(path), LABELS_FILE)
            labels = read_labels(labels_path) if os.path.exists(labels_path) else None
        k = int(out["shape"][-1])
        self.class_names = list(labels) if labels else [str(i) for i in range(k)]
        self.invoke_seconds = 0.0  # interpreter time only, summed over invokes
        self.invokes = 0

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 probabilities [N, K] for uint8 pixels [N, H, W, C]."""
        rows = []
        for image in pixels:
            self.interpreter.set_tensor(self._in, image[np.newaxis].astype(self._in_dtype))
            started = time.perf_counter()
            self.interpreter.invoke()
            self.invoke_seconds += time.perf_counter() - started
            self.invokes += 1
            out = self.interpreter.get_tensor(self._out)[0]
            if self._out_quant is not None:
                scale, zero = self._out_quant
                out = (out.astype(np.float32) - zero) * scale
            rows.append(np.asarray(out, np.float32))
        return np.stack(rows) if rows else np.zeros((0, len(self.class_names)), np.float32)

    def predict_encoded(self, encoded: Sequence[bytes]) -> np.ndarray:
        """Probabilities [N, K] for encoded images (decoded and resized as documented)."""
        return self.predict_pixels(decode_pixels(encoded, *self.input_shape))
