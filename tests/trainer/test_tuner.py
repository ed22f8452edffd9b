"""The Tuner's oracles: the configured model is trial 0, then the search draws from the space."""

from __future__ import annotations

import keras_tuner
import pytest

from lenspipe.config import TrainerConfig
from trainer import hparams, tuner


@pytest.mark.parametrize("algorithm", sorted(tuner.ORACLES))
def test_the_first_trial_is_the_configured_model_and_later_ones_are_drawn(tmp_path, algorithm):
    cfg = TrainerConfig(conv_blocks=2, base_filters=24, dense_units=96, dropout=0.2, learning_rate=3e-3)
    oracle = tuner.ORACLES[algorithm](
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=3,
        hyperparameters=hparams.search_space(cfg), seed=7,
    )
    oracle._set_project_dir(str(tmp_path), "p")
    first = oracle.create_trial("tuner0")
    assert first.hyperparameters.values == hparams.search_space(cfg).values
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.5})
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING"
    assert second.hyperparameters.values != first.hyperparameters.values
