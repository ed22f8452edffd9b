"""The request log's writer process: `python -m serving.request_log_writer OPTIONS_JSON`.

Started by serving.request_log.RequestLogger, one per server. It reads frames of sampled requests
from stdin, measures each image with ImageExampleGen's own code (components/image_example_gen/
decoding.py: measure_images, property_values) so the logged properties are the training features
key by key, and appends tf.Examples to a TFRecord file. Files are written under a
temporary name and renamed when closed (by size, by age, or at the end of input), so a reader never
sees half a file; the oldest closed files are deleted to keep the directory under its byte budget.
Counters and flush acknowledgements go back to the server as JSON lines on stdout.

It runs at a lower CPU priority than the server (nice 10): the log is best-effort, and when the
cores are saturated serving comes first; a writer that falls behind fills its pipe, and the server
then drops (and counts) sampled requests instead of waiting.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import select
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from serving.request_log import (FILE_PREFIX, FILE_SUFFIX, RECORD_OVERHEAD, TEMP_PREFIX, Entry, Flush,
                                 RequestLogOptions, finished_files, unframe)

log = logging.getLogger("serving.request_log_writer")
NICENESS = 10
REPORT_SECONDS = 0.25  # counters go back to the server at most this often (and at every flush and the end)


class LogFiles:
    """The TFRecord files of one writer: the open temporary file, rotation and the byte budget."""

    def __init__(self, options: RequestLogOptions) -> None:
        self.options = options
        self.directory = Path(options.directory)
        self.counts: dict[str, float] = {}
        self._finished = {p: p.stat().st_size for p in finished_files(self.directory)}
        self._writer = None  # tf.io.TFRecordWriter of the open file
        self._temp: Optional[Path] = None
        self._final: Optional[Path] = None
        self._size = 0
        self._opened_at = 0.0
        self._seq = 0

    def count(self, outcome: str, amount: float = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + amount

    def seconds_left(self) -> Optional[float]:
        """Until the open file is due to close by age (None: no file is open)."""
        if self._writer is None:
            return None
        return max(0.0, self._opened_at + self.options.max_file_seconds - time.monotonic())

    def write(self, record: bytes) -> None:
        size = len(record) + RECORD_OVERHEAD
        if size > self.options.max_file_bytes:
            self.count("dropped_too_large")
            return
        if self._writer is not None and self._size + size > self.options.max_file_bytes:
            self.close_file()
        self._make_room(size)
        if self._writer is None:
            self._open_file()
        self._writer.write(record)
        self._size += size
        self.count("logged")

    def _open_file(self) -> None:
        import tensorflow as tf

        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        self._seq += 1
        self._final = self.directory / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._seq:06d}{FILE_SUFFIX}"
        self._temp = self.directory / f"{TEMP_PREFIX}{os.getpid()}-{self._final.name}"
        self._writer = tf.io.TFRecordWriter(str(self._temp))
        self._size = 0
        self._opened_at = time.monotonic()

    def close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._temp is not None and self._final is not None
        os.replace(self._temp, self._final)
        self._finished[self._final] = self._final.stat().st_size
        self._writer = self._temp = self._final = None
        self._size = 0

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _make_room(self, size: int) -> None:
        """Delete the oldest closed files until closed + open + `size` bytes fit the budget."""
        budget = self.options.max_total_bytes
        while self._finished and sum(self._finished.values()) + self._size + size > budget:
            oldest = min(self._finished)
            self._finished.pop(oldest)
            try:
                oldest.unlink()
            except FileNotFoundError:
                pass
            self.count("files_deleted_for_budget")


def records(entries: Sequence[Entry], count: Callable[[str], None]) -> list[bytes]:
    """The serialized tf.Examples of sampled requests, one per decodable image, in order; `count` is
    told of each image that is skipped.

    One batched decode (decoding.measure_images) and one tf.Example encoding (tfx_bsl's, in C++) for
    all of them: per image, the Python around single eager decodes and tf.train protos cost three
    times what the work itself does.
    """
    import pyarrow as pa
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    from components.image_example_gen.decoding import ImageInfo, detect_format, measure_images, property_values
    from lenspipe import features as f

    images: list[tuple[bytes, str, Entry]] = []
    for entry in entries:
        for item in list(entry.images.reshape(-1)) if hasattr(entry.images, "reshape") else entry.images:
            data = item
            if entry.examples:
                example = tf.train.Example()
                try:
                    example.ParseFromString(item)
                    data = example.features.feature[f.IMAGE_KEY].bytes_list.value[0]
                except Exception:  # noqa: BLE001 - not a tf.Example with an image: nothing to measure
                    count("skipped_undecodable")
                    continue
            image_format = detect_format(data) if isinstance(data, bytes) else None
            if image_format is None:
                count("skipped_undecodable")
                continue
            images.append((data, image_format, entry))
    # The model already decoded these bytes: TensorFlow's decode (the authority ExampleGen uses too)
    # without ExampleGen's extra PIL check, which would double the cost.
    infos = measure_images([data for data, _, _ in images], [image_format for _, image_format, _ in images])
    columns: dict[str, tuple[str, list]] = {}

    def add(key: str, kind: str, value) -> None:
        columns.setdefault(key, (kind, []))[1].append(value)

    for (data, _, entry), info in zip(images, infos):
        if not isinstance(info, ImageInfo):
            count("skipped_undecodable")
            continue
        add(f.IMAGE_KEY, "bytes", data)
        for key, (kind, value) in property_values(info).items():
            add(key, kind, value)
        add(f.REQUEST_MODEL_NAME_KEY, "bytes", entry.model_name)
        add(f.REQUEST_MODEL_VERSION_KEY, "int", entry.model_version)
        add(f.REQUEST_SIGNATURE_KEY, "bytes", entry.signature_name)
        add(f.REQUEST_API_KEY, "bytes", entry.api)
        add(f.REQUEST_TIME_KEY, "float", entry.at)
    if not columns:
        return []
    rows = len(columns[f.IMAGE_KEY][1])
    offsets = pa.array(range(rows + 1), pa.int32())  # one value per feature per row
    types = {"int": pa.int64(), "float": pa.float32(), "bytes": pa.binary()}
    batch = pa.RecordBatch.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(values, types[kind])) for kind, values in columns.values()],
        list(columns))
    return example_coder.RecordBatchToExamples(batch)


def write_batch(entries: list[Entry], files: LogFiles) -> None:
    try:
        for record in records(entries, files.count):
            files.write(record)
    except Exception:  # a bug here must not stop the log; the requests were already answered
        log.exception("request log: could not log %d requests", len(entries))
        files.count("failed", len(entries))


def _report(files: LogFiles, **extra) -> None:
    if files.counts or extra:
        sys.stdout.write(json.dumps({"counts": files.counts, **extra}) + "\n")
        sys.stdout.flush()
        files.counts = {}


def serve(options: RequestLogOptions, fd: int) -> None:
    """Write the requests framed on ``fd`` until its end; then publish the open file."""
    files = LogFiles(options)
    buffer = bytearray()
    reported = time.monotonic()
    while True:
        ready, _, _ = select.select([fd], [], [], files.seconds_left())
        if not ready:
            files.close_file()  # open too long: make what it holds visible
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break  # the server closed the log, or died
        buffer += chunk
        batch: list[Entry] = []
        for message in unframe(buffer):
            if isinstance(message, Flush):
                write_batch(batch, files)
                batch = []
                files.flush()
                _report(files, flushed=message.token)
            else:
                batch.append(message)
        write_batch(batch, files)
        if files.seconds_left() == 0.0:
            files.close_file()  # due by age while requests kept coming
        if time.monotonic() - reported >= REPORT_SECONDS:
            _report(files)
            reported = time.monotonic()
    files.close_file()
    _report(files)


def warm_up() -> None:
    """Import and run everything a record needs once (TensorFlow, its lazily loaded modules, the decode
    kernels), so that the first sampled requests are not the ones that pay for it; then tell the server."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    sample = Entry("warm-up", 0, "serving_default", "predict", time.time(), np.array([buffer.getvalue()], dtype=object),
                   False)
    records([sample], lambda outcome: None)
    import tensorflow as tf

    tf.io.TFRecordWriter  # noqa: B018 - loads the module
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s request-log writer: %(message)s")
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    warm_up()
    serve(RequestLogOptions(**json.loads(argv[0])), sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
