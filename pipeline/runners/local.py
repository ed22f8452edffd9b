"""Run the pipeline here with TFX's BeamDagRunner; MLMD on SQLite under the work dir, or a database server."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Optional, TextIO

from lenspipe.config import LenspipeConfig
from pipeline.runners.common import RunPaths, build_pipeline, without_tfx_ephemeral_package


# A local run's paths are every runner's paths; the old name stays importable.
LocalPaths = RunPaths
__all__ = ["LocalPaths", "RunPaths", "run"]


@contextlib.contextmanager
def _logs_to_file(log_file: Optional[Path], progress: logging.Handler, verbose: bool = False):
    """During a run: every library log line (and stdout: KerasTuner prints) to ``log_file``, progress to the terminal.

    ``verbose`` also shows every log line on stderr.
    """
    from absl import logging as absl_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, absl_logging.get_verbosity())
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="w")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(file_handler)
    if verbose:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(stream_handler)
    root.handlers = handlers + [progress]
    root.setLevel(logging.INFO)
    # Through absl's verbosity flag, not the logger: TensorFlow's saver sets the flag to
    # FATAL and back, which would otherwise silence absl's INFO lines mid-run.
    absl_logging.set_verbosity(absl_logging.INFO)
    stdout = open(log_file, "a", buffering=1) if log_file is not None and not verbose else None  # noqa: SIM115
    try:
        with contextlib.redirect_stdout(stdout) if stdout else contextlib.nullcontext():
            yield
    finally:
        if stdout:
            stdout.close()
        progress.close()
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
    verbose: bool = False,
) -> RunPaths:
    """Run the pipeline to completion; returns the paths it used.

    Raises whatever the failing component raised (e.g. DataGateFailed).
    """
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    paths = RunPaths.from_config(cfg)
    paths.pipeline_root.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(cfg, data_root)
    from pipeline.progress import ProgressHandler

    with _logs_to_file(log_file, ProgressHandler(total=len(pipeline.components), stream=stream), verbose=verbose):
        with without_tfx_ephemeral_package():
            BeamDagRunner().run(pipeline)
    return paths
