"""Dynamic batching: concurrent requests merge into fewer model calls; a full queue answers 503."""
from __future__ import annotations

import base64
import concurrent.futures
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import http, install_version, start_server
from fixture_models import png_bytes
from serving.batching import SharedBatchScheduler
from serving.errors import Code, ServingError
from serving.flags import BatchingOptions, ConfigError
from serving.metrics import ServingMetrics


def body(seed: int, n: int = 1) -> dict:
    return {"instances": [{"b64": base64.b64encode(png_bytes(seed + i)).decode()} for i in range(n)]}


@pytest.fixture(scope="module")
def demo_base(model_cache, tmp_path_factory):
    base = tmp_path_factory.mktemp("batching") / "demo"
    base.mkdir()
    install_version(model_cache, base, 1)
    return base


def test_concurrent_requests_share_model_calls(demo_base, model_cache):
    # A long timeout and a batch of exactly `requests` rows: the batch runs as soon as it is full.
    requests = 8
    server = start_server(model_name="demo", model_base_path=str(demo_base), enable_batching=True,
                          batching=BatchingOptions(max_batch_size=requests, batch_timeout_micros=10_000_000,
                                                   num_batch_threads=1))
    try:
        calls = server.server.core.metrics.wrapped_run_count
        before = calls.value()
        with concurrent.futures.ThreadPoolExecutor(requests) as pool:
            results = list(pool.map(lambda i: http("POST", f"{server.url}/v1/models/demo:predict", body(i)),
                                    range(requests)))
        assert [r.status for r in results] == [200] * requests
        assert calls.value() - before < requests
        # Each request still gets its own row back.
        expected = tf.saved_model.load(str(model_cache / "1")).signatures["serving_default"](
            image_bytes=tf.constant([png_bytes(i) for i in range(requests)]))["probabilities"].numpy()
        got = np.array([r.json()["predictions"][0]["probabilities"] for r in results])
        assert np.max(np.abs(got - expected)) <= 1e-6
    finally:
        server.stop()


def test_full_queue_answers_503(demo_base):
    server = start_server(model_name="demo", model_base_path=str(demo_base), enable_batching=True,
                          batching=BatchingOptions(max_batch_size=2, batch_timeout_micros=3_000_000,
                                                   max_enqueued_batches=1, num_batch_threads=1))
    try:
        waiting: list = []
        first = threading.Thread(target=lambda: waiting.append(
            http("POST", f"{server.url}/v1/models/demo:predict", body(1))))
        first.start()
        # While the 1-row request waits for its batch timeout, a 2-row request needs a second batch.
        scheduler = server.server.core.scheduler
        for _ in range(600):  # bounded wait until the 1-row request sits in the queue
            if any(q._rows == 1 for q in scheduler._queues):
                break
            time.sleep(0.01)
        rejected = http("POST", f"{server.url}/v1/models/demo:predict", body(5, n=2))
        first.join(30)
        assert rejected.status == 503
        assert rejected.json() == {"error": "The batch scheduling queue to which this task was submitted is full"}
        assert waiting[0].status == 200
        too_big = http("POST", f"{server.url}/v1/models/demo:predict", body(1, n=3))
        assert (too_big.status, too_big.json()) == (400, {"error": "Task size 3 is larger than maximum input batch size 2"})
    finally:
        server.stop()


def test_scheduler_splits_outputs_pads_to_allowed_sizes_and_keeps_shapes_apart():
    metrics = ServingMetrics()
    scheduler = SharedBatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000,
                                                     num_batch_threads=1, allowed_batch_sizes=(4, 8)), metrics)
    seen_sizes: list[int] = []

    def run(inputs):
        seen_sizes.append(len(inputs["x"]))
        return {"y": inputs["x"].sum(axis=1)}

    queue = scheduler.add_queue(run, "test")
    try:
        futures = [queue.schedule({"x": np.full((1, 2), i, np.float32)}) for i in range(3)]
        odd = queue.schedule({"x": np.ones((1, 3), np.float32)})  # different inner shape: its own batch
        assert [f.result(30)["y"].tolist() for f in futures] == [[0.0], [2.0], [4.0]]
        assert odd.result(30)["y"].tolist() == [3.0]
        assert sorted(seen_sizes) == [4, 4]  # 3 rows padded to 4, 1 row padded to 4
        assert metrics.padding_size.total("batch_threads") == 1 + 3
        with pytest.raises(ServingError) as err:
            queue.schedule({"x": np.float32(1)})
        assert err.value.code == Code.INVALID_ARGUMENT
    finally:
        scheduler.stop()


