"""ServingCheck: InfraValidator's role without Docker; the Pusher pushes only what `lenspipe serve` served right.

It runs components/serving_check/check.py on the Trainer's model with the held-out split's raw image
bytes and writes a standard InfraBlessing (custom property ``blessed`` 1/0 and the INFRA_BLESSED or
INFRA_NOT_BLESSED marker file, as TFX's InfraValidator does), so TFX's Pusher.CheckBlessing honours it,
plus ``result.json`` (requests, max |dp|, p50/p99) for the run summary.
"""

import logging
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from components.artifact_json import read_json, write_json
from components.serving_check.check import run_serving_check
from lenspipe import features

log = logging.getLogger("lenspipe.serving_check")

RESULT_FILE = "result.json"
REASON_PROPERTY = "not_blessed_reason"
_BLESSED_FILE, _NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # TFX InfraValidator's markers


def split_images(examples: standard_artifacts.Examples, split: str, limit: int) -> list[bytes]:
    """The raw encoded image bytes of the first ``limit`` examples of ``split``, in file order."""
    files = sorted(fileio.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)[features.IMAGE_KEY].numpy()
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)]


@component
def ServingCheck(
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    infra_blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    model_name: Parameter[str] = "lenspipe",
    split: Parameter[str] = "test",
    max_images: Parameter[int] = 200,
    max_abs_diff: Parameter[float] = 1e-6,
    max_p99_ms: Parameter[float] = 250.0,
    start_timeout_seconds: Parameter[float] = 180.0,
    code_version: Parameter[str] = "",
) -> None:
    """Serve the candidate, compare REST and gRPC answers with it, bless or not. ``code_version`` keys the cache."""
    del code_version
    model_dir = path_utils.serving_model_path(model.uri)
    images = split_images(examples, split, max_images)
    result = run_serving_check(model_dir, images, model_name=model_name, max_abs_diff=max_abs_diff,
                               max_p99_ms=max_p99_ms, start_timeout_seconds=start_timeout_seconds)
    write_result(infra_blessing, result.passed, result.to_json(), result.reason)
    if result.passed:
        log.info("serving check passed: %s", result.to_json().replace("\n", " "))
    else:
        log.warning("serving check FAILED: %s", result.reason)


def write_result(blessing: standard_artifacts.InfraBlessing, passed: bool, result_json: str, reason: str) -> None:
    """Mark ``blessing`` as TFX's InfraValidator does and write result.json (temp name, then rename)."""
    write_json(blessing.uri, RESULT_FILE, result_json)
    with fileio.open(os.path.join(blessing.uri, _BLESSED_FILE if passed else _NOT_BLESSED_FILE), "w") as f:
        f.write("")
    blessing.set_int_custom_property("blessed", int(passed))
    if not passed:
        blessing.set_string_custom_property(REASON_PROPERTY, reason)


def read_result(uri: str) -> dict:
    """The result.json a ServingCheck wrote under ``uri`` ({} if none)."""
    return read_json(uri, RESULT_FILE)
