"""A JSON file inside an artifact's folder: written under a temporary name and renamed, read back as a dict."""

import json
import os

from tfx.dsl.io import fileio


def write_json(uri: str, name: str, text: str) -> None:
    """Write ``text`` to ``uri/name`` so that readers never see half of it."""
    tmp = os.path.join(uri, f".{name}.tmp")
    with fileio.open(tmp, "w") as f:
        f.write(text)
    fileio.rename(tmp, os.path.join(uri, name), overwrite=True)


def read_json(uri: str, name: str) -> dict:
    """The JSON object in ``uri/name`` ({} if there is none)."""
    path = os.path.join(uri, name)
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as f:
        return json.load(f)
