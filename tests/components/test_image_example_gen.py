"""ImageExampleGen on small fixture folders: the executor directly, and once inside a real
BeamDagRunner pipeline (driver, spans, caching)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.image_example_gen import component, executor
from lenspipe import features

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _encode(mode: str, fmt: str, size: Tuple[int, int], value: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, fmt)
    return buffer.getvalue()


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# relative path -> (bytes, label, label index, height, width, channels, format, brightness)
def _good_images() -> Dict[str, tuple]:
    return {
        "cat/rgb.png": (_encode("RGB", "PNG", (40, 30), (250, 250, 250)), "cat", 0, 30, 40, 3, "png", 250.0),
        "cat/grey.PNG": (_encode("L", "PNG", (300, 260), 10), "cat", 0, 260, 300, 1, "png", 10.0),
        "cat/photo.jpeg": (_encode("RGB", "JPEG", (64, 48), (128, 128, 128)), "cat", 0, 48, 64, 3, "jpeg", 128.0),
        "dog/anim.gif": (_encode("L", "GIF", (16, 16), 255), "dog", 1, 16, 16, 3, "gif", 255.0),
        "dog/pic.bmp": (_encode("RGB", "BMP", (20, 10), (0, 0, 0)), "dog", 1, 10, 20, 3, "bmp", 0.0),
        "dog/really_png.jpg": (_encode("RGBA", "PNG", (8, 9), (100, 100, 100, 255)), "dog", 1, 9, 8, 4, "png", 100.0),
        "emu/e1.png": (_encode("L", "PNG", (33, 100), 90), "emu", 2, 100, 33, 1, "png", 90.0),
        "emu/e2.png": (_encode("L", "PNG", (12, 12), 160), "emu", 2, 12, 12, 1, "png", 160.0),
    }


# relative path -> (bytes, a fragment the reason must contain)
def _bad_files() -> Dict[str, Tuple[bytes, str]]:
    png = _encode("RGB", "PNG", (50, 50), (1, 2, 3))
    return {
        "cat/empty.png": (b"", "empty file"),
        # Its folder's only file is bad: 'ant' is no class, so cat keeps id 0.
        "ant/broken.png": (png[:40], "truncated or corrupt png"),
        "cat/truncated.png": (png[: len(png) // 2], "truncated or corrupt png"),
        "dog/text.png": (b"just some text, not pixels\n", "not an image"),
        "dog/notes.txt": (b"notes", "unsupported extension .txt"),
        "stray.png": (png, "not inside a class folder"),
        "emu/deeper/nested.png": (png, "nested below a class folder"),
        # PIL loads a 1-bit BMP; TensorFlow (what the Transform graph runs) cannot.
        "emu/onebit.bmp": (_encode("1", "BMP", (8, 8), 1), "TensorFlow cannot decode this bmp"),
    }


def _make_folder(root: Path) -> Path:
    for rel, (data, *_rest) in _good_images().items():
        _write(root, rel, data)
    for rel, (data, _) in _bad_files().items():
        _write(root, rel, data)
    (root / "bat").mkdir()  # an empty class folder: warned about, not a class (cat keeps id 0)
    _write(root, ".DS_Store", b"finder metadata")  # hidden: ignored, neither example nor rejection
    return root


def _execute(input_base: Path, out: Path, input_format: str = "images", output_config=None,
             executor_class=executor.Executor, **context_args):
    """Runs ``executor_class`` on ``input_base``; returns its (examples, rejected) artifacts."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    rejected = component.RejectedFiles()
    rejected.uri = str(out / "rejected")
    exec_properties = {
        "input_base": str(input_base),
        "input_config": proto_utils.proto_to_json(component.make_input_config(None, input_format)),
        "output_config": proto_utils.proto_to_json(output_config or component.make_output_config(1, 1, 1)),
        "output_data_format": 6,  # FORMAT_TF_EXAMPLE
        "output_file_format": 5,  # FORMAT_TFRECORDS_GZIP
        component.INPUT_FORMAT_KEY: input_format,
    }
    context_args.setdefault("beam_pipeline_args", BEAM_ARGS)
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(out / "tmp"), **context_args)
    executor_class(context).Do({}, {"examples": [examples], "rejected": [rejected]}, exec_properties)
    return examples, rejected


