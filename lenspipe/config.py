"""The one typed configuration of a lenspipe run.

Defaults run as is on the embedded digits dataset. A YAML or JSON file and
``--set section.field=value`` overrides from the CLI are layered on top, and
every value is validated at start-up: a bad one fails at once with its dotted
name and what is allowed (``ConfigError``).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator,
)


METADATA_SCHEMES = ("postgresql", "mysql")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from and how they are split."""

    root: Optional[str] = Field(
        None, description="Image folder (<root>/<class>/<file>) or TFRecord folder; unset = embedded digits."
    )
    format: Literal["images", "tfrecord"] = Field("images", description="What `root` holds.")
    span_pattern: Optional[str] = Field(
        None, description="Sub-folder pattern with {SPAN}, e.g. 'span-{SPAN}'; the latest span is ingested."
    )
    embedded_per_class: Optional[int] = Field(
        None, ge=2, description="Use only this many images per class of the embedded dataset (tests, demos)."
    )
    split_train: int = Field(8, ge=1, le=100, description="Hash buckets for the train split.")
    split_eval: int = Field(1, ge=1, le=100, description="Hash buckets for the eval split.")
    split_test: int = Field(1, ge=1, le=100, description="Hash buckets for the held-out test split.")
    schema_file: Optional[str] = Field(None, description="Curated schema.pbtxt; unset = inferred by SchemaGen.")
    inference_root: Optional[str] = Field(
        None, description="Folder of unlabeled images; if set, the run ends with BulkInferrer predictions on them."
    )


class ImageConfig(_Section):
    """The model input every image is decoded and resized to."""

    height: int = Field(32, ge=8, le=1024, description="Model input height in pixels (16 for the embedded digits).")
    width: int = Field(32, ge=8, le=1024, description="Model input width in pixels (16 for the embedded digits).")
    channels: Literal[1, 3] = Field(3, description="1 = greyscale, 3 = RGB; inputs are converted (1 for the digits).")


# The embedded digits are 8x8 greyscale scans: 16x16x1 keeps every detail at a quarter of
# 32x32x3's compute, and a CNN of half the default width fits them as well as the full one
# at a third of the training time (bench/results/pipeline.md). Augmentation shifts only:
# rotating or zooming an 8x8 scan resamples its few pixels into a blur, and with shifts only
# dropout just slows the fit. Trained alone on seed 42's split (/tmp experiments, the same
# hyperparameters otherwise), test accuracy went from 0.9890 (rotation, zoom, dropout 0.3)
# to 0.9945 (shifts, dropout 0; 17 epochs). Batches of 32: over the whole pipeline at seeds
# 42-47 (`python -m bench.pipeline_bench --seeds ... -- --set trainer.batch_size=32`), 9 test
# errors in all on the 181 test images instead of 12 at 64, for about 8 s more per cold run.
# Applies only to the fields the user did not set.
DIGITS_IMAGE = {"height": 16, "width": 16, "channels": 1}
DIGITS_TRAINER = {"base_filters": 16, "augment_rotation": 0.0, "augment_zoom": 0.0, "dropout": 0.0, "batch_size": 32}


class TunerConfig(_Section):
    """The KerasTuner search."""

    enabled: bool = Field(True, description="Run the KerasTuner search; off = trainer defaults below.")
    algorithm: Literal["random", "bayesian"] = Field("random", description="KerasTuner oracle.")
    max_trials: int = Field(4, ge=1, le=500, description="Hyperparameter sets to try.")
    epochs: int = Field(4, ge=1, le=1000, description="Epochs per trial.")
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="Cap on batches per trial epoch.")


# Smallest input Keras Applications builds each backbone for (height and width).
BACKBONE_MIN_SIZE = {"mobilenet_v3_small": 32, "efficientnet_v2_b0": 32, "resnet50": 32}


