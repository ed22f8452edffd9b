"""What the Tuner's tuner_fn and the Trainer's run_fn share: config, seeds, shapes, datasets."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import keras
import tensorflow as tf
import tensorflow_transform as tft
from pydantic import ValidationError

from lenspipe.config import ImageConfig, TrainerConfig, TunerConfig
from trainer import data, signatures
from trainer.tflite_export import read_normalisation

log = logging.getLogger("lenspipe.trainer")


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TF and Keras; with ``deterministic``, also make TF's ops deterministic.

    Op determinism picks deterministic kernels (and raises on ops that have none), so the
    same seed gives the same weights: without it, multi-threaded reductions sum in varying order.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@dataclass(frozen=True)
class TrainingSetup:
    """Everything derived from fn_args that both the tuner and the trainer need."""

    trainer_cfg: TrainerConfig
    tuner_cfg: TunerConfig
    seed: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    tft_output: tft.TFTransformOutput
    normalisation: Optional[tuple]  # the Transform's per-channel (mean, std); read for backbones only
    cache_dir: Optional[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def datasets(self, train_files, eval_files, *, steps_per_epoch) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """(train, eval) datasets; the transform graph runs once per run, then the cache serves."""
        batch = self.trainer_cfg.batch_size
        budget = self.trainer_cfg.cache_budget_mb
        train = data.make_dataset(
            train_files, self.tft_output, batch, shuffle=True, seed=self.seed, repeat=steps_per_epoch is not None,
            cache_budget_mb=budget, cache_dir=self.cache_dir,
        )
        evaluation = data.make_dataset(
            eval_files, self.tft_output, batch, shuffle=False, seed=self.seed,
            cache_budget_mb=budget, cache_dir=self.cache_dir,
        )
        return train, evaluation


def setup(fn_args: Any) -> TrainingSetup:
    """Validate custom_config with the typed config sections, read the transform output, seed everything.

    Raises ValueError naming the field when custom_config does not match the config models
    (e.g. a pipeline compiled by another lenspipe version).
    """
    cfg = fn_args.custom_config or {}
    missing = {"trainer", "tuner", "image", "seed"} - set(cfg)
    if missing:
        raise ValueError(f"Trainer/Tuner custom_config lacks {sorted(missing)}; build the pipeline with create_pipeline()")
    try:
        trainer_cfg = TrainerConfig.model_validate(cfg["trainer"])
        tuner_cfg = TunerConfig.model_validate(cfg["tuner"])
        image = ImageConfig.model_validate(cfg["image"])
    except ValidationError as e:
        raise ValueError(f"Trainer/Tuner custom_config does not match lenspipe's config: {e}") from None
    seed = int(cfg["seed"])
    set_seeds(seed, bool(cfg.get("deterministic", True)))
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    names = signatures.class_names(tft_output)
    if len(names) < 2:
        raise ValueError(f"need at least 2 classes to train, the label vocabulary has {names}")
    log.info("classes: %d (%s)", len(names), ", ".join(names[:20]))
    working_dir = getattr(fn_args, "working_dir", None) or getattr(fn_args, "model_run_dir", None)
    return TrainingSetup(
        trainer_cfg=trainer_cfg,
        tuner_cfg=tuner_cfg,
        seed=seed,
        input_shape=(image.height, image.width, image.channels),
        class_names=names,
        tft_output=tft_output,
        normalisation=None if trainer_cfg.architecture == "cnn" else read_normalisation(tft_output, (image.height, image.width, image.channels)),
        cache_dir=os.path.join(working_dir, "transformed-cache") if working_dir else None,
    )