def _run_executor(input_base: Path, out: Path, input_format: str = "images", output_config=None):
    """Runs the executor; returns ({path: (split, features)}, rejected entries, rejected artifact)."""
    examples, rejected = _execute(input_base, out, input_format, output_config)
    return _read_examples(examples.uri), executor.read_rejected(rejected.uri), rejected


def _read_examples(uri: str) -> Dict[str, Tuple[str, tf.train.Example]]:
    by_path = {}
    for split in component.SPLIT_NAMES:
        files = tf.io.gfile.glob(f"{uri}/Split-{split}/*.gz")
        assert files, f"no output files for split {split}"
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            path = example.features.feature[features.PATH_KEY].bytes_list.value[0].decode()
            assert path not in by_path, f"{path} written twice"
            by_path[path] = (split, example)
    return by_path


def _value(example: tf.train.Example, key: str):
    feature = example.features.feature[key]
    kind = feature.WhichOneof("kind")
    (value,) = getattr(feature, kind).value
    return value.decode() if isinstance(value, bytes) and key != features.IMAGE_KEY else value


@pytest.fixture(scope="module")
def folder_artifacts(tmp_path_factory):
    """(image folder, examples artifact, rejected artifact) of one executor run on the fixture folder."""
    root = _make_folder(tmp_path_factory.mktemp("images"))
    return (root, *_execute(root, tmp_path_factory.mktemp("out")))


@pytest.fixture(scope="module")
def folder_run(folder_artifacts):
    root, examples, rejected = folder_artifacts
    return root, _read_examples(examples.uri), executor.read_rejected(rejected.uri), rejected


def test_every_good_image_becomes_one_example_with_correct_features(folder_run):
    _, examples, _, _ = folder_run
    expected = _good_images()
    assert sorted(examples) == sorted(expected)
    for path, (data, label, index, height, width, channels, fmt, brightness) in expected.items():
        example = examples[path][1]
        assert _value(example, features.IMAGE_KEY) == data, path
        assert _value(example, features.LABEL_NAME_KEY) == label, path
        assert _value(example, features.CLASS_INDEX_KEY) == index, path
        assert (_value(example, features.HEIGHT_KEY), _value(example, features.WIDTH_KEY)) == (height, width), path
        assert _value(example, features.CHANNELS_KEY) == channels, path
        assert _value(example, features.FORMAT_KEY) == fmt, path
        # JPEG is lossy; the rest are exact.
        assert _value(example, features.BRIGHTNESS_KEY) == pytest.approx(brightness, abs=1.5), path
    # Buckets follow the thresholds in lenspipe/features.py (size by the shorter side).
    assert _value(examples["cat/grey.PNG"][1], features.BRIGHTNESS_BUCKET_KEY) == "dark"
    assert _value(examples["cat/photo.jpeg"][1], features.BRIGHTNESS_BUCKET_KEY) == "medium"
    assert _value(examples["cat/rgb.png"][1], features.BRIGHTNESS_BUCKET_KEY) == "bright"
    assert _value(examples["dog/pic.bmp"][1], features.SIZE_BUCKET_KEY) == "small"  # 10 px
    assert _value(examples["emu/e1.png"][1], features.SIZE_BUCKET_KEY) == "medium"  # 33 px
    assert _value(examples["cat/grey.PNG"][1], features.SIZE_BUCKET_KEY) == "large"  # 260 px


def test_every_bad_file_is_listed_with_its_reason(folder_run):
    root, _, rejected, artifact = folder_run
    bad = _bad_files()
    assert [entry["path"] for entry in rejected] == sorted(bad)  # sorted, one line each
    for entry in rejected:
        assert bad[entry["path"]][1] in entry["reason"], entry
        assert "\n" not in entry["reason"]
    assert artifact.get_int_custom_property(executor.NUM_REJECTED_PROPERTY) == len(bad)
    assert artifact.get_json_value_custom_property(executor.EMPTY_CLASS_FOLDERS_PROPERTY) == ["bat"]
    lines = (Path(artifact.uri) / executor.REJECTED_FILE_NAME).read_text().splitlines()
    assert [json.loads(line) for line in lines] == rejected
    # The temporary name was renamed away, and the decoded class names (checked against the listed
    # class folders; 'ant' decodes nothing, so the examples were written a second time) are gone.
    assert sorted(p.name for p in Path(artifact.uri).iterdir()) == [executor.REJECTED_FILE_NAME]


