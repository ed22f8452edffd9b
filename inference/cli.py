"""`lenspipe predict --tflite FILE ...` and `lenspipe predict --saved-model DIR ...`: no server needed.

Without ``--output`` it prints ``image<TAB>label<TAB>probability`` per image, the lines the
server client prints. With ``--output preds.jsonl`` it writes every prediction (and a CSV
twin) for files and folders of any size, with a progress bar and a summary on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

OFFLINE_FLAGS = ("--tflite", "--saved-model")


def wants_offline(argv: Sequence[str]) -> bool:
    """True if `lenspipe predict` was asked to run a model file itself rather than call a server."""
    return any(a == f or a.startswith(f + "=") for a in argv for f in OFFLINE_FLAGS)


def predict_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lenspipe predict",
        description="Classify images locally with a TFLite file or a SavedModel (no server).",
    )
    parser.add_argument("inputs", nargs="+", metavar="FOLDER_OR_IMAGE", help="Image files and/or folders (searched recursively).")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tflite", metavar="FILE", help="A .tflite model (labels.txt beside it names the classes).")
    which.add_argument("--saved-model", metavar="DIR", help="A SavedModel version directory, e.g. serving/lenspipe/1.")
    parser.add_argument("--output", metavar="FILE.jsonl", help="Write predictions here (and a .csv twin) instead of printing.")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per model call (SavedModel).")
    parser.add_argument("--top-k", type=int, default=3, help="Classes with probabilities per image in --output.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    args = parser.parse_args(list(argv))
    if args.batch_size < 1 or args.top_k < 1:
        parser.error("--batch-size and --top-k must be at least 1")
    missing = [p for p in args.inputs if not os.path.exists(p)]
    if missing and args.output:
        print(f"lenspipe predict: {missing[0]}: no such file or folder", file=sys.stderr)
        return 2

    from inference import batch

    try:
        if args.tflite:
            from inference.tflite_model import TFLiteClassifier

            if not os.path.isfile(args.tflite):
                raise ValueError(f"--tflite {args.tflite}: no such file")
            backend = TFLiteClassifier(args.tflite)
        else:
            backend = batch.SavedModelBackend(args.saved_model)
    except (ValueError, OSError) as e:
        print(f"lenspipe predict: {e}", file=sys.stderr)
        return 2

    if args.output:
        summary = batch.predict_to_files(
            backend, args.inputs, args.output, args.batch_size, args.top_k, show_progress=not args.no_progress
        )
        print(summary.format(), file=sys.stderr)
        print(f"wrote {args.output} and {os.path.splitext(args.output)[0]}.csv", file=sys.stderr)
        return 0 if summary.images else 1
    summary = batch.Summary()
    for path, probs in batch.predict(backend, args.inputs, args.batch_size, summary):
        best = int(probs.argmax())
        print(f"{path}\t{backend.class_names[best]}\t{float(probs[best]):.4f}")
    for path, reason in summary.skipped:
        print(f"lenspipe predict: {path}: {reason}", file=sys.stderr)
    return 1 if summary.skipped_count else 0
