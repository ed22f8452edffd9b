"""Which classes each split shows, from StatisticsGen's output, and where an unexpected one's files are.

A class seen in eval or test but not in train would get no class id (the Transform numbers
the train split's classes), so its images would be scored against a label the model cannot
output. The gate stops such a run and names the class and its files.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx import types
from tfx.types import artifact_utils

from lenspipe import features

TRAIN_SPLIT = "train"
_STATS_FILE = "FeatureStats.pb"
FILES_NAMED = 5  # per class: enough to find the folder, short enough for one line


def class_counts(statistics: types.Artifact) -> Dict[str, Dict[str, int]]:
    """{split: {class name: images}} from the label feature's rank histogram (every value up to 1000 classes)."""
    counts: Dict[str, Dict[str, int]] = {}
    for split in sorted(artifact_utils.decode_split_names(statistics.split_names)):
        path = os.path.join(artifact_utils.get_split_uri([statistics], split), _STATS_FILE)
        if not tf.io.gfile.exists(path):
            continue
        split_counts: Dict[str, int] = {}
        for dataset in tfdv.load_stats_binary(path).datasets:
            for feature in dataset.features:
                if feature.path.step and feature.path.step[-1] == features.LABEL_NAME_KEY:
                    for bucket in feature.string_stats.rank_histogram.buckets:
                        split_counts[bucket.label] = int(bucket.sample_count)
        counts[split] = dict(sorted(split_counts.items()))
    return counts


def files_of(examples: types.Artifact, split: str, class_names: Sequence[str], limit: int = FILES_NAMED) -> Dict[str, List[str]]:
    """Up to ``limit`` relative paths per class in ``class_names`` of one split of an Examples artifact."""
    wanted = set(class_names)
    found: Dict[str, List[str]] = {name: [] for name in class_names}
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
    spec = {
        features.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
        features.PATH_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    files = sorted(tf.io.gfile.glob(pattern))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024).map(lambda b: tf.io.parse_example(b, spec))
    for batch in dataset:
        for label, path in zip(batch[features.LABEL_NAME_KEY].numpy(), batch[features.PATH_KEY].numpy()):
            name = label.decode("utf-8", "replace")
            if name in wanted and len(found[name]) < limit:
                found[name].append(path.decode("utf-8", "replace"))
        if all(len(paths) >= limit for paths in found.values()):
            break
    return found


def unseen_in_train(counts: Mapping[str, Mapping[str, int]]) -> Dict[str, List[str]]:
    """{split: sorted class names it shows that the train split does not}, for splits other than train."""
    train = set(counts.get(TRAIN_SPLIT, {}))
    out = {}
    for split, split_counts in counts.items():
        extra = sorted(set(split_counts) - train)
        if split != TRAIN_SPLIT and extra:
            out[split] = extra
    return out
