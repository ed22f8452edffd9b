"""Batch prediction over files and folders, without a pipeline or a server.

Streaming: files are listed lazily, read and classified ``batch_size`` at a time, and each
answer is written as soon as it is known, so memory stays bounded whatever the folder size.
A file that cannot be read, is not an image or does not decode is skipped with its reason;
a bad image inside a batch is found by retrying that batch one image at a time. The JSON
Lines file and its CSV twin are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Protocol, Sequence, TextIO

import numpy as np

from components.image_example_gen.decoding import detect_format, one_line
from components.image_example_gen.layout import IMAGE_EXTENSIONS

MAX_SKIPPED_KEPT = 1000  # reasons kept for the summary; the count covers all


class Backend(Protocol):
    class_names: list[str]

    def predict_encoded(self, encoded: Sequence[bytes]) -> np.ndarray:
        """Probabilities [N, K]; raises on an undecodable image."""


class SavedModelBackend:
    """The SavedModel's serving_default signature (the served model's own graph), in process."""

    def __init__(self, saved_model_dir: str):
        import tensorflow as tf

        from lenspipe import features

        meta_path = os.path.join(saved_model_dir, features.MODEL_METADATA_FILE)
        if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
            raise ValueError(f"{saved_model_dir}: no saved_model.pb; give a model version directory (e.g. serving/lenspipe/1)")
        self._signature = tf.saved_model.load(saved_model_dir).signatures[features.SERVING_SIGNATURE]
        self._input = features.IMAGE_BYTES_INPUT
        self._output = features.PROBABILITIES_OUTPUT
        self._tf = tf
        names = []
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                names = json.load(f).get("class_names", [])
        self.class_names = list(names)

    def predict_encoded(self, encoded: Sequence[bytes]) -> np.ndarray:
        out = self._signature(**{self._input: self._tf.constant(list(encoded))})
        probs = out[self._output].numpy()
        if not self.class_names:
            self.class_names = [str(i) for i in range(probs.shape[1])]
        return probs


@dataclass
class Summary:
    images: int = 0
    per_class: collections.Counter = field(default_factory=collections.Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # first MAX_SKIPPED_KEPT (path, reason)
    skipped_count: int = 0

    def skip(self, path: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append((path, reason))

    def format(self) -> str:
        lines = [f"predicted: {self.images} image(s)"]
        if self.per_class:
            lines.append("per class: " + ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items())))
        lines.append(f"skipped:   {self.skipped_count} file(s)")
        lines += [f"  - {path}: {reason}" for path, reason in self.skipped]
        if self.skipped_count > len(self.skipped):
            lines.append(f"  ... and {self.skipped_count - len(self.skipped)} more")
        return "\n".join(lines)


def iter_files(inputs: Sequence[str]) -> Iterator[str]:
    """Every file named or found below a named folder (sorted per folder, hidden entries skipped)."""
    for item in inputs:
        if not os.path.isdir(item):
            yield item
            continue
        for dirpath, dirnames, filenames in os.walk(item):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield os.path.join(dirpath, name)


def count_files(inputs: Sequence[str]) -> int:
    return sum(1 for _ in iter_files(inputs))


def _read(path: str) -> tuple[Optional[bytes], str]:
    """(bytes, "") of a readable image file, or (None, reason)."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        return None, f"unsupported extension {extension or '(none)'} (accepted: {' '.join(IMAGE_EXTENSIONS)})"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read: {e.strerror}"
    if not data:
        return None, "empty file (0 bytes)"
    if detect_format(data) is None:
        return None, "not an image: no PNG, JPEG, GIF or BMP signature in the first bytes"
    return data, ""


def _predict_batch(backend: Backend, batch: list[tuple[str, bytes]], summary: Summary):
    """(path, probabilities) of every image of the batch that decodes; the rest are skipped."""
    try:
        probs = backend.predict_encoded([data for _, data in batch])
        return list(zip((p for p, _ in batch), probs))
    except Exception:  # noqa: BLE001 - one bad image fails the whole call: find it
        if len(batch) == 1:
            raise
    good = []
    for path, data in batch:
        try:
            good.append((path, backend.predict_encoded([data])[0]))
        except Exception as e:  # noqa: BLE001 - TF raises InvalidArgumentError and friends
            summary.skip(path, f"cannot decode: {one_line(e)}")
    return good


