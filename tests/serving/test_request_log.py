"""The request log of `lenspipe serve --request_log_dir`: sampling, what a record holds, rotation, the disk
budget, files that appear only whole, and drops when the queue is full."""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.image_example_gen.decoding import inspect_image, property_features
from lenspipe import features
from serving import request_log
from serving.flags import ConfigError, parse_server_options
from serving.request_log import FILE_PREFIX, TEMP_PREFIX, RequestLogger, RequestLogOptions, finished_files
from serving.servable import TensorSpec
from tests.conftest import png_bytes

STRING = TensorSpec(dtype=7, shape=(-1,))  # DT_STRING
SPECS = {features.IMAGE_BYTES_INPUT: STRING}


def images(count: int, side: int = 8, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png_bytes(rng.integers(0, 256, (side, side), dtype=np.uint8)) for _ in range(count)]


def read_all(directory: Path) -> list[tf.train.Example]:
    return [tf.train.Example.FromString(r) for path in finished_files(directory)
            for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


def value(example: tf.train.Example, key: str):
    f = example.features.feature[key]
    kind = f.WhichOneof("kind")
    v = getattr(f, kind).value[0]
    return v.decode() if isinstance(v, bytes) and key != features.IMAGE_KEY else v


def predict(logger: RequestLogger, batch: list[bytes], version: int = 3) -> None:
    logger.offer_predict("digits", version, "serving_default", {features.IMAGE_BYTES_INPUT: np.array(batch, dtype=object)},
                         SPECS)


def test_a_logged_request_holds_the_image_its_examplegen_properties_and_the_serving_version(tmp_path):
    pngs = images(3)
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0))
    predict(logger, pngs[:2], version=7)
    example = tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[pngs[2]]))}))
    logger.offer_examples("digits", 8, "", [example.SerializeToString()])
    logger.close()
    logged = read_all(tmp_path)
    assert len(logged) == 3
    for record, png, version, api in zip(logged, pngs, (7, 7, 8), ("predict", "predict", "classify")):
        info = inspect_image(png)
        assert value(record, features.IMAGE_KEY) == png
        assert value(record, features.HEIGHT_KEY) == info.height and value(record, features.WIDTH_KEY) == info.width
        assert value(record, features.CHANNELS_KEY) == info.channels == 1
        assert value(record, features.FORMAT_KEY) == "png"
        assert value(record, features.BRIGHTNESS_KEY) == pytest.approx(info.brightness, rel=1e-6)
        assert value(record, features.BRIGHTNESS_BUCKET_KEY) == info.brightness_bucket
        assert value(record, features.SIZE_BUCKET_KEY) == info.size_bucket
        assert value(record, features.REQUEST_MODEL_NAME_KEY) == "digits"
        assert value(record, features.REQUEST_MODEL_VERSION_KEY) == version
        assert value(record, features.REQUEST_API_KEY) == api
        assert value(record, features.REQUEST_SIGNATURE_KEY) == "serving_default"
        expected = property_features(info)  # what ImageExampleGen writes: the same keys, of the same kinds
        request_keys = {features.IMAGE_KEY, features.REQUEST_MODEL_NAME_KEY, features.REQUEST_MODEL_VERSION_KEY,
                        features.REQUEST_SIGNATURE_KEY, features.REQUEST_API_KEY, features.REQUEST_TIME_KEY}
        assert set(record.features.feature) == set(expected) | request_keys
        assert {k: record.features.feature[k].WhichOneof("kind") for k in expected} == \
            {k: f.WhichOneof("kind") for k, f in expected.items()}
    assert logger.counts.value("logged") == 3


def test_sampling_logs_exactly_the_requests_whose_draw_is_below_the_rate(tmp_path):
    pngs = images(1)
    draws = random.Random(5)
    expected = sum(draws.random() < 0.25 for _ in range(400))
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=0.25), rng=random.Random(5).random)
    for _ in range(400):
        predict(logger, pngs)
    logger.close()
    assert 60 < expected < 140  # the seed draws a plausible sample, so the assertion below means something
    assert logger.counts.value("sampled") == expected
    assert len(read_all(tmp_path)) == expected


def test_files_rotate_by_size_and_appear_only_when_closed(tmp_path):
    pngs = images(40)
    options = RequestLogOptions(str(tmp_path), sample_rate=1.0, max_file_bytes=4096, max_file_seconds=3600)
    logger = RequestLogger(options)
    for png in pngs[:5]:
        predict(logger, [png])
    logger.flush()
    assert finished_files(tmp_path) == []  # the open file is not visible under a reader's name yet
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(temps) == 1  # the records so far are in the temporary file (or its write buffer)
    for png in pngs[5:]:
        predict(logger, [png])
    logger.close()
    files = finished_files(tmp_path)
    assert len(files) > 2
    assert all(p.stat().st_size <= 4096 for p in files)
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())
    assert [value(r, features.IMAGE_KEY) for r in read_all(tmp_path)] == pngs  # every record, in order


def test_an_idle_open_file_is_closed_after_max_file_seconds(tmp_path):
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0, max_file_seconds=0.2))
    predict(logger, images(1))
    assert logger.flush()  # the record is in the open file; from here on nothing else happens
    done = threading.Event()
    for _ in range(100):
        if finished_files(tmp_path):
            done.set()
            break
        done.wait(0.05)
    logger.close()
    assert done.is_set(), "the file was not closed after max_file_seconds without close()"


