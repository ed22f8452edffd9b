"""Entry points the lenspipe CLI dispatches to: `lenspipe serve` and `lenspipe predict`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from serving.flags import ConfigError, VersionRequested, parse_server_options, version_text

log = logging.getLogger("serving")


def serve_main(argv: list[str]) -> int:
    """Run the model server until SIGINT/SIGTERM. Returns 0 on clean shutdown, 2 on bad flags, 1 on start failure."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = parse_server_options(argv)
    except ConfigError as exc:
        print(f"lenspipe serve: {exc}", file=sys.stderr)
        return 2
    except VersionRequested:
        print(version_text())
        return 0
    for line in options.warnings:
        print(f"lenspipe serve: {line}", file=sys.stderr)
    from serving.model_server import ModelServer, StartupError  # imports TensorFlow: after flag checks

    async def run() -> int:
        server = ModelServer(options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(server.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await server.stop()
            return 0
        try:
            starting.result()
        except (StartupError, ConfigError) as exc:
            log.error("failed to start server: %s", exc)
            await server.stop()
            return 1
        await stopped
        log.info("shutting down: draining in-flight requests")
        await server.stop()
        return 0

    return asyncio.run(run())


def predict_main(argv: list[str]) -> int:
    """`lenspipe predict IMAGE...`: print `image<TAB>label<TAB>probability` per image. 1 on any error."""
    parser = argparse.ArgumentParser(prog="lenspipe predict",
                                     description="Classify images with a running TF Serving-compatible server.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files.")
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="REST base URL of the server.")
    parser.add_argument("--model", default="lenspipe", help="Model name.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="Ask for this version number.")
    which.add_argument("--label", help="Ask for the version with this label.")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="Use gRPC at HOST:PORT instead of REST.")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the answer.")
    args = parser.parse_args(argv)
    from serving.client import ClientError, predict_grpc, predict_rest

    try:
        if args.grpc:
            results = predict_grpc(args.grpc, args.model, args.images, args.version, args.label, args.timeout)
        else:
            results = predict_rest(args.url, args.model, args.images, args.version, args.label, args.timeout)
    except ClientError as exc:
        print(f"lenspipe predict: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.image}\t{result.label}\t{result.probability:.4f}")
    return 0
