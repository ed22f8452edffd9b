"""Dynamic server-side batching in the manner of TF Serving's SharedBatchScheduler.

Requests for the same (servable, signature) are queued; `num_batch_threads` worker threads, shared by
every queue, each take up to `max_batch_size` rows of compatible tasks and run them as ONE model call,
then split the outputs back per request. A batch starts when it is full or when its oldest task has
waited `batch_timeout_micros`; with a timeout of 0, tasks that arrive while the workers are busy are
merged into the next call, so batch size adapts to load. A queue holding `max_enqueued_batches` batches
rejects new tasks with UNAVAILABLE (HTTP 503), as TF Serving does.

Requests from an asyncio event loop get an asyncio future; a finished batch resolves all of its
futures on that loop in ONE `call_soon_threadsafe` (one loop wake-up per batch, not per request).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Callable

import numpy as np

from serving.errors import Code, ServingError, invalid_argument, unavailable
from serving.flags import BatchingOptions
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    key: tuple  # inputs with the same key can be concatenated along axis 0
    future: concurrent.futures.Future | asyncio.Future
    enqueued: float
    loop: asyncio.AbstractEventLoop | None = None  # set when `future` is an asyncio future of this loop

    def claim(self) -> bool:
        """Mark the task running; False if its caller already gave up (cancelled), so it is dropped."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()  # a cancel after this check is handled in _resolve_on_loop


def _resolve_on_loop(results: list[tuple[asyncio.Future, dict | None, BaseException | None]]) -> None:
    # Runs on the event loop: futures whose awaiting request was cancelled meanwhile are skipped.
    for future, result, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _deliver(results: list[tuple[_Task, dict | None, BaseException | None]]) -> None:
    """Resolve a batch's futures: concurrent ones directly, asyncio ones with one hop per loop."""
    per_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for task, result, error in results:
        if task.loop is not None:
            per_loop.setdefault(task.loop, []).append((task.future, result, error))
        elif not task.future.done():
            if error is not None:
                task.future.set_exception(error)
            else:
                task.future.set_result(result)
    for loop, items in per_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_on_loop, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _task_key(inputs: dict[str, np.ndarray]) -> tuple[int, tuple]:
    sizes = set()
    key = []
    for name in sorted(inputs):
        array = inputs[name]
        if array.ndim == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
        key.append((name, array.dtype.str, array.shape[1:]))
    if len(sizes) != 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop(), tuple(key)


