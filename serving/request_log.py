"""The request log of `lenspipe serve --request_log_dir`: a sample of served images as TFRecords of tf.Examples.

The request thread only decides whether to sample and puts a reference to the request's inputs on a
bounded queue (full: the request is dropped and counted). A background thread decodes each image
with ImageExampleGen's own code (components/image_example_gen/decoding.py: measure_image and
property_features), so the logged
properties are the training features key by key, adds the model name and version that answered,
and appends to a TFRecord file. Files are written under a temporary name and renamed when closed
(by size or age), so a reader never sees half a file; the oldest closed files are deleted to keep
the directory under its byte budget.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import queue
import random
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from serving.metrics import Counter

log = logging.getLogger(__name__)

FILE_PREFIX = "requests-"
FILE_SUFFIX = ".tfrecord"
TEMP_PREFIX = ".writing-"  # + <pid>-<token>-<final name>; never matched by readers' requests-*.tfrecord
_TEMP = re.compile(r"^\.writing-(?P<pid>[0-9]+)-(?P<token>[0-9a-f]+)-")
_LIVE_TOKENS: set[str] = set()  # the loggers open in this process
RECORD_OVERHEAD = 16  # TFRecord framing: length (8), its CRC (4), the data's CRC (4)


def finished_files(directory: Path) -> list[Path]:
    """The closed log files of ``directory``, oldest first (names sort by creation time)."""
    return sorted(p for p in directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p.is_file())


@dataclasses.dataclass(frozen=True)
class RequestLogOptions:
    """`--request_log_*` flags."""

    directory: str
    sample_rate: float
    max_file_bytes: int = 16 * 2**20
    max_total_bytes: int = 1 << 30
    max_file_seconds: float = 60.0
    queue_size: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"--request_log_sample_rate must be in [0, 1], got {self.sample_rate}")
        if self.max_file_bytes < 1024:
            raise ValueError(f"--request_log_max_file_bytes must be >= 1024, got {self.max_file_bytes}")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(f"--request_log_max_total_bytes ({self.max_total_bytes}) must be >= "
                             f"--request_log_max_file_bytes ({self.max_file_bytes})")
        if self.max_file_seconds <= 0:
            raise ValueError(f"--request_log_max_file_seconds must be > 0, got {self.max_file_seconds}")
        if self.queue_size < 1:
            raise ValueError(f"--request_log_queue_size must be >= 1, got {self.queue_size}")


@dataclasses.dataclass(frozen=True)
class _Entry:
    model_name: str
    model_version: int
    signature_name: str
    api: str  # "predict" | "classify"
    at: float
    images: object  # a numpy object array of encoded images, or a list of serialized tf.Examples
    examples: bool  # True: `images` holds serialized tf.Examples whose image feature is the image


class RequestLogger:
    """Samples requests on the caller's thread; decodes and writes them on its own thread.

    ``offer_*`` are cheap (a random draw, and for a sampled request one non-blocking put); call
    ``close()`` once to write what is queued and close the open file.
    """

    def __init__(self, options: RequestLogOptions, rng: Optional[Callable[[], float]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        from lenspipe import features  # leaf module: feature keys only

        self.options = options
        self.directory = Path(options.directory)
        self._features = features
        self._rate = options.sample_rate
        self._random = rng or random.Random().random
        self._clock = clock
        self._queue: queue.Queue[Optional[_Entry]] = queue.Queue(maxsize=options.queue_size)
        self.counts = Counter("/lenspipe/serving/request_log/count",
                              "Requests and images seen by the request log, by outcome.", "outcome")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._token = f"{random.getrandbits(32):08x}"
        self._remove_stale_temp_files()
        _LIVE_TOKENS.add(self._token)
        self._finished = {p: p.stat().st_size for p in finished_files(self.directory)}
        self._writer = None  # tf.io.TFRecordWriter of the open file
        self._temp: Optional[Path] = None
        self._final: Optional[Path] = None
        self._size = 0
        self._opened_at = 0.0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()
        log.info("request log: sampling %.3g of predict/classify requests into %s (files up to %d bytes "
                 "or %g s, at most %d bytes in all, queue %d)", self._rate, self.directory,
                 options.max_file_bytes, options.max_file_seconds, options.max_total_bytes, options.queue_size)

    # ---- the request thread --------------------------------------------------------------------

    def offer_predict(self, model_name: str, model_version: int, signature_name: str,
                      inputs: dict, input_specs: dict) -> None:
        """Log a :predict request's images if it is sampled; `inputs` are the decoded request tensors."""
        if self._random() >= self._rate:
            return
        key = self._image_input(input_specs)
        if key is None:
            self.counts.inc("skipped_no_image_input")
            return
        self._put(_Entry(model_name, model_version, signature_name or "serving_default", "predict",
                         self._clock(), inputs[key], False))

    def offer_examples(self, model_name: str, model_version: int, signature_name: str,
                       examples: Sequence[bytes]) -> None:
        """Log a :classify request's tf.Examples (their image feature) if it is sampled."""
        if self._random() >= self._rate:
            return
        self._put(_Entry(model_name, model_version, signature_name or "serving_default", "classify",
                         self._clock(), examples, True))

    def _image_input(self, specs: dict) -> Optional[str]:
        # lenspipe's models name it image_bytes; any other model: its one string input, if it has one.
        if self._features.IMAGE_BYTES_INPUT in specs:
            return self._features.IMAGE_BYTES_INPUT
        strings = [name for name, spec in specs.items() if spec.is_string]
        return strings[0] if len(strings) == 1 else None

    def _put(self, entry: _Entry) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.counts.inc("dropped_queue_full")
            return
        self.counts.inc("sampled")

    # ---- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = None
            if self._writer is not None:
                timeout = max(0.0, self._opened_at + self.options.max_file_seconds - time.monotonic())
            try:
                entry = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._close_file()  # open too long: make what it holds visible
                continue
            if entry is None:
                self._close_file()
                self._queue.task_done()
                return
            try:
                for record in self._records(entry):
                    self._write(record)
            except Exception:  # a bug here must not stop the log; the request was already answered
                log.exception("request log: could not log a %s request", entry.api)
                self.counts.inc("failed")
            finally:
                self._queue.task_done()

    def _records(self, entry: _Entry):
        import tensorflow as tf

        from components.image_example_gen.decoding import BadImage, detect_format, measure_image, property_features

        f = self._features

        def text(value: str) -> tf.train.Feature:
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))

        about = {  # the same for every image of the request
            f.REQUEST_MODEL_NAME_KEY: text(entry.model_name),
            f.REQUEST_MODEL_VERSION_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[entry.model_version])),
            f.REQUEST_SIGNATURE_KEY: text(entry.signature_name),
            f.REQUEST_API_KEY: text(entry.api),
            f.REQUEST_TIME_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=[entry.at])),
        }
        for item in list(entry.images.reshape(-1)) if hasattr(entry.images, "reshape") else entry.images:
            data = item
            if entry.examples:
                example = tf.train.Example()
                try:
                    example.ParseFromString(item)
                    data = example.features.feature[f.IMAGE_KEY].bytes_list.value[0]
                except Exception:  # noqa: BLE001 - not a tf.Example with an image: nothing to measure
                    self.counts.inc("skipped_undecodable")
                    continue
            image_format = detect_format(data) if isinstance(data, bytes) else None
            if image_format is None:
                self.counts.inc("skipped_undecodable")
                continue
            try:
                # The model already decoded these bytes: TensorFlow's decode (the authority ExampleGen
                # uses too) without ExampleGen's extra PIL check, which would double the cost.
                info = measure_image(data, image_format)
            except BadImage:
                self.counts.inc("skipped_undecodable")
                continue
            feature = {
                f.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                **property_features(info),
                **about,
            }
            yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    def _write(self, record: bytes) -> None:
        size = len(record) + RECORD_OVERHEAD
        if size > self.options.max_file_bytes:
            self.counts.inc("dropped_too_large")
            return
        if self._writer is not None and self._size + size > self.options.max_file_bytes:
            self._close_file()
        self._make_room(size)
        if self._writer is None:
            self._open_file()
        self._writer.write(record)
        self._size += size
        self.counts.inc("logged")

    def _open_file(self) -> None:
        import tensorflow as tf

        stamp = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        self._seq += 1
        self._final = self.directory / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._seq:06d}{FILE_SUFFIX}"
        self._temp = self.directory / f"{TEMP_PREFIX}{os.getpid()}-{self._token}-{self._final.name}"
        self._writer = tf.io.TFRecordWriter(str(self._temp))
        self._size = 0
        self._opened_at = time.monotonic()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._temp is not None and self._final is not None
        os.replace(self._temp, self._final)
        self._finished[self._final] = self._final.stat().st_size
        self._writer = self._temp = self._final = None
        self._size = 0

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
            self.counts.inc("files_deleted_for_budget")

    def _remove_stale_temp_files(self) -> None:
        # A server that died mid-file left a temporary one; another live server's stay.
        for path in self.directory.glob(f"{TEMP_PREFIX}*"):
            m = _TEMP.match(path.name)
            if m and (m["token"] in _LIVE_TOKENS if int(m["pid"]) == os.getpid() else _alive(int(m["pid"]))):
                continue
            path.unlink(missing_ok=True)
            log.info("request log: removed %s, left half-written by a server that stopped", path.name)

    # ---- shutdown ------------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, close and publish the open file, stop the thread."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        _LIVE_TOKENS.discard(self._token)
        log.info("request log: %s", ", ".join(f"{k} {int(self.counts.value(k))}" for k in (
            "sampled", "logged", "dropped_queue_full", "dropped_too_large", "skipped_undecodable",
            "files_deleted_for_budget")))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is written to the open file (not yet visible)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