def test_split_depends_only_on_the_path(folder_run, tmp_path):
    root, first, _, _ = folder_run
    assert len({split for split, _ in first.values()}) > 1  # 1:1:1 buckets actually spread them
    changed = shutil.copytree(root, tmp_path / "images")
    _write(changed, "emu/newcomer.png", _encode("L", "PNG", (5, 5), 7))  # an unrelated new file
    good = sorted(_good_images())
    contents = [(changed / path).read_bytes() for path in good]
    for path, data in zip(good, contents[1:] + contents[:1]):  # every path gets other bytes
        _write(changed, path, data)
    second, _, _ = _run_executor(changed, tmp_path / "out")
    assert set(second) == set(first) | {"emu/newcomer.png"}
    assert {path: split for path, (split, _) in second.items() if path in first} == {
        path: split for path, (split, _) in first.items()
    }


def _example_bytes(**values) -> bytes:
    feature = {
        key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value if isinstance(value, bytes) else value.encode()]))
        for key, value in values.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tfrecord_input_fills_every_feature_and_rejects_bad_records(tmp_path):
    root = tmp_path / "records"
    root.mkdir()
    png = _encode("RGB", "PNG", (6, 4), (0, 0, 0))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(root / "part-0.tfrecord.gz"), options) as writer:
        writer.write(_example_bytes(**{features.IMAGE_KEY: png, features.LABEL_NAME_KEY: "zebra"}))
        writer.write(_example_bytes(**{features.IMAGE_KEY: png[:30], features.LABEL_NAME_KEY: "ant"}))
        writer.write(_example_bytes(**{features.IMAGE_KEY: png}))  # no label
    with tf.io.TFRecordWriter(str(root / "part-1.tfrecord")) as writer:  # plain, not gzipped
        writer.write(
            _example_bytes(
                **{
                    features.IMAGE_KEY: _encode("L", "JPEG", (9, 7), 200),
                    features.LABEL_NAME_KEY: "bee",
                    features.PATH_KEY: "originals/bee.jpg",
                }
            )
        )
    (root / "junk.tfrecord").write_bytes(b"this is not a TFRecord file at all")

    examples, rejected, artifact = _run_executor(root, tmp_path / "out", input_format="tfrecord")

    assert sorted(examples) == ["originals/bee.jpg", "part-0.tfrecord.gz#0"]
    zebra = examples["part-0.tfrecord.gz#0"][1]
    bee = examples["originals/bee.jpg"][1]
    # Class indexes: positions in the sorted label names of the records that decoded (bee, zebra);
    # 'ant' has no good image, so it is no class.
    assert _value(zebra, features.CLASS_INDEX_KEY) == 1
    assert _value(bee, features.CLASS_INDEX_KEY) == 0
    assert [_value(zebra, key) for key in (features.HEIGHT_KEY, features.WIDTH_KEY, features.CHANNELS_KEY)] == [4, 6, 3]
    assert _value(zebra, features.FORMAT_KEY) == "png"
    assert _value(zebra, features.BRIGHTNESS_BUCKET_KEY) == "dark"
    assert _value(bee, features.FORMAT_KEY) == "jpeg"
    assert _value(bee, features.CHANNELS_KEY) == 1
    reasons = {entry["path"]: entry["reason"] for entry in rejected}
    assert set(reasons) == {"part-0.tfrecord.gz#1", "part-0.tfrecord.gz#2", "junk.tfrecord#0"}
    assert "truncated or corrupt png" in reasons["part-0.tfrecord.gz#1"]
    assert features.LABEL_NAME_KEY in reasons["part-0.tfrecord.gz#2"]
    assert "not a TFRecord file" in reasons["junk.tfrecord#0"]
    assert artifact.get_int_custom_property(executor.NUM_REJECTED_PROPERTY) == 3


