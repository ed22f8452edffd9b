"""The typed config: defaults run as is, overrides layer on, bad values name their field."""

from __future__ import annotations

import os
import re

import pytest

from lenspipe.config import ConfigError, LenspipeConfig, load_config


def test_defaults_validate_and_point_at_the_work_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg == LenspipeConfig()
    assert cfg.serving_model_path == tmp_path / "lenspipe-work" / "serving"


def test_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("trainer:\n  epochs: 7\n  batch_size: 16\nimage:\n  channels: 1\n")
    cfg = load_config(path, {"trainer.epochs": "9", "evaluator.min_class_recall": "0.8", "data.root": "none"})
    assert cfg.trainer.epochs == 9  # the CLI wins over the file
    assert cfg.trainer.batch_size == 16
    assert cfg.image.channels == 1
    assert cfg.evaluator.min_class_recall == 0.8
    assert cfg.data.root is None


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"trainer.epochs": "0"}, "trainer.epochs"),
        ({"image.channels": "2"}, "image.channels"),
        ({"evaluator.min_accuracy": "1.5"}, "evaluator.min_accuracy"),
        ({"trainer.epochz": "3"}, "trainer.epochz"),
        ({"pusher.model_name": "../escape"}, "pusher.model_name"),
        ({"data.span_pattern": "span-x"}, "data.span_pattern"),
        ({"airflow.train_queue": "gpu,cpu"}, "airflow.train_queue"),
        ({"airflow.queues.Trainer": ""}, "airflow.queues.Trainer"),
    ],
)
def test_bad_values_fail_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert field.split(".")[-1] in str(err.value) or field in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)


def test_embedded_digits_get_a_digit_sized_input_unless_set():
    assert load_config().image.model_dump() == {"height": 16, "width": 16, "channels": 1}
    assert load_config(None, {"image.channels": 3}).image.model_dump() == {"height": 16, "width": 16, "channels": 3}
    own = load_config(None, {"data.root": "/photos"})
    assert own.image.model_dump() == {"height": 32, "width": 32, "channels": 3}  # your own images: the general default


def test_embedded_digits_get_a_narrower_cnn_unless_set():
    assert load_config().trainer.base_filters == 16
    assert load_config(None, {"trainer.base_filters": 48}).trainer.base_filters == 48
    assert load_config(None, {"data.root": "/photos"}).trainer.base_filters == 32


def test_embedded_digits_train_in_batches_of_32_unless_set():
    assert load_config().trainer.batch_size == 32
    assert load_config(None, {"trainer.batch_size": 64}).trainer.batch_size == 64
    assert load_config(None, {"data.root": "/photos"}).trainer.batch_size == 64


def test_embedded_digits_are_augmented_by_shifts_only_without_dropout_unless_set():
    digits = load_config().trainer
    assert (digits.augment_rotation, digits.augment_zoom, digits.augment_translation) == (0.0, 0.0, 0.1)
    assert digits.dropout == 0.0 and load_config(None, {"trainer.dropout": 0.4}).trainer.dropout == 0.4
    assert load_config(None, {"trainer.augment_zoom": 0.2}).trainer.augment_zoom == 0.2
    photos = load_config(None, {"data.root": "/photos"}).trainer
    assert (photos.augment_rotation, photos.augment_zoom) == (0.05, 0.1)


def test_tflite_section_defaults_overrides_and_bounds():
    cfg = load_config()
    assert cfg.tflite.enabled and cfg.tflite.variants == ["float32", "float16", "dynamic_int8", "full_int8"]
    assert cfg.tflite.max_accuracy_drop == 0.01 and cfg.data.inference_root is None
    assert load_config(None, {"tflite.variants": "[full_int8]"}).tflite.variants == ["full_int8"]
    with pytest.raises(ConfigError, match="tflite.max_accuracy_drop"):
        load_config(None, {"tflite.max_accuracy_drop": "2"})


def test_backbone_weights_none_stays_the_word():
    assert load_config(None, {"trainer.backbone_weights": "none"}).trainer.backbone_weights == "none"


def test_airflow_queues_default_and_override_per_component():
    cfg = load_config()
    assert (cfg.airflow.data_queue, cfg.airflow.train_queue, cfg.airflow.queues) == ("data", "train", {})
    cfg = load_config(None, {"airflow.train_queue": "gpu", "airflow.queues.Evaluator": "gpu"})
    assert cfg.airflow.train_queue == "gpu" and cfg.airflow.queues == {"Evaluator": "gpu"}
    assert load_config(None, {"airflow.queues": "{Tuner: cpu}"}).airflow.queues == {"Tuner": "cpu"}


def test_deterministic_runs_turn_onednn_off_unless_the_user_set_it(monkeypatch):
    deterministic = load_config().runtime
    assert deterministic.process_env() == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert load_config(None, {"runtime.deterministic": "false"}).runtime.process_env() == {}
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "")  # recorded, so teardown restores the real value
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    deterministic.apply_process_env()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # the user's own setting wins
    deterministic.apply_process_env()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_set_assignments_split_at_the_first_equals_and_a_missing_one_names_the_item():
    from lenspipe.config import ConfigError, parse_assignments

    assert parse_assignments([" trainer.epochs=3", "data.root=/a=b", "pusher.label="]) == {
        "trainer.epochs": "3", "data.root": "/a=b", "pusher.label": ""
    }
    for bad in ("trainer.epochs", "=3"):
        with pytest.raises(ConfigError, match=f"--set '{re.escape(bad)}': expected SECTION.FIELD=VALUE"):
            parse_assignments([bad])