class BatchQueue:
    """The queue for one (servable, signature). `schedule` is thread-safe and non-blocking."""

    def __init__(self, scheduler: "SharedBatchScheduler", run: RunFn, name: str) -> None:
        self._scheduler, self._run, self.name = scheduler, run, name
        self._tasks: collections.deque[_Task] = collections.deque()
        self._rows = 0
        self.closed = False

    def schedule(self, inputs: dict[str, np.ndarray],
                 loop: asyncio.AbstractEventLoop | None = None) -> concurrent.futures.Future | asyncio.Future:
        """Enqueue one request; the future resolves to its own slice of the outputs.

        Without `loop`, a concurrent.futures.Future. With `loop` (call from that loop's thread), an
        asyncio future of it; cancelling it before the batch starts drops the task.
        """
        options = self._scheduler.options
        size, key = _task_key(inputs)
        if size > options.max_batch_size:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {options.max_batch_size}")
        future = loop.create_future() if loop is not None else concurrent.futures.Future()
        task = _Task(inputs, size, key, future, time.monotonic(), loop)
        with self._scheduler.cond:
            if self.closed:
                raise unavailable("Servable is being unloaded")
            # Count batches the way TF Serving does: a new task that does not fit opens a new batch.
            batches_needed = -(-(self._rows + size) // options.max_batch_size)
            if batches_needed > options.max_enqueued_batches:
                raise unavailable("The batch scheduling queue to which this task was submitted is full")
            self._tasks.append(task)
            self._rows += size
            self._scheduler.cond.notify()
        return task.future

    # Called with the scheduler's lock held.
    def _ready_at(self, options: BatchingOptions) -> float | None:
        if not self._tasks:
            return None
        if self._rows >= options.max_batch_size or self.closed:
            return 0.0
        return self._tasks[0].enqueued + options.batch_timeout_micros / 1e6

    def _take_batch(self, max_rows: int) -> list[_Task]:
        first = self._tasks.popleft()
        batch, rows, skipped = [first], first.size, []
        while self._tasks and rows < max_rows:
            task = self._tasks.popleft()
            if task.key == first.key and rows + task.size <= max_rows:
                batch.append(task)
                rows += task.size
            else:
                skipped.append(task)  # different inner shapes: goes into a later batch
        self._tasks.extendleft(reversed(skipped))
        self._rows -= rows
        return batch

    def idle(self) -> bool:
        with self._scheduler.cond:
            return not self._tasks


class SharedBatchScheduler:
    """Worker threads shared by all batch queues of one server."""

    def __init__(self, options: BatchingOptions, metrics: ServingMetrics) -> None:
        self.options, self._metrics = options, metrics
        self.cond = threading.Condition()
        self._queues: list[BatchQueue] = []
        self._stopping = False
        self._threads = [threading.Thread(target=self._worker, name=f"{options.thread_pool_name}-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def add_queue(self, run: RunFn, name: str) -> BatchQueue:
        queue = BatchQueue(self, run, name)
        with self.cond:
            self._queues.append(queue)
        return queue

    def close_queue(self, queue: BatchQueue) -> None:
        """Stop accepting tasks on `queue`; tasks already queued still run (drain), then it is dropped."""
        with self.cond:
            queue.closed = True
            self.cond.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Run every queued task, then stop the workers."""
        with self.cond:
            self._stopping = True
            for queue in self._queues:
                queue.closed = True
            self.cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _next_batch(self) -> tuple[BatchQueue, list[_Task]] | None:
        with self.cond:
            while True:
                now = time.monotonic()
                best: tuple[float, BatchQueue] | None = None
                for queue in self._queues:
                    ready_at = queue._ready_at(self.options)
                    if ready_at is not None and (best is None or ready_at < best[0]):
                        best = (ready_at, queue)
                if best is not None and best[0] <= now:
                    queue = best[1]
                    # Tasks whose caller gave up (REST deadline) were cancelled: drop them. Marking
                    # the rest running means they can no longer be cancelled while in the model.
                    batch = [t for t in queue._take_batch(self.options.max_batch_size) if t.claim()]
                    if batch:
                        return queue, batch
                    continue
                self._queues = [q for q in self._queues if not (q.closed and not q._tasks)]  # drained
                if self._stopping and not self._queues:
                    return None
                self.cond.wait(None if best is None else best[0] - now)

    def _worker(self) -> None:
        while (item := self._next_batch()) is not None:
            queue, batch = item
            try:
                self._process(queue, batch)
            except BaseException as exc:  # never let a worker die: fail the batch instead
                _deliver([(task, None, exc) for task in batch])

    def _process(self, queue: BatchQueue, batch: list[_Task]) -> None:
        now = time.monotonic()
        pool = self.options.thread_pool_name
        self._metrics.queuing_latency.observe_many([(now - task.enqueued) * 1e6 for task in batch], pool)
        rows = sum(t.size for t in batch)
        padded = rows
        for allowed in self.options.allowed_batch_sizes:
            if allowed >= rows:
                padded = allowed
                break
        names = list(batch[0].inputs)
        merged = {}
        for name in names:
            parts = [t.inputs[name] for t in batch]
            if padded > rows:  # pad with copies of the first row; the padding's outputs are dropped
                parts.append(np.repeat(parts[0][:1], padded - rows, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        self._metrics.wrapped_run_count.inc()
        self._metrics.input_batch_size.observe(rows, pool)
        self._metrics.processed_batch_size.observe(padded, pool)
        self._metrics.padding_size.observe(padded - rows, pool)
        try:
            outputs = queue._run(merged)
        except ServingError as exc:
            _deliver([(task, None, exc) for task in batch])
            return
        for alias, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != padded:
                error = ServingError(Code.INTERNAL, "Batched output tensor's 0th dimension does not equal the sum "
                                     f"of the 0th dimension sizes of the input tensors (output {alias})")
                _deliver([(task, None, error) for task in batch])
                return
        results, start = [], 0
        for task in batch:
            end = start + task.size
            results.append((task, {alias: array[start:end] for alias, array in outputs.items()}, None))
            start = end
        _deliver(results)
