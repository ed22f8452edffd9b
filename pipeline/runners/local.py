"""Run the pipeline here with TFX's BeamDagRunner, MLMD on SQLite under the work dir."""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

from lenspipe.config import LenspipeConfig


@dataclass(frozen=True)
class LocalPaths:
    """Where a local run keeps its pipeline root, metadata and pushed models."""

    pipeline_root: Path
    metadata_path: Path
    serving_model_dir: Path  # <serving_model_dir>/<model_name>: the TF Serving model base path

    @classmethod
    def from_config(cls, cfg: LenspipeConfig) -> "LocalPaths":
        work = cfg.work_path
        return cls(
            pipeline_root=work / "pipelines" / cfg.runtime.pipeline_name,
            metadata_path=work / "metadata" / f"{cfg.runtime.pipeline_name}.sqlite",
            serving_model_dir=cfg.serving_model_path / cfg.pusher.model_name,
        )


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
) -> LocalPaths:
    """Run the pipeline to completion; returns the paths it used.

    Raises whatever the failing component raised (e.g. DataGateFailed).
    """
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline import code_hash
    from pipeline.pipeline import create_pipeline

    paths = LocalPaths.from_config(cfg)
    paths.metadata_path.parent.mkdir(parents=True, exist_ok=True)
    paths.pipeline_root.mkdir(parents=True, exist_ok=True)
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(paths.metadata_path)
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    beam_args = [
        f"--direct_running_mode={cfg.runtime.beam_mode}",
        f"--direct_num_workers={cfg.runtime.beam_workers}",
    ]
    pipeline = create_pipeline(
        cfg,
        data_root=data_root,
        pipeline_root=str(paths.pipeline_root),
        serving_model_dir=str(paths.serving_model_dir),
        metadata_connection_config=connection,
        beam_pipeline_args=beam_args,
        code_versions=code_hash.code_versions(),
    )
    from pipeline.progress import ProgressHandler

    with _logs_to_file(log_file, ProgressHandler(total=len(pipeline.components), stream=stream), verbose=verbose):
        BeamDagRunner().run(pipeline)
    return paths