def test_async_tasks_resolve_once_per_batch_and_cancelled_tasks_are_dropped():
    """Tasks from an event loop get asyncio futures; a batch wakes the loop once, not once per task."""
    import asyncio

    scheduler = SharedBatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000,
                                                     num_batch_threads=1), ServingMetrics())
    ran: list[list[float]] = []

    def run(inputs):
        ran.append(inputs["x"][:, 0].tolist())
        if (inputs["x"] < 0).any():
            raise ServingError(Code.INVALID_ARGUMENT, "negative")
        return {"y": inputs["x"] * 2}

    queue = scheduler.add_queue(run, "test")

    async def scenario():
        loop = asyncio.get_running_loop()
        hops = 0
        real = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            nonlocal hops
            hops += 1
            return real(*args, **kwargs)
        loop.call_soon_threadsafe = counting
        futures = [queue.schedule({"x": np.full((1, 1), i, np.float32)}, loop=loop) for i in range(4)]
        assert all(isinstance(f, asyncio.Future) for f in futures)
        futures[1].cancel()  # its caller gave up before the batch started: never run
        results = await asyncio.gather(*(f for i, f in enumerate(futures) if i != 1))
        assert [r["y"].tolist() for r in results] == [[[0.0]], [[4.0]], [[6.0]]]
        assert ran == [[0.0, 2.0, 3.0]]
        assert hops == 1
        failing = queue.schedule({"x": np.full((1, 1), -1, np.float32)}, loop=loop)
        with pytest.raises(ServingError, match="negative"):
            await failing

    try:
        asyncio.run(scenario())
    finally:
        scheduler.stop()


def test_batching_options_are_validated():
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 6))
    with pytest.raises(ConfigError, match="num_batch_threads"):
        BatchingOptions(num_batch_threads=0)


def test_rest_deadline_is_504_and_the_abandoned_task_is_dropped(demo_base):
    # 3 s, not less: the full batch below is the model's first call, which took over 300 ms on the
    # shared 2-core machine (the test failed there at 99f7349 too).
    server = start_server(model_name="demo", model_base_path=str(demo_base), enable_batching=True,
                          rest_api_timeout_in_ms=3000,
                          batching=BatchingOptions(max_batch_size=2, batch_timeout_micros=30_000_000,
                                                   num_batch_threads=1))
    try:
        late = http("POST", f"{server.url}/v1/models/demo:predict", body(1))  # waits for a batch that never fills
        assert (late.status, late.json()) == (504, {"error": "Deadline Exceeded"})
        full = http("POST", f"{server.url}/v1/models/demo:predict", body(1, n=2))  # a full batch runs at once
        assert full.status == 200 and len(full.json()["predictions"]) == 2
        assert server.server.core.metrics.processed_batch_size.count("batch_threads") == 1
    finally:
        server.stop()


def test_deadlines_cancel_only_overdue_requests_with_one_timer():
    import asyncio

    from serving.server import Deadlines

    async def scenario():
        deadlines = Deadlines(0.05)
        timers = 0
        loop = asyncio.get_running_loop()
        real = loop.call_at

        def counting(when, callback, *args, **kwargs):
            nonlocal timers
            timers += callback == deadlines._fire
            return real(when, callback, *args, **kwargs)
        loop.call_at = counting

        async def request(hold: float) -> str:
            task = asyncio.current_task()
            deadlines.add(task)
            try:
                await asyncio.sleep(hold)
                return "ok"
            except asyncio.CancelledError:
                assert deadlines.expired(task)
                task.uncancel()
                return "late"
            finally:
                deadlines.discard(task)

        results = await asyncio.gather(request(0.0), request(0.2), request(0.01), request(0.3))
        assert results == ["ok", "late", "ok", "late"]
        assert not deadlines._pending and not deadlines._expired and deadlines._timer is None
        assert 1 <= timers <= 3  # not one per request: re-armed only when the oldest deadline fires

    asyncio.run(scenario())
