"""What the REST server's Content-Encoding check costs a request that has none (issue 14).

Since aiohttp's request-body decompression is off, `RestApi._v1` looks up Content-Encoding on every
:predict request to know whether to gunzip. This times exactly that expression on headers parsed by
aiohttp's own (C) request parser from a request like the serving benchmark's, and writes
bench/results/serving-content-encoding.md. Runs in about 10 s.
Run: python -m bench.content_encoding_bench
"""
from __future__ import annotations

import asyncio
import os
import sys
import timeit
from pathlib import Path

from bench import results_file

# The check in serving/server.py (RestApi._v1), verbatim.
CHECK = '(encoding := headers.get(CONTENT_ENCODING)) is not None and "gzip" in encoding'
NUMBER = 2_000_000
REPEAT = 5
RESULTS = Path(__file__).resolve().parent / "results" / "serving-content-encoding.md"


class _Protocol:
    """The little of a protocol that aiohttp's parser touches for a complete small body."""

    transport = None

    def pause_reading(self, **_: object) -> None:
        pass

    def resume_reading(self, **_: object) -> None:
        pass


async def _parsed_headers():  # type: ignore[no-untyped-def]
    from aiohttp.http_parser import HttpRequestParser

    parser = HttpRequestParser(_Protocol(), asyncio.get_running_loop(), 2**16, auto_decompress=False)
    raw = (b"POST /v1/models/lenspipe:predict HTTP/1.1\r\nHost: 127.0.0.1:8501\r\n"
           b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    messages, _, _ = parser.feed_data(raw)
    return type(parser).__module__, messages[0][0].headers


def main() -> int:
    from aiohttp import hdrs

    parser_module, headers = asyncio.run(_parsed_headers())
    scope = {"headers": headers, "CONTENT_ENCODING": hdrs.CONTENT_ENCODING}
    load = os.getloadavg()[0]
    rounds = []
    for _ in range(3):
        check = min(timeit.repeat(CHECK, globals=scope, number=NUMBER, repeat=REPEAT))
        empty = min(timeit.repeat("pass", number=NUMBER, repeat=REPEAT))
        rounds.append((check - empty) / NUMBER * 1e9)
    text = f"""# The Content-Encoding check on a request without one

`{CHECK}` on the headers of a `:predict` request without Content-Encoding, parsed by aiohttp's
`{parser_module}` parser; best of {REPEAT} x {NUMBER:,} runs minus an empty statement, 3 rounds.
1-minute load average at the start: {load:.2f} (2 cores).

| round | ns per request |
|---:|---:|
""" + "".join(f"| {i + 1} | {ns:.1f} |\n" for i, ns in enumerate(rounds)) + f"""
Python {sys.version.split()[0]}. Command:

    python -m bench.content_encoding_bench
"""
    results_file.write(RESULTS, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
