"""TF Serving's model_config_file for version labels: read, update one model's labels, write atomically.

Labels go with the `specific` version policy (exactly the labelled versions are loaded), as TF Serving
requires; the file is written under a temporary name and renamed, so a server polling it
(--model_config_file_poll_wait_seconds) never reads half a file.
"""
from __future__ import annotations

import os
import uuid

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

STABLE, CANARY = "stable", "canary"
CONFIG_FILE_NAME = "models.config"


def default_model_config_file(base_dir: str) -> str:
    """<serving_model_dir>/models.config for the model base path <serving_model_dir>/<model_name>."""
    return os.path.join(os.path.dirname(os.path.normpath(base_dir)), CONFIG_FILE_NAME)


def read_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig in ``path`` (empty if the file does not exist). ValueError names the file."""
    config = model_server_config_pb2.ModelServerConfig()
    if not os.path.exists(path):
        return config
    with open(path) as f:
        try:
            return text_format.Parse(f.read(), config)
        except text_format.ParseError as exc:
            raise ValueError(f"{path}: not a ModelServerConfig text proto: {exc}") from None


def write_config(path: str, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Write ``config`` as a text proto to ``path`` (temporary name in the same folder, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        f.write(text_format.MessageToString(config))
    os.replace(tmp, path)


def model_entry(config: model_server_config_pb2.ModelServerConfig, name: str,
                base_path: str) -> model_server_config_pb2.ModelConfig:
    """The ModelConfig for ``name`` in ``config``, added (platform tensorflow) if absent."""
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, os.path.abspath(base_path), "tensorflow"
    return model


def labels_of(config: model_server_config_pb2.ModelServerConfig, name: str) -> dict[str, int]:
    for model in config.model_config_list.config:
        if model.name == name:
            return dict(model.version_labels)
    return {}


def set_labels(model: model_server_config_pb2.ModelConfig, labels: dict[str, int],
               extra_versions: tuple[int, ...] = ()) -> None:
    """Serve exactly the labelled versions (plus ``extra_versions``) under a `specific` policy."""
    model.model_version_policy.specific.Clear()
    model.model_version_policy.specific.versions.extend(sorted(set(labels.values()) | set(extra_versions)))
    model.ClearField("version_labels")
    for label, version in sorted(labels.items()):
        model.version_labels[label] = version


def label_version(path: str, name: str, base_path: str, label: str, version: int) -> dict[str, int]:
    """Point ``label`` at ``version`` in the config file at ``path``; returns the model's labels after.

    The first labelled push also labels the newest older version ``stable`` (what was serving), so a
    canary never becomes the only version.
    """
    config = read_config(path)
    model = model_entry(config, name, base_path)
    labels = dict(model.version_labels)
    if STABLE not in labels and label != STABLE:
        older = [int(n) for n in os.listdir(base_path) if n.isdigit() and int(n) < version]
        labels[STABLE] = max(older, default=version)
    labels[label] = version
    set_labels(model, labels)
    write_config(path, config)
    return labels