class TrainerConfig(_Section):
    """The model (the CNN or a pretrained backbone) and how it is trained."""

    architecture: Literal["cnn", "mobilenet_v3_small", "efficientnet_v2_b0", "resnet50"] = Field(
        "cnn", description="'cnn' (from scratch) or a Keras Applications backbone with the same head."
    )
    backbone_weights: str = Field(
        "none", description="Backbone start: 'imagenet' (Keras' download), a .weights.h5/.keras file, or 'none'."
    )
    head_epochs: int = Field(
        10, ge=0, le=10000, description="Backbones: phase 1 epochs, head only (backbone frozen); 0 = skip."
    )
    fine_tune_layers: int = Field(
        20, ge=0, description="Backbones: phase 2 unfreezes this many top backbone layers (BatchNorm stays frozen)."
    )
    fine_tune_lr_factor: float = Field(
        0.1, gt=0.0, le=1.0, description="Backbones: phase 2 learning rate = learning_rate * this."
    )

    @field_validator("backbone_weights", mode="before")
    @classmethod
    def _none_is_a_word(cls, value: Any) -> Any:
        return "none" if value is None else value  # `--backbone-weights none` parses like YAML's null
    epochs: int = Field(
        40, ge=1, le=10000, description="Maximum epochs, early stopping may end sooner (backbones: of phase 2)."
    )
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="Cap on batches per epoch; unset = one pass.")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per training step (32 for the embedded digits).")
    early_stopping_patience: int = Field(6, ge=1, description="Epochs without val_loss improvement.")
    early_stopping_min_delta: float = Field(
        1e-3, ge=0.0, description="A val_loss drop smaller than this is no improvement (label smoothing flattens the tail)."
    )
    conv_blocks: int = Field(3, ge=1, le=6, description="Conv blocks (conv-BN-ReLU x2, pool).")
    base_filters: int = Field(32, ge=4, le=512, description="Filters of the first block; doubled per block (16 for the embedded digits).")
    dense_units: int = Field(128, ge=8, le=4096)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of each target spread evenly over all classes; 0 = one-hot targets."
    )
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    augment_rotation: float = Field(0.05, ge=0.0, le=0.5, description="Max rotation, fraction of a turn.")
    augment_translation: float = Field(0.1, ge=0.0, le=0.5, description="Max shift, fraction of the size.")
    augment_zoom: float = Field(0.1, ge=0.0, le=0.5)
    augment_flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = Field(
        "none", description="Random flips (off by default: a flipped digit is another digit)."
    )
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="'balanced' weighs each class by n / (classes * count): for imbalanced folders."
    )
    cache_budget_mb: float = Field(
        1024, ge=0, description="Transformed examples up to this size are cached in memory; larger ones on disk."
    )


class EvaluatorConfig(_Section):
    """The TFMA gates a model must pass to be blessed."""

    min_accuracy: float = Field(0.9, ge=0.0, le=1.0, description="Overall accuracy needed to bless.")
    max_accuracy_drop: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest allowed drop in accuracy against the last blessed model."
    )
    min_class_recall: Optional[float] = Field(
        None, ge=0.0, le=1.0, description="If set, every class's recall must reach it (checked per label slice)."
    )
    beat_baseline: bool = Field(
        False, description="Do not bless a CNN less accurate on the test split than the classical baseline."
    )


class ClassicalConfig(_Section):
    """The classical baseline fitted on the same split."""

    enabled: bool = Field(True, description="Fit a classical baseline on the same split; shown beside the CNN.")
    method: Literal["svm", "logistic"] = Field("svm", description="RBF SVM (gamma, C by 3-fold CV) or logistic regression.")
    image_size: int = Field(8, ge=2, le=64, description="Images are downscaled to this square, greyscale.")
    max_train_images: int = Field(5000, ge=10, description="Cap on train images (an SVM costs n^2).")


class ExplainerConfig(_Section):
    """Grad-CAM heatmaps for the HTML report, computed once per run."""

    enabled: bool = Field(True, description="Grad-CAM heatmaps of the trained network on the test split, for the report.")
    correct_per_class: int = Field(3, ge=0, le=100, description="Correctly classified images explained per class.")
    max_misclassified: int = Field(100, ge=0, le=10000, description="Cap on misclassified images explained.")


