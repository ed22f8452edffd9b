"""Trainer recipe across seeds: test errors of the configured model on one run's Transform output.

  python -m bench.trainer_seeds WORK_DIR [--seeds 42-51] [--jobs 2] [--out FILE] [--set trainer.FIELD=VALUE ...]

WORK_DIR is the work dir of a finished `lenspipe run`; its newest ExampleGen examples and
Transform graph are read (the split and the transform are fixed, only training varies).
Each seed is a child process that seeds everything as the Trainer does, builds the
configured model (no tuning), fits it with the Trainer's datasets and callbacks
(trainer/task.py) and counts the misclassified test and eval images. Accuracy differences
between training recipes are a few images on the embedded digits' 181 test images, so a
recipe is judged over many seeds: this measures them in minutes instead of whole pipeline runs.
Config overrides (`--set`) apply as in `lenspipe run`, presets included.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench import results_file
from lenspipe.config import ConfigError, parse_assignments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `python -m bench.…` finds the packages


def _newest(pattern: str) -> str:
    """The artifact dir with the highest MLMD id under ``pattern`` (``.../<id>``)."""
    found = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
    if not found:
        raise SystemExit(f"trainer_seeds: nothing matches {pattern}; give the work dir of a finished `lenspipe run`")
    return max(found, key=lambda p: int(os.path.basename(p)))


def _artifacts(work: str) -> tuple[str, str]:
    examples = _newest(os.path.join(work, "pipelines", "*", "*ExampleGen", "examples", "*"))
    graph = _newest(os.path.join(work, "pipelines", "*", "Transform", "transform_graph", "*"))
    return examples, graph


def _seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def train_one(examples: str, graph: str, seed: int, overrides: dict[str, str]) -> dict:
    """One seed of the Trainer recipe (runs in the child process)."""
    from lenspipe.config import load_config

    cfg = load_config(None, {**overrides, "runtime.seed": str(seed)}, environ={})
    cfg.runtime.apply_process_env()  # before TensorFlow is imported, as `lenspipe run` does
    from types import SimpleNamespace

    import numpy as np

    from trainer import common, data, fitting, hparams, model
    from trainer.task import training_callbacks

    started = time.monotonic()
    # The Trainer's own setup: config validation, seeds, class names, backbone normalisation.
    s = common.setup(SimpleNamespace(custom_config=cfg.training_custom_config(), transform_graph_path=graph))
    split = lambda name: [os.path.join(examples, f"Split-{name}", "*")]  # noqa: E731
    train, evaluation = s.datasets(split("train"), split("eval"), steps_per_epoch=None)
    hp = hparams.search_space(s.trainer_cfg)
    net = model.build_model(
        hp, input_shape=s.input_shape, num_classes=s.num_classes, trainer_cfg=s.trainer_cfg, seed=s.seed,
        normalisation=s.normalisation,
    )
    history, _ = fitting.fit(
        net, hparams.declare(hp, s.trainer_cfg), s.trainer_cfg, train, evaluation, epochs=s.trainer_cfg.epochs,
        head_epochs=s.trainer_cfg.head_epochs, steps=None, callbacks=lambda total, phase: training_callbacks(s.trainer_cfg),
    )
    classifier = model.inference_model(net)
    errors = {}
    for name in ("eval", "test"):
        ds = data.make_dataset(split(name), s.tft_output, 256, shuffle=False, seed=seed)
        wrong, offset = [], 0
        for images, ids in ds:
            predicted = np.argmax(classifier.predict_on_batch(images), axis=1)
            wrong += [offset + int(i) for i in np.nonzero(predicted != ids.numpy())[0]]
            offset += len(ids)
        errors[name] = {"errors": len(wrong), "images": offset, "wrong": wrong}
    return {"seed": seed, "epochs": len(history["loss"]), "seconds": round(time.monotonic() - started, 1), **errors}


def _child(examples: str, graph: str, seed: int, overrides: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.trainer_seeds", "--child", json.dumps([examples, graph, seed, overrides])],
        capture_output=True, text=True, cwd=REPO,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"trainer_seeds: seed {seed} failed (exit {proc.returncode}): {tail[0]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="?", help="Work dir of a finished `lenspipe run`.")
    parser.add_argument("--seeds", default="42-51", help="'42-51' or '42,43,44'.")
    parser.add_argument("--jobs", type=int, default=2, help="Seeds trained at once (one process each).")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="Config override, e.g. trainer.label_smoothing=0.")
    parser.add_argument("--out", help="Also write the Markdown results here (temporary file + rename).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(train_one(*json.loads(args.child))), flush=True)
        return 0
    if not args.work:
        parser.error("give the work dir of a finished `lenspipe run`")
    try:
        overrides = parse_assignments(args.set)
    except ConfigError as e:
        parser.error(str(e))
    examples, graph = _artifacts(args.work)
    seeds = _seeds(args.seeds)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda seed: _child(examples, graph, seed, overrides), seeds))
    test = [r["test"]["errors"] for r in results]
    lines = [
        "# Trainer recipe across seeds",
        "",
        f"Command: `python -m bench.trainer_seeds {' '.join(sys.argv[1:] if argv is None else argv)}`  ",
        f"Machine: {results_file.cpu_model()}, {os.cpu_count()} cores; examples {examples}, transform graph {graph}  ",
        f"Overrides: `{' '.join(args.set) or 'none'}`",
        "",
        "| seed | test errors | eval errors | epochs | seconds | misclassified test images |",
        "|---:|---:|---:|---:|---:|---|",
        *(
            f"| {r['seed']} | {r['test']['errors']} / {r['test']['images']} | {r['eval']['errors']} / {r['eval']['images']} "
            f"| {r['epochs']} | {r['seconds']} | {', '.join(map(str, r['test']['wrong'])) or '-'} |"
            for r in results
        ),
        "",
        f"Test errors in all: {sum(test)} over {len(test)} seeds (median {statistics.median(test)}); "
        f"eval errors in all: {sum(r['eval']['errors'] for r in results)}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        results_file.write(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
