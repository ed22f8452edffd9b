"""TFLite check: convert the blessed model to TFLite variants and measure each on the held-out split."""

from components.tflite_check.component import TFLiteCheck, TFLiteModels

__all__ = ["TFLiteCheck", "TFLiteModels"]
