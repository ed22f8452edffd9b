"""Serving benchmark: `lenspipe serve` vs the in-process limit vs a naive one-call-per-request server.

For each concurrency (default 1, 8, 32, 64) a load generator process sends one-image b64 PNG
`:predict` requests for a fixed time and reports images/s and p50/p99 latency against
  (server) `python -m serving` with dynamic batching, as `lenspipe serve` runs it;
  (naive)  bench/naive_server.py: one model call per request, like the web-framework tutorials;
  (limit)  in-process calls of the same SavedModel signature with a batch of `concurrency` images
           (no HTTP, no JSON): the most the model itself can do on this machine;
  (logged) the same server with `--request_log_dir` at `--request-log-rate` (default 0.1), measured
           right before or after (server) in each round (the order alternates) for an A/B of the log's cost.
Every server and the load generator run in separate processes. Writes bench/results/serving.md
(temp file + rename). Run: python -m bench.serving_bench [--model_base_path DIR] (make bench-serving).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import results_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE = "lenspipe-work/serving/lenspipe"
# What TF Serving's batching guide suggests for CPU serving, measured on this 2-core machine:
# batch_timeout_micros 0 batches whatever queued while the thread was busy (no added latency at
# concurrency 1, batches of 16-32 at concurrency 32); max_batch_size covers the highest concurrency.
# One batch thread, not num_cores: a second one split the same requests into smaller batches and
# competed with the HTTP loop for the GIL and with TF's intra-op pool for the cores (it measured the
# same or lower in A/B runs).
BATCHING = ("max_batch_size { value: 64 } batch_timeout_micros { value: 0 } "
            "max_enqueued_batches { value: 1000 } num_batch_threads { value: 1 }")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latest_version(base: Path) -> int | None:
    """The highest integer version directory holding saved_model.pb, or None."""
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()] \
        if base.is_dir() else []
    return max(versions) if versions else None


def write_images(directory: Path, count: int, side: int) -> None:
    """Deterministic grayscale PNGs (digit-sized noise) for the requests."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), mode="L").save(buffer, format="PNG")
        (directory / f"{i:04d}.png").write_bytes(buffer.getvalue())


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def _wait_ready(url: str, process: subprocess.Popen, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready after {limit:.0f}s")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


WRK_SCRIPT = REPO / "bench" / "serving_wrk.lua"
WARMUP_SECONDS = 1.0


def write_bodies(image_dir: Path, path: Path) -> None:
    """One `:predict` body per line (one b64 PNG instance each), the same bytes every generator sends."""
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()}]})
              for p in sorted(image_dir.glob("*.png"))]
    path.write_text("\n".join(bodies) + "\n")


def _wrk(url: str, concurrency: int, seconds: float, bodies: Path) -> dict:
    # One wrk thread: it is C on epoll and keeps up with 64 connections while taking the least CPU
    # from the server under test. Durations are whole seconds for wrk.
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency",
               "-s", str(WRK_SCRIPT), url, "--", str(bodies)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")
    return {"concurrency": concurrency, **json.loads(lines[-1])}


