"""Pipeline benchmark: wall time, peak memory, per-component time and accuracy of `lenspipe run`.

  python -m bench.pipeline_bench [--per-class N] [--seeds 42,43,44] [--out bench/results/pipeline.md] [-- extra args]

Runs, each a `lenspipe run` child process (peak RSS from getrusage):
  1. cold with the first seed (every component executes), then the same again (all cached);
  2. cold with each further seed, for the CNN's median test accuracy against the classical
     baseline fitted on the same split;
  3. cold with the first seed and TF op determinism off, for what determinism costs;
  4. a pretrained-backbone run (default mobilenet_v3_small, weights none, digits upscaled to
     the backbone's minimum size, no tuning): time per epoch and peak RSS.
Each run records wall and CPU time and the load average around it (the machine may be shared:
CPU time moves far less with load than wall time). Per-component wall times and metrics are read
back from ML Metadata, per-component CPU times from the run's progress lines. Results go to a
Markdown file (temporary file + rename).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from lenspipe import metrics
from pipeline import report
from bench import results_file

ACCURACY_TARGET = 0.99
COLD_TARGET_SECONDS = 120.0
DONE_LINE = re.compile(r"\s+(\S+) done in [0-9.]+s \(([0-9.]+) CPU s\)")


@dataclass
class Run:
    label: str
    seconds: float
    cpu_seconds: float  # user + system of the run and the children it waited for
    load: tuple[float, float]  # 1-minute load average when it started and ended
    rss_mib: float
    code: int
    summary: report.RunSummary
    node_cpu: dict[str, float]  # component -> CPU seconds, from the run's progress lines


def _run(label: str, work: str, args: list[str]) -> Run:
    """One `lenspipe run` in ``work``: wall time, the child's peak RSS, exit code and its summary from MLMD."""
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pipeline.cli import entry; entry()", "run", "--work-dir", work, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
    )
    node_cpu = {}
    for line in proc.stderr:  # plain progress lines: "        Transform done in 9.8s (12.1 CPU s)"
        done = DONE_LINE.match(line)
        if done:
            node_cpu[done.group(1)] = float(done.group(2))
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    metadata = os.path.join(work, "metadata", "lenspipe.sqlite")
    run_id = report.latest_run_id(metadata, "lenspipe")
    summary = report.read_run(metadata, run_id) if run_id else report.RunSummary(run_id="")
    cpu = usage.ru_utime + usage.ru_stime
    load = (load_before, os.getloadavg()[0])
    run = Run(label, seconds, cpu, load, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status), summary, node_cpu)
    acc = summary.overall.accuracy if summary.overall else float("nan")
    print(f"{label}: {seconds:.1f}s ({cpu:.0f} CPU s, load {load[0]:.1f}-{load[1]:.1f}), peak RSS {run.rss_mib:.0f} MiB, exit {run.code}, test accuracy {acc:.4f}", flush=True)
    return run


