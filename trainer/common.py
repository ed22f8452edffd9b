"""What the Tuner's tuner_fn and the Trainer's run_fn share: seeds, shapes, datasets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import keras
import tensorflow as tf
import tensorflow_transform as tft

from trainer import data, signatures

log = logging.getLogger("lenspipe.trainer")


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy, TF and Keras (keras.utils.set_random_seed covers all four)."""
    keras.utils.set_random_seed(seed)


@dataclass(frozen=True)
class TrainingSetup:
    """Everything derived from fn_args that both the tuner and the trainer need."""

    trainer_cfg: Mapping[str, Any]
    tuner_cfg: Mapping[str, Any]
    seed: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    tft_output: tft.TFTransformOutput

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def datasets(self, train_files, eval_files, *, steps_per_epoch) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        batch = int(self.trainer_cfg["batch_size"])
        train = data.make_dataset(
            train_files, self.tft_output, batch, shuffle=True, seed=self.seed, repeat=steps_per_epoch is not None
        )
        evaluation = data.make_dataset(eval_files, self.tft_output, batch, shuffle=False, seed=self.seed)
        return train, evaluation


def setup(fn_args: Any) -> TrainingSetup:
    """Read custom_config and the transform output; seed everything."""
    cfg = fn_args.custom_config or {}
    missing = {"trainer", "tuner", "image", "seed"} - set(cfg)
    if missing:
        raise ValueError(f"Trainer/Tuner custom_config lacks {sorted(missing)}; build the pipeline with create_pipeline()")
    seed = int(cfg["seed"])
    set_seeds(seed)
    image = cfg["image"]
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    names = signatures.class_names(tft_output)
    if len(names) < 2:
        raise ValueError(f"need at least 2 classes to train, the label vocabulary has {names}")
    log.info("classes: %d (%s)", len(names), ", ".join(names[:20]))
    return TrainingSetup(
        trainer_cfg=cfg["trainer"],
        tuner_cfg=cfg["tuner"],
        seed=seed,
        input_shape=(int(image["height"]), int(image["width"]), int(image["channels"])),
        class_names=names,
        tft_output=tft_output,
    )
