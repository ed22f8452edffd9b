"""Run the pipeline here with TFX's BeamDagRunner; MLMD on SQLite under the work dir, or a database server."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from lenspipe.config import LenspipeConfig
from pipeline.runners.common import RunPaths, build_pipeline, code_version


# A local run's paths are every runner's paths; the old names stay importable.
LocalPaths = RunPaths
__all__ = ["LocalPaths", "RunPaths", "code_version", "run"]


class _ProgressHandler(logging.Handler):
    """Turn TFX's per-node log lines into one progress line per component."""

    def __init__(self, total: int, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.total = total
        self.stream = stream
        self.done = 0
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg == "node %s is running." and record.args:
            node = str(record.args[0])
            self.started[node] = time.monotonic()
            self.stream.write(f"[{self.done + 1:>2}/{self.total}] {node} ...\n")
        elif msg == "A cached execution %d is used.":
            self.stream.write("        (cached)\n")
        elif msg == "node %s is finished." and record.args:
            node = str(record.args[0])
            self.done += 1
            took = time.monotonic() - self.started.get(node, time.monotonic())
            self.stream.write(f"        {node} done in {took:.1f}s\n")
        else:
            return
        self.stream.flush()


@contextlib.contextmanager
def _logs_to_file(log_file: Optional[Path], progress: logging.Handler):
    """During a run: every library log line to ``log_file``, one progress line per node to the terminal."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, absl_logging.get_verbosity())
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="w")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(file_handler)
    root.handlers = handlers + [progress]
    root.setLevel(logging.INFO)
    # Through absl's verbosity flag, not the logger: TensorFlow's saver sets the flag to
    # FATAL and back, which would otherwise silence absl's INFO lines mid-run.
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        yield
    finally:
        for handler in handlers:
            handler.close()
        root.handlers, root_level, absl_verbosity = saved
        root.setLevel(root_level)
        absl_logging.set_verbosity(absl_verbosity)


def run(
    cfg: LenspipeConfig,
    data_root: str,
    log_file: Optional[Path] = None,
    stream: TextIO = sys.stderr,
) -> RunPaths:
    """Run the pipeline to completion; returns the paths it used.

    Raises whatever the failing component raised (e.g. DataGateFailed).
    """
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    paths = RunPaths.from_config(cfg)
    paths.pipeline_root.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(cfg, data_root)
    with _logs_to_file(log_file, _ProgressHandler(total=len(pipeline.components), stream=stream)):
        BeamDagRunner().run(pipeline)
    return paths
