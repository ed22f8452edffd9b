"""Comparing accuracies that different libraries measured on the same images."""

from __future__ import annotations

# TFMA's accuracy passes through float32 (180/181 comes out as 0.99447513), scikit-learn's
# stays float64 (0.99447514): the same fraction, different in the eighth digit. A real
# difference on fewer than a million images is at least 1e-6.
SAME_ACCURACY_TOLERANCE = 1e-6


def below(accuracy: float, other: float) -> bool:
    """Whether ``accuracy`` is lower than ``other`` by more than rounding (a tie is not below)."""
    return accuracy < other - SAME_ACCURACY_TOLERANCE
