"""bench.trainer_seeds: the Trainer recipe per seed on a finished run's artifacts, reproducibly."""

from __future__ import annotations

import os
import re

import pytest

from bench import trainer_seeds
from lenspipe import features


def _work_dir(tmp_path, images, transform_dir):
    """The artifact layout a `lenspipe run` leaves: examples and transform graph under their MLMD ids."""
    import tensorflow as tf

    pipeline = tmp_path / "work" / "pipelines" / "lenspipe"
    (pipeline / "ImageExampleGen" / "examples" / "1").mkdir(parents=True)  # an older artifact, ignored
    for split in ("train", "eval", "test"):
        folder = pipeline / "ImageExampleGen" / "examples" / "3" / f"Split-{split}"
        folder.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
            for png, label, _ in images:
                example = tf.train.Example(features=tf.train.Features(feature={
                    features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                    features.LABEL_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                }))
                writer.write(example.SerializeToString())
    (pipeline / "Transform" / "transform_graph").mkdir(parents=True)
    os.symlink(transform_dir, pipeline / "Transform" / "transform_graph" / "5")
    return tmp_path / "work"


def test_each_seed_trains_the_configured_model_and_the_same_seed_gives_the_same_result(tiny_images, tiny_transform, tmp_path):
    _, transform_dir = tiny_transform
    work = _work_dir(tmp_path, tiny_images, transform_dir)
    out = tmp_path / "seeds.md"
    small = ["image.height=8", "image.width=8", "image.channels=3", "trainer.epochs=3", "trainer.conv_blocks=1",
             "trainer.base_filters=4", "trainer.dense_units=8", "trainer.batch_size=4"]
    args = [str(work), "--seeds", "7,7,8", "--out", str(out)] + [a for s in small for a in ("--set", s)]
    assert trainer_seeds.main(args) == 0
    text = out.read_text()
    assert "ImageExampleGen/examples/3" in text and "transform_graph/5" in text
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| (\d+) \| (\d+) / 12 \| (\d+) / 12 \| (\d+) \| [0-9.]+ \| (.*) \|$", line)
        if m:
            rows.setdefault(int(m.group(1)), []).append((m.group(2), m.group(3), m.group(4), m.group(5)))
    assert sorted(rows) == [7, 8] and len(rows[7]) == 2
    assert rows[7][0] == rows[7][1]  # same seed: same misses, same epochs
    assert all(1 <= int(r[2]) <= 3 for r in rows[7] + rows[8])


def test_a_folder_without_run_artifacts_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="finished `lenspipe run`"):
        trainer_seeds.main([str(tmp_path)])
    assert trainer_seeds._seeds("42-44") == [42, 43, 44] and trainer_seeds._seeds("5,9") == [5, 9]
