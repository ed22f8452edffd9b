"""Interleaved A/B of `lenspipe serve` from two source trees (e.g. before and after a change) under wrk.

On a shared machine two benchmark runs minutes apart see different load; here both servers run side by
side and are measured alternately (A B, B A, ...) with the same requests, so other jobs' load hits both
alike. Prints one line per measurement and the medians as JSON, with each server's CPU time per request
(all its threads, from /proc: less disturbed by other jobs than throughput is).
Run: python -m bench.serving_ab --a /tmp/before --b . --model_base_path DIR [--concurrency 32]
(`git worktree add /tmp/before <rev>` or `git archive <rev> | tar -x -C /tmp/before` makes tree A).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.serving_bench import (BATCHING, WARMUP_SECONDS, _env, _free_port, _stop, _wait_ready, _wrk, write_bodies,
                                 write_images)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving_ab", description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="Source tree A (its serving/ is run).")
    p.add_argument("--b", required=True, help="Source tree B.")
    p.add_argument("--model_base_path", required=True, help="TF Serving base path both serve.")
    p.add_argument("--model_name", default="lenspipe")
    p.add_argument("--concurrency", default="32", help="Comma-separated client counts.")
    p.add_argument("--seconds", type=float, default=4.0, help="Measured seconds per point.")
    p.add_argument("--rounds", type=int, default=6, help="Measurements per tree and concurrency.")
    args = p.parse_args(argv)
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = Path(tmp) / "images"
        image_dir.mkdir()
        write_images(image_dir, 64, 28)
        bodies = Path(tmp) / "bodies.jsonl"
        write_bodies(image_dir, bodies)
        batching = Path(tmp) / "batching.config"
        batching.write_text(BATCHING)
        ports = {name: _free_port() for name in trees}
        processes = {name: subprocess.Popen(
            [sys.executable, "-m", "serving", f"--model_name={args.model_name}",
             f"--model_base_path={Path(args.model_base_path).resolve()}", f"--rest_api_port={ports[name]}", "--port=0",
             "--enable_batching", f"--batching_parameters_file={batching}"],
            cwd=tree, env={**_env(), "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, tree in trees.items()}
        results: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in levels} for name in trees}
        try:
            for name, process in processes.items():
                _wait_ready(f"http://127.0.0.1:{ports[name]}/readyz", process)
            for r in range(args.rounds):
                for c in levels:
                    for name in (["A", "B"] if r % 2 == 0 else ["B", "A"]):
                        url = f"http://127.0.0.1:{ports[name]}/v1/models/{args.model_name}:predict"
                        _wrk(url, c, WARMUP_SECONDS, bodies)
                        cpu = _cpu_seconds(processes[name].pid)
                        point = _wrk(url, c, args.seconds, bodies)
                        point["cpu_us_per_request"] = round(
                            (_cpu_seconds(processes[name].pid) - cpu) / max(point["requests"], 1) * 1e6, 1)
                        results[name][c].append(point)
                        print(json.dumps({"round": r + 1, "tree": name, **point}), flush=True)
        finally:
            for process in processes.values():
                _stop(process)
    summary = {name: {c: {key: statistics.median(point[key] for point in points)
                          for key in ("images_per_s", "p50_ms", "p99_ms", "cpu_us_per_request")}
                      for c, points in per_level.items()} for name, per_level in results.items()}
    print(json.dumps({"median": summary, "trees": {k: str(v) for k, v in trees.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
