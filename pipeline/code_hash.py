"""Hashes of the code each custom step runs, for TFX's cache key.

TFX keys a cached execution on its inputs and execution properties, not on the
code behind a dotted path or a custom executor class. Each step below gets the
hash of exactly the sources it runs as a property, so editing the model re-runs
Tuner and Trainer but not Transform, and editing the image decoding (or the bucket
bounds in lenspipe/features.py) re-runs ExampleGen and, through its new output,
everything downstream.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]

# Step -> the source folders (or files) it runs (relative to the repository root). lenspipe/ (feature
# keys, the typed config every step re-validates with) is shared by all of them.
SOURCES: Mapping[str, tuple[str, ...]] = {
    "example_gen": ("components/image_example_gen", "lenspipe"),
    "data_gate": ("components/data_gate", "lenspipe"),
    "transform": ("transform", "lenspipe"),
    "trainer": ("trainer", "lenspipe"),  # Tuner and Trainer run the same code
    "pusher": ("components/versioned_pusher", "lenspipe"),
    "classical_baseline": ("components/classical_baseline", "components/artifact_json.py", "lenspipe"),
    "evaluator": ("components/evaluator", "lenspipe"),
    "tflite_check": ("components/tflite_check", "inference", "trainer/tflite_export.py", "lenspipe"),
    # The check serves the candidate with serving/, so that code is part of what it runs.
    "serving_check": ("components/serving_check", "components/artifact_json.py", "serving", "lenspipe"),
    # A trainer/ change reaches the Explainer through the Trainer's new model_run output.
    "explainer": ("components/explainer", "lenspipe"),
}


def source_hash(sources: tuple[str, ...], root: Optional[Path] = None) -> str:
    """sha256 (16 hex digits) over the relative paths and bytes of every .py file in ``sources`` (folders or files)."""
    root = root or REPO_ROOT
    digest = hashlib.sha256()
    files = sorted(
        p
        for source in sources
        for p in ([root / source] if source.endswith(".py") else (root / source).rglob("*.py"))
        if "__pycache__" not in p.parts
    )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_versions(root: Optional[Path] = None) -> dict[str, str]:
    """{step: hash of its sources} for every step in SOURCES."""
    return {step: source_hash(sources, root) for step, sources in SOURCES.items()}