class PusherConfig(_Section):
    """Where blessed models are pushed."""

    model_name: str = Field("lenspipe", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    serving_model_dir: Optional[str] = Field(None, description="Model base dir; unset = <work_dir>/serving.")
    allow_class_change: bool = Field(
        False, description="Push a model whose class list differs from the newest pushed version's (renumbers ids)."
    )
    label: Optional[Literal["canary"]] = Field(
        None, description="canary: push as the `canary` label in the model_config_file (stable stays); unset = latest."
    )
    model_config_file: Optional[str] = Field(
        None, description="TF Serving model_config_file for labels; unset = <serving_model_dir>/models.config."
    )


class DriftConfig(_Section):
    """Drift between spans: the new span against the span the serving model was trained on (data gate)."""

    enabled: bool = Field(True, description="Compare the new span's statistics with the serving model's span; stop on drift.")
    label_linf: float = Field(
        0.1, ge=0.0, le=1.0, description="Label distribution: largest allowed L-infinity distance (share of any one class)."
    )
    width_jsd: float = Field(0.1, ge=0.0, le=1.0, description="Image width: largest allowed Jensen-Shannon divergence.")
    height_jsd: float = Field(0.1, ge=0.0, le=1.0, description="Image height: largest allowed Jensen-Shannon divergence.")
    brightness_jsd: float = Field(
        0.1, ge=0.0, le=1.0, description="Image brightness: largest allowed Jensen-Shannon divergence."
    )
    channels_jsd: float = Field(0.1, ge=0.0, le=1.0, description="Image channels: largest allowed Jensen-Shannon divergence.")
    format_linf: float = Field(
        0.1, ge=0.0, le=1.0, description="Image format (png, jpeg, ...): largest allowed L-infinity distance."
    )


class ServingCheckConfig(_Section):
    enabled: bool = Field(True, description="Serve the candidate with `lenspipe serve` before the push (InfraValidator's role).")
    max_images: int = Field(200, ge=1, description="Held-out test images sent over REST and gRPC (the first N).")
    max_abs_diff: float = Field(1e-6, ge=0.0, description="Largest allowed |served - in-process| probability.")
    max_p99_ms: float = Field(250.0, gt=0.0, description="Budget for the p99 latency of one-image requests, ms.")
    start_timeout_seconds: float = Field(180.0, gt=0.0, description="Wait this long for the version to be AVAILABLE.")


class TFLiteConfig(_Section):
    enabled: bool = Field(True, description="Export and check TensorFlow Lite variants of every blessed model.")
    variants: list[Literal["float32", "float16", "dynamic_int8", "full_int8"]] = Field(
        ["float32", "float16", "dynamic_int8", "full_int8"], description="Which TFLite variants to build."
    )
    max_accuracy_drop: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest test accuracy drop vs the SavedModel for a variant to be pushed."
    )
    representative_images: int = Field(
        200, ge=1, le=100000, description="Train images that calibrate the full_int8 variant."
    )
    input_height: Optional[int] = Field(None, ge=1, le=4096, description="TFLite input height; unset = image.height.")
    input_width: Optional[int] = Field(None, ge=1, le=4096, description="TFLite input width; unset = image.width.")


class SkewConfig(_Section):
    """`lenspipe skew`: served requests (serve --request_log_dir) against the serving version's training data."""

    infinity_norm_threshold: float = Field(
        0.2, gt=0.0, le=1.0,
        description="Largest allowed L-infinity distance of a categorical image property (format, buckets).",
    )
    jensen_shannon_threshold: float = Field(
        0.2, gt=0.0, le=1.0,
        description="Largest allowed Jensen-Shannon divergence of a numeric image property (brightness, sizes).",
    )
    min_images: int = Field(20, ge=1, description="Logged images a version needs before it is compared.")


# A Celery queue name as `airflow celery worker --queues` takes it (a comma separates queues there).
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
QueueName = Annotated[str, StringConstraints(pattern=QUEUE_PATTERN)]


class AirflowConfig(_Section):
    """Queues of the compiled Airflow DAG's tasks: CeleryExecutor workers each serve some (docs/orchestration.md)."""

    data_queue: QueueName = Field("data", description="Queue of every task not sent elsewhere (data, evaluation, push).")
    train_queue: QueueName = Field("train", description="Queue of the Tuner and Trainer tasks (e.g. the GPU workers).")
    queues: dict[str, QueueName] = Field(
        {}, description="Queue per component id, over the two above, e.g. {Evaluator: train}."
    )


