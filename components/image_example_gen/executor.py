"""Beam executor of ImageExampleGen: validates every image, writes tf.Examples and rejected.jsonl.

The base executor does the splitting (hash of PATH_KEY); this one turns the input split into
tf.Examples, writes the splits (``write_split``: TFX's files without TFX's Reshuffle, so the
examples stream to disk on the local runner, in listing order) and collects every refused file
or record, with its reason, into ``<rejected uri>/rejected.jsonl``.
"""

from __future__ import annotations

import bisect
import json
import logging
import posixpath
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf.message import DecodeError
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split as tfx_write_split
from tfx.components.util import examples_utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.image_example_gen import layout, write_split
from components.image_example_gen.decoding import BadImage, ImageInfo, inspect_image, one_line, property_features
from lenspipe import features

logger = logging.getLogger(__name__)

INPUT_FORMAT_KEY = "input_format"  # execution parameter: "images" | "tfrecord" | "unlabeled"
UNLABELED_PATTERN = "*"  # what the driver fingerprints for an unlabeled folder: its top-level entries
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
REJECTED_KEY = "rejected"  # output key of the RejectedFiles artifact
REJECTED_FILE_NAME = "rejected.jsonl"
NUM_REJECTED_PROPERTY = "num_rejected"
EMPTY_CLASS_FOLDERS_PROPERTY = "empty_class_folders"  # JSON list of folder names

_REJECTED_TAG = "rejected"
_GZIP_MAGIC = b"\x1f\x8b"

Rejection = Tuple[str, str]  # (path, reason)


