"""First request after a version swap vs the median, with and without --enable_model_warmup.

A `lenspipe serve` subprocess watches a base path; each swap copies the model in as a new version
(temp name + rename, as the pusher does), waits for it to be AVAILABLE, pauses PAUSE_S, then times the
first one-image REST request to that version. The reference is the median of 10 later requests to
the same version, each after the same pause (an idle server's threads wake up on a busy machine, too),
and of 30 back-to-back ones. With warm-up, the version replays
assets.extra/tf_serving_warmup_requests before it is AVAILABLE; without, the first client pays for
tracing the signature.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.serving_bench import machine_facts
from components.serving_check.check import ServerProcess

MODEL = "bench"
PAUSE_S = 0.5


def _request(port: int, version: int, body: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", f"/v1/models/{MODEL}/versions/{version}:predict", body)
    response = conn.getresponse()
    response.read()
    took = (time.perf_counter() - started) * 1000
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"version {version}: HTTP {response.status}")
    return took


def _wait_available(port: int, version: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"/v1/models/{MODEL}/versions/{version}")
            body = json.loads(conn.getresponse().read())
            if body.get("model_version_status", [{}])[0].get("state") == "AVAILABLE":
                return
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"version {version} not AVAILABLE within {timeout}s")


def measure(model_dir: Path, image: bytes, warmup: bool, swaps: int, work: Path) -> list[tuple[float, float, float]]:
    """(first request ms, median after the same pause ms, median back-to-back ms) per swap."""
    base = work / f"warm-{warmup}" / MODEL
    base.mkdir(parents=True)
    shutil.copytree(model_dir, base / "1")
    body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]})
    flags = ["--file_system_poll_wait_seconds", "0.1", f"--enable_model_warmup={str(warmup).lower()}"]
    rows = []
    with ServerProcess(MODEL, base, work / f"server-{warmup}.log", flags) as server:
        server.wait_available(300)
        for i in range(swaps):
            version = i + 2
            shutil.copytree(model_dir, base / f"{version}.tmp")
            os.rename(base / f"{version}.tmp", base / str(version))
            _wait_available(server.rest_port, version)
            time.sleep(PAUSE_S)
            first = _request(server.rest_port, version, body)
            paused = []
            for _ in range(10):
                time.sleep(PAUSE_S)
                paused.append(_request(server.rest_port, version, body))
            back_to_back = [_request(server.rest_port, version, body) for _ in range(30)]
            rows.append((first, statistics.median(paused), statistics.median(back_to_back)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.warmup_bench", description=__doc__.splitlines()[0])
    p.add_argument("--model_dir", help="A version directory with a warm-up file (default: the newest pushed "
                   "version under lenspipe-work/serving/lenspipe).")
    p.add_argument("--swaps", type=int, default=4, help="Version swaps per mode.")
    p.add_argument("--output", default="bench/results/warmup.md", help="Markdown report to write.")
    args = p.parse_args(argv)
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        base = Path("lenspipe-work/serving/lenspipe")
        versions = sorted((int(d.name) for d in base.iterdir() if d.name.isdigit()), reverse=True) if base.is_dir() else []
        if not versions:
            raise SystemExit("bench.warmup_bench: no pushed version under lenspipe-work/serving/lenspipe; "
                             "run `make run` first or pass --model_dir")
        model_dir = base / str(versions[0])
    if not (model_dir / "assets.extra" / "tf_serving_warmup_requests").is_file():
        raise SystemExit(f"bench.warmup_bench: {model_dir} has no assets.extra/tf_serving_warmup_requests")
    image = next(model_dir.parent.parent.parent.glob("data/*/*/*.png"), None)
    image_bytes = image.read_bytes() if image else _demo_png()
    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="lenspipe-warmup-bench-") as tmp:
        results = {warm: measure(model_dir, image_bytes, warm, args.swaps, Path(tmp)) for warm in (True, False)}
    facts.append(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines = ["# Warm-up: the first request after a version swap", "",
             f"Model: `{model_dir}`; one-image b64 PNG REST `:predict` to the new version {PAUSE_S:g} s after its "
             "status is AVAILABLE; then 10 requests each after the same pause, and 30 back to back (medians); "
             "a `lenspipe serve` subprocess, file_system_poll_wait_seconds 0.1.", "",
             "| --enable_model_warmup | swap | first request ms | median after pause ms | first / median | "
             "median back-to-back ms |", "|---|---:|---:|---:|---:|---:|"]
    for warm, rows in results.items():
        for i, (first, paused, hot) in enumerate(rows, start=1):
            lines.append(f"| {str(warm).lower()} | {i} | {first:.1f} | {paused:.1f} | {first / paused:.2f} | {hot:.1f} |")
    summary = {warm: statistics.median(f / m for f, m, _ in rows) for warm, rows in results.items()}
    lines += ["", f"- median of first / median-after-pause over the swaps, with warm-up: **{summary[True]:.2f}**; "
              f"without: **{summary[False]:.2f}**",
              "", "Command:", "", f"    python -m bench.warmup_bench {' '.join(argv or [])}".rstrip(), "",
              "Machine:", "", *[f"- {f}" for f in facts], ""]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _demo_png() -> bytes:
    import numpy as np
    import tensorflow as tf

    return tf.io.encode_png(np.random.RandomState(0).randint(0, 256, (8, 8, 1), dtype=np.uint8)).numpy()


if __name__ == "__main__":
    raise SystemExit(main())