class RuntimeConfig(_Section):
    """Pipeline name, work dir, caching, Beam and seeds."""

    pipeline_name: str = Field("lenspipe", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    work_dir: str = Field("lenspipe-work", description="Pipeline root, metadata and embedded data live here.")
    enable_cache: bool = Field(True, description="Reuse outputs of components whose inputs did not change.")
    beam_mode: Literal["in_memory", "multi_processing", "multi_threading"] = Field(
        "in_memory", description="Beam DirectRunner mode; multi_processing suits large folders."
    )
    beam_workers: int = Field(1, ge=1, le=256)
    beam_args: list[str] = Field(
        [],
        description="Beam pipeline options for every Beam component, e.g. ['--runner=PortableRunner', "
        "'--job_endpoint=HOST:8099'] (checked by Beam's parser; docs/orchestration.md).",
    )
    seed: int = Field(42, ge=0, description="Seeds Python, NumPy, TF and KerasTuner; recorded with the model.")
    deterministic: bool = Field(
        True, description="TF op determinism and oneDNN's kernels off in every step's process: the same data, "
        "config and seed give the same weights and metrics, locally and on Kubeflow or Airflow."
    )
    metadata: Optional[str] = Field(
        None,
        description="ML Metadata store: a SQLite file path, or postgresql://user@host:port/db or "
        "mysql://user@host:port/db (password from metadata_password_env/_file); unset = "
        "<work_dir>/metadata/<pipeline_name>.sqlite.",
    )
    metadata_password_env: str = Field(
        "LENSPIPE_METADATA_PASSWORD", description="Environment variable holding the metadata database password."
    )
    metadata_password_file: Optional[str] = Field(
        None, description="File holding the metadata database password (used when the variable is unset)."
    )
    schedule: Optional[str] = Field(
        None, description="Airflow schedule of a compiled DAG ('@daily', a cron line); unset = manual runs only."
    )

    def process_env(self) -> dict[str, str]:
        """Environment every process that runs a component needs, set before TensorFlow is imported.

        With ``deterministic``, oneDNN's custom CPU kernels are off: they may sum in an order
        that depends on what the process ran before ("slightly different numerical results",
        as TF logs at import), so a component run alone in a fresh process (one container per
        step on Kubeflow, one task per process on Airflow) would drift from the local run.
        """
        return {"TF_ENABLE_ONEDNN_OPTS": "0"} if self.deterministic else {}

    def apply_process_env(self) -> None:
        """Set :meth:`process_env` in this process (a variable the user set wins); before TensorFlow loads."""
        for name, value in self.process_env().items():
            os.environ.setdefault(name, value)

    @field_validator("beam_args")
    @classmethod
    def _check_beam_args(cls, value: list[str]) -> list[str]:
        if not value:
            return value  # Beam is imported only to check something
        from lenspipe.beam_options import check_beam_args

        return check_beam_args(value)

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: Optional[str]) -> Optional[str]:
        if value is None or "://" not in value:
            return value
        url = urlsplit(value)
        if url.scheme not in METADATA_SCHEMES:
            raise ValueError(f"scheme {url.scheme!r} not supported; use a SQLite path, postgresql:// or mysql://")
        if url.password is not None:
            raise ValueError("no password in the URL; put it in runtime.metadata_password_env or _file")
        if not url.path.strip("/"):
            raise ValueError(f"give a database name: {url.scheme}://user@host:port/<database>")
        return value


class LenspipeConfig(_Section):
    data: DataConfig = DataConfig()
    image: ImageConfig = ImageConfig()
    tuner: TunerConfig = TunerConfig()
    trainer: TrainerConfig = TrainerConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    classical: ClassicalConfig = ClassicalConfig()
    explainer: ExplainerConfig = ExplainerConfig()
    pusher: PusherConfig = PusherConfig()
    tflite: TFLiteConfig = TFLiteConfig()
    serving_check: ServingCheckConfig = ServingCheckConfig()
    drift: DriftConfig = DriftConfig()
    skew: SkewConfig = SkewConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    airflow: AirflowConfig = AirflowConfig()

    @model_validator(mode="after")
    def _check_cross_fields(self) -> "LenspipeConfig":
        if self.data.span_pattern is not None and "{SPAN}" not in self.data.span_pattern:
            raise ValueError("data.span_pattern must contain {SPAN}, e.g. 'span-{SPAN}'")
        if self.data.root is None:
            for section, preset in ((self.image, DIGITS_IMAGE), (self.trainer, DIGITS_TRAINER)):
                for name, value in preset.items():
                    if name not in section.model_fields_set:
                        setattr(section, name, value)
        minimum = BACKBONE_MIN_SIZE.get(self.trainer.architecture)
        if minimum and min(self.image.height, self.image.width) < minimum:
            raise ValueError(
                f"trainer.architecture={self.trainer.architecture} needs image.height and image.width >= {minimum}, "
                f"got {self.image.height}x{self.image.width}; e.g. --image-size {minimum}"
            )
        if self.evaluator.beat_baseline and not self.classical.enabled:
            raise ValueError("evaluator.beat_baseline needs classical.enabled=true (the baseline to beat)")
        if self.data.format == "tfrecord" and self.data.root is None:
            raise ValueError("data.format=tfrecord needs data.root (a folder of TFRecord files)")
        return self

    def training_custom_config(self, code_version: str = "") -> dict[str, Any]:
        """The custom_config the Tuner and Trainer read (trainer/common.py ``setup`` validates it)."""
        return {
            "trainer": self.trainer.model_dump(),
            "tuner": self.tuner.model_dump(),
            "image": self.image.model_dump(),
            "seed": self.runtime.seed,
            "deterministic": self.runtime.deterministic,
            "code_version": code_version,
        }

    # Paths derived from the config, resolved against the current directory.
    @property
    def work_path(self) -> Path:
        return Path(self.runtime.work_dir).expanduser().resolve()

    @property
    def serving_model_path(self) -> Path:
        if self.pusher.serving_model_dir:
            return Path(self.pusher.serving_model_dir).expanduser().resolve()
        return self.work_path / "serving"


