"""A Keras callback that reports trials and epochs as log events (pipeline/progress.py renders them).

Keras' own progress output (verbose=1/2) writes to stdout, where it would interleave with
the live display and flood logs; this logs one structured record per epoch instead.
"""

from __future__ import annotations

import logging
from typing import Optional

import keras

from lenspipe import features

log = logging.getLogger("lenspipe.progress")
EVENT_ATTR = features.PROGRESS_EVENT_ATTR


class ProgressCallback(keras.callbacks.Callback):
    """Logs ``trial`` (when ``count_trials``) at the start of each fit and ``epoch`` after each epoch."""

    _trials_started = 0  # class-level: KerasTuner deep-copies callbacks for every trial

    def __init__(self, epochs: int, count_trials: bool = False, max_trials: Optional[int] = None) -> None:
        super().__init__()
        self.epochs = epochs
        self.count_trials = count_trials
        self.max_trials = max_trials

    def on_train_begin(self, logs=None) -> None:
        if self.count_trials:
            ProgressCallback._trials_started += 1
            trial = ProgressCallback._trials_started
            log.info("trial %d started", trial, extra={EVENT_ATTR: {"kind": "trial", "trial": trial, "total": self.max_trials}})

    def on_epoch_end(self, epoch, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        log.info(
            "epoch %d/%d: %s", epoch + 1, self.epochs, " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())),
            extra={EVENT_ATTR: {"kind": "epoch", "epoch": epoch + 1, "total": self.epochs, "metrics": metrics}},
        )
