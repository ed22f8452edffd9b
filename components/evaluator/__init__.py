"""TFX's Evaluator plus the classical-baseline comparison and its optional gate."""

from components.evaluator.component import Evaluator

__all__ = ["Evaluator"]
