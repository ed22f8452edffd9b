"""lenspipe's custom TFX artifact types, importable under the dotted TYPE_NAME they register.

Kubeflow V2 requires a custom TYPE_NAME of the form ``<module>.<Class>`` (one dot, module of
3-21 characters) and its container entrypoint imports the class by that name, so each type
here is reachable as ``lenspipe.<Class>`` (``lenspipe/__init__.py`` forwards the attribute).
Renaming a TYPE_NAME registers a new artifact type in an existing MLMD store: artifacts
written under the old name stay there but are no longer found as inputs of the new type.
"""

from __future__ import annotations

from tfx import types


class RejectedFiles(types.Artifact):
    """Files or records an ExampleGen refused, one JSON line each in ``rejected.jsonl``.

    Each line is ``{"path": <relative path or file#record>, "reason": <one line>}``, sorted by
    path. Custom properties: ``num_rejected`` (int) and ``span`` (int, the ingested span).
    """

    TYPE_NAME = "lenspipe.RejectedFiles"  # before issue 7: "RejectedFiles"


class DataGateReport(types.Artifact):
    """What the data gate saw: ``anomalies.txt`` (empty when it passed)."""

    TYPE_NAME = "lenspipe.DataGateReport"  # before issue 7: "LenspipeDataGateReport"


class ClassicalBaseline(types.Artifact):
    """A classical model's score on the CNN's split: ``result.json`` (method, parameters, images, test
    accuracy) and the custom property ``test_accuracy``."""

    TYPE_NAME = "lenspipe.ClassicalBaseline"


class TFLiteModels(types.Artifact):
    """TFLite variants of one model and their check: ``<variant>.tflite``, ``labels.txt``, ``check.json``.

    ``check.json`` holds the input contract and, per variant, test accuracy, drop versus the
    SavedModel, size, mean latency, top-1 agreement and ``passed`` (pushed or not, and why).
    """

    TYPE_NAME = "lenspipe.TFLiteModels"


class Predictions(types.Artifact):
    """``predictions.jsonl`` and ``predictions.csv`` of one batch inference run."""

    TYPE_NAME = "lenspipe.Predictions"


class Explanation(types.Artifact):
    """``explanations.json`` (predictions on the split, explained items), ``heatmaps.npy``, ``images/``."""

    TYPE_NAME = "lenspipe.Explanation"


ARTIFACT_TYPES = (RejectedFiles, DataGateReport, ClassicalBaseline, TFLiteModels, Predictions, Explanation)