ENV_PREFIX = "LENSPIPE_"  # LENSPIPE_<SECTION>__<FIELD>=value, e.g. LENSPIPE_TRAINER__EPOCHS=10
Source = Literal["default", "file", "env", "flag"]


def fields() -> list[tuple[str, Any]]:
    """Every config field as (dotted name, pydantic FieldInfo), in declaration order."""
    out = []
    for section, info in LenspipeConfig.model_fields.items():
        for name, field in info.annotation.model_fields.items():
            out.append((f"{section}.{name}", field))
    return out


def suggest(name: str, choices: Any) -> str:
    """' (did you mean X?)' for the closest of ``choices`` to a misspelt ``name``, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _format_validation_error(err: ValidationError) -> str:
    known = [dotted for dotted, _ in fields()]
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "config"
        hint = suggest(loc, known) if e["type"] == "extra_forbidden" else ""
        parts.append(f"{loc}: {e['msg']}{hint}")
    return "; ".join(parts)


def env_overrides(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """``LENSPIPE_<SECTION>__<FIELD>`` variables as dotted overrides; a misspelt one is a ConfigError."""
    environ = os.environ if environ is None else environ
    known = {dotted for dotted, _ in fields()}
    out = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        dotted = key[len(ENV_PREFIX):].lower().replace("__", ".", 1)
        if dotted not in known:
            names = [ENV_PREFIX + k.upper().replace(".", "__") for k in known]
            raise ConfigError(f"environment variable {key}: no such config field{suggest(key, names)}")
        out[dotted] = value
    return out


def _parse_scalar(text: str) -> Any:
    """Parse a --set value the way YAML would ('3' -> 3, 'true' -> True, 'none' -> None)."""
    if text.strip().lower() in ("none", "null", "~", ""):
        return None
    return yaml.safe_load(text)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def _read_file(path: os.PathLike | str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        loaded = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
    return loaded or {}


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{section}.{k}": v for section, fields_ in tree.items() if isinstance(fields_, dict) for k, v in fields_.items()}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``SECTION.FIELD=VALUE`` strings (what ``--set`` takes) -> {dotted name: value text}.

    Raises ConfigError naming the first item without ``=``; the values are parsed later,
    by ``load_config``, like every other override.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. trainer.epochs=10")
        out[key.strip()] = value
    return out


def load_config(
    path: Optional[os.PathLike | str] = None,
    overrides: Optional[dict[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> LenspipeConfig:
    """Build the run config: defaults, then the file at ``path``, then ``LENSPIPE_*`` variables, then ``overrides``.

    ``overrides`` maps dotted names (``trainer.epochs``) to values; string values
    are parsed like YAML scalars. ``environ`` defaults to no environment (pass
    ``os.environ`` to honour it, as the CLI does). Raises ``ConfigError`` naming the
    field, with the nearest field name when one is misspelt.
    """
    return _layers(path, overrides, environ)[0]


def explain_config(
    path: Optional[os.PathLike | str] = None,
    overrides: Optional[dict[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> list[tuple[str, Any, Source]]:
    """(dotted name, effective value, where it came from) for every field, as load_config layers them."""
    cfg, sources = _layers(path, overrides, environ)
    dumped = _flatten(cfg.model_dump())
    return [(dotted, dumped[dotted], sources.get(dotted, "default")) for dotted, _ in fields()]


def _layers(path, overrides, environ) -> tuple[LenspipeConfig, dict[str, Source]]:
    tree: dict[str, Any] = _read_file(path) if path is not None else {}
    sources: dict[str, Source] = {k: "file" for k in _flatten(tree)}
    layered = [(env_overrides(environ) if environ is not None else {}, "env"), (overrides or {}, "flag")]
    for values, source in layered:
        for dotted, value in values.items():
            _set_dotted(tree, dotted, _parse_scalar(value) if isinstance(value, str) else value)
            sources[dotted] = source
    try:
        return LenspipeConfig.model_validate(tree), sources
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None