def test_the_directory_stays_within_its_byte_budget_and_keeps_the_newest_requests(tmp_path):
    stale = tmp_path / f"{TEMP_PREFIX}999999999-deadbeef-{FILE_PREFIX}x.tfrecord"  # a dead server's half file
    stale.write_bytes(b"half")
    pngs = images(120)
    options = RequestLogOptions(str(tmp_path), sample_rate=1.0, max_file_bytes=2048, max_total_bytes=6144,
                                max_file_seconds=3600)
    logger = RequestLogger(options)
    assert not stale.exists()
    sizes = []
    for png in pngs:
        predict(logger, [png])
        logger.flush()
        sizes.append(sum(p.stat().st_size for p in tmp_path.iterdir()))
    logger.close()
    assert max(sizes) <= 6144
    assert logger.counts.value("files_deleted_for_budget") > 0
    kept = [value(r, features.IMAGE_KEY) for r in read_all(tmp_path)]
    assert 0 < len(kept) < len(pngs)
    assert kept == pngs[-len(kept):]  # the oldest went first


def test_a_stalled_writer_fills_the_queue_and_requests_drop_and_count_without_blocking(tmp_path):
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0, queue_size=2))
    pid = logger.writer_pid
    os.kill(pid, signal.SIGSTOP)  # the writer process stops reading: its pipe fills, then the queue
    try:
        pngs = images(300, side=128)  # noise PNGs of ~16 KiB: a few fill the pipe
        offered = 0
        while logger.counts.value("dropped_queue_full") < 5 and offered < len(pngs):
            predict(logger, [pngs[offered]])
            offered += 1
            time.sleep(0.06)  # let the sender wake up and block on the full pipe
        sampled, dropped = logger.counts.value("sampled"), logger.counts.value("dropped_queue_full")
    finally:
        os.kill(pid, signal.SIGCONT)
    logger.close()
    assert dropped >= 5, f"nothing was dropped in {offered} requests while the writer was stopped"
    assert sampled + dropped == offered
    assert logger.counts.value("logged") == sampled  # every request the log accepted is in a file
    assert len(read_all(tmp_path)) == sampled


def test_a_writer_process_that_dies_is_restarted_and_its_half_written_file_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(request_log, "RESTART_SECONDS", 0.0)
    pngs = images(4)
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0))
    predict(logger, pngs[:1])
    assert logger.flush()
    first = logger.writer_pid
    os.kill(first, signal.SIGKILL)
    while logger.writer_pid is not None:
        time.sleep(0.01)
    for png in pngs[1:]:
        predict(logger, [png])
    assert logger.flush()
    assert logger.writer_pid not in (None, first)
    logger.close()
    logged = [value(r, features.IMAGE_KEY) for r in read_all(tmp_path)]
    assert logged == pngs[1:]  # the killed writer's open file was never published (and is removed below)
    assert logger.counts.value("logged") == 4 and logger.counts.value("failed") == 0
    assert [logger.writers.value(state) for state in ("started", "ready", "stopped")] == [2, 2, 1]
    RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0)).close()
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


def test_a_record_larger_than_a_file_is_dropped_and_counted(tmp_path):
    big = images(1, side=256)[0]
    assert len(big) > 2048
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0, max_file_bytes=2048))
    predict(logger, [big])
    predict(logger, images(1)[:1])
    logger.close()
    assert logger.counts.value("dropped_too_large") == 1
    assert len(read_all(tmp_path)) == 1


@pytest.mark.parametrize("flags, message", [
    (["--request_log_sample_rate", "0.1"], "--request_log_sample_rate needs --request_log_dir"),
    (["--request_log_dir", "{d}", "--request_log_sample_rate", "1.5"], "--request_log_sample_rate must be in [0, 1]"),
    (["--request_log_dir", "{d}"], "logs nothing"),
    (["--request_log_dir", "{d}", "--request_log_sample_rate", "0.1", "--request_log_max_total_bytes", "2000"],
     "--request_log_max_total_bytes (2000) must be >="),
])
def test_bad_request_log_flags_fail_with_one_line_naming_the_flag(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=None) as err:
        parse_server_options(["--model_base_path", str(tmp_path)] + [f.format(d=tmp_path / "log") for f in flags])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_request_log_flags_parse_into_the_options(tmp_path):
    options = parse_server_options(["--model_base_path", str(tmp_path), "--request_log_dir", str(tmp_path / "log"),
                                    "--request_log_sample_rate", "0.1", "--request_log_max_file_bytes", "4096"])
    assert options.request_log == RequestLogOptions(str(tmp_path / "log"), 0.1, max_file_bytes=4096)
    assert parse_server_options(["--model_base_path", str(tmp_path)]).request_log is None
    assert os.path.basename(options.request_log.directory) == "log"


def test_images_that_do_not_decode_are_skipped_and_counted_and_the_rest_logged_in_order(tmp_path):
    good = images(3)
    bad_bmp = b"BM" + b"\0" * 60  # a BMP signature, no decodable image behind it
    logger = RequestLogger(RequestLogOptions(str(tmp_path), sample_rate=1.0))
    predict(logger, [good[0], b"not an image", bad_bmp, good[1]])
    logger.offer_examples("digits", 3, "", [b"\xff not a tf.Example", tf.train.Example(features=tf.train.Features(
        feature={features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[good[2]]))})).SerializeToString()])
    logger.close()
    assert [value(r, features.IMAGE_KEY) for r in read_all(tmp_path)] == good
    assert logger.counts.value("skipped_undecodable") == 3 and logger.counts.value("logged") == 3