def test_config_helpers():
    assert component.make_input_config(None, "images").splits[0].pattern == "*/*"
    assert component.make_input_config("span-{SPAN}", "images").splits[0].pattern == "span-{SPAN}/*/*"
    assert component.make_input_config("span-{SPAN}", "tfrecord").splits[0].pattern == "span-{SPAN}/*"
    output = component.make_output_config(8, 1, 2)
    assert [(s.name, s.hash_buckets) for s in output.split_config.splits] == [("train", 8), ("eval", 1), ("test", 2)]
    assert output.split_config.partition_feature_name == features.PATH_KEY
    with pytest.raises(ValueError, match="SPAN"):
        component.make_input_config("span-1", "images")
    with pytest.raises(ValueError, match="input_format"):
        component.make_input_config(None, "csv")
    with pytest.raises(ValueError, match="'eval'"):
        component.make_output_config(8, 0, 1)
    with pytest.raises(ValueError, match="input_format"):
        component.ImageExampleGen(input_base="/nowhere", input_format="csv")


# --- A real pipeline: FileBasedDriver resolves spans and fingerprints input, so caching works.


def _run_pipeline(input_base: Path, work: Path):
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    example_gen = component.ImageExampleGen(
        input_base=str(input_base),
        input_config=component.make_input_config("span-{SPAN}", "images"),
        output_config=component.make_output_config(1, 1, 1),
    )
    BeamDagRunner().run(
        pipeline.Pipeline(
            pipeline_name="image_example_gen_test",
            pipeline_root=str(work / "root"),
            components=[example_gen],
            enable_cache=True,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(str(work / "mlmd.sqlite")),
            beam_pipeline_args=BEAM_ARGS,
        )
    )


def _mlmd_state(work: Path):
    """(executions oldest first, {output key: latest artifact}) from the test's MLMD store."""
    from ml_metadata import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(str(work / "mlmd.sqlite")))
    executions = sorted(store.get_executions(), key=lambda e: e.id)
    latest = {}
    for type_name in ("Examples", component.RejectedFiles.TYPE_NAME):
        artifacts = store.get_artifacts_by_type(type_name)
        latest[type_name] = max(artifacts, key=lambda a: a.id)
    return executions, latest


def test_pipeline_ingests_latest_span_and_caches_unchanged_input(tmp_path):
    from ml_metadata.proto import metadata_store_pb2

    data, work = tmp_path / "data", tmp_path / "work"
    png = _encode("L", "PNG", (8, 8), 100)
    for span in (1, 2):
        _write(data, f"span-{span}/a/one.png", png)
        _write(data, f"span-{span}/b/two.png", png)
    _write(data, "span-2/b/broken.png", png[:20])
    _write(data, "span-2/loose.png", png)

    _run_pipeline(data, work)
    executions, latest = _mlmd_state(work)
    assert [e.last_known_state for e in executions] == [metadata_store_pb2.Execution.COMPLETE]
    examples, rejected = latest["Examples"], latest[component.RejectedFiles.TYPE_NAME]
    assert examples.custom_properties["span"].int_value == 2
    assert rejected.custom_properties["span"].int_value == 2
    assert rejected.custom_properties[executor.NUM_REJECTED_PROPERTY].int_value == 2
    assert sorted(_read_examples(examples.uri)) == ["span-2/a/one.png", "span-2/b/two.png"]
    assert [e["path"] for e in executor.read_rejected(rejected.uri)] == ["span-2/b/broken.png", "span-2/loose.png"]

    _run_pipeline(data, work)  # nothing changed: the driver's fingerprint matches, cache hit
    executions, again = _mlmd_state(work)
    assert executions[-1].last_known_state == metadata_store_pb2.Execution.CACHED
    assert again["Examples"].id == examples.id

    _write(data, "span-3/a/three.png", png)  # new data arrives as a new span
    _run_pipeline(data, work)
    executions, latest = _mlmd_state(work)
    assert executions[-1].last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert latest["Examples"].custom_properties["span"].int_value == 3
    assert sorted(_read_examples(latest["Examples"].uri)) == ["span-3/a/three.png"]
    assert latest[component.RejectedFiles.TYPE_NAME].custom_properties[executor.NUM_REJECTED_PROPERTY].int_value == 0


