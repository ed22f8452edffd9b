"""What the request log costs, measured as CPU time so that other jobs on the machine hardly move it.

(request thread) `RequestLogger.offer_predict` per call, not sampled and sampled (the append to the
                 deque), as CPU time of the calling thread (time.thread_time) over many calls;
(server process) the CPU of its other threads (the sender's pickling and pipe writes, the reader of the
                 writer's counters) per logged image;
(writer process) its CPU (decoding, measuring, writing) per logged image, for the serving bench's
                 28x28 grey PNGs arriving 100 a second (rate 0.1 of ~1000 requests/s).
At rate R a request costs (non-sampled cost) + R x (the three per-image costs) of CPU on top of its own;
compare that with the server's CPU per image (`make bench-serving` reports it).
Writes bench/results/request-log.md (temp file + rename). Run: python -m bench.request_log_bench
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.serving_bench import _cpu_seconds, machine_facts
from bench import results_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.request_log_bench", description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200_000, help="offer_predict calls timed per case.")
    p.add_argument("--images", type=int, default=2000, help="Images logged for the writer's cost.")
    p.add_argument("--rate", type=float, default=0.1, help="Sample rate the summary line is for.")
    p.add_argument("--server-cpu-us", type=float, default=None,
                   help="The server's CPU us per image with logging off (from make bench-serving), for the estimate.")
    p.add_argument("--output", default="bench/results/request-log.md")
    args = p.parse_args(argv)
    import numpy as np

    from bench.serving_bench import write_images
    from lenspipe import features
    from serving.request_log import RequestLogger, RequestLogOptions
    from serving.request_log_writer import NICENESS
    from serving.servable import TensorSpec

    facts = machine_facts()
    specs = {features.IMAGE_BYTES_INPUT: TensorSpec(dtype=7, shape=(-1,))}
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = Path(tmp) / "images"
        image_dir.mkdir()
        write_images(image_dir, 64, 28)
        pngs = [p.read_bytes() for p in sorted(image_dir.glob("*.png"))]
        batches = [{features.IMAGE_BYTES_INPUT: np.array([png], dtype=object)} for png in pngs]

        # Request thread, not sampled: the random draw and the comparison.
        logger = RequestLogger(RequestLogOptions(str(Path(tmp) / "off"), sample_rate=1e-12))
        start = time.thread_time()
        for i in range(args.calls):
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
        not_sampled_us = (time.thread_time() - start) * 1e6 / args.calls
        logger.close()

        # Request thread, sampled: + the append to the bounded deque (one big enough never to drop).
        calls = min(args.calls, 20_000)
        logger = RequestLogger(RequestLogOptions(str(Path(tmp) / "on"), sample_rate=1.0, queue_size=calls + 1,
                                                 max_total_bytes=1 << 34, max_file_bytes=1 << 30),
                               rng=random.Random(0).random)
        start = time.thread_time()
        for i in range(calls):
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
        sampled_us = (time.thread_time() - start) * 1e6 / calls
        logger.close()

        # The rest of the server process (the sender thread's pickling and pipe writes, the reader
        # thread), and the writer process (decode, measure, tf.Example, write), per logged image. The
        # images arrive as the sender ships them at rate 0.1 of ~1000 requests/s: a frame a second.
        logger = RequestLogger(RequestLogOptions(str(Path(tmp) / "writer"), sample_rate=1.0, queue_size=args.images + 1,
                                                 max_total_bytes=1 << 34))
        if not logger.ready.wait(300):
            raise RuntimeError("the request log's writer process was not ready after 300 s")
        writer = logger.writer_pid
        per_second = 100
        start_server, start_writer, start_wall = time.process_time(), _cpu_seconds(writer), time.perf_counter()
        for i in range(args.images):
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
            if i % per_second == per_second - 1:
                time.sleep(1.0)
        logger.flush()
        wall = time.perf_counter() - start_wall
        writer_us = (_cpu_seconds(writer) - start_writer) * 1e6 / args.images
        # The request thread's own appends are in process_time too; take them out.
        server_us = (time.process_time() - start_server) * 1e6 / args.images - sampled_us
        logger.close()
        logged = int(logger.counts.value("logged"))

    in_server = not_sampled_us + args.rate * (sampled_us + server_us)
    per_request = in_server + args.rate * writer_us
    lines = ["# Request log cost (CPU time)", "",
             "28x28 grey PNG, one image per `:predict` request; CPU time, so the load from other jobs moves it "
             "far less than wall time.", "",
             "| what | CPU us |", "|---|---:|",
             f"| request thread, not sampled (random draw) | {not_sampled_us:.3f} |",
             f"| request thread, sampled (+ append to the bounded deque) | {sampled_us:.2f} |",
             f"| server process, other threads, per logged image (sender: pickle + pipe write; reader) | {server_us:.1f} |",
             f"| writer process, per logged image (decode with ImageExampleGen's code, measure, tf.Example, write) | {writer_us:.0f} |",
             "", f"- {logged} images logged, {per_second} a second ({wall:.1f} s)",
             f"- at rate {args.rate:g}: **{in_server:.1f} us** of CPU per request in the server process, and "
             f"{args.rate * writer_us:.1f} us in the writer process (nice {NICENESS}): "
             f"**{per_request:.1f} us** in all"]
    if args.server_cpu_us:
        lines.append(f"- against the server's {args.server_cpu_us:.0f} us of CPU per image with logging off: "
                     f"**{100 * per_request / args.server_cpu_us:.2f}%** more CPU per request, i.e. a CPU-bound "
                     f"server's throughput at {100 / (1 + per_request / args.server_cpu_us):.1f}% of logging off")
    command = " ".join(["python -m bench.request_log_bench", *(argv if argv is not None else sys.argv[1:])])
    facts.append(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines += ["", "Command:", "", f"    {command}", "", "Machine:", "", *[f"- {f}" for f in facts], ""]
    results_file.write(args.output, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
