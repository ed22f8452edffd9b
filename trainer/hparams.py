"""Hyperparameters: the search space the Tuner explores and the values the Trainer uses.

One definition serves both: ``search_space`` declares every tunable knob with the
configured value as its default, so a model built from a fresh
``keras_tuner.HyperParameters`` (tuner off) uses the config as is.
"""

from __future__ import annotations

from typing import Any

import keras_tuner

from lenspipe.config import TrainerConfig


def search_space(trainer_cfg: TrainerConfig) -> keras_tuner.HyperParameters:
    """HyperParameters with the tunable knobs, defaults taken from the trainer config."""
    hp = keras_tuner.HyperParameters()
    declare(hp, trainer_cfg)
    return hp


def learning_rate_range(configured: float) -> tuple[float, float]:
    """The searched learning rates: configured / 4 to configured * 4, at most 1 (the config's bound)."""
    return configured / 4, min(1.0, configured * 4)


def declare(hp: keras_tuner.HyperParameters, trainer_cfg: TrainerConfig) -> dict[str, Any]:
    """Declare (or read back) every tunable value on ``hp``; returns name -> value.

    The CNN tunes its depth and width; a backbone tunes how many of its top layers are
    fine-tuned instead. Both tune the head and the learning rate.
    """
    dense = trainer_cfg.dense_units
    values = {
        "dense_units": hp.Choice("dense_units", sorted({64, 128, 256, dense}), default=dense),
        "dropout": hp.Float("dropout", 0.0, 0.6, step=0.1, default=round(trainer_cfg.dropout, 1)),
        # A quarter to four times the configured rate: a tuning trial has a few epochs, and a
        # rate far below the configured one learns next to nothing in them (a trial at 1.4e-4
        # reached val_accuracy 0.41 on the digits in 4 epochs), so such a trial is wasted.
        "learning_rate": hp.Float(
            "learning_rate", *learning_rate_range(trainer_cfg.learning_rate), sampling="log",
            default=trainer_cfg.learning_rate,
        ),
    }
    if trainer_cfg.architecture == "cnn":
        blocks, filters = trainer_cfg.conv_blocks, trainer_cfg.base_filters
        # Around the configured size: one block fewer or more, half, the same or double the
        # filters. A conv's cost grows with filters squared, so the dearest trial costs about
        # 4 * (blocks + 1) / blocks times the configured model; a user who wants a bigger
        # network configures a bigger one and the search moves with it.
        values["conv_blocks"] = hp.Int("conv_blocks", max(1, blocks - 1), min(6, blocks + 1), default=blocks)
        values["base_filters"] = hp.Choice(
            "base_filters", sorted({max(4, filters // 2), filters, min(512, filters * 2)}), default=filters
        )
    else:
        layers = trainer_cfg.fine_tune_layers
        values["fine_tune_layers"] = hp.Choice("fine_tune_layers", sorted({0, 10, 20, 40, layers}), default=layers)
    return values
