"""The one place that names feature keys.

ExampleGen writes the raw keys; Transform writes the transformed keys
(``transformed_name``); the trainer, the signatures and the evaluator read
them from here. Nothing else spells a feature key as a string literal.
"""

# Raw features written by components/image_example_gen.
IMAGE_KEY = "image"  # original encoded bytes (PNG/JPEG/GIF/BMP)
LABEL_NAME_KEY = "label_name"  # class folder name
# Index of the class name among the sorted class names ExampleGen read (Keras' convention).
# Not called "label": the model's `label` output is the class *name*.
CLASS_INDEX_KEY = "class_index"
PATH_KEY = "path"  # path relative to the input root
HEIGHT_KEY = "height"
WIDTH_KEY = "width"
CHANNELS_KEY = "channels"
FORMAT_KEY = "format"  # "png" | "jpeg" | "gif" | "bmp", read from the bytes, not the name
BRIGHTNESS_KEY = "brightness"  # mean grey level in [0, 255]
BRIGHTNESS_BUCKET_KEY = "brightness_bucket"  # "dark" | "medium" | "bright"
SIZE_BUCKET_KEY = "size_bucket"  # "small" | "medium" | "large" (by the shorter side)

# Written beside the image properties by `lenspipe serve --request_log_dir` (serving/request_log.py):
# which model version answered the logged request, through which signature and API, and when.
REQUEST_MODEL_NAME_KEY = "model_name"
REQUEST_MODEL_VERSION_KEY = "model_version"
REQUEST_SIGNATURE_KEY = "signature_name"
REQUEST_API_KEY = "api"  # "predict" | "classify"
REQUEST_TIME_KEY = "logged_at"  # seconds since the epoch (float)
# The image properties both ExampleGen and the request log compute (the skew check compares them).
IMAGE_PROPERTY_FEATURES = (
    HEIGHT_KEY,
    WIDTH_KEY,
    CHANNELS_KEY,
    FORMAT_KEY,
    BRIGHTNESS_KEY,
    BRIGHTNESS_BUCKET_KEY,
    SIZE_BUCKET_KEY,
)

# Thresholds for the image-property buckets above (upper bounds, exclusive).
BRIGHTNESS_BUCKETS = ((85.0, "dark"), (170.0, "medium"), (float("inf"), "bright"))
SIZE_BUCKETS = ((32, "small"), (224, "medium"), (float("inf"), "large"))

# Features that describe the file rather than its content: StatisticsGen skips the
# encoded bytes (their stats are noise) and keeps the rest.
STATS_FEATURES = (LABEL_NAME_KEY, CLASS_INDEX_KEY, *IMAGE_PROPERTY_FEATURES)

# Name of the Transform's vocabulary asset: the class names of the train split, sorted;
# a class id is a line number in it.
LABEL_VOCAB_NAME = "label_vocab"

# Written by the trainer beside every exported model (TF Serving ignores assets.extra/):
# seed, hyperparameters, class names, eval metrics.
MODEL_METADATA_FILE = "assets.extra/lenspipe.json"
# The Keras classifier (no augmentation, no transform graph), saved by the trainer in its
# model_run directory (not pushed): the Explainer computes Grad-CAM on it.
CLASSIFIER_FILE = "classifier.keras"

# Signature names exported with every model.
SERVING_SIGNATURE = "serving_default"  # raw encoded image bytes in
EXAMPLES_SIGNATURE = "serving_examples"  # serialized tf.Examples in (TFMA, :classify)
TRANSFORM_SIGNATURE = "transform_features"  # serialized tf.Examples -> transformed features

# Signature input and output names (TF Serving REST clients see these).
IMAGE_BYTES_INPUT = "image_bytes"
EXAMPLES_INPUT = "examples"
PROBABILITIES_OUTPUT = "probabilities"
CLASS_ID_OUTPUT = "class_id"
LABEL_OUTPUT = "label"
# :classify needs these two names (TF Serving's classification signature).
CLASSIFY_CLASSES_OUTPUT = "classes"
CLASSIFY_SCORES_OUTPUT = "scores"


def transformed_name(key: str) -> str:
    """Name of the Transform output derived from raw feature ``key``."""
    return f"{key}_xf"

# Training progress events: trainer/progress.py logs records with this attribute,
# pipeline/progress.py renders them.
PROGRESS_EVENT_ATTR = "lenspipe_event"
