"""tuner_fn for the TFX Tuner component: a KerasTuner search over trainer/hparams.py."""

from __future__ import annotations

import functools
from typing import Any

import keras
import keras_tuner
from tfx.components.tuner.component import TunerFnResult

from trainer import common, hparams, model
from trainer.progress import ProgressCallback


def tuner_fn(fn_args: Any) -> TunerFnResult:
    """Build the KerasTuner tuner and the fit arguments the Tuner component searches with."""
    s = common.setup(fn_args)
    build = functools.partial(
        model.build_model,
        input_shape=s.input_shape,
        num_classes=s.num_classes,
        trainer_cfg=s.trainer_cfg,
        seed=s.seed,
    )
    oracle_kwargs = dict(
        hypermodel=build,
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=s.tuner_cfg.max_trials,
        hyperparameters=hparams.search_space(s.trainer_cfg),
        seed=s.seed,
        directory=fn_args.working_dir,
        project_name="lenspipe_tuning",
        overwrite=True,
    )
    if s.tuner_cfg.algorithm == "bayesian":
        tuner = keras_tuner.BayesianOptimization(**oracle_kwargs)
    else:
        tuner = keras_tuner.RandomSearch(**oracle_kwargs)
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
