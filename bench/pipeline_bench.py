"""Pipeline benchmark: wall time and peak memory of `lenspipe run`, cold and fully cached.

  python -m bench.pipeline_bench [--per-class N] [--out bench/results/pipeline.md] [-- extra lenspipe args]

Each measurement runs `lenspipe run` as a child process in a fresh work dir and
reads the child's peak RSS from getrusage; results go to a Markdown file
(temporary file + rename).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS of the child in MiB, exit code) of one `lenspipe` invocation."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pipeline.cli import entry; entry()", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    return seconds, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=None, help="Digits per class (default: all 1,797).")
    parser.add_argument("--out", default="bench/results/pipeline.md")
    parser.add_argument("extra", nargs="*", help="Extra `lenspipe run` arguments (after --).")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="lenspipe-bench-") as tmp:
        run_args = ["run", "--work-dir", tmp, *args.extra]
        if args.per_class:
            run_args += ["--set", f"data.embedded_per_class={args.per_class}"]
        for label in ("cold (every component executes)", "re-run, nothing changed (all cached)"):
            seconds, rss, code = _run(run_args)
            print(f"{label}: {seconds:.1f}s, peak RSS {rss:.0f} MiB, exit {code}", flush=True)
            rows.append((label, seconds, rss, code))

    command = "python -m bench.pipeline_bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        "# Pipeline benchmark",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}  ",
        f"Data: embedded digits, {'all 1,797 images' if not args.per_class else f'{args.per_class} per class'}; "
        f"extra args: `{' '.join(args.extra) or 'none'}`",
        "",
        "| run | wall time (s) | peak RSS (MiB) | exit |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {s:.1f} | {r:.0f} | {c} |" for label, s, r, c in rows],
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(out.suffix + ".tmp")
    tmp_out.write_text("\n".join(lines))
    tmp_out.replace(out)
    print(f"wrote {out}")
    return 0 if all(c == 0 for *_, c in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
