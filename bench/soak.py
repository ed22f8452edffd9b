"""Soak test of `lenspipe serve`: sustained load while versions are pushed and rolled back.

C closed-loop clients (default 64) send one-image b64 PNG `:predict` requests over keep-alive HTTP/1.1
for the whole run. Every `--swap_every` seconds a new version is copied into the model base path
under a temp name and renamed, as the Pusher does; every `--rollback_every` seconds (half a swap
interval after a swap) `pipeline.deploy.rollback` takes the newest version out, as `lenspipe rollback`
does. Recorded: every failed request (non-200, bad body, connection error, timeout), latency
percentiles overall and per window, the server's RSS once a second (growth after the warm-up is
compared at quiet moments: just before each event, when one version is loaded), and how long each
swap/rollback took to be AVAILABLE. Writes bench/results/soak.md (temp file + rename).

Run: python -m bench.soak [--duration 600 --clients 64 ...]   (make soak)
The test suite runs the same code for 60 s (tests/serving/test_soak.py).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

from bench import results_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PUSH = REPO / "lenspipe-work" / "serving" / "lenspipe"
BATCHING = ("max_batch_size { value: 64 } batch_timeout_micros { value: 0 } "
            "max_enqueued_batches { value: 1000 } num_batch_threads { value: 1 }")
REQUEST_TIMEOUT_S = 30.0
QUIET_S = 5.0  # RSS "quiet" window: the seconds just before an event (one version loaded, no load in progress)


class ProtocolError(Exception):
    """The server's answer was not a well-formed HTTP/1.1 response with a Content-Length."""


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams (~4x cheaper per request than aiohttp's,
    so the load generator takes less CPU from the server it measures on a 2-core machine)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-formatted request; return (status, body). Reconnects when needed."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        try:
            status = int(head[9:12])
        except ValueError:
            raise ProtocolError(f"bad status line {head[:40]!r}") from None
        length, close = None, False
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ProtocolError(f"no Content-Length in {head[:200]!r}")
        body = await self._reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def format_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@dataclasses.dataclass
class Event:
    kind: str  # "swap" | "rollback"
    at_s: float  # seconds since the load started, when the file operation ran
    version: int  # the version that should serve afterwards
    gone: list[int]  # versions that should stop serving
    available_after_s: float | None = None  # seconds until `version` served alone; None if it never did


@dataclasses.dataclass
class SoakResult:
    """What a soak measured. `failed` counts every request that did not get a 200 :predict answer."""

    duration_s: float
    clients: int
    requests: int
    failed: int
    failures: list[str]  # the first few, with their reasons
    latency_ms: dict[str, float]
    windows: list[dict]
    rss: list[tuple[float, int]]  # (seconds, KiB)
    rss_baseline_kib: int | None
    rss_end_kib: int | None
    rss_max_after_warmup_kib: int | None
    events: list[Event]
    server_alive: bool
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]

    @property
    def rss_growth(self) -> float | None:
        if not self.rss_baseline_kib or self.rss_end_kib is None:
            return None
        return self.rss_end_kib / self.rss_baseline_kib - 1