def predict(
    backend: Backend,
    inputs: Sequence[str],
    batch_size: int = 32,
    summary: Optional[Summary] = None,
    progress: Optional[object] = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """(path, probabilities) of every readable image in ``inputs``, streamed in batches."""
    summary = summary if summary is not None else Summary()
    batch: list[tuple[str, bytes]] = []

    def flush():
        if batch:
            try:
                yield from _predict_batch(backend, batch, summary)
            except Exception as e:  # noqa: BLE001 - a single image that does not decode
                summary.skip(batch[0][0], f"cannot decode: {one_line(e)}")
            if progress is not None:
                progress.update(len(batch))
            batch.clear()

    for path in iter_files(inputs):
        data, reason = _read(path)
        if data is None:
            summary.skip(path, reason)
            if progress is not None:
                progress.update(1)
            continue
        batch.append((path, data))
        if len(batch) >= batch_size:
            yield from flush()
    yield from flush()


def prediction_row(path: str, probs: np.ndarray, class_names: Sequence[str], top_k: int) -> dict:
    order = np.argsort(-np.asarray(probs), kind="stable")[:top_k]
    top = [{"class_id": int(i), "label": class_names[i], "probability": float(probs[i])} for i in order]
    return {"path": path, "class_id": top[0]["class_id"], "label": top[0]["label"],
            "probability": top[0]["probability"], "top_k": top}


class PredictionWriter:
    """predictions.jsonl and its CSV twin, visible only once complete (temporary names + rename)."""

    CSV_FIELDS = ("path", "class_id", "label", "probability", "top_k")

    def __init__(self, jsonl_path: str):
        self.jsonl_path = jsonl_path
        self.csv_path = os.path.splitext(jsonl_path)[0] + ".csv"
        os.makedirs(os.path.dirname(os.path.abspath(jsonl_path)), exist_ok=True)
        self._tmp = [f"{p}.tmp-{os.getpid()}" for p in (self.jsonl_path, self.csv_path)]
        self._jsonl: TextIO = open(self._tmp[0], "w", encoding="utf-8")
        self._csv_file: TextIO = open(self._tmp[1], "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(self.CSV_FIELDS)

    def write(self, row: dict) -> None:
        self._jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
        top = " ".join(f"{t['label']}:{t['probability']:.6f}" for t in row["top_k"])
        self._csv.writerow([row["path"], row["class_id"], row["label"], f"{row['probability']:.6f}", top])

    def commit(self) -> None:
        for f in (self._jsonl, self._csv_file):
            f.close()
        os.replace(self._tmp[1], self.csv_path)
        os.replace(self._tmp[0], self.jsonl_path)

    def abort(self) -> None:
        for f in (self._jsonl, self._csv_file):
            f.close()
        for p in self._tmp:
            if os.path.exists(p):
                os.remove(p)


def predict_to_files(
    backend: Backend,
    inputs: Sequence[str],
    output: str,
    batch_size: int = 32,
    top_k: int = 3,
    show_progress: bool = True,
    stream: TextIO = sys.stderr,
) -> Summary:
    """Classify every readable image in ``inputs`` into ``output`` (JSON Lines) and its .csv twin."""
    from tqdm import tqdm

    summary = Summary()
    writer = PredictionWriter(output)
    bar = tqdm(total=count_files(inputs), unit="file", file=stream, disable=not show_progress, mininterval=0.5)
    try:
        for path, probs in predict(backend, inputs, batch_size, summary, bar):
            row = prediction_row(path, probs, backend.class_names, min(top_k, len(probs)))
            writer.write(row)
            summary.images += 1
            summary.per_class[row["label"]] += 1
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    writer.commit()
    return summary


def write_rows(rows: Iterable[dict], output: str) -> int:
    """Write already computed prediction rows (e.g. from BulkInferrer) atomically; returns the count."""
    writer = PredictionWriter(output)
    n = 0
    try:
        for row in rows:
            writer.write(row)
            n += 1
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return n


__all__ = ["PredictionWriter", "SavedModelBackend", "Summary", "predict", "predict_to_files", "prediction_row",
           "write_rows"]
