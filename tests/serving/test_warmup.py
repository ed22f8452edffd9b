"""Model warm-up: assets.extra/tf_serving_warmup_requests is replayed before a version is AVAILABLE."""
from __future__ import annotations

import shutil

import pytest
from fixture_models import png_bytes

from serving.errors import ServingError
from serving.flags import parse_server_options
from serving.servable import Servable
from serving.warmup import make_loader, read_warmup_file, warm_up
from trainer.warmup import prediction_logs, write_warmup_file


@pytest.fixture
def warm_model(model_cache, tmp_path):
    export = tmp_path / "1"
    shutil.copytree(model_cache / "1", export)
    write_warmup_file(str(export), [png_bytes(seed) for seed in range(3)])
    return export


def test_warmup_file_is_replayed_through_the_signature(warm_model):
    assert len(read_warmup_file(warm_model)) == 4
    assert warm_up(Servable("demo", 1, warm_model)) == 4


def test_a_failing_warmup_request_fails_the_load_only_when_warmup_is_enabled(warm_model):
    logs = prediction_logs([png_bytes(1)])
    logs[0].predict_log.request.model_spec.signature_name = "no_such_signature"
    path = warm_model / "assets.extra" / "tf_serving_warmup_requests"
    import tensorflow as tf
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(logs[0].SerializeToString())
    with pytest.raises(ServingError, match="no_such_signature"):
        make_loader(True)("demo", 1, warm_model)
    assert make_loader(False)("demo", 1, warm_model).version == 1


def test_a_model_without_warmup_file_loads_and_replays_nothing(model_cache):
    assert warm_up(Servable("demo", 1, model_cache / "1")) == 0


def test_enable_model_warmup_flag_defaults_on_like_tf_serving():
    base = ["--model_base_path", "/m"]
    assert parse_server_options(base).enable_model_warmup is True
    assert parse_server_options([*base, "--enable_model_warmup=false"]).enable_model_warmup is False
    assert parse_server_options([*base, "--enable_model_warmup"]).enable_model_warmup is True