def _accuracy(run: Run) -> float:
    return run.summary.overall.accuracy if run.summary.overall else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=None, help="Digits per class (default: all 1,797).")
    parser.add_argument("--seeds", default="42,43,44", help="Comma-separated seeds; the first is timed and re-run.")
    parser.add_argument("--no-determinism-run", action="store_true", help="Skip the run with op determinism off.")
    parser.add_argument("--backbone", default="mobilenet_v3_small", help="Backbone of run 4 ('none' skips it).")
    parser.add_argument("--out", default="bench/results/pipeline.md")
    parser.add_argument("extra", nargs="*", help="Extra `lenspipe run` arguments (after --).")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = list(args.extra) + (["--set", f"data.embedded_per_class={args.per_class}"] if args.per_class else [])

    with tempfile.TemporaryDirectory(prefix="lenspipe-bench-") as tmp:
        work = os.path.join(tmp, f"seed-{seeds[0]}")
        cold = _run(f"cold, seed {seeds[0]}", work, [*base, "--seed", str(seeds[0])])
        cached = _run("re-run, nothing changed", work, [*base, "--seed", str(seeds[0])])
        by_seed = [cold] + [
            _run(f"cold, seed {seed}", os.path.join(tmp, f"seed-{seed}"), [*base, "--seed", str(seed)]) for seed in seeds[1:]
        ]
        loose = None
        if not args.no_determinism_run:
            loose = _run(
                f"cold, seed {seeds[0]}, op determinism off", os.path.join(tmp, "nondeterministic"),
                [*base, "--seed", str(seeds[0]), "--set", "runtime.deterministic=false"],
            )

        backbone = None
        if args.backbone != "none":
            from lenspipe.config import BACKBONE_MIN_SIZE

            size = BACKBONE_MIN_SIZE[args.backbone]
            backbone = _run(
                f"cold, {args.backbone} (weights none, {size}x{size}, no tuning)", os.path.join(tmp, "backbone"),
                [*base, "--architecture", args.backbone, "--backbone-weights", "none", "--image-size", str(size),
                 "--set", "tuner.enabled=false"],
            )

    runs = [cold, cached, *by_seed[1:], *([loose] if loose else []), *([backbone] if backbone else [])]
    command = "python -m bench.pipeline_bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = [
        "# Pipeline benchmark",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {results_file.cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}  ",
        f"Data: embedded digits, {'all 1,797 images' if not args.per_class else f'{args.per_class} per class'}; "
        f"extra args: `{' '.join(args.extra) or 'none'}`",
        "",
        "| run | wall time (s) | CPU time (s) | load avg (start-end) | peak RSS (MiB) | executed / cached "
        "| test accuracy | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r.label} | {r.seconds:.1f} | {r.cpu_seconds:.1f} | {r.load[0]:.1f}-{r.load[1]:.1f} | {r.rss_mib:.0f} "
            f"| {len(r.summary.executed)} / {len(r.summary.cached)} "
            f"| {_accuracy(r):.4f} | {r.code} |"
            for r in runs
        ],
        "",
        f"## Per component, cold run (seed {seeds[0]})",
        "",
        "| component | wall (s) | CPU (s) |",
        "|---|---:|---:|",
        *[
            f"| {node} | {secs:.1f} | {cold.node_cpu.get(node, float('nan')):.1f} |"
            for node, secs in cold.summary.node_seconds.items()
        ],
        "",
    ]
    cnn = [_accuracy(r) for r in by_seed]
    classical = [r.summary.classical.get("test_accuracy", float("nan")) for r in by_seed]
    median_cnn, median_classical = statistics.median(cnn), statistics.median(classical)
    lines += [
        "## CNN against the classical baseline (same split, held-out test images)",
        "",
        "| seed | CNN test accuracy | classical baseline | method |",
        "|---:|---:|---:|---|",
        *[
            f"| {seed} | {a:.4f} | {b:.4f} | {r.summary.classical.get('method', '?')} {r.summary.classical.get('params', '')} |"
            for seed, a, b, r in zip(seeds, cnn, classical, by_seed)
        ],
        "",
        f"Median CNN {median_cnn:.4f}, median classical {median_classical:.4f}.",
        "",
        "## Targets",
        "",
        f"- cold run ≤ {COLD_TARGET_SECONDS:.0f} s with ≥ 4 tuning trials: {cold.seconds:.1f} s with "
        f"{len(cold.summary.trials)} trials — "
        f"{'met' if cold.seconds <= COLD_TARGET_SECONDS and len(cold.summary.trials) >= 4 else 'NOT met'}",
        f"- median CNN ≥ classical baseline: {'NOT met' if metrics.below(median_cnn, median_classical) else 'met'}",
        f"- median CNN ≥ {ACCURACY_TARGET}: {'met' if median_cnn >= ACCURACY_TARGET else 'NOT met'}",
    ]
    if backbone:
        epochs = sum(p.get("epochs", 0) for p in backbone.summary.architecture.get("phases", []))
        trainer_s = backbone.summary.node_seconds.get("Trainer", float("nan"))
        lines.append(
            f"- {args.backbone} backbone: Trainer {trainer_s:.1f} s for {epochs} epochs "
            f"({trainer_s / max(epochs, 1):.1f} s per epoch incl. export), peak RSS {backbone.rss_mib:.0f} MiB"
        )
    if loose:
        lines.append(
            f"- op determinism costs {cold.seconds - loose.seconds:+.1f} s on the cold run "
            f"({cold.seconds:.1f} s on, {loose.seconds:.1f} s off)"
        )
    out = results_file.write(args.out, "\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0 if all(r.code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
