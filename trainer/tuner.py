"""tuner_fn for the TFX Tuner component: a KerasTuner search over trainer/hparams.py.

Each trial builds and fits its model as the Trainer does (trainer/fitting.py): a backbone
trial trains the head, then fine-tunes the number of top layers the trial chose.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner
from tfx.components.tuner.component import TunerFnResult

from trainer import common, fitting, hparams, model
from trainer.progress import ProgressCallback


class HyperModel(keras_tuner.HyperModel):
    """build(hp) -> trainer/model.py's model; fit(hp, model, ...) -> trainer/fitting.py's phases."""

    def __init__(self, setup: common.TrainingSetup) -> None:
        super().__init__()
        self.setup = setup

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        s = self.setup
        return model.build_model(
            hp, input_shape=s.input_shape, num_classes=s.num_classes, trainer_cfg=s.trainer_cfg, seed=s.seed,
            normalisation=s.normalisation,
        )

    def fit(self, hp, net, x, validation_data=None, epochs=1, steps_per_epoch=None, callbacks=None, **kwargs):
        s = self.setup
        given = list(callbacks or [])
        history, _ = fitting.fit(
            net, hparams.declare(hp, s.trainer_cfg), s.trainer_cfg, x, validation_data,
            epochs=epochs, head_epochs=min(s.trainer_cfg.head_epochs, epochs), steps=steps_per_epoch,
            # a trial counts once, however many phases it fits
            callbacks=lambda total, phase: given if phase == 0 else [c for c in given if not getattr(c, "count_trials", False)],
        )
        result = keras.callbacks.History()
        result.history = history  # KerasTuner takes the objective's best epoch from it
        return result


class _ConfiguredModelFirst:
    """Oracle mixin: trial 0 is the configured model (every hyperparameter at its default).

    The search then always measures the model the user configured and can only pick
    something better; with a handful of random trials it might otherwise never try it.
    """

    def populate_space(self, trial_id):
        if not self.trials:
            return {"status": "RUNNING", "values": dict(self.hyperparameters.values)}
        return super().populate_space(trial_id)


class RandomSearchOracle(_ConfiguredModelFirst, keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's random search, the configured model first."""


class BayesianOptimizationOracle(_ConfiguredModelFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian optimisation, the configured model first (one of its initial points)."""


ORACLES = {"random": RandomSearchOracle, "bayesian": BayesianOptimizationOracle}


def tuner_fn(fn_args: Any) -> TunerFnResult:
    """Build the KerasTuner tuner and the fit arguments the Tuner component searches with."""
    s = common.setup(fn_args)
    oracle = ORACLES[s.tuner_cfg.algorithm](
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=s.tuner_cfg.max_trials,
        hyperparameters=hparams.search_space(s.trainer_cfg),
        seed=s.seed,
    )
    tuner = keras_tuner.Tuner(
        oracle=oracle, hypermodel=HyperModel(s), directory=fn_args.working_dir, project_name="lenspipe_tuning",
        overwrite=True,
    )
    steps = s.tuner_cfg.steps_per_epoch
    train, evaluation = s.datasets(fn_args.train_files, fn_args.eval_files, steps_per_epoch=steps)
    fit_kwargs = dict(
        x=train,
        validation_data=evaluation,
        epochs=s.tuner_cfg.epochs,
        steps_per_epoch=steps,
        callbacks=[
            keras.callbacks.EarlyStopping("val_loss", patience=2),
            ProgressCallback(s.tuner_cfg.epochs, count_trials=True, max_trials=s.tuner_cfg.max_trials),
        ],
        verbose=0,
    )
    return TunerFnResult(tuner=tuner, fit_kwargs=fit_kwargs)
