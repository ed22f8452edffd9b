"""Closed-loop load generator (a separate process from any server): C concurrent clients each send
one-image b64 PNG `:predict` requests back to back for a fixed time and record every latency.

Run: python -m bench.serving_loadgen URL CONCURRENCY SECONDS IMAGE_DIR -> one JSON line on stdout.
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import aiohttp


async def run(url: str, concurrency: int, seconds: float, images: list[bytes], warmup: float = 1.0) -> dict:
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(i).decode()}]}).encode() for i in images]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        n = index
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            async with session.post(url, data=bodies[n % len(bodies)],
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                ok = response.status == 200
            done = time.perf_counter()
            if sent >= measure_from:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors += 1
            n += concurrency

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "images_per_s": len(latencies) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def main() -> None:
    url, concurrency, seconds, image_dir = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    images = [p.read_bytes() for p in sorted(image_dir.glob("*.png"))]
    print(json.dumps(asyncio.run(run(url, concurrency, seconds, images))))


if __name__ == "__main__":
    main()
