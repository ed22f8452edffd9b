"""DataGate's class checks: per-split class counts from real TFDV statistics; a class missing from train stops the run."""

from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from components.data_gate import classes
from components.data_gate.component import unseen_class_message
from lenspipe import features

SPLITS = {
    "train": [("cat", "cat/1.png"), ("cat", "cat/2.png"), ("dog", "dog/1.png")],
    "test": [("cat", "cat/3.png"), ("owl", "owl/1.png"), ("owl", "owl/2.png")],
}


def _example(label: str, path: str) -> bytes:
    feature = {
        features.LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
        features.PATH_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_splits(root, splits) -> None:
    """``root/examples/Split-<s>/data.gz`` (label and path records) and ``root/statistics/Split-<s>/FeatureStats.pb``
    (TFDV's statistics of them, as StatisticsGen writes them) for ``splits``: {split: [(label, path)]}."""
    for split, rows in splits.items():
        split_dir = root / "examples" / f"Split-{split}"
        split_dir.mkdir(parents=True)
        path = str(split_dir / "data.gz")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
            for label, rel in rows:
                writer.write(_example(label, rel))
        stats_dir = root / "statistics" / f"Split-{split}"
        stats_dir.mkdir(parents=True)
        stats = tfdv.generate_statistics_from_tfrecord(
            path, stats_options=tfdv.StatsOptions(feature_allowlist=[features.LABEL_NAME_KEY])
        )
        (stats_dir / "FeatureStats.pb").write_bytes(stats.SerializeToString())


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """An Examples and an ExampleStatistics artifact (statistics computed by TFDV from the records)."""
    root = tmp_path_factory.mktemp("gate")
    write_splits(root, SPLITS)
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(root / "statistics")
    statistics.split_names = examples.split_names
    return examples, statistics


def test_class_counts_per_split_come_from_the_statistics(artifacts):
    _, statistics = artifacts
    assert classes.class_counts(statistics) == {"test": {"cat": 1, "owl": 2}, "train": {"cat": 2, "dog": 1}}


def test_a_class_missing_from_train_is_named_with_its_files(artifacts):
    examples, statistics = artifacts
    unseen = classes.unseen_in_train(classes.class_counts(statistics))
    assert unseen == {"test": ["owl"]}
    message = unseen_class_message(examples, unseen)
    assert "\n" not in message
    assert "class 'owl' is in the test split but not in train (owl/1.png, owl/2.png)" in message
    assert "nothing was trained or pushed" in message


def test_classes_only_in_train_are_fine():
    assert classes.unseen_in_train({"train": {"a": 3, "b": 1}, "eval": {"a": 1}, "test": {}}) == {}
