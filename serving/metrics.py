"""TF Serving's monitoring metrics, rendered in Prometheus text format.

Names and labels are TF Serving's (`/tensorflow/serving/request_count` is exported as
`:tensorflow:serving:request_count`, as its Prometheus exporter does). Written by hand rather than
with prometheus_client because that library renames counters to `*_total`, which would break
dashboards built against TF Serving.
"""
from __future__ import annotations

import bisect
import math
import threading


def _exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    return [scale * growth ** i for i in range(count)]


def _prom_name(name: str) -> str:
    return name.replace("/", ":")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label tuple."""

    def __init__(self, name: str, help_: str, *label_names: str) -> None:
        self.name, self.help, self.label_names = name, help_, label_names
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        name = _prom_name(self.name)
        lines = [f"# HELP {name} {self.help}", f"# TYPE {name} counter"]
        with self._lock:
            for labels, value in sorted(self._values.items()):
                lines.append(f"{name}{_labels(self.label_names, labels)} {_fmt(value)}")
        return lines


class Histogram:
    """A distribution (TF Serving's Sampler) with fixed bucket upper bounds."""

    def __init__(self, name: str, help_: str, bounds: list[float], *label_names: str) -> None:
        self.name, self.help, self.label_names, self.bounds = name, help_, label_names, bounds
        self._series: dict[tuple[str, ...], list[float]] = {}  # counts per bucket + [sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.bounds) + 3))
            series[index] += 1
            series[-2] += value
            series[-1] += 1

    def observe_many(self, values: list[float], *labels: str) -> None:
        """Observe several values under one lock acquisition (a batch's queuing latencies)."""
        indices = [bisect.bisect_left(self.bounds, value) for value in values]
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.bounds) + 3))
            for index in indices:
                series[index] += 1
            series[-2] += sum(values)
            series[-1] += len(values)

    def count(self, *labels: str) -> int:
        with self._lock:
            return int(self._series.get(labels, [0.0])[-1])

    def total(self, *labels: str) -> float:
        with self._lock:
            series = self._series.get(labels)
            return series[-2] if series else 0.0

    def render(self) -> list[str]:
        name = _prom_name(self.name)
        lines = [f"# HELP {name} {self.help}", f"# TYPE {name} histogram"]
        with self._lock:
            for labels, series in sorted(self._series.items()):
                cumulative = 0.0
                for bound, count in zip([*self.bounds, math.inf], series):
                    cumulative += count
                    le = f'le="{_fmt(bound)}"'
                    lines.append(f"{name}_bucket{_labels(self.label_names, labels, le)} {_fmt(cumulative)}")
                lines.append(f"{name}_sum{_labels(self.label_names, labels)} {_fmt(series[-2])}")
                lines.append(f"{name}_count{_labels(self.label_names, labels)} {_fmt(series[-1])}")
        return lines


class ServingMetrics:
    """The metric families one server exports; one instance per server."""

    def __init__(self) -> None:
        latency = _exponential_buckets(10, 1.8, 33)  # microseconds, ~20 minutes, as TF Serving
        self.request_count = Counter("/tensorflow/serving/request_count", "The total number of requests.",
                                     "model_name", "status")
        self.request_latency = Histogram(
            "/tensorflow/serving/request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            latency, "model_name", "API", "entrypoint")
        self.runtime_latency = Histogram(
            "/tensorflow/serving/runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            latency, "model_name", "API", "runtime")
        self.load_attempt_count = Counter("/tensorflow/serving/load_attempt_count",
                                          "The number of times load was attempted.", "model_path", "status")
        self.wrapped_run_count = Counter("/tensorflow/serving/batching_session/wrapped_run_count",
                                         "Tracks the number of batches executed (model calls) by batching.")
        self.input_batch_size = Histogram("/tensorflow/serving/batching_session/input_batch_size",
                                          "Tracks the batching input batch size.",
                                          _exponential_buckets(1, 2, 14), "thread_pool_name")
        self.processed_batch_size = Histogram("/tensorflow/serving/batching_session/processed_batch_size",
                                              "Tracks the batch size distribution on processing.",
                                              _exponential_buckets(1, 2, 14), "thread_pool_name")
        self.padding_size = Histogram("/tensorflow/serving/batching_session/padding_size",
                                      "Tracks the padding size distribution on batches.",
                                      _exponential_buckets(1, 2, 14), "thread_pool_name")
        self.queuing_latency = Histogram(
            "/tensorflow/serving/batching_session/queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            _exponential_buckets(100, 1.2, 52), "thread_pool_name")
        self._all = [self.request_count, self.request_latency, self.runtime_latency, self.load_attempt_count,
                     self.wrapped_run_count, self.input_batch_size, self.processed_batch_size,
                     self.padding_size, self.queuing_latency]

    def add(self, metric: "Counter | Histogram") -> None:
        """Export one more family (e.g. the request log's counts, when it is on)."""
        self._all.append(metric)

    def render(self) -> str:
        """The Prometheus text exposition of every family."""
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
