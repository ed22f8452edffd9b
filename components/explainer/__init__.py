"""Grad-CAM heatmaps of the trained network on the held-out split, computed once per run for the report."""

from components.explainer.component import Explainer, Explanation, read_explanation

__all__ = ["Explainer", "Explanation", "read_explanation"]
