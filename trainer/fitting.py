"""Fit a model from trainer/model.py: one phase for the CNN, two for a pretrained backbone.

Backbones (trainer/backbones.py): phase 1 trains the head with the backbone frozen
(``head_epochs``); phase 2 unfreezes the top ``fine_tune_layers`` backbone layers
(BatchNorm stays frozen and in inference mode) and trains on at ``learning_rate *
fine_tune_lr_factor`` for up to ``epochs``. Each phase has its own callbacks (early
stopping restores the best weights of that phase). The Tuner's trials and the
Trainer fit the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import keras

from lenspipe.config import TrainerConfig
from trainer import backbones, model as model_lib

log = logging.getLogger("lenspipe.trainer")


def fit(
    net: keras.Model,
    values: dict[str, Any],
    trainer_cfg: TrainerConfig,
    train,
    evaluation,
    *,
    epochs: int,
    head_epochs: int,
    steps: Optional[int],
    callbacks: Callable[[int, int], list],
    class_weight: Optional[dict] = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Train ``net``; returns (per-epoch history of all phases, what was trained).

    ``callbacks(total_epochs, phase)`` makes the callback list of one phase (0, then 1).
    """
    kwargs = dict(validation_data=evaluation, steps_per_epoch=steps, class_weight=class_weight, verbose=0)
    if trainer_cfg.architecture == "cnn":
        history = net.fit(train, epochs=epochs, callbacks=callbacks(epochs, 0), **kwargs).history
        return history, {"phases": [{"trained": "all layers", "epochs": len(history.get("loss", []))}]}
    history: dict[str, list[float]] = {}
    phases = []
    done = 0
    if head_epochs > 0:
        first = net.fit(train, epochs=head_epochs, callbacks=callbacks(head_epochs, 0), **kwargs).history
        _extend(history, first)
        done = len(first.get("loss", []))
        phases.append({"trained": "head (backbone frozen)", "epochs": done})
    layers = int(values.get("fine_tune_layers", trainer_cfg.fine_tune_layers))
    if layers > 0:
        trained = backbones.set_trainable(model_lib.inference_model(net), layers)
        rate = values["learning_rate"] * trainer_cfg.fine_tune_lr_factor
        model_lib.compile_model(net, rate, trainer_cfg.label_smoothing)
        log.info("fine-tuning the head and %d backbone layers at learning rate %.2g", len(trained), rate)
        second = net.fit(train, epochs=epochs, callbacks=callbacks(epochs, len(phases)), **kwargs).history
        _extend(history, second)
        phases.append(
            {"trained": f"head and the top {layers} backbone layers", "layers": trained,
             "learning_rate": rate, "epochs": len(second.get("loss", []))}
        )
    return history, {"phases": phases}


def _extend(history: dict, more: dict) -> None:
    for key, values in more.items():
        history.setdefault(key, []).extend(float(v) for v in values)
