"""What the request log costs, measured as CPU time so that other jobs on the machine hardly move it.

(request thread) `RequestLogger.offer_predict` per call, not sampled and sampled (the put on the queue),
                 as CPU time of the calling thread (time.thread_time) over many calls;
(writer)         CPU time of the whole process (every thread: the writer's decoding, measuring and
                 writing) per logged image, for the serving bench's 28x28 grey PNGs at rate 1.0.
At rate R a request costs the server (non-sampled cost) + R x (sampled cost + writer cost per image)
of CPU on top of its own; compare that with the server's CPU per image (`make bench-serving` reports it).
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

from bench.serving_bench import machine_facts
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

        # Request thread, sampled: + the put on the bounded queue (a queue big enough never to drop).
        calls = min(args.calls, 20_000)
        logger = RequestLogger(RequestLogOptions(str(Path(tmp) / "on"), sample_rate=1.0, queue_size=calls + 1,
                                                 max_total_bytes=1 << 34, max_file_bytes=1 << 30),
                               rng=random.Random(0).random)
        logger._records = lambda entry: iter(())  # time the put alone; the writer's work is measured below
        start = time.thread_time()
        for i in range(calls):
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
        sampled_us = (time.thread_time() - start) * 1e6 / calls
        logger.close()

        # Writer: decode, measure, build the tf.Example, write; every thread of the process.
        logger = RequestLogger(RequestLogOptions(str(Path(tmp) / "writer"), sample_rate=1.0, queue_size=args.images + 1,
                                                 max_total_bytes=1 << 34))
        for i in range(20):  # warm TensorFlow's decode kernels up before timing
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
        logger.flush()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for i in range(args.images):
            logger.offer_predict("m", 1, "serving_default", batches[i % 64], specs)
        logger.flush()
        writer_us = (time.process_time() - start_cpu) * 1e6 / args.images
        wall_per_s = args.images / (time.perf_counter() - start_wall)
        logger.close()
        logged = int(logger.counts.value("logged"))

    per_request = not_sampled_us + args.rate * (sampled_us + writer_us)
    lines = ["# Request log cost (CPU time)", "",
             "28x28 grey PNG, one image per `:predict` request; CPU time, so the load from other jobs moves it "
             "far less than wall time.", "",
             "| what | CPU us |", "|---|---:|",
             f"| request thread, not sampled (random draw) | {not_sampled_us:.3f} |",
             f"| request thread, sampled (+ put on the bounded queue) | {sampled_us:.2f} |",
             f"| writer, per logged image (decode with ImageExampleGen's code, measure, tf.Example, write) | {writer_us:.0f} |",
             "", f"- writer throughput: {wall_per_s:.0f} images/s (wall), {logged - 20} images logged",
             f"- at rate {args.rate:g}: **{per_request:.1f} us** of CPU per request on top of the server's own"]
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