def percentile(values, q: float) -> float:
    """Nearest-rank percentile of a sorted sequence (q in [0, 100])."""
    if not values:
        return float("nan")
    rank = max(1, -(-int(q * len(values)) // 100))
    return values[min(rank, len(values)) - 1]


def read_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_images(count: int, side: int = 28) -> list[bytes]:
    """Deterministic grayscale PNGs (digit-sized noise)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), mode="L").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


class Soak:
    """One soak run against a `python -m serving` subprocess (what `lenspipe serve` runs)."""

    def __init__(self, source: Path, base: Path, model_name: str, clients: int, duration: float,
                 swap_every: float, rollback_every: float, warmup: float, keep_versions: int,
                 images: list[bytes], log_path: Path, batching: str | None = BATCHING) -> None:
        self.source, self.base, self.model_name = source, base, model_name
        self.clients, self.duration, self.warmup = clients, duration, warmup
        self.swap_every, self.rollback_every, self.keep_versions = swap_every, rollback_every, keep_versions
        self.images, self.log_path, self.batching = images, log_path, batching
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.next_version = 1
        self.sent_at = array("d")
        self.latency = array("d")
        self.failed_at = array("d")
        self.failures: list[str] = []
        self.rss: list[tuple[float, int]] = []
        self.events: list[Event] = []
        self._t0 = 0.0

    # ---- the base path ------------------------------------------------------------------------

    def push(self) -> int:
        """Copy the source SavedModel in as the next version: temp name, then rename (as the Pusher)."""
        version = self.next_version
        self.next_version += 1
        tmp = self.base / f"{version}.tmp"
        shutil.copytree(self.source, tmp)
        os.rename(tmp, self.base / str(version))
        return version

    def prune(self) -> None:
        """Keep the newest `keep_versions` versions and the latest rollback on disk (bounded disk use)."""
        from pipeline import deploy

        for version in deploy.integer_versions(self.base)[:-self.keep_versions]:
            shutil.rmtree(self.base / str(version))
        for _, _, path in deploy.rolled_back_dirs(self.base)[:-1]:
            shutil.rmtree(path)

    # ---- the server -----------------------------------------------------------------------------

    def start_server(self, tmp: Path) -> None:
        flags = [f"--model_name={self.model_name}", f"--model_base_path={self.base}", f"--rest_api_port={self.port}",
                 "--port=0", "--file_system_poll_wait_seconds=1"]
        if self.batching:
            config = tmp / "batching.config"
            config.write_text(self.batching)
            flags += ["--enable_batching", f"--batching_parameters_file={config}"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "serving", *flags], cwd=REPO, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop_server(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines() if self.log_path.exists() else []
        return " | ".join(text[-lines:])

    async def states(self, conn: HttpConnection) -> dict[int, str]:
        status, body = await conn.request(format_request("GET", f"/v1/models/{self.model_name}"))
        if status != 200:
            return {}
        return {int(v["version"]): v["state"] for v in json.loads(body)["model_version_status"]}

    async def wait_ready(self, limit: float = 300.0) -> None:
        deadline = time.monotonic() + limit
        conn = HttpConnection("127.0.0.1", self.port)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}) before it was ready: {self.log_tail()}")
            try:
                if "AVAILABLE" in (await self.states(conn)).values():
                    conn.close()
                    return
            except (OSError, asyncio.IncompleteReadError, ProtocolError):
                conn.close()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {limit:.0f}s: {self.log_tail()}")

    # ---- load, events, RSS ----------------------------------------------------------------------

    def _fail(self, t: float, reason: str) -> None:
        self.failed_at.append(t)
        if len(self.failures) < 20:
            self.failures.append(f"t={t:.1f}s {reason}")

    async def client(self, index: int, stop_at: float) -> None:
        path = f"/v1/models/{self.model_name}:predict"
        bodies = [format_request("POST", path, json.dumps({"instances": [{"b64": base64.b64encode(i).decode()}]})
                                 .encode()) for i in self.images]
        conn = HttpConnection("127.0.0.1", self.port)
        n = index
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                break
            t = sent - self._t0
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, body = await conn.request(bodies[n % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, TimeoutError) as exc:
                self._fail(t, f"{type(exc).__name__}: {exc}")
                conn.close()
                await asyncio.sleep(0.05)
                continue
            if status != 200 or not body.startswith(b'{"predictions":'):
                self._fail(t, f"HTTP {status}: {body[:200]!r}")
            else:
                self.sent_at.append(t)
                self.latency.append(time.perf_counter() - sent)
            n += self.clients
        conn.close()

    async def sample_rss(self, stop_at: float) -> None:
        assert self.proc is not None
        while time.perf_counter() < stop_at:
            rss = read_rss_kib(self.proc.pid)
            if rss is not None:
                self.rss.append((time.perf_counter() - self._t0, rss))
            await asyncio.sleep(1.0)

    async def wait_switch(self, event: Event, limit: float) -> None:
        """Record how long until `event.version` is AVAILABLE and every `event.gone` version no longer is."""
        conn = HttpConnection("127.0.0.1", self.port)
        deadline = time.perf_counter() + limit
        try:
            while time.perf_counter() < deadline:
                try:
                    states = await self.states(conn)
                except (OSError, asyncio.IncompleteReadError, ProtocolError):
                    conn.close()
                    states = {}
                if states.get(event.version) == "AVAILABLE" and \
                        all(states.get(v) != "AVAILABLE" for v in event.gone):
                    event.available_after_s = time.perf_counter() - self._t0 - event.at_s
                    return
                await asyncio.sleep(0.2)
        finally:
            conn.close()

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds, kind) of every event: a swap each swap_every, a rollback each rollback_every,
        half a swap interval after a swap (so each rollback takes out a version that has served)."""
        events = [(k * self.swap_every, "swap") for k in range(1, int(self.duration / self.swap_every) + 1)
                  if k * self.swap_every < self.duration]
        if self.rollback_every > 0:
            events += [(k * self.rollback_every - self.swap_every / 2, "rollback")
                       for k in range(1, int(self.duration / self.rollback_every) + 1)
                       if k * self.rollback_every - self.swap_every / 2 < self.duration]
        return sorted(events)

    async def events_loop(self, switch_tasks: list[asyncio.Task]) -> None:
        from pipeline import deploy

        schedule = self.schedule()
        for i, (at, kind) in enumerate(schedule):
            await asyncio.sleep(max(0.0, self._t0 + at - time.perf_counter()))
            now = time.perf_counter() - self._t0
            before = deploy.integer_versions(self.base)
            if kind == "swap":
                version = await asyncio.to_thread(self.push)
                event = Event("swap", now, version, [v for v in before if v != version])
            else:
                to, moved, _ = await asyncio.to_thread(deploy.rollback, self.base)
                event = Event("rollback", now, to, moved)
            self.events.append(event)
            print(f"soak: t={now:.0f}s {kind} -> version {event.version}", file=sys.stderr, flush=True)
            limit = (schedule[i + 1][0] if i + 1 < len(schedule) else self.duration) - at - 0.5  # until the next event
            switch_tasks.append(asyncio.create_task(self._switch_then_prune(event, limit)))

    async def _switch_then_prune(self, event: Event, limit: float) -> None:
        await self.wait_switch(event, limit)
        if event.available_after_s is not None:
            await asyncio.to_thread(self.prune)  # only versions the server has already unloaded

    async def run_async(self, tmp: Path) -> SoakResult:
        self.base.mkdir(parents=True, exist_ok=True)
        from pipeline import deploy

        self.next_version = max([0, *deploy.integer_versions(self.base),
                                 *(v for v, _, _ in deploy.rolled_back_dirs(self.base))]) + 1
        self.push()
        self.start_server(tmp)
        await self.wait_ready()
        load_start = os.getloadavg()
        self._t0 = time.perf_counter()
        stop_at = self._t0 + self.duration
        switch_tasks: list[asyncio.Task] = []
        clients = [asyncio.create_task(self.client(i, stop_at)) for i in range(self.clients)]
        sampler = asyncio.create_task(self.sample_rss(stop_at))
        events = asyncio.create_task(self.events_loop(switch_tasks))
        await asyncio.gather(*clients, sampler)
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await events
        await asyncio.gather(*switch_tasks, return_exceptions=True)
        alive = self.proc is not None and self.proc.poll() is None
        if alive:
            conn = HttpConnection("127.0.0.1", self.port)
            try:
                status, _ = await conn.request(format_request("GET", "/healthz"))
                alive = status == 200
            except (OSError, asyncio.IncompleteReadError, ProtocolError):
                alive = False
            finally:
                conn.close()
        return self._result(alive, load_start, os.getloadavg())

    def _quiet_rss(self, before: float) -> int | None:
        """Median RSS over the QUIET_S seconds before `before` (None without samples there)."""
        values = sorted(r for t, r in self.rss if before - QUIET_S <= t < before)
        return values[len(values) // 2] if values else None

    def _result(self, alive: bool, load_start, load_end) -> SoakResult:
        latencies = sorted(self.latency)
        ms = {f"p{q:g}": percentile(latencies, q) * 1000 for q in (50, 90, 99, 99.9)}
        ms["max"] = latencies[-1] * 1000 if latencies else float("nan")
        window = self.swap_every
        windows = []
        failed = sorted(self.failed_at)
        for k in range(int(-(-self.duration // window))):
            lo, hi = k * window, min((k + 1) * window, self.duration)
            in_window = sorted(lat for t, lat in zip(self.sent_at, self.latency) if lo <= t < hi)
            rss = [r for t, r in self.rss if lo <= t < hi]
            windows.append({"from_s": lo, "to_s": hi, "requests": len(in_window),
                            "failed": sum(1 for t in failed if lo <= t < hi),
                            "rps": len(in_window) / (hi - lo) if hi > lo else 0.0,
                            "p50_ms": percentile(in_window, 50) * 1000, "p99_ms": percentile(in_window, 99) * 1000,
                            "max_ms": in_window[-1] * 1000 if in_window else float("nan"),
                            "rss_max_mib": max(rss) / 1024 if rss else float("nan"),
                            "events": ", ".join(f"{e.kind} {e.version}" for e in self.events if lo <= e.at_s < hi)})
        quiet_points = [at for at, _ in self.schedule() if at >= self.warmup] + [self.duration]
        quiet = [q for q in (self._quiet_rss(p) for p in quiet_points) if q is not None]
        after = [r for t, r in self.rss if t >= self.warmup]
        return SoakResult(
            duration_s=self.duration, clients=self.clients, requests=len(self.latency) + len(self.failed_at),
            failed=len(self.failed_at), failures=list(self.failures), latency_ms=ms, windows=windows, rss=self.rss,
            rss_baseline_kib=quiet[0] if quiet else None, rss_end_kib=quiet[-1] if quiet else None,
            rss_max_after_warmup_kib=max(after) if after else None, events=self.events, server_alive=alive,
            load_start=load_start, load_end=load_end)


def run(source: Path, workdir: Path, *, model_name: str = "soak", clients: int = 64, duration: float = 600,
        swap_every: float = 30, rollback_every: float = 120, warmup: float = 120, keep_versions: int = 3,
        images: int = 64, batching: str | None = BATCHING) -> SoakResult:
    """Run one soak (blocking) with the server's files under `workdir`; the server is stopped after."""
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(source, workdir / "base" / model_name, model_name, clients, duration, swap_every, rollback_every,
                warmup, keep_versions, png_images(images), workdir / "server.log", batching)
    try:
        return asyncio.run(soak.run_async(workdir))
    finally:
        soak.stop_server()


def render(result: SoakResult, command: str, model: str, generator_note: str, machine: list[str]) -> str:
    growth = result.rss_growth
    kib = lambda v: f"{v / 1024:.1f} MiB" if v is not None else "n/a"  # noqa: E731
    ok = result.failed == 0 and result.server_alive and growth is not None and growth <= 0.05 \
        and all(e.available_after_s is not None for e in result.events)
    lines = [
        "# Soak: `lenspipe serve` under load while versions are pushed and rolled back", "",
        f"{result.duration_s:g} s of closed-loop load from {result.clients} concurrent keep-alive clients (one-image "
        f"b64 PNG `:predict`), a new version copied in every swap interval (temp name + rename, as the Pusher) and "
        f"`pipeline.deploy.rollback` (as `lenspipe rollback`) every rollback interval; model `{model}`.", "",
        f"- **verdict: {'PASS' if ok else 'FAIL'}** (zero failed requests, server alive, every swap/rollback "
        "served, RSS growth after warm-up <= 5%)",
        f"- requests: **{result.requests}**, failed: **{result.failed}**, "
        f"throughput {result.requests / result.duration_s:.0f} req/s",
        f"- latency of successful requests: p50 **{result.latency_ms['p50']:.1f} ms**, p90 "
        f"{result.latency_ms['p90']:.1f} ms, p99 **{result.latency_ms['p99']:.1f} ms**, p99.9 "
        f"{result.latency_ms['p99.9']:.1f} ms, max {result.latency_ms['max']:.1f} ms",
        f"- server RSS (median of the {QUIET_S:g} s before each event after the warm-up, one version loaded): "
        f"{kib(result.rss_baseline_kib)} after warm-up -> {kib(result.rss_end_kib)} at the end: growth "
        f"**{growth * 100:+.1f}%**" if growth is not None else "- server RSS: not measured",
        f"- server RSS peak after warm-up (two versions loaded during a swap): {kib(result.rss_max_after_warmup_kib)}",
        f"- server alive at the end (process running, `/healthz` 200): **{result.server_alive}**",
        f"- swaps: {sum(e.kind == 'swap' for e in result.events)}, rollbacks: "
        f"{sum(e.kind == 'rollback' for e in result.events)}; every one served: "
        f"**{all(e.available_after_s is not None for e in result.events)}**",
        f"- {generator_note}", ""]
    if result.failures:
        lines += ["First failures:", "", *[f"- `{f}`" for f in result.failures], ""]
    lines += ["Per window:", "", "| window s | requests | failed | req/s | p50 ms | p99 ms | max ms | RSS max MiB | events |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for w in result.windows:
        lines.append(f"| {w['from_s']:g}-{w['to_s']:g} | {w['requests']} | {w['failed']} | {w['rps']:.0f} | "
                     f"{w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['max_ms']:.1f} | {w['rss_max_mib']:.1f} | {w['events']} |")
    lines += ["", "Events (seconds after the load started; `served after` = until the status API showed the new "
              "version AVAILABLE and the old one no longer AVAILABLE):", "",
              "| at s | event | serves | taken out | served after s |", "|---:|---|---:|---|---:|"]
    for e in result.events:
        after = f"{e.available_after_s:.1f}" if e.available_after_s is not None else "**never**"
        lines.append(f"| {e.at_s:.1f} | {e.kind} | {e.version} | {', '.join(map(str, e.gone)) or '-'} | {after} |")
    lines += ["", "Command:", "", f"    {command}", "", "Machine:", "", *[f"- {m}" for m in machine],
              f"- load average (1, 5, 15 min) when the load started: {', '.join(f'{x:.2f}' for x in result.load_start)}; "
              f"at the end: {', '.join(f'{x:.2f}' for x in result.load_end)}", ""]
    return "\n".join(lines)


def _latest_push(base: Path) -> Path | None:
    versions = sorted((int(p.name), p) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()) \
        if base.is_dir() else []
    return versions[-1][1] if versions else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=600, help="Seconds of load (default 10 minutes).")
    p.add_argument("--clients", type=int, default=64, help="Concurrent closed-loop clients.")
    p.add_argument("--swap_every", type=float, default=30, help="Push a new version this often (s).")
    p.add_argument("--rollback_every", type=float, default=120, help="Roll back this often (s); 0: never.")
    p.add_argument("--warmup", type=float, default=120, help="RSS growth is measured from the end of this (s).")
    p.add_argument("--model_source", help="SavedModel directory pushed as every new version (default: the latest "
                   "version `make run` pushed to lenspipe-work/serving/lenspipe, else the benchmark's demo CNN).")
    p.add_argument("--output", default="bench/results/soak.md", help="Markdown report to write.")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.clients < 1 or args.swap_every <= 2 or args.rollback_every < 0 \
            or not 0 <= args.warmup < args.duration:
        print("soak: --duration > 0, --clients >= 1, --swap_every > 2, --rollback_every >= 0 and "
              "0 <= --warmup < --duration are required", file=sys.stderr)
        return 2
    command = " ".join(["python -m bench.soak", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    from bench.serving_bench import machine_facts

    machine = [f for f in machine_facts() if not f.startswith("load average")]
    with tempfile.TemporaryDirectory(prefix="lenspipe-soak-") as tmp:
        if args.model_source:
            source = Path(args.model_source)
            if not (source / "saved_model.pb").is_file():
                print(f"soak: --model_source {source}: no saved_model.pb there; point it at a SavedModel directory",
                      file=sys.stderr)
                return 2
            model = str(source)
        elif (source := _latest_push(DEFAULT_PUSH)) is not None:  # type: ignore[assignment]
            model = f"the pipeline's push {source}"
        else:
            from bench.serving_demo_model import make_demo_model

            source = make_demo_model(Path(tmp) / "demo", 1)
            model = "the benchmark's demo CNN (bench/serving_demo_model.py: 32x32x3, random weights)"
        result = run(source, Path(tmp) / "run", clients=args.clients, duration=args.duration,
                     swap_every=args.swap_every, rollback_every=args.rollback_every, warmup=args.warmup)
    note = ("Load generator: the soak driver's own asyncio HTTP/1.1 keep-alive clients (bench/soak.py, one Python "
            "process on the same 2 cores as the server; wrk cannot check each answer's body or time the swaps).")
    report = render(result, command, model, note, machine)
    results_file.write(args.output, report)
    print(report)
    return 0 if result.failed == 0 and result.server_alive else 1


if __name__ == "__main__":
    sys.exit(main())
