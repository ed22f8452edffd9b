"""The search space: the configured values are the defaults and the search stays near them."""

from __future__ import annotations

from lenspipe.config import TrainerConfig
from trainer import hparams


def _space(**fields):
    hp = hparams.search_space(TrainerConfig(**fields))
    return {p.name: p for p in hp.space}


def test_configured_values_are_the_defaults():
    cfg = TrainerConfig(conv_blocks=2, base_filters=24, dense_units=96, dropout=0.2, learning_rate=3e-3)
    values = hparams.search_space(cfg).values
    assert values == {"dense_units": 96, "dropout": 0.2, "learning_rate": 3e-3, "conv_blocks": 2, "base_filters": 24}


def test_cnn_width_and_depth_are_searched_around_the_configured_size():
    space = _space(conv_blocks=3, base_filters=16)
    assert (space["conv_blocks"].min_value, space["conv_blocks"].max_value) == (2, 4)
    assert list(space["base_filters"].values) == [8, 16, 32]


def test_the_search_stays_inside_the_config_bounds():
    space = _space(conv_blocks=1, base_filters=4)
    assert (space["conv_blocks"].min_value, space["conv_blocks"].max_value) == (1, 2)
    assert list(space["base_filters"].values) == [4, 8]
    space = _space(conv_blocks=6, base_filters=512)
    assert space["conv_blocks"].max_value == 6 and list(space["base_filters"].values) == [256, 512]


def test_a_backbone_searches_fine_tuned_layers_instead_of_cnn_shape():
    space = _space(architecture="mobilenet_v3_small", fine_tune_layers=15)
    assert "conv_blocks" not in space and "base_filters" not in space
    assert 15 in space["fine_tune_layers"].values


def test_the_learning_rate_is_searched_around_the_configured_rate():
    rate = _space(learning_rate=1e-3)["learning_rate"]
    assert (rate.min_value, rate.max_value, rate.sampling) == (2.5e-4, 4e-3, "log")
    rate = _space(learning_rate=0.5)["learning_rate"]
    assert (rate.min_value, rate.max_value) == (0.125, 1.0)
    rate = _space(learning_rate=1e-7)["learning_rate"]  # a tiny configured rate stays inside its range
    assert rate.min_value < 1e-7 < rate.max_value
