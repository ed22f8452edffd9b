"""Scale benchmark: how ExampleGen, StatisticsGen, Transform and one Trainer epoch grow with the data.

  python -m bench.scale_bench [--factors 1,10,100] [--work-dir lenspipe-work/bench-scale]
                              [--out bench/results/scale.md] [--set section.field=value ...]

Data: the embedded digits at each factor (bench/scale_data.py: the 1,797 originals plus
factor-1 rotated/shifted copies of each), built once and kept under ``<work-dir>/data``.

Each component of the pipeline up to the Trainer (the Trainer and its ancestors, taken from
the pipeline itself) runs in its own child process, in pipeline order: the child builds the
whole pipeline and runs it up to that component (a TFX partial run, ``to_nodes``): the
ancestors are cache hits from the previous children, and only that component executes. So a child's peak RSS (getrusage via
wait4) is that of one component plus what every child pays (Python, TF, TFX, Beam imports and
the cache look-ups), which a last child that executes nothing ("all cached") measures. Wall
time per component is what ML Metadata recorded for its execution.

Each factor's figures are kept in ``<work-dir>/results/x<factor>.json``, so factors can be run
separately (the 100x one takes long); the Markdown file is rewritten from every factor measured
so far (temporary file + rename).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from bench import results_file
from lenspipe.config import ConfigError, parse_assignments

TARGET_NODE = "Trainer"
# One child process per step; the nodes between two steps (SchemaGen, ExampleValidator, DataGate)
# execute in the next step's child. Their ids are checked against the pipeline.
STEPS = ("ImageExampleGen", "StatisticsGen", "Transform", "Trainer")
NOTES_MARKER = "<!-- hand-written notes below: kept when the benchmark rewrites this file -->"
TIME_RATIO_TARGET = 1.3  # time per image at the largest factor within this of the one before
RSS_GROWTH_TARGET = 1.1  # peak RSS at the largest factor within this of the smallest ("does not grow")


def run_overrides(data_root: Path, run_dir: Path, extra: dict[str, str]) -> dict[str, Any]:
    """The config of a scale run: the digits' model input, no tuning, one epoch, nothing past the Trainer needed."""
    return {
        "data.root": str(data_root),
        "image.height": 16, "image.width": 16, "image.channels": 1,  # what the embedded digits use
        "tuner.enabled": False,
        "trainer.epochs": 1,
        "runtime.work_dir": str(run_dir),
        **extra,
    }


def _pipeline(overrides: dict[str, Any]):
    from lenspipe.config import load_config
    from pipeline.runners.common import build_pipeline

    cfg = load_config(overrides=overrides)
    return cfg, build_pipeline(cfg, overrides["data.root"])


def ancestors_and_self(pipeline, node_id: str) -> list:
    """The components ``node_id`` needs (itself and every upstream node), in the pipeline's order."""
    by_id = {c.id: c for c in pipeline.components}
    if node_id not in by_id:
        raise ValueError(f"no component {node_id!r} in the pipeline (it has {', '.join(by_id)})")
    keep, todo = set(), [by_id[node_id]]
    while todo:
        node = todo.pop()
        if node.id not in keep:
            keep.add(node.id)
            todo.extend(node.upstream_nodes)
    return [c for c in pipeline.components if c.id in keep]


def _child(node_id: str, overrides: dict[str, Any]) -> int:
    """Runs ``node_id`` and its ancestors (cache hits after the first child) with the local Beam runner.

    A TFX partial run of the whole pipeline (``RunOptions(to_nodes=[node_id])``): nodes past
    ``node_id`` are skipped.
    """
    import logging

    from absl import logging as absl_logging
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
    from tfx.orchestration.pipeline import RunOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.INFO)
    _, full = _pipeline(overrides)
    ancestors_and_self(full, node_id)  # a clear error for an unknown node
    BeamDagRunner().run(full, run_options=RunOptions(to_nodes=[node_id]))
    return 0


def _spawn(node_id: str, overrides: dict[str, Any], log_path: Path) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MiB, exit code, CPU seconds user + system) of one child run."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scale_bench", "--child", node_id, "--overrides", json.dumps(overrides)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    return time.monotonic() - started, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status), cpu


def ancestors_ids(pipeline, node_id: str) -> set[str]:
    return {c.id for c in ancestors_and_self(pipeline, node_id)}


