"""The request log of `lenspipe serve --request_log_dir`: a sample of served images as TFRecords of tf.Examples.

The server process does as little as it can: the request thread decides whether to sample and
appends a reference to the request's inputs to a bounded deque (full: the request is not logged, and
counted); a sender thread wakes every SEND_INTERVAL seconds and ships what has gathered, pickled in
one frame, down a pipe to a writer process (serving/request_log_writer.py). That process decodes each
image with ImageExampleGen's own code, adds the model name and version that answered, and writes
the TFRecord files (rotation, byte budget, temporary names). A writer thread inside the server cost
7-12% of throughput at rate 0.1 although it was busy ~1% of the time: any Python work it did held the
GIL the HTTP loop and the batch thread needed (bench/results/serving-request-log.md).

The writer process reports its counters and flush acknowledgements back as JSON lines on its stdout;
when the server stops (or dies), the end of the pipe tells the writer to close and publish its file.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import pickle
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from serving.metrics import Counter

log = logging.getLogger(__name__)

FILE_PREFIX = "requests-"
FILE_SUFFIX = ".tfrecord"
TEMP_PREFIX = ".writing-"  # + <writer pid>-<final name>; never matched by readers' requests-*.tfrecord
_TEMP = re.compile(r"^\.writing-(?P<pid>[0-9]+)-")
RECORD_OVERHEAD = 16  # TFRecord framing: length (8), its CRC (4), the data's CRC (4)
# Seconds between the sender thread's wake-ups (sooner when half the queue is full); a request never
# waits for it. Long on purpose: the writer decodes a batch that arrives at once for about a third of
# the CPU per image that the same images cost arriving a few at a time (cold caches after each pause).
SEND_INTERVAL = 1.0
HEADER = 8  # a frame is an 8-byte little-endian length, then that many bytes of pickle
RESTART_SECONDS = 10.0  # a writer process that died is restarted at most this often
# What the writer process counts (the server counts "sampled" and "dropped_queue_full" itself).
WRITER_OUTCOMES = ("logged", "dropped_too_large", "skipped_undecodable", "files_deleted_for_budget", "failed")


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
class Entry:
    """One sampled request, as the writer process receives it."""

    model_name: str
    model_version: int
    signature_name: str
    api: str  # "predict" | "classify"
    at: float
    images: object  # a numpy object array of encoded images, or a list of serialized tf.Examples
    examples: bool  # True: `images` holds serialized tf.Examples whose image feature is the image


@dataclasses.dataclass(frozen=True)
class Flush:
    """Asks the writer process to say `{"flushed": token}` once everything before it is written."""

    token: int


def frame(messages: list) -> bytes:
    payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(HEADER, "little") + payload


def unframe(buffer: bytearray) -> list:
    """The messages of every whole frame at the start of ``buffer``, which loses those bytes."""
    messages: list = []
    while len(buffer) >= HEADER:
        size = int.from_bytes(buffer[:HEADER], "little")
        if len(buffer) < HEADER + size:
            break
        messages += pickle.loads(bytes(buffer[HEADER:HEADER + size]))  # our own writer's pipe, not the network
        del buffer[:HEADER + size]
    return messages


class RequestLogger:
    """Samples requests on the caller's thread; a writer process decodes and writes them.

    ``offer_*`` are cheap (a random draw, and for a sampled request one deque append); call
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
        # Appended by request threads, emptied by the sender: no lock, no wake-up on the request path.
        self._pending: collections.deque = collections.deque()
        self._send_at = max(1, options.queue_size // 2)
        self.counts = Counter("/lenspipe/serving/request_log/count",
                              "Requests and images seen by the request log, by outcome.", "outcome")
        self.writers = Counter("/lenspipe/serving/request_log/writer_processes",
                               "Request log writer processes started, ready (warmed up) and found stopped.", "state")
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.directory)
        self._wake = threading.Event()
        self.ready = threading.Event()  # set once the writer process has loaded what it needs
        self._acked = threading.Condition()
        self._flushed = 0  # the highest Flush token the writer has acknowledged
        self._tokens = iter(range(1, 1 << 62))
        self._closing = False
        self._started_at = float("-inf")
        self._process: Optional[subprocess.Popen] = None
        self._stopped_pid: Optional[int] = None  # the last writer counted as stopped
        self._readers: list[threading.Thread] = []
        self._start_writer()
        self._sender = threading.Thread(target=self._send_loop, name="request-log-sender", daemon=True)
        self._sender.start()
        log.info("request log: sampling %.3g of predict/classify requests into %s (files up to %d bytes "
                 "or %g s, at most %d bytes in all, queue %d; writer process %d)", self._rate, self.directory,
                 options.max_file_bytes, options.max_file_seconds, options.max_total_bytes, options.queue_size,
                 self._process.pid)

    @property
    def writer_pid(self) -> Optional[int]:
        """The writer process's pid (None once it has stopped)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

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
        self._put(Entry(model_name, model_version, signature_name or "serving_default", "predict",
                        self._clock(), inputs[key], False))

    def offer_examples(self, model_name: str, model_version: int, signature_name: str,
                       examples: Sequence[bytes]) -> None:
        """Log a :classify request's tf.Examples (their image feature) if it is sampled."""
        if self._random() >= self._rate:
            return
        self._put(Entry(model_name, model_version, signature_name or "serving_default", "classify",
                        self._clock(), examples, True))

    def _image_input(self, specs: dict) -> Optional[str]:
        # lenspipe's models name it image_bytes; any other model: its one string input, if it has one.
        if self._features.IMAGE_BYTES_INPUT in specs:
            return self._features.IMAGE_BYTES_INPUT
        strings = [name for name, spec in specs.items() if spec.is_string]
        return strings[0] if len(strings) == 1 else None

    def _put(self, entry: Entry) -> None:
        # Request threads only append, so the length can only be over-read by the sender's pops:
        # the bound holds within the number of request threads.
        if len(self._pending) >= self.options.queue_size:
            self.counts.inc("dropped_queue_full")
            return
        self._pending.append(entry)
        self.counts.inc("sampled")
        if len(self._pending) == self._send_at:
            self._wake.set()

    # ---- the sender thread ---------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(SEND_INTERVAL)
            self._wake.clear()
            messages = []
            while self._pending:  # only this thread pops
                messages.append(self._pending.popleft())
            stop = self._closing and not self._pending
            if messages:
                self._send(messages)
            if stop:
                if self._process is not None and self._process.stdin is not None:
                    self._process.stdin.close()  # end of input: the writer publishes its file and exits
                return

    def _send(self, messages: list) -> None:
        data = frame(messages)
        for _ in range(2):  # once more with a restarted writer if this one is gone
            if not self._start_writer():
                break
            process = self._process
            assert process is not None and process.stdin is not None
            try:
                # A blocking write on this thread (the GIL is released while it waits): when the
                # writer falls behind, the pipe fills, this waits, and requests drop at the deque.
                process.stdin.write(data)  # buffered: writes all of it
                process.stdin.flush()
                return
            except (BrokenPipeError, OSError, ValueError):
                process.wait(5)
                self._note_stopped(process)
        images = sum(1 for m in messages if isinstance(m, Entry))
        self.counts.inc("failed", amount=images)
        self._ack(max((m.token for m in messages if isinstance(m, Flush)), default=0))

    def _note_stopped(self, process: subprocess.Popen) -> None:
        if process.pid != self._stopped_pid:
            self._stopped_pid = process.pid
            self.writers.inc("stopped")
            log.error("request log: the writer process (pid %d) stopped (exit %s); it is restarted at the next "
                      "frame, at most every %g s", process.pid, process.poll(), RESTART_SECONDS)

    def _start_writer(self) -> bool:
        """Start a writer process (not more than once per RESTART_SECONDS); True if one is running."""
        if self._process is not None:
            if self._process.poll() is None:
                return True
            self._note_stopped(self._process)
        if time.monotonic() - self._started_at < RESTART_SECONDS:
            return False
        self._started_at = time.monotonic()
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "serving.request_log_writer", json.dumps(dataclasses.asdict(self.options))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.writers.inc("started")
        reader = threading.Thread(target=self._read_loop, args=(self._process,), name="request-log-reader",
                                  daemon=True)
        reader.start()
        self._readers.append(reader)
        return True

    def _read_loop(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            message = json.loads(line)
            for outcome, amount in message.get("counts", {}).items():
                self.counts.inc(outcome, amount=amount)
            if "flushed" in message:
                self._ack(message["flushed"])
            if message.get("ready"):
                log.info("request log: writer process %d ready", process.pid)
                self.writers.inc("ready")
                self.ready.set()

    def _ack(self, token: int) -> None:
        with self._acked:
            self._flushed = max(self._flushed, token)
            self._acked.notify_all()

    # ---- shutdown ------------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything offered so far is written to the open file (not yet visible)."""
        token = next(self._tokens)
        self._pending.append(Flush(token))
        self._wake.set()
        with self._acked:
            return self._acked.wait_for(lambda: self._flushed >= token, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, close and publish the open file, stop the writer process."""
        deadline = time.monotonic() + timeout
        self._closing = True
        self._wake.set()
        self._sender.join(timeout)
        if self._process is not None:
            try:
                self._process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("request log: the writer process did not finish in %.0f s; stopping it", timeout)
                self._process.kill()
                self._process.wait()
        for reader in self._readers:
            reader.join(max(0.1, deadline - time.monotonic()))
        log.info("request log: %s", ", ".join(f"{k} {int(self.counts.value(k))}" for k in (
            "sampled", "dropped_queue_full", *WRITER_OUTCOMES)))


def remove_stale_temp_files(directory: Path) -> None:
    """Remove the temporary files of writer processes that died mid-file; a live writer's stay."""
    for path in directory.glob(f"{TEMP_PREFIX}*"):
        m = _TEMP.match(path.name)
        if m and _alive(int(m["pid"])):
            continue
        path.unlink(missing_ok=True)
        log.info("request log: removed %s, left half-written by a server that stopped", path.name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
