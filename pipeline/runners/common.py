"""What every runner shares: where a run keeps its files, the MLMD connection, Beam args, the code hashes.

Runners differ only in these values and in the orchestrator they hand the pipeline to;
``create_pipeline`` is the same for all of them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from lenspipe.config import LenspipeConfig


class MetadataConfigError(ValueError):
    """The metadata store cannot be reached as configured (e.g. no password found)."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its pipeline root, metadata and pushed models."""

    pipeline_root: Path
    metadata: str  # a SQLite file path or a postgresql:// / mysql:// URL (no password)
    serving_model_dir: Path  # <serving_model_dir>/<model_name>: the TF Serving model base path

    @classmethod
    def from_config(cls, cfg: LenspipeConfig) -> "RunPaths":
        work = cfg.work_path
        metadata = cfg.runtime.metadata
        if metadata is None:
            metadata = str(work / "metadata" / f"{cfg.runtime.pipeline_name}.sqlite")
        elif not is_database_url(metadata):
            metadata = str(Path(metadata).expanduser().resolve())
        return cls(
            pipeline_root=work / "pipelines" / cfg.runtime.pipeline_name,
            metadata=metadata,
            serving_model_dir=cfg.serving_model_path / cfg.pusher.model_name,
        )

    @property
    def metadata_path(self) -> Path:
        """The SQLite file (raises ValueError for a database server)."""
        if is_database_url(self.metadata):
            raise ValueError(f"metadata is a database server ({self.metadata}), not a file")
        return Path(self.metadata)


def is_database_url(metadata: str) -> bool:
    return "://" in metadata


def metadata_password(cfg: LenspipeConfig) -> Optional[str]:
    """The database password: the variable named by runtime.metadata_password_env, else the file."""
    value = os.environ.get(cfg.runtime.metadata_password_env)
    if value is not None:
        return value
    if cfg.runtime.metadata_password_file:
        path = Path(cfg.runtime.metadata_password_file).expanduser()
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as e:
            raise MetadataConfigError(
                f"runtime.metadata_password_file {path}: cannot read it ({e.strerror}); "
                f"or set {cfg.runtime.metadata_password_env}"
            ) from None
    return None


def metadata_connection(cfg: LenspipeConfig, create_dirs: bool = True):
    """The ML Metadata ConnectionConfig for ``runtime.metadata`` (SQLite file or database URL).

    The password is read here, at run time, from the environment or a file: it never
    sits in the config, a compiled DAG or a log line.
    """
    from ml_metadata.proto import metadata_store_pb2

    metadata = RunPaths.from_config(cfg).metadata
    connection = metadata_store_pb2.ConnectionConfig()
    if not is_database_url(metadata):
        if create_dirs:
            Path(metadata).parent.mkdir(parents=True, exist_ok=True)
        connection.sqlite.filename_uri = metadata
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return connection
    url = urlsplit(metadata)
    database = url.path.lstrip("/")
    password = metadata_password(cfg)
    if url.scheme == "postgresql":
        from pipeline.runners import mlmd_postgres

        mlmd_postgres.install()  # MLMD 1.16 cannot store strings with a backslash on PostgreSQL
        db = connection.postgresql
        db.host = url.hostname or "localhost"
        db.port = str(url.port or 5432)
        db.dbname = database
    else:  # mysql, as Kubeflow Pipelines' own metadata store
        db = connection.mysql
        db.host = url.hostname or "localhost"
        db.port = url.port or 3306
        db.database = database
    if url.username:
        db.user = unquote(url.username)
    if password is not None:
        db.password = password
    return connection


def metadata_for_reading(cfg: LenspipeConfig):
    """What the run summary and the reports read: the SQLite path, or the database server's ConnectionConfig."""
    metadata = RunPaths.from_config(cfg).metadata
    return metadata_connection(cfg, create_dirs=False) if is_database_url(metadata) else metadata


def beam_args(cfg: LenspipeConfig) -> list[str]:
    """What every Beam component runs with: the DirectRunner's mode, then ``runtime.beam_args``.

    The user's arguments come last, so they win over the DirectRunner defaults (Beam's
    parser keeps the last value of a repeated flag); other runners ignore the direct_* ones.
    """
    return [
        f"--direct_running_mode={cfg.runtime.beam_mode}",
        f"--direct_num_workers={cfg.runtime.beam_workers}",
        *cfg.runtime.beam_args,
    ]


@contextlib.contextmanager
def without_tfx_ephemeral_package():
    """While active, TFX's Beam executors do not package TFX's own source for the Beam workers.

    Given any Beam argument and none naming a container or package, every Beam component copies
    TFX's installed source to a new /tmp folder, builds a ``tfx_ephemeral`` sdist there (about
    50 MB, never removed) and stages it with the job (tfx/utils/dependency_utils.py). lenspipe's
    Beam code runs only where lenspipe and its pinned TFX are installed (this environment, or the
    SDK container image of docs/orchestration.md), so that package is never needed.
    """
    from tfx.utils import dependency_utils

    saved = dependency_utils.make_beam_dependency_flags
    dependency_utils.make_beam_dependency_flags = list  # the arguments as given
    try:
        yield
    finally:
        dependency_utils.make_beam_dependency_flags = saved


def build_pipeline(cfg: LenspipeConfig, data_root: str, *, metadata: bool = True, **overrides):
    """``create_pipeline`` with this config's paths, metadata connection, Beam args and code hash.

    ``overrides`` replace any of those keyword arguments (a runner's own root, baseline ...).
    """
    from pipeline import code_hash
    from pipeline.pipeline import create_pipeline

    paths = RunPaths.from_config(cfg)
    kwargs = dict(
        data_root=data_root,
        pipeline_root=str(paths.pipeline_root),
        serving_model_dir=str(paths.serving_model_dir),
        metadata_connection_config=metadata_connection(cfg) if metadata else None,
        beam_pipeline_args=beam_args(cfg),
        code_versions=code_hash.code_versions(),
    )
    kwargs.update(overrides)
    return create_pipeline(cfg, **kwargs)
