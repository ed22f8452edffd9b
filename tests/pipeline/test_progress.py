"""The run's terminal display: plain lines off a terminal, a live display on one; training events from Keras."""

from __future__ import annotations

import io
import logging

import numpy as np

from lenspipe import features
from pipeline.progress import ProgressHandler
from trainer.progress import ProgressCallback


def _record(msg, *args, **extra):
    record = logging.LogRecord("tfx", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _feed(handler):
    handler.emit(_record("node %s is running.", "Transform"))
    handler.emit(_record("A cached execution %d is used.", 7))
    handler.emit(_record("node %s is finished.", "Transform"))
    handler.emit(_record("node %s is running.", "Tuner"))
    handler.emit(_record("trial", **{features.PROGRESS_EVENT_ATTR: {"kind": "trial", "trial": 2, "total": 4}}))
    event = {"kind": "epoch", "epoch": 3, "total": 4, "metrics": {"loss": 0.5, "val_accuracy": 0.875}}
    handler.emit(_record("epoch", **{features.PROGRESS_EVENT_ATTR: event}))
    handler.emit(_record("node %s is finished.", "Tuner"))
    handler.close()


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    _feed(ProgressHandler(total=12, stream=out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "[ 1/12] Transform ..."
    assert lines[1] == "        (cached)"
    assert lines[2].startswith("        Transform done in ")
    assert "[ 2/12] Tuner ..." in lines
    assert "        Tuner trial 2/4" in lines
    assert "        Tuner epoch 3/4: loss 0.5000 val_accuracy 0.8750" in lines
    assert "\r" not in out.getvalue()


def test_a_finished_component_shows_the_cpu_time_it_used():
    import re
    import time

    out = io.StringIO()
    handler = ProgressHandler(total=1, stream=out)
    handler.emit(_record("node %s is running.", "Trainer"))
    start = time.process_time()
    while time.process_time() - start < 0.3:  # burn 0.3 s of CPU inside the component
        pass
    handler.emit(_record("node %s is finished.", "Trainer"))
    done = re.search(r"Trainer done in [0-9.]+s \(([0-9.]+) CPU s\)", out.getvalue())
    assert done, out.getvalue()
    assert float(done.group(1)) >= 0.3


def test_live_display_keeps_finished_components_on_screen():
    out = io.StringIO()
    _feed(ProgressHandler(total=12, stream=out, live=True))
    text = out.getvalue()
    assert "[ 1/12] Transform cached" in text and "[ 2/12] Tuner done in" in text


def test_keras_callback_reports_trials_and_epochs(caplog):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((4, 2), np.float32)
    with caplog.at_level(logging.INFO, logger="lenspipe.progress"):
        model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[ProgressCallback(2, count_trials=True, max_trials=3)])
    events = [getattr(r, features.PROGRESS_EVENT_ATTR) for r in caplog.records if hasattr(r, features.PROGRESS_EVENT_ATTR)]
    assert [e["kind"] for e in events] == ["trial", "epoch", "epoch"]
    assert events[0]["total"] == 3 and [e["epoch"] for e in events[1:]] == [1, 2]
    assert "loss" in events[2]["metrics"]