def measure(factor: int, work: Path, extra: dict[str, str], baseline: bool = True, up_to: str = STEPS[-1]) -> dict[str, Any]:
    """Builds (or reuses) the factor's data, runs every component in its own process, returns the figures."""
    from bench import scale_data
    from pipeline import report
    from pipeline.runners.common import RunPaths

    data_root = work / "data" / f"digits-x{factor}"
    started = time.monotonic()
    cached_data = (data_root / scale_data.MARKER_FILE).exists()
    scale_data.write_scaled_digits(data_root, factor)
    data_seconds = time.monotonic() - started
    images = scale_data.image_count(data_root)
    print(f"x{factor}: {images} images in {data_root} ({'cached' if cached_data else f'written in {data_seconds:.0f}s'})", flush=True)

    run_dir = work / "runs" / f"x{factor}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    overrides = run_overrides(data_root, run_dir, extra)
    cfg, full = _pipeline(overrides)
    metadata = str(RunPaths.from_config(cfg).metadata_path)
    nodes = [c.id for c in ancestors_and_self(full, TARGET_NODE)]
    missing = [step for step in STEPS if step not in nodes]
    if missing:
        raise ValueError(f"steps {missing} are not among the Trainer's ancestors {nodes}")
    result: dict[str, Any] = {
        "factor": factor, "images": images, "nodes": [],
        "data": {"seconds": None if cached_data else round(data_seconds, 1), "cached": cached_data},
        "load_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "beam_mode": cfg.runtime.beam_mode, "beam_workers": cfg.runtime.beam_workers,
        "cache_budget_mb": cfg.trainer.cache_budget_mb, "extra": extra, "up_to": up_to,
    }
    done: set[str] = set()
    steps = STEPS[: STEPS.index(up_to) + 1]
    for step in [*steps, *(["all cached"] if baseline else [])]:
        target = steps[-1] if step == "all cached" else step
        log_path = run_dir / f"{step.replace(' ', '-')}.log"
        wall, rss, code, cpu = _spawn(target, overrides, log_path)
        run_id = report.latest_run_id(metadata, cfg.runtime.pipeline_name) if code == 0 else None
        summary = report.read_run(metadata, run_id) if run_id else report.RunSummary(run_id="")
        executed = [n for n in nodes if n not in done and n in ancestors_ids(full, target)]
        if step == "all cached":
            executed = []
        seconds = {n: summary.node_seconds.get(n) for n in executed}
        states = {n: summary.node_states.get(n, "missing") for n in executed}
        row = {"node": step, "ran": executed, "states": states, "node_seconds": seconds,
               "state": states.get(target, "cached" if step == "all cached" else "missing"),
               "seconds": seconds.get(target), "wall": round(wall, 1), "cpu": round(cpu, 1), "rss_mib": round(rss),
               "exit": code, "load": os.getloadavg()[0]}
        result["nodes"].append(row)
        done.update(executed)
        print(f"x{factor} {step}: {states}, {seconds} s in MLMD, {wall:.1f}s wall, peak RSS {rss:.0f} MiB, "
              f"exit {code} (log {log_path})", flush=True)
        # A resolver (the drift baseline's) is "resolved": an input query, not a component run.
        if code != 0 or any(state not in ("complete", "resolved") for state in states.values()):
            result["failed"] = f"{step}: exit {code}, states {states}; see {log_path}"
            break
    result["load_end"] = os.getloadavg()
    return result


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(results: list[dict[str, Any]], command: str) -> str:
    """The Markdown report of every measured factor, smallest first, with the targets checked."""
    results = sorted(results, key=lambda r: r["factor"])
    lines = [
        "# Scale benchmark: how cost grows with the data",
        "",
        f"Command: `{command}` (each factor's figures are kept between runs; the line under each table says when it ran)  ",
        f"Machine: {os.cpu_count()} cores shared with other engineers' jobs (see the load averages), "
        f"Python {platform.python_version()}, {platform.machine()}  ",
        "Data: the embedded digits (8x8 PNGs) at N times their size: the 1,797 originals plus N-1 rotated "
        "(±15°) and shifted (±1 px) copies of each (bench/scale_data.py), model input 16x16x1; "
        "Tuner off, Trainer 1 epoch, Beam DirectRunner as `lenspipe run` sets it.  ",
        "Each step runs in its own process (the nodes between two steps run in the later step's process, "
        "named in its row), its ancestors cache hits; *seconds* = its execution time in "
        "ML Metadata, *µs/image* = seconds / images in the dataset (all splits), *process* = the child's wall "
        "time, *process CPU* = its user + system CPU time (less sensitive to the other jobs on the machine than wall time), *peak RSS* = the child's maximum resident set (getrusage), which includes what every child pays "
        "for imports and cache look-ups: the *all cached* row (a child that executes nothing).",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['factor']}x: {r['images']:,} images",
            "",
            "| component | state | seconds | µs/image | process (s) | process CPU (s) | peak RSS (MiB) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for n in r["nodes"]:
            per = None if n["seconds"] is None else n["seconds"] / r["images"] * 1e6
            also = [m for m in n.get("ran", []) if m != n["node"]]
            ran = ", ".join(f"{m} {_fmt(n['node_seconds'].get(m))} s" for m in also)
            name = n["node"] + (f" (its process also ran {ran})" if also else "")
            lines.append(f"| {name} | {n['state']} | {_fmt(n['seconds'])} | {_fmt(per, 0)} | {n['wall']:.1f} | {_fmt(n.get('cpu'))} | {n['rss_mib']:,} |")
        data = "cached from an earlier run" if r["data"]["cached"] else f"written in {r['data']['seconds']} s"
        lines += [
            "",
            f"Ran {r['started']}; load average at start {' / '.join(f'{x:.2f}' for x in r['load_start'])}, "
            f"at end {' / '.join(f'{x:.2f}' for x in r['load_end'])} (1/5/15 min). Beam {r['beam_mode']}, "
            f"{r['beam_workers']} worker(s); trainer.cache_budget_mb {r['cache_budget_mb']:g}; images {data}."
            + (f" Extra settings: `{r['extra']}`." if r["extra"] else "")
            + (f" **Stopped: {r['failed']}**" if r.get("failed") else ""),
            "",
        ]
    if len(results) >= 2:
        lines += _targets(results)
    return "\n".join(lines) + "\n"