@dataclass(frozen=True)
class _Candidate:
    """An image that decoded; it becomes one tf.Example once label ids are known."""

    path: str
    label_name: str
    image: bytes
    info: ImageInfo


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _to_example(candidate: _Candidate, class_names: Sequence[str]) -> tf.train.Example:
    """The tf.Example of one image; ``class_names`` is sorted, a label's id is its position."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE_KEY: _bytes(candidate.image),
                features.LABEL_NAME_KEY: _bytes(candidate.label_name.encode("utf-8")),
                features.CLASS_INDEX_KEY: _int(bisect.bisect_left(class_names, candidate.label_name)),
                features.PATH_KEY: _bytes(candidate.path.encode("utf-8")),
                **property_features(candidate.info),
            }
        )
    )


def _inspect(path: str, label_name: str, data: bytes) -> Iterator[Any]:
    try:
        yield _Candidate(path, label_name, data, inspect_image(data))
    except BadImage as error:
        yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (path, str(error)))


def _inspect_file(item: Tuple[str, str], input_base: str) -> Iterator[Any]:
    """Reads and inspects one ``(relative path, class name)`` image file."""
    path, label_name = item
    try:
        with tf.io.gfile.GFile(posixpath.join(input_base, path), "rb") as f:
            data = f.read()
    except (OSError, tf.errors.OpError) as error:
        yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (path, f"cannot read: {error}"))
        return
    yield from _inspect(path, label_name, data)


def _single_bytes(example: tf.train.Example, key: str) -> Optional[bytes]:
    feature_map = example.features.feature
    if key not in feature_map or len(feature_map[key].bytes_list.value) != 1:
        return None
    return feature_map[key].bytes_list.value[0]


def _inspect_record(raw: bytes, default_path: str) -> Iterator[Any]:
    """Inspects one serialized tf.Example holding IMAGE_KEY and LABEL_NAME_KEY."""
    try:
        example = tf.train.Example.FromString(raw)
    except DecodeError as error:
        yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (default_path, f"not a tf.Example: {error}"))
        return
    given_path = _single_bytes(example, features.PATH_KEY)
    path = given_path.decode("utf-8", "replace") if given_path else default_path
    image = _single_bytes(example, features.IMAGE_KEY)
    label = _single_bytes(example, features.LABEL_NAME_KEY)
    for key, value in ((features.IMAGE_KEY, image), (features.LABEL_NAME_KEY, label)):
        if value is None:
            yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (path, f"feature {key!r} missing or not one bytes value"))
            return
    try:
        label_name = label.decode("utf-8")
    except UnicodeDecodeError:
        yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (path, f"feature {features.LABEL_NAME_KEY!r} is not UTF-8"))
        return
    yield from _inspect(path, label_name, image)


def _inspect_tfrecord_file(rel_path: str, input_base: str) -> Iterator[Any]:
    """Inspects every record of one TFRecord file, gzipped or plain (told apart by the bytes)."""
    full_path = posixpath.join(input_base, rel_path)
    with tf.io.gfile.GFile(full_path, "rb") as f:
        compression = "GZIP" if f.read(2) == _GZIP_MAGIC else ""
    records = iter(tf.data.TFRecordDataset(full_path, compression_type=compression))
    index = 0
    while True:
        try:
            raw = next(records).numpy()
        except StopIteration:
            return
        except tf.errors.OpError as error:
            reason = f"corrupt or not a TFRecord file from record {index} on: {one_line(error)}"
            yield beam.pvalue.TaggedOutput(_REJECTED_TAG, (f"{rel_path}#{index}", reason))
            return
        yield from _inspect_record(raw, f"{rel_path}#{index}")
        index += 1


def _image_root(pattern: str) -> str:
    """The folder of an images pattern: '' for '*/*', 'span-3' for 'span-3/*/*'."""
    if pattern == "*/*":
        return ""
    prefix = pattern[: -len("/*/*")]
    if not pattern.endswith("/*/*") or any(c in prefix for c in "*?["):
        raise ValueError(f"images input pattern must be '*/*' or '<folder>/*/*' (one folder, no wildcard), got {pattern!r}")
    return prefix


def _class_folder_entries(name: str, input_base: str, prefix: str) -> Iterator[Any]:
    """Candidates ``(relative path, class name)`` of one class folder; its rejections tagged."""
    for kind, rel, value in layout.iter_class_folder(input_base, prefix, name):
        yield (rel, value) if kind == layout.CANDIDATE else beam.pvalue.TaggedOutput(_REJECTED_TAG, (rel, value))


@beam.ptransform_fn
def _ImagesToCandidates(pipeline: beam.Pipeline, input_base: str, pattern: str, empty_folders: List[str], listed: List[str], spread: bool):  # pylint: disable=invalid-name
    """(candidates, rejections) of an image folder split; empty class folders are appended to ``empty_folders``.

    Files are listed one class folder at a time inside the Beam pipeline (a list of every file
    would sit in the pipeline graph and in memory); the listed class folders, sorted, are
    appended to ``listed``. ``spread``: see ``_inspect_listed``.
    """
    root = _image_root(pattern)
    folders = layout.list_class_folders(input_base, root)
    for name in folders.empty_class_folders:
        logger.warning("ImageExampleGen: class folder %r holds no image files: not a class", posixpath.join(root, name))
    empty_folders.extend(folders.empty_class_folders)
    listed.extend(folders.class_names)
    if not folders.class_names:
        raise ValueError(
            f"{posixpath.join(input_base, root)}: no class folder holds an image file (expected <root>/<class>/<file>)"
        )
    logger.info(
        "ImageExampleGen: %s: %d class folder(s) with image files, %d file(s) rejected by place in the root",
        posixpath.join(input_base, root),
        len(folders.class_names),
        len(folders.rejected),
    )
    listed_files = (
        pipeline
        | "ListClassFolders" >> beam.Create(folders.class_names + folders.empty_class_folders, reshuffle=spread)
        | "ListFiles" >> beam.FlatMap(_class_folder_entries, input_base, root).with_outputs(_REJECTED_TAG, main="files")
    )
    good, rejections = _inspect_listed(pipeline, listed_files.files, folders.rejected, input_base, spread)
    return good, (rejections, listed_files[_REJECTED_TAG]) | "AllListedRejected" >> beam.Flatten()


def _inspect_listed(pipeline: beam.Pipeline, candidates, rejected, input_base: str, spread: bool):
    """(good candidates, all rejections) of listed files: each read and inspected.

    ``candidates`` is a list of (relative path, class name) or a PCollection of them. ``spread``
    (a distributed runner): reshuffle the listed files so that a few class folders' files are
    read and decoded on many workers. Without it (the local runners) every file streams from
    its listing to the written split in listing order: there a reshuffle is a group-by-key
    holding every file before the first is read, and its random keys change the output order.
    """
    if not isinstance(candidates, beam.pvalue.PCollection):
        candidates = pipeline | "ListImages" >> beam.Create(candidates, reshuffle=spread)
    if spread:
        candidates = candidates | "Spread" >> beam.Reshuffle()
    inspected = candidates | "Inspect" >> beam.FlatMap(_inspect_file, input_base).with_outputs(_REJECTED_TAG, main="good")
    listed_rejections = pipeline | "ListRejected" >> beam.Create(rejected)
    return inspected.good, (inspected[_REJECTED_TAG], listed_rejections) | "AllRejected" >> beam.Flatten()


def list_unlabeled_folder(root: str) -> Tuple[List[Tuple[str, str]], List[Rejection]]:
    """(candidates (relative path, ""), rejections) of every file below ``root``, any depth, sorted."""
    from components.image_example_gen.layout import IMAGE_EXTENSIONS

    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"{root}: image folder not found")
    candidates, rejected = [], []
    for dirpath, dirnames, filenames in tf.io.gfile.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = posixpath.relpath(posixpath.join(dirpath, name), root)
            extension = posixpath.splitext(name)[1].lower()
            if extension in IMAGE_EXTENSIONS:
                candidates.append((rel, ""))
            else:
                rejected.append((rel, f"unsupported extension {extension or '(none)'} (accepted: {' '.join(IMAGE_EXTENSIONS)})"))
    return candidates, rejected


@beam.ptransform_fn
def _UnlabeledToCandidates(pipeline: beam.Pipeline, input_base: str, pattern: str, spread: bool):  # pylint: disable=invalid-name
    """(candidates, rejections) of a folder of unlabeled images (label name "")."""
    del pattern  # the whole folder, recursively
    candidates, rejected = list_unlabeled_folder(input_base)
    logger.info("ImageExampleGen: %s: %d unlabeled image file(s), %d rejected by name", input_base, len(candidates), len(rejected))
    return _inspect_listed(pipeline, candidates, rejected, input_base, spread)


@beam.ptransform_fn
def _TFRecordsToCandidates(pipeline: beam.Pipeline, input_base: str, pattern: str, spread: bool):  # pylint: disable=invalid-name
    """(candidates, rejections) of a TFRecord split."""
    files = sorted(
        posixpath.relpath(path, input_base)
        for path in tf.io.gfile.glob(posixpath.join(input_base, pattern))
        if not tf.io.gfile.isdir(path) and not posixpath.basename(path).startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"{posixpath.join(input_base, pattern)}: no TFRecord files match")
    logger.info("ImageExampleGen: %d TFRecord file(s) under %s", len(files), input_base)
    inspected = (
        pipeline
        | "ListFiles" >> beam.Create(files, reshuffle=spread)
        | "Inspect"
        >> beam.FlatMap(_inspect_tfrecord_file, input_base).with_outputs(_REJECTED_TAG, main="good")
    )
    return inspected.good, inspected[_REJECTED_TAG]


@beam.ptransform_fn
def _SortedClassNames(candidates):  # pylint: disable=invalid-name
    """The sorted distinct label names of the images that decoded (a class no good image shows is no class)."""
    return (
        candidates
        | "LabelNames" >> beam.Map(lambda candidate: candidate.label_name)
        | "Distinct" >> beam.Distinct()
        | "Collect" >> beam.combiners.ToList()
        | "Sort" >> beam.Map(sorted)
    )


def _write_class_names(names: List[str], path: str) -> None:
    """The decoded class names as JSON at ``path`` (temporary name, then rename)."""
    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(json.dumps(list(names)))
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def write_rejected(rejections: List[Rejection], directory: str) -> str:
    """Writes ``rejected.jsonl`` (sorted by path) under a temporary name, then renames it."""
    tf.io.gfile.makedirs(directory)
    final_path = posixpath.join(directory, REJECTED_FILE_NAME)
    temp_path = posixpath.join(directory, f".{REJECTED_FILE_NAME}.tmp")
    lines = [json.dumps({"path": path, "reason": reason}, ensure_ascii=False) + "\n" for path, reason in sorted(rejections)]
    with tf.io.gfile.GFile(temp_path, "w") as f:
        f.write("".join(lines))  # one write even when empty: GFile creates no file until written to
    tf.io.gfile.rename(temp_path, final_path, overwrite=True)
    return final_path


def read_rejected(directory: str) -> List[Dict[str, str]]:
    """The entries of ``<directory>/rejected.jsonl``: dicts with 'path' and 'reason'."""
    with tf.io.gfile.GFile(posixpath.join(directory, REJECTED_FILE_NAME)) as f:
        return [json.loads(line) for line in f if line.strip()]


class Executor(BaseExampleGenExecutor):
    """ImageExampleGen's executor. Execution parameter ``input_format``: 'images' | 'tfrecord'.

    Takes exactly one input split (split the output with ``output_config``). Raises ValueError
    or FileNotFoundError, naming the folder, when the input holds nothing to read.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        executor = self
        rejected_parts = self._rejected_parts
        empty_folders = self._empty_class_folders
        spread = not write_split.is_local_runner(self._beam_pipeline_args)

        @beam.ptransform_fn
        def ToExamples(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str):  # pylint: disable=invalid-name
            input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
            input_format = exec_properties.get(INPUT_FORMAT_KEY) or "images"
            listed: List[str] = []
            if input_format == "images":
                to_candidates = _ImagesToCandidates(input_base, split_pattern, empty_folders, listed, spread)  # pylint: disable=no-value-for-parameter
            elif input_format == "tfrecord":
                to_candidates = _TFRecordsToCandidates(input_base, split_pattern, spread)  # pylint: disable=no-value-for-parameter
            elif input_format == "unlabeled":
                to_candidates = _UnlabeledToCandidates(input_base, split_pattern, spread)  # pylint: disable=no-value-for-parameter
            else:
                raise ValueError(f"input_format must be 'images', 'tfrecord' or 'unlabeled', got {input_format!r}")
            candidates, rejections = pipeline | "Candidates" >> to_candidates
            rejected_parts.append(rejections)
            class_names = candidates | "ClassNames" >> _SortedClassNames()  # pylint: disable=no-value-for-parameter
            if input_format != "images":
                return candidates | "ToExample" >> beam.Map(_to_example, beam.pvalue.AsSingleton(class_names))
            # Class ids from the listed class folders, so every image streams from its file to the
            # output without waiting for all of them (a side input of the decoded names would hold
            # every image in memory first). Do() checks the names that decoded against these.
            executor._listed_class_names = sorted(listed)
            names = executor._class_names_override or executor._listed_class_names
            _ = class_names | "WriteClassNames" >> beam.Map(_write_class_names, executor._class_names_path)
            return candidates | "ToExample" >> beam.Map(_to_example, names)

        return ToExamples

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
    ) -> Dict[str, beam.pvalue.PCollection]:
        """The base's splits, plus a branch that writes every rejection to the rejected artifact."""
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        if len(input_config.splits) != 1:
            raise ValueError(
                f"ImageExampleGen takes exactly one input split, got {len(input_config.splits)}; "
                "split the output with output_config instead"
            )
        splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        _ = (
            tuple(self._rejected_parts)
            | "FlattenRejected" >> beam.Flatten(pipeline=pipeline)
            | "CollectRejected" >> beam.combiners.ToList()
            | "WriteRejected" >> beam.Map(write_rejected, self._rejected_dir)
        )
        return splits

    def _generate(self, input_dict, output_dict, exec_properties) -> None:
        """One pass of the base executor: examples and rejected.jsonl written."""
        self._rejected_parts: List[beam.pvalue.PCollection] = []
        self._empty_class_folders: List[str] = []
        self._listed_class_names: Optional[List[str]] = None
        if tf.io.gfile.exists(self._class_names_path):
            tf.io.gfile.remove(self._class_names_path)
        self._write_examples(input_dict, output_dict, exec_properties)

    def _write_examples(self, input_dict, output_dict, exec_properties) -> None:
        """What ``BaseExampleGenExecutor.Do`` does, writing each split with our ``write_split.WriteSplit``.

        An override because the base ``Do`` calls TFX's ``WriteSplit`` directly, and that one
        reshuffles every split before writing it: on the local runner a group-by-key holding
        every example in memory (peak RSS grew with the data), and a random output order. The
        split names, splitting (``GenerateExamplesByBeam``), file names, the ``num_instances``
        counter and the payload/file format properties are TFX's.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format == example_gen_pb2.PayloadFormat.FORMAT_PARQUET:
            raise ValueError("ImageExampleGen: output_data_format FORMAT_PARQUET is not supported; it writes tf.Examples")
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        file_format_name = tfx_write_split.to_file_format_str(file_format)  # raises on an unknown format, before any work
        examples = output_dict[EXAMPLES_KEY]
        artifact_utils.get_single_instance(examples).split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config)
        )
        with self._make_beam_pipeline() as pipeline:
            for split_name, example_split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = example_split | f"WriteSplit[{split_name}]" >> write_split.WriteSplit(  # pylint: disable=no-value-for-parameter
                    artifact_utils.get_split_uri(examples, split_name)
                )
        for artifact in examples:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, file_format_name)

    def _decoded_class_names(self) -> Optional[List[str]]:
        """The sorted class names of the images that decoded, for the images format; None otherwise."""
        if self._listed_class_names is None or not tf.io.gfile.exists(self._class_names_path):
            return None
        with tf.io.gfile.GFile(self._class_names_path) as f:
            return json.loads(f.read())

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        """Writes the examples (base executor) and the rejected artifact with ``num_rejected``."""
        rejected_artifact = artifact_utils.get_single_instance(output_dict[REJECTED_KEY])
        self._rejected_dir = rejected_artifact.uri
        # Hidden beside rejected.jsonl while the executor runs, removed before it returns.
        self._class_names_path = posixpath.join(rejected_artifact.uri, ".decoded_class_names.json")
        self._class_names_override: Optional[List[str]] = None
        self._generate(input_dict, output_dict, exec_properties)
        decoded = self._decoded_class_names()
        if decoded and decoded != self._listed_class_names:
            # A class folder none of whose files decoded is no class: the ids written are off.
            logger.warning(
                "ImageExampleGen: class folder(s) %s hold no decodable image: not classes; writing the examples again "
                "with the ids of the %d classes that decoded",
                ", ".join(sorted(set(self._listed_class_names) - set(decoded))), len(decoded),
            )
            for split_uri in (artifact_utils.get_split_uri(output_dict[EXAMPLES_KEY], split)
                              for split in artifact_utils.decode_split_names(artifact_utils.get_single_instance(
                                  output_dict[EXAMPLES_KEY]).split_names)):
                if tf.io.gfile.exists(split_uri):
                    tf.io.gfile.rmtree(split_uri)
            self._class_names_override = decoded
            self._generate(input_dict, output_dict, exec_properties)
        if tf.io.gfile.exists(self._class_names_path):
            tf.io.gfile.remove(self._class_names_path)
        rejected_artifact.set_json_value_custom_property(
            EMPTY_CLASS_FOLDERS_PROPERTY, sorted(self._empty_class_folders)
        )

        entries = read_rejected(rejected_artifact.uri)
        for entry in entries:
            logger.warning("ImageExampleGen rejected %s: %s", entry["path"], entry["reason"])
        logger.info(
            "ImageExampleGen: %d file(s) or record(s) rejected, listed in %s",
            len(entries),
            posixpath.join(rejected_artifact.uri, REJECTED_FILE_NAME),
        )
        rejected_artifact.set_int_custom_property(NUM_REJECTED_PROPERTY, len(entries))
        span = exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME)
        if span is not None:
            rejected_artifact.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, int(span))