def _load(url: str, concurrency: int, seconds: float, image_dir: Path, bodies: Path, generator: str) -> dict:
    """Closed-loop load at `concurrency`: a warm-up (not measured), then `seconds` measured."""
    if generator == "wrk":
        _wrk(url, concurrency, WARMUP_SECONDS, bodies)  # same warm-up for every system
        return _wrk(url, concurrency, seconds, bodies)
    out = subprocess.run([sys.executable, "-m", "bench.serving_loadgen", url, str(concurrency), str(seconds),
                          str(image_dir)], cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def limit_main(base: str, image_dir: str) -> None:
    """(subprocess) Serve limit measurements: for each stdin line "CONCURRENCY SECONDS", call
    serving_default in-process with a batch of CONCURRENCY images for SECONDS; print one JSON line."""
    import tensorflow as tf

    version = latest_version(Path(base))
    fn = tf.saved_model.load(str(Path(base) / str(version))).signatures["serving_default"]
    images = [p.read_bytes() for p in sorted(Path(image_dir).glob("*.png"))]
    import gc
    gc.collect()
    gc.freeze()  # as the server does after a load: no full-collection stalls in the limit either
    print("ready", flush=True)
    for line in sys.stdin:
        concurrency, seconds = int(line.split()[0]), float(line.split()[1])
        batch = tf.constant([images[i % len(images)] for i in range(concurrency)])
        fn(image_bytes=batch)  # warm up this batch shape
        latencies = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            sent = time.perf_counter()
            fn(image_bytes=batch)["probabilities"].numpy()
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - start
        latencies.sort()
        print(json.dumps({"concurrency": concurrency, "requests": len(latencies) * concurrency, "errors": 0,
                          "images_per_s": len(latencies) * concurrency / elapsed,
                          "p50_ms": latencies[len(latencies) // 2] * 1000,
                          "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000}),
              flush=True)


def _median_point(points: list[dict]) -> dict:
    """The round with the median throughput (its latencies come with it, so the row is one real run)."""
    ordered = sorted(points, key=lambda p: p["images_per_s"])
    return {**ordered[len(ordered) // 2], "errors": sum(p["errors"] for p in points)}


def machine_facts() -> list[str]:
    cpu = results_file.cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [f"CPU: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU",
            f"Python {platform.python_version()} on {platform.system()} {platform.release()}",
            f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def _generator_lines(generator: str) -> list[str]:
    if generator == "wrk":
        return ["- Load generator: **wrk** (`wrk -t1 -cC --latency -s bench/serving_wrk.lua`, one thread, C "
                "connections, the same request bodies for both servers), a separate process on the same cores; "
                "the limit has no load generator to share with."]
    return ["- Load generator: **aiohttp fallback** (`bench/serving_loadgen.py`; wrk was not installed). It is a "
            "Python process on the same cores and takes a large share of the CPU the servers need, so both "
            "server columns are understated relative to the limit. Install wrk (`apt-get install -y wrk`) and "
            "re-run for the real measurement."]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process `pid` (all its threads) and of its live children.

    The children count: a logging server's request log writer is a child process.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # a child that exited since its parent listed it
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(int(child)) for child in children)


def _measure_with_cpu(url: str, concurrency: int, seconds: float, bodies: Path, pid: int) -> dict:
    """A wrk point plus the server's CPU microseconds per answered image during the measured part.

    CPU per image is what a CPU-bound server's throughput is inversely proportional to, and unlike
    images/s it hardly moves when other jobs take the cores: the A/B of the request log's cost uses it.
    """
    _wrk(url, concurrency, WARMUP_SECONDS, bodies)
    before = _cpu_seconds(pid)
    point = _wrk(url, concurrency, seconds, bodies)
    point["cpu_us_per_image"] = (_cpu_seconds(pid) - before) * 1e6 / max(1, point["ok"])
    return point


def _pairs(rounds: dict[str, dict[int, list[dict]]], level: int, key: str = "images_per_s") -> list[float]:
    """Per round, logged / server `key` (the two were measured back to back)."""
    return [b[key] / a[key] for a, b in zip(rounds["server"][level], rounds["logged"][level])]


def render_logging(rounds: dict[str, dict[int, list[dict]]], levels: list[int], rate: float,
                   logged: dict[str, float]) -> list[str]:
    """The request-log A/B table: medians of each side and the median of the per-round ratios."""
    import statistics

    rows = [f"## Request logging on (`--request_log_sample_rate {rate:g}`) vs off", "",
            "Both servers run side by side; in every round each concurrency is measured on one right after the "
            "other (order alternating by round), so load from other jobs hits both alike. The ratio is the "
            "median over rounds of logged/off measured back to back.", "",
            "CPU us/img is the server process's CPU time (all threads) per answered image during the measured "
            "seconds; a CPU-bound server's throughput is inversely proportional to it, and it moves far less "
            "than images/s when other jobs share the cores. The CPU ratio is the median of the per-round "
            "on/off ratios.", "",
            "| concurrency | off img/s | on img/s | img/s on/off (median of rounds) | per-round img/s on/off "
            "| CPU us/img off | CPU us/img on | CPU on/off (median of rounds) | per-round CPU on/off |",
            "|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for level in levels:
        off, on = _median_point(rounds["server"][level]), _median_point(rounds["logged"][level])
        ratios = _pairs(rounds, level)
        has_cpu = all("cpu_us_per_image" in p for p in rounds["server"][level] + rounds["logged"][level])
        cpu = _pairs(rounds, level, "cpu_us_per_image") if has_cpu else []
        cpu_off = statistics.median(p["cpu_us_per_image"] for p in rounds["server"][level]) if has_cpu else float("nan")
        cpu_on = statistics.median(p["cpu_us_per_image"] for p in rounds["logged"][level]) if has_cpu else float("nan")
        rows.append(f"| {level} | {off['images_per_s']:.0f} | {on['images_per_s']:.0f} | "
                    f"**{statistics.median(ratios):.3f}** | {', '.join(f'{r:.3f}' for r in ratios)} | "
                    f"{cpu_off:.0f} | {cpu_on:.0f} | **{statistics.median(cpu) if cpu else float('nan'):.3f}** | "
                    f"{', '.join(f'{r:.3f}' for r in cpu)} |")
    rows += ["", "Request log counters of the logging server at the end (its Prometheus endpoint): " +
             (", ".join(f"{k} {v:.0f}" for k, v in sorted(logged.items())) or "none"), ""]
    return rows


def _prometheus_family(url: str, family: str) -> dict[str, float]:
    """label value -> value of one single-label family on a Prometheus page ({} if unreachable)."""
    values = {}
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(family + "{"):
                    label = line.split('="', 1)[1].split('"', 1)[0]
                    values[label] = float(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return values


def _wait_writer_ready(url: str, limit: float = 300.0) -> None:
    """Until the logging server's writer process has warmed up (imported TensorFlow, decoded once).

    It starts at a low CPU priority beside a server that is loading its model; measuring before it is
    ready would charge its one-off start-up (seconds of imports) to the requests of the first rounds.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if _prometheus_family(url, ":lenspipe:serving:request_log:writer_processes").get("ready"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the request log's writer process was not ready after {limit:.0f}s")


def render(results: dict[str, list[dict]], levels: list[int], command: str, facts: list[str], model: str,
           seconds: float, batching: str, rounds: int, generator: str = "wrk",
           logging_rows: list[str] | None = None) -> str:
    rows = ["| concurrency | lenspipe serve img/s | p50 ms | p99 ms | limit img/s | p50 ms | p99 ms "
            "| naive img/s | p50 ms | p99 ms | errors |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, level in enumerate(levels):
        s, l, n = results["server"][i], results["limit"][i], results["naive"][i]
        rows.append(f"| {level} | {s['images_per_s']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
                    f"| {l['images_per_s']:.0f} | {l['p50_ms']:.1f} | {l['p99_ms']:.1f} "
                    f"| {n['images_per_s']:.0f} | {n['p50_ms']:.1f} | {n['p99_ms']:.1f} "
                    f"| {s['errors'] + n['errors']} |")
    ratio_lines = []
    if 32 in levels:
        i = levels.index(32)
        server, limit, naive = (results[k][i]["images_per_s"] for k in ("server", "limit", "naive"))
        ratio_lines = [f"- server / limit at concurrency 32: **{server / limit:.2f}** (target >= 0.7: "
                       f"{'met' if server / limit >= 0.7 else 'NOT met'})",
                       f"- server / naive at concurrency 32: **{server / naive:.2f}** (target >= 5: "
                       f"{'met' if server / naive >= 5 else 'NOT met'})"]
    return "\n".join([
        "# Serving benchmark", "",
        f"One-image b64 PNG `:predict` requests, closed loop, {seconds:g} s per point after a 1 s warm-up, "
        f"{rounds} interleaved rounds (each row is the round with the median throughput); model `{model}`.",
        "- **lenspipe serve**: `python -m serving --enable_batching` with batching parameters "
        f"`{batching}`.",
        "- **limit**: in-process calls of the same `serving_default` signature with a batch of "
        "`concurrency` images (no HTTP, no JSON); latency is per call.",
        "- **naive**: `bench/naive_server.py`, one model call per request (the web-framework tutorial pattern).",
        *_generator_lines(generator), "",
        *rows, "", *ratio_lines, "", *(logging_rows or []), "Command:", "", f"    {command}", "", "Machine:", "",
        *[f"- {fact}" for fact in facts], ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serving_bench", description=__doc__.splitlines()[0])
    p.add_argument("--model_base_path", default=DEFAULT_BASE, help="TF Serving base path to serve.")
    p.add_argument("--model_name", default="lenspipe", help="Model name in the URL.")
    p.add_argument("--concurrency", default="1,8,32,64", help="Comma-separated client counts.")
    p.add_argument("--seconds", type=float, default=4.0, help="Measured seconds per point (bounded).")
    p.add_argument("--images", type=int, default=64, help="Distinct request images.")
    p.add_argument("--image_side", type=int, default=28, help="Request PNG side in pixels.")
    p.add_argument("--batching", default=BATCHING, help="BatchingParameters text proto for the server.")
    p.add_argument("--output", default="bench/results/serving.md", help="Markdown report to write.")
    p.add_argument("--make-demo-model", metavar="DIR", help="Write a demo model version to DIR and exit.")
    p.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; each point reports the median.")
    p.add_argument("--generator", choices=("auto", "wrk", "aiohttp"), default="auto",
                   help="HTTP load generator: wrk (the default when installed) or the aiohttp fallback.")
    p.add_argument("--request-log-rate", type=float, default=0.1,
                   help="Also run a server with --request_log_dir at this sample rate (0: no logging row).")
    p.add_argument("--_limit", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._limit:
        limit_main(args._limit[0], args._limit[1])
        return 0
    if args.make_demo_model:
        from bench.serving_demo_model import make_demo_model
        base = Path(args.make_demo_model)
        path = make_demo_model(base, (latest_version(base) or 0) + 1)
        print(f"demo model written to {path}")
        return 0
    base = Path(args.model_base_path).resolve()
    if latest_version(base) is None:
        print(f"serving_bench: no model version (an integer directory with saved_model.pb) under {base}.\n"
              "Run `make run` first to train and push one, or point --model_base_path at a TF Serving base path "
              "(`python -m bench.serving_bench --make-demo-model DIR` writes a demo model).", file=sys.stderr)
        return 2
    if not 0 < args.seconds <= 30 or not 1 <= args.rounds <= 20:
        print("serving_bench: --seconds must be in (0, 30] and --rounds in [1, 20]", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    generator = args.generator
    if generator in ("auto", "wrk") and shutil.which("wrk") is None:
        if generator == "wrk":
            print("serving_bench: --generator wrk but wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 2
        print("serving_bench: wrk not found, falling back to the aiohttp load generator (a Python process that "
              "takes CPU from the servers). Install wrk for the real measurement: "
              "`sudo apt-get install -y wrk`.", file=sys.stderr)
        generator = "aiohttp"
    elif generator == "auto":
        generator = "wrk"
    command = " ".join(["python -m bench.serving_bench", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    facts = machine_facts()
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = Path(tmp) / "images"
        image_dir.mkdir()
        write_images(image_dir, args.images, args.image_side)
        bodies = Path(tmp) / "bodies.jsonl"
        write_bodies(image_dir, bodies)
        batching = Path(tmp) / "batching.config"
        batching.write_text(args.batching)
        # All three run side by side and are measured in interleaved rounds (server, naive, limit at
        # each concurrency), so load from other jobs on the machine hits all three alike.
        server_port, naive_port = _free_port(), _free_port()
        processes = [
            subprocess.Popen([sys.executable, "-m", "serving", f"--model_name={args.model_name}",
                              f"--model_base_path={base}", f"--rest_api_port={server_port}", "--port=0",
                              "--enable_batching", f"--batching_parameters_file={batching}"],
                             cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-m", "bench.naive_server", str(base), str(naive_port)],
                             cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        monitoring = Path(tmp) / "monitoring.config"
        monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
        log_port = _free_port()
        if args.request_log_rate > 0:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "serving", f"--model_name={args.model_name}", f"--model_base_path={base}",
                 f"--rest_api_port={log_port}", "--port=0", "--enable_batching",
                 f"--batching_parameters_file={batching}", f"--monitoring_config_file={monitoring}",
                 f"--request_log_dir={Path(tmp) / 'request_log'}", f"--request_log_sample_rate={args.request_log_rate}"],
                cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        limit = subprocess.Popen([sys.executable, "-m", "bench.serving_bench", "--_limit", str(base), str(image_dir)],
                                 cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        try:
            _wait_ready(f"http://127.0.0.1:{server_port}/readyz", processes[0])
            _wait_ready(f"http://127.0.0.1:{naive_port}/readyz", processes[1])
            if args.request_log_rate > 0:
                _wait_ready(f"http://127.0.0.1:{log_port}/readyz", processes[2])
                _wait_writer_ready(f"http://127.0.0.1:{log_port}/metrics")
            if limit.stdout.readline().strip() != "ready":
                raise RuntimeError("limit worker failed to start")
            rounds: dict[str, dict[int, list[dict]]] = {k: {c: [] for c in levels}
                                                        for k in ("server", "naive", "limit", "logged")}
            for r in range(args.rounds):
                for c in levels:
                    print(f"round {r + 1}/{args.rounds}, concurrency {c}", file=sys.stderr)
                    pair = [("server", server_port, processes[0])] + (
                        [("logged", log_port, processes[2])] if args.request_log_rate > 0 else [])
                    for key, port, process in (pair if r % 2 == 0 else pair[::-1]):
                        url = f"http://127.0.0.1:{port}/v1/models/{args.model_name}:predict"
                        rounds[key][c].append(
                            _measure_with_cpu(url, c, args.seconds, bodies, process.pid) if generator == "wrk"
                            else _load(url, c, args.seconds, image_dir, bodies, generator))
                    rounds["naive"][c].append(_load(f"http://127.0.0.1:{naive_port}/v1/models/{args.model_name}:predict",
                                                    c, args.seconds, image_dir, bodies, generator))
                    limit.stdin.write(f"{c} {args.seconds}\n")
                    limit.stdin.flush()
                    rounds["limit"][c].append(json.loads(limit.stdout.readline()))
            results = {k: [_median_point(v[c]) for c in levels] for k, v in rounds.items() if k != "logged"}
            logging_rows = render_logging(rounds, levels, args.request_log_rate, _prometheus_family(
                f"http://127.0.0.1:{log_port}/metrics", ":lenspipe:serving:request_log:count")) if args.request_log_rate > 0 else []
        finally:
            limit.stdin.close()
            limit.wait(60)
            for process in processes:
                _stop(process)
    facts.append(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report = render(results, levels, command, facts, args.model_name, args.seconds, args.batching, args.rounds,
                    generator, logging_rows)
    results_file.write(args.output, report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