# --- Writing the splits: TFX's files, streamed (no Reshuffle over the examples on the local runner) ---


class _TfxWriteSplitExecutor(executor.Executor):
    """The executor as it wrote before: through ``BaseExampleGenExecutor.Do`` and TFX's WriteSplit (its Reshuffle)."""

    def _write_examples(self, input_dict, output_dict, exec_properties) -> None:
        from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor

        BaseExampleGenExecutor.Do(self, input_dict, output_dict, exec_properties)


def _split_files(uri: str) -> Dict[str, Dict[str, bytes]]:
    """{split dir: {file name: bytes}} of an examples artifact."""
    return {
        split.name: {f.name: f.read_bytes() for f in sorted(split.iterdir())}
        for split in sorted(Path(uri).iterdir())
    }


def _records(uri: str) -> Dict[str, List[bytes]]:
    """{split dir: serialized examples in file order} of an examples artifact."""
    return {
        split: [r.numpy() for r in tf.data.TFRecordDataset([f"{uri}/{split}/{name}" for name in files], compression_type="GZIP")]
        for split, files in _split_files(uri).items()
    }


def _capturing_context(captured: list, runner_args: List[str]) -> dict:
    """Context arguments that run the executor's Beam pipelines locally and keep them for inspection.

    ``runner_args`` is what the executor is told it runs with (it decides from them whether to
    spread the files); the pipelines themselves always run on the in-process DirectRunner.
    """
    import apache_beam as beam

    def make_pipeline():
        pipeline = beam.Pipeline(argv=BEAM_ARGS)
        captured.append(pipeline)
        return pipeline

    return {"beam_pipeline_args": runner_args, "make_beam_pipeline_fn": make_pipeline}


def _groupings_of_the_data(pipeline) -> Tuple[List[str], List[str]]:
    """(grouping transforms, file writers) that the listed image files or their examples flow into.

    Walks the Beam pipeline graph from the output of ``ListFiles`` (one element per image file)
    through every primitive transform it feeds, leaving out the rejections and the branch that
    keeps only label names (``LabelNames``), and stopping at Beam's file writer (``WriteBundles``:
    after it only file names flow). A GroupByKey (Reshuffle is one) met on the way holds every
    element in memory until its input is complete on the local runner.
    """
    from collections import defaultdict

    transforms = pipeline.to_runner_api().components.transforms
    consumers = defaultdict(list)
    for t in transforms.values():
        if not t.subtransforms:  # a primitive
            for pcoll in t.inputs.values():
                consumers[pcoll].append(t)

    def data_outputs(t):
        return [pcoll for tag, pcoll in t.outputs.items() if tag != executor._REJECTED_TAG]  # pylint: disable=protected-access

    frontier = [pcoll for t in transforms.values() if t.unique_name.endswith("/ListFiles") for pcoll in data_outputs(t)]
    assert frontier, "no ListFiles transform in the pipeline"
    seen, groupings, writers = set(frontier), [], []
    while frontier:
        for t in consumers[frontier.pop()]:
            parts = t.unique_name.split("/")
            if "LabelNames" in parts:
                continue
            if "WriteBundles" in parts:
                writers.append(t.unique_name)
                continue
            if t.spec.urn == "beam:transform:group_by_key:v1" or "Reshuffle" in t.unique_name:
                groupings.append(t.unique_name)
            for pcoll in data_outputs(t):
                if pcoll not in seen:
                    seen.add(pcoll)
                    frontier.append(pcoll)
    return groupings, writers