def _targets(results: list[dict[str, Any]]) -> list[str]:
    by_factor = {r["factor"]: {n["node"]: n for n in r["nodes"]} for r in results}
    images = {r["factor"]: r["images"] for r in results}
    factors = sorted(by_factor)
    big, prev, small = factors[-1], factors[-2], factors[0]
    header = " | ".join(f"µs/image {f}x" for f in factors) + " | " + " | ".join(f"RSS {f}x" for f in factors)
    lines = [
        "## Targets",
        "",
        f"Time per image at {big}x within {TIME_RATIO_TARGET}x of {prev}x; peak RSS at {big}x within "
        f"{RSS_GROWTH_TARGET}x of {small}x (it does not grow with the data).",
        "",
        f"| component | {header} | time {big}x/{prev}x | RSS {big}x/{small}x | target |",
        "|---|" + "---:|" * (2 * len(factors) + 2) + "---|",
    ]
    for node in [n["node"] for n in results[-1]["nodes"]]:
        rows = [by_factor[f].get(node) for f in factors]
        if any(row is None for row in rows):
            continue
        per = [None if row["seconds"] is None else row["seconds"] / images[f] * 1e6 for row, f in zip(rows, factors)]
        rss = [row["rss_mib"] for row in rows]
        t_ratio = per[-1] / per[-2] if per[-1] is not None and per[-2] else None
        r_ratio = rss[-1] / rss[0]
        met = (t_ratio is None or t_ratio <= TIME_RATIO_TARGET) and r_ratio <= RSS_GROWTH_TARGET
        lines.append(
            f"| {node} | " + " | ".join(_fmt(p, 0) for p in per) + " | " + " | ".join(f"{x:,}" for x in rss)
            + f" | {_fmt(t_ratio, 2)} | {r_ratio:.2f} | {'met' if met else 'NOT met'} |"
        )
    return lines + [""]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", default="1,10,100", help="Comma-separated dataset sizes, in copies of the digits.")
    parser.add_argument("--work-dir", default="lenspipe-work/bench-scale", help="Data (kept) and runs (redone) live here.")
    parser.add_argument("--out", default="bench/results/scale.md")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="Extra config override for every run (e.g. runtime.beam_mode=multi_processing).")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the last child that executes nothing.")
    parser.add_argument("--up-to", default=STEPS[-1], choices=STEPS, help="Stop after this step (a shorter run).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, json.loads(args.overrides))

    try:
        extra = parse_assignments(args.set)
    except ConfigError as e:
        parser.error(str(e))
    try:
        factors = [int(f) for f in args.factors.split(",")]
    except ValueError:
        parser.error(f"--factors {args.factors!r}: expected comma-separated integers, e.g. 1,10,100")
    work = Path(args.work_dir).resolve()
    results_dir = work / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.scale_bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    failed = False
    for factor in factors:
        result = measure(factor, work, extra, baseline=not args.no_baseline, up_to=args.up_to)
        result["command"] = command.strip()
        failed |= "failed" in result
        path = results_dir / f"x{factor}.json"
        results_file.write(path, json.dumps(result, indent=1))
        results = [json.loads(p.read_text()) for p in sorted(results_dir.glob("x*.json"))]
        commands = sorted({r.get("command", "?") for r in results})
        out = Path(args.out)
        notes = ""
        if out.exists() and NOTES_MARKER in out.read_text():
            notes = NOTES_MARKER + out.read_text().split(NOTES_MARKER, 1)[1]
        results_file.write(out, render(results, "`, `".join(commands)) + notes)
        print(f"wrote {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
