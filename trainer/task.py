"""run_fn for the TFX Trainer: train the model with the best hyperparameters and export it."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import keras
import keras_tuner

from lenspipe import features
from trainer import backbones, common, data, fitting, hparams, model, signatures, warmup
from trainer.progress import ProgressCallback

log = logging.getLogger("lenspipe.trainer")


def hyperparameters(fn_args: Any, trainer_cfg) -> keras_tuner.HyperParameters:
    """The Tuner's best hyperparameters when wired, else the configured defaults."""
    if fn_args.hyperparameters:
        return keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    return hparams.search_space(trainer_cfg)


def balanced_class_weights(counts: list[int]) -> dict[int, float]:
    """n / (classes * count) per class id (scikit-learn's 'balanced'); a class with no images gets 0."""
    total, k = sum(counts), len(counts)
    return {i: (total / (k * c) if c else 0.0) for i, c in enumerate(counts)}


def training_callbacks(trainer_cfg) -> list:
    """Early stopping (best weights restored) and learning-rate annealing, as every fit phase uses them."""
    return [
        keras.callbacks.EarlyStopping(
            "val_loss", patience=trainer_cfg.early_stopping_patience,
            min_delta=trainer_cfg.early_stopping_min_delta, restore_best_weights=True,
        ),
        # Anneal when validation stalls: a tuned learning rate is often too high to finish on.
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.3, patience=2, min_lr=1e-5),
    ]


def run_fn(fn_args: Any) -> None:
    """Train, evaluate on the eval split, export signatures to fn_args.serving_model_dir."""
    s = common.setup(fn_args)
    hp = hyperparameters(fn_args, s.trainer_cfg)
    net = model.build_model(
        hp, input_shape=s.input_shape, num_classes=s.num_classes, trainer_cfg=s.trainer_cfg, seed=s.seed,
        normalisation=s.normalisation,
    )
    steps = s.trainer_cfg.steps_per_epoch
    train, evaluation = s.datasets(fn_args.train_files, fn_args.eval_files, steps_per_epoch=steps)
    counts = data.class_counts(train.take(steps) if steps else train, s.num_classes)
    log.info("train images per class: %s", dict(zip(s.class_names, counts)))
    class_weight = balanced_class_weights(counts) if s.trainer_cfg.class_weight == "balanced" else None

    def callbacks(epochs: int, phase: int) -> list:
        return [
            *training_callbacks(s.trainer_cfg),
            keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs")),
            ProgressCallback(epochs),
        ]

    started = time.monotonic()
    history, trained = fitting.fit(
        net, hparams.declare(hp, s.trainer_cfg), s.trainer_cfg, train, evaluation,
        epochs=s.trainer_cfg.epochs, head_epochs=s.trainer_cfg.head_epochs, steps=steps,
        callbacks=callbacks, class_weight=class_weight,
    )
    eval_loss, eval_accuracy = net.evaluate(evaluation, verbose=0)
    log.info(
        "trained %d epochs in %.0fs: eval accuracy %.4f, loss %.4f",
        len(history["loss"]), time.monotonic() - started, eval_accuracy, eval_loss,
    )
    architecture = {"name": s.trainer_cfg.architecture, **trained}
    if s.trainer_cfg.architecture != "cnn":
        architecture["weights"] = backbones.weights_source(s.trainer_cfg.backbone_weights)
        if s.input_shape[2] == 1:
            architecture["note"] = "greyscale input repeated to 3 channels inside the model"
    signatures.export_serving_model(
        model.inference_model(net),
        s.tft_output,
        fn_args.serving_model_dir,
        metadata={
            "seed": s.seed,
            "hyperparameters": hp.values,
            "class_names": s.class_names,
            "train_class_counts": dict(zip(s.class_names, counts)),
            "class_weight": s.trainer_cfg.class_weight,
            "input_shape": list(s.input_shape),
            "architecture": architecture,
            "epochs_run": len(history["loss"]),
            "history": {k: [float(v) for v in vals] for k, vals in history.items()},
            "eval_accuracy": float(eval_accuracy),
            "eval_loss": float(eval_loss),
        },
        warmup_images=warmup.warmup_images(data.expand_files(fn_args.eval_files)),
    )
    model.inference_model(net).save(os.path.join(fn_args.model_run_dir, features.CLASSIFIER_FILE))
    log.info("exported model to %s", fn_args.serving_model_dir)