@pytest.fixture(scope="module")
def captured_run(folder_artifacts, tmp_path_factory):
    """The executor run once more on the fixture folder, on the local runner, with its Beam pipelines kept."""
    from pipeline.runners.common import without_tfx_ephemeral_package

    root, _, _ = folder_artifacts
    pipelines: list = []
    with without_tfx_ephemeral_package():
        examples, _ = _execute(root, tmp_path_factory.mktemp("again"), **_capturing_context(pipelines, BEAM_ARGS))
    return examples, pipelines


def test_splits_hold_the_same_examples_and_files_as_tfx_writesplit_wrote(folder_artifacts, tmp_path):
    root, examples, rejected = folder_artifacts
    tfx_examples, tfx_rejected = _execute(root, tmp_path, executor_class=_TfxWriteSplitExecutor)
    ours, theirs = _records(examples.uri), _records(tfx_examples.uri)
    assert sorted(ours) == sorted(theirs) == [f"Split-{split}" for split in sorted(component.SPLIT_NAMES)]
    assert sum(map(len, ours.values())) == len(_good_images())
    assert sum(1 for records in ours.values() if records) > 1
    for split in ours:
        assert sorted(ours[split]) == sorted(theirs[split]), split
    assert {s: sorted(f) for s, f in _split_files(examples.uri).items()} == {
        s: sorted(f) for s, f in _split_files(tfx_examples.uri).items()
    }  # data_tfrecord-00000-of-00001.gz in each
    assert examples.split_names == tfx_examples.split_names
    for name in ("payload_format", "file_format"):
        assert examples.get_string_custom_property(name) == tfx_examples.get_string_custom_property(name), name
    assert executor.read_rejected(rejected.uri) == executor.read_rejected(tfx_rejected.uri)


def test_examples_are_written_in_listing_order_byte_identical_run_to_run(folder_artifacts, captured_run):
    from components.image_example_gen import layout

    root, examples, _ = folder_artifacts
    again, _ = captured_run
    assert _split_files(again.uri) == _split_files(examples.uri)
    listed = [path for path, _ in layout.list_image_folder(str(root)).candidates]
    for split, records in _records(examples.uri).items():
        paths = [tf.train.Example.FromString(r).features.feature[features.PATH_KEY].bytes_list.value[0].decode() for r in records]
        assert paths == [p for p in listed if p in set(paths)], split


def test_on_the_local_runner_no_reshuffle_or_group_by_key_holds_the_images(captured_run):
    _, pipelines = captured_run
    assert len(pipelines) == 2  # 'ant/' decodes nothing: the examples are written a second time
    for pipeline in pipelines:
        groupings, writers = _groupings_of_the_data(pipeline)
        assert groupings == []
        assert sorted(w.split("/")[0] for w in writers) == [f"WriteSplit[{s}]" for s in sorted(component.SPLIT_NAMES)]


def test_on_a_distributed_runner_the_listed_files_are_spread_and_the_examples_stream(tmp_path):
    from pipeline.runners.common import without_tfx_ephemeral_package

    png = _encode("L", "PNG", (4, 4), 50)
    for rel in ("a/1.png", "a/2.png", "b/3.png"):
        _write(tmp_path / "images", rel, png)
    pipelines: list = []
    with without_tfx_ephemeral_package():
        examples, _ = _execute(tmp_path / "images", tmp_path / "out",
                               **_capturing_context(pipelines, ["--runner=DataflowRunner", "--project=p", "--region=r"]))
    (pipeline,) = pipelines
    groupings, _ = _groupings_of_the_data(pipeline)
    assert groupings and all(name.split("/")[2] == "Spread" for name in groupings), groupings
    assert sorted(_read_examples(examples.uri)) == ["a/1.png", "a/2.png", "b/3.png"]


@pytest.mark.parametrize(
    "args, local",
    [
        ([], True),
        (["--direct_running_mode=multi_processing"], True),
        (["--runner=DirectRunner"], True),
        (["--runner", "direct"], True),
        (["--runner=PrismRunner"], True),
        (["--runner=DataflowRunner"], False),
        (["--runner=FlinkRunner"], False),
        (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], False),
    ],
)
def test_which_runners_count_as_local(args, local):
    from components.image_example_gen import write_split

    assert write_split.is_local_runner(args) is local
