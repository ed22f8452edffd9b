"""A classical baseline (an RBF SVM or logistic regression on downscaled pixels) on the same splits as the CNN."""

from components.classical_baseline.component import ClassicalBaseline, ClassicalBaselineResult, read_result

__all__ = ["ClassicalBaseline", "ClassicalBaselineResult", "read_result"]
