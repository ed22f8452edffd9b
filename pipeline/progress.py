"""What the terminal shows while a pipeline runs: which component, where in the pipeline, trials and epochs.

Events come from log records: TFX's per-node lines ("node X is running/finished",
"A cached execution ... is used") and lenspipe's own training events (trainer/progress.py
logs them with a ``lenspipe_event`` attribute). On a terminal a live rich display
shows the component, its position, the current trial and epoch and the elapsed time;
elsewhere (CI, logs, pipes) the same events print as plain lines with no carriage returns.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any, Optional, TextIO

from lenspipe import features

EVENT_ATTR = features.PROGRESS_EVENT_ATTR


def cpu_seconds() -> float:
    """User + system CPU of this process (every thread) and of the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _done_text(seconds: float, cpu: float) -> str:
    return f"done in {seconds:.1f}s ({cpu:.1f} CPU s)"


def _metrics_text(metrics: dict[str, float]) -> str:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in metrics]
    return " ".join(f"{k} {metrics[k]:.4f}" for k in keys)


class _Plain:
    """Line-per-event output for streams that are not terminals."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def node_started(self, position: str, node: str) -> None:
        self.write(f"{position} {node} ...")

    def node_cached(self, node: str) -> None:
        self.write("        (cached)")

    def node_finished(self, node: str, seconds: float, cpu: float) -> None:
        self.write(f"        {node} {_done_text(seconds, cpu)}")

    def trial(self, node: str, trial: int, total: Optional[int]) -> None:
        self.write(f"        {node} trial {trial}{f'/{total}' if total else ''}")

    def epoch(self, node: str, epoch: int, total: int, metrics: dict[str, float]) -> None:
        self.write(f"        {node} epoch {epoch}/{total}: {_metrics_text(metrics)}")

    def close(self) -> None:
        pass


class _Live(_Plain):
    """A rich live display: finished components scroll above, the current one updates in place."""

    def __init__(self, stream: TextIO, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(stream)
        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )
        self.pipeline_task = self.progress.add_task("pipeline", total=total)
        self.step_task = self.progress.add_task("", total=None, visible=False)
        self.progress.start()

    def write(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def node_started(self, position: str, node: str) -> None:
        self.position, self.trial_text = position, ""
        self.progress.update(self.pipeline_task, description=f"{position} {node}")
        self.progress.reset(self.step_task, total=None, visible=False)

    def node_cached(self, node: str) -> None:
        self.cached = node

    def node_finished(self, node: str, seconds: float, cpu: float) -> None:
        self.progress.advance(self.pipeline_task)
        self.progress.update(self.step_task, visible=False)
        how = "cached" if getattr(self, "cached", None) == node else _done_text(seconds, cpu)
        self.write(f"{self.position} {node} {how}")

    def trial(self, node: str, trial: int, total: Optional[int]) -> None:
        self.trial_text = f"trial {trial}{f'/{total}' if total else ''} "
        self.progress.reset(self.step_task, description=f"  {self.trial_text}", total=None, visible=True)

    def epoch(self, node: str, epoch: int, total: int, metrics: dict[str, float]) -> None:
        self.progress.update(
            self.step_task, description=f"  {self.trial_text}epoch {epoch}/{total} {_metrics_text(metrics)}",
            completed=epoch, total=total, visible=True,
        )

    def close(self) -> None:
        self.progress.stop()


class ProgressHandler(logging.Handler):
    """A logging handler that turns pipeline and training events into the terminal display."""

    def __init__(self, total: int, stream: TextIO, live: Optional[bool] = None) -> None:
        super().__init__(logging.INFO)
        self.total = total
        self.done = 0
        self.current = ""
        self.started: dict[str, tuple[float, float]] = {}  # node -> (monotonic, CPU seconds) at its start
        use_live = stream.isatty() if live is None else live
        self.view: _Plain = _Live(stream, total) if use_live else _Plain(stream)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # noqa: BLE001 - the display must never fail a run
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        event: Optional[dict[str, Any]] = getattr(record, EVENT_ATTR, None)
        if event is not None:
            if event["kind"] == "trial":
                self.view.trial(self.current, event["trial"], event.get("total"))
            elif event["kind"] == "epoch":
                self.view.epoch(self.current, event["epoch"], event["total"], event.get("metrics", {}))
            return
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg == "node %s is running." and record.args:
            self.current = str(record.args[0])
            self.started[self.current] = (time.monotonic(), cpu_seconds())
            self.view.node_started(f"[{self.done + 1:>2}/{self.total}]", self.current)
        elif msg == "A cached execution %d is used.":
            self.view.node_cached(self.current)
        elif msg == "node %s is finished." and record.args:
            node = str(record.args[0])
            self.done += 1
            wall, cpu = self.started.get(node, (time.monotonic(), cpu_seconds()))
            self.view.node_finished(node, time.monotonic() - wall, cpu_seconds() - cpu)

    def close(self) -> None:
        self.view.close()
        super().close()
