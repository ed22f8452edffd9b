"""Offline prediction benchmark: `lenspipe predict --saved-model DIR FOLDER --output` over 10,000 images.

  python -m bench.offline_bench [--model DIR] [--images 10000] [--out bench/results/offline.md]

Rows, each in its own child process (peak RSS from getrusage):
  (limit)   in-process calls of the same serving_default signature, batches of 32 images already in memory;
  (predict) inference/batch.predict_to_files, the code behind `lenspipe predict ... --output`: walk the folder,
            read, batch by 32, classify, write JSONL + CSV (model already loaded);
  (command) the whole `lenspipe predict` command, TensorFlow import and model load included;
  (tflite)  the same with `--tflite`, if the model has assets.extra/tflite/float32.tflite.
The model is the newest version under lenspipe-work/serving/lenspipe (after `make run`), else a
demo model with random weights (bench/serving_demo_model.py), which measures speed, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.serving_bench import latest_version, machine_facts, write_images
from bench import results_file

DEFAULT_BASE = "lenspipe-work/serving/lenspipe"
BATCH = 32


def _child(argv: list[str]) -> tuple[dict, float, int]:
    """(JSON the child printed last, its peak RSS in MiB, exit code)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)


def limit_main(model: str, folder: str) -> None:
    """serving_default on batches of BATCH in-memory images, over every image once; one JSON line."""
    import tensorflow as tf

    images = [p.read_bytes() for p in sorted(Path(folder).iterdir())]
    fn = tf.saved_model.load(model).signatures["serving_default"]
    fn(image_bytes=tf.constant(images[:BATCH]))  # warm up
    started = time.perf_counter()
    for i in range(0, len(images), BATCH):
        fn(image_bytes=tf.constant(images[i:i + BATCH]))["probabilities"].numpy()
    seconds = time.perf_counter() - started
    print(json.dumps({"images": len(images), "seconds": seconds}))


def predict_main(backend: str, model: str, folder: str, output: str) -> None:
    """predict_to_files with the model loaded first; one JSON line."""
    from inference import batch

    if backend == "tflite":
        from inference.tflite_model import TFLiteClassifier

        classifier = TFLiteClassifier(model)
    else:
        classifier = batch.SavedModelBackend(model)
    first = next(iter(sorted(Path(folder).iterdir())))
    classifier.predict_encoded([first.read_bytes()])  # warm up
    started = time.perf_counter()
    summary = batch.predict_to_files(classifier, [folder], output, BATCH, show_progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"images": summary.images, "seconds": seconds, "skipped": summary.skipped_count}))


def command_row(model: str, folder: str, output: str) -> tuple[dict, float, int]:
    started = time.perf_counter()
    _, rss, code = _child(["-c", "from pipeline.cli import entry; entry()", "predict", "--saved-model", model, folder,
                           "--output", output, "--no-progress"])
    lines = sum(1 for _ in open(output)) if os.path.exists(output) else 0
    return {"images": lines, "seconds": time.perf_counter() - started}, rss, code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.offline_bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="SavedModel version directory (default: newest under lenspipe-work/serving/lenspipe).")
    p.add_argument("--images", type=int, default=10_000, help="PNG files in the folder.")
    p.add_argument("--image-side", type=int, default=28)
    p.add_argument("--out", default="bench/results/offline.md")
    p.add_argument("--_limit", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_predict", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._limit:
        limit_main(*args._limit)
        return 0
    if args._predict:
        predict_main(*args._predict)
        return 0
    command = "python -m bench.offline_bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="lenspipe-offline-bench-") as tmp:
        model, note = args.model, "given with --model"
        if model is None:
            base = Path(DEFAULT_BASE)
            version = latest_version(base)
            if version is not None:
                model, note = str((base / str(version)).resolve()), "the newest pushed version (trained digits)"
            else:
                from bench.serving_demo_model import make_demo_model

                model, note = str(make_demo_model(Path(tmp) / "demo")), "demo model, random weights (no `make run` yet)"
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_images(folder, args.images, args.image_side)
        me = ["-m", "bench.offline_bench"]
        rows = [("limit: in-process serving_default, batches of 32 in memory",
                 *_child([*me, "--_limit", model, str(folder)]))]
        rows.append(("predict_to_files --saved-model (read, batch 32, classify, write JSONL + CSV)",
                     *_child([*me, "--_predict", "saved-model", model, str(folder), f"{tmp}/a.jsonl"])))
        rows.append(("`lenspipe predict --saved-model ... --output` whole command (import + load included)",
                     *command_row(model, str(folder), f"{tmp}/b.jsonl")))
        tflite = Path(model) / "assets.extra" / "tflite" / "float32.tflite"
        if tflite.is_file():
            rows.append(("predict_to_files --tflite float32 (interpreter, 1 thread, one image per invoke)",
                         *_child([*me, "--_predict", "tflite", str(tflite), str(folder), f"{tmp}/c.jsonl"])))
    limit = rows[0][1]["images"] / rows[0][1]["seconds"] if rows[0][1].get("seconds") else float("nan")
    table = []
    for label, result, rss, code in rows:
        rate = result["images"] / result["seconds"] if result.get("seconds") else float("nan")
        table.append(f"| {label} | {result.get('images', 0)} | {result.get('seconds', float('nan')):.2f} | "
                     f"{rate:,.0f} | {rate / limit:.2f}x | {rss:.0f} | {code} |")
        print(f"{label}: {rate:,.0f} images/s, peak RSS {rss:.0f} MiB, exit {code}", flush=True)
    lines = [
        "# Offline prediction benchmark", "",
        f"Command: `{command.strip()}`  ", *[f"{f}  " for f in facts],
        f"Model: {note}  ", f"Images: {args.images} grey PNGs of {args.image_side}x{args.image_side} in one folder", "",
        "| what | images | seconds | images/s | vs limit | peak RSS (MiB) | exit |",
        "|---|---:|---:|---:|---:|---:|---:|", *table, "",
        "The machine is shared: other test suites may have been running; see the load average above.", "",
    ]
    out = results_file.write(args.out, "\n".join(lines))
    print(f"wrote {out}")
    return 0 if all(code == 0 for *_, code in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
