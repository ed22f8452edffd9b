"""ImageExampleGen: the TFX component spec, its rejected-files artifact and config helpers.

It is a FileBasedExampleGen (same driver: ``{SPAN}`` resolution, input fingerprint,
caching) with one more parameter, ``input_format``, and one more output, ``rejected``.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.image_example_gen import executor
from lenspipe import features
from lenspipe.artifacts import RejectedFiles  # noqa: F401 - re-exported: the spec's output type

INPUT_FORMATS = ("images", "tfrecord", "unlabeled")
INFERENCE_SPLIT = "inference"  # the one output split of an unlabeled folder
INPUT_FORMAT_KEY = executor.INPUT_FORMAT_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY  # "examples"
REJECTED_KEY = executor.REJECTED_KEY  # "rejected"
CODE_VERSION_KEY = "code_version"
SPLIT_NAMES = ("train", "eval", "test")

# File patterns relative to the input base (or to the span folder).
_IMAGES_PATTERN = "*/*"  # <class>/<file>
_TFRECORD_PATTERN = "*"  # every file is a TFRecord file (gzipped or plain)
_PATTERNS = {"images": _IMAGES_PATTERN, "tfrecord": _TFRECORD_PATTERN, "unlabeled": executor.UNLABELED_PATTERN}


class ImageExampleGenSpec(types.ComponentSpec):
    """FileBasedExampleGenSpec's parameters plus ``input_format``; outputs examples and rejected."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        INPUT_FORMAT_KEY: ExecutionParameter(type=str),
        # Hash of this component's sources (pipeline/code_hash.py): in the cache key, unused by the executor.
        CODE_VERSION_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        REJECTED_KEY: ChannelParameter(type=RejectedFiles),
    }


def _check_input_format(input_format: str) -> None:
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")


def make_input_config(span_pattern: Optional[str] = None, input_format: str = "images") -> example_gen_pb2.Input:
    """One input split whose pattern fits ``input_format``.

    ``images``: ``<class>/<file>`` (``*/*``); ``tfrecord``: every file (``*``). With
    ``span_pattern`` (a sub-folder pattern holding ``{SPAN}`` once, e.g. ``span-{SPAN}``) the
    pattern is prefixed with it and the driver ingests the latest span only.
    Raises ValueError for an unknown format or a span pattern without exactly one ``{SPAN}``.
    """
    _check_input_format(input_format)
    pattern = _PATTERNS[input_format]
    if span_pattern is not None:
        if len(re.findall(example_gen_utils.SPAN_FULL_REGEX, span_pattern)) != 1:
            raise ValueError(f"span_pattern must contain {{SPAN}} exactly once, got {span_pattern!r}")
        pattern = f"{span_pattern.strip('/')}/{pattern}"
    return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])


def make_output_config(train: int, eval: int, test: int) -> example_gen_pb2.Output:  # noqa: A002 (split name)
    """Hash-bucket split into train/eval/test by PATH_KEY, so a file's split never changes.

    The arguments are bucket counts (ratios), each at least 1. Raises ValueError otherwise.
    """
    counts = {"train": train, "eval": eval, "test": test}
    for name, count in counts.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"hash buckets for split {name!r} must be an int >= 1, got {count!r}")
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=counts[name]) for name in SPLIT_NAMES],
            partition_feature_name=features.PATH_KEY,
        )
    )


def make_inference_output_config() -> example_gen_pb2.Output:
    """One output split, ``inference``, for an unlabeled folder (every image is predicted)."""
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=INFERENCE_SPLIT, hash_buckets=1)],
            partition_feature_name=features.PATH_KEY,
        )
    )


class ImageExampleGen(FileBasedExampleGen):
    """Turns an image folder (or TFRecords of images) into tf.Examples plus a rejected-files list.

    Args:
      input_base: the folder holding the data (class folders, span folders or TFRecord files).
      input_config: example_gen_pb2.Input with exactly one split; default
        ``make_input_config(None, input_format)``.
      output_config: default ``make_output_config(8, 1, 1)`` (train/eval/test by PATH_KEY hash).
      range_config: optional RangeConfig choosing spans, as for any FileBasedExampleGen.
      input_format: ``"images"`` (``<root>/<class>/<file>``) or ``"tfrecord"`` (tf.Examples with
        at least IMAGE_KEY and LABEL_NAME_KEY) or ``"unlabeled"`` (every image below the root, any
        depth, label_name empty; for prediction), passed to the executor as the ``input_format``
        execution parameter.
      code_version: hash of the sources the executor runs, so that editing them
        invalidates the cache (TFX does not hash executor code).

    Outputs: ``examples`` (Examples, gzipped TFRecords of tf.Example with every raw key of
    lenspipe/features.py) and ``rejected`` (RejectedFiles). Raises ValueError for an unknown
    input_format.
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    # DRIVER_CLASS stays FileBasedExampleGen's FileBasedDriver: span, fingerprint, caching.

    def __init__(
        self,
        input_base: str,
        input_config: Optional[Union[example_gen_pb2.Input, data_types.RuntimeParameter]] = None,
        output_config: Optional[Union[example_gen_pb2.Output, data_types.RuntimeParameter]] = None,
        range_config: Optional[Union[range_config_pb2.RangeConfig, data_types.RuntimeParameter]] = None,
        input_format: str = "images",
        code_version: str = "",
    ):
        _check_input_format(input_format)
        spec = ImageExampleGenSpec(
            input_base=input_base,
            input_config=input_config or make_input_config(None, input_format),
            output_config=output_config or make_output_config(8, 1, 1),
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            input_format=input_format,
            code_version=code_version,
            examples=types.Channel(type=standard_artifacts.Examples),
            rejected=types.Channel(type=RejectedFiles),
        )
        # FileBasedExampleGen.__init__ only builds its own spec, which lacks our output: skip it.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
