"""`lenspipe run`, SIGKILLed right after each component in turn, re-run until a run completes; JSON out.

Run as ``python -m tests.e2e.kill_between_components_driver WORK OUT.json -- <lenspipe run options>``.
Each run is `lenspipe run` (pipeline.cli.main) in a process forked from this one, so TensorFlow and TFX
are imported once. A run is killed as soon as a node it really executed finishes (TFX's "node X is
finished." line; cached nodes do not count) unless that node was already killed after once; the next
run therefore resumes from the cache. The last run is the one that finishes by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def lenspipe_run(work: Path, options: list[str], log: Path, skip: set[str], checkpoints) -> None:
    """One `lenspipe run` in this (forked) process; exits with its code."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if checkpoints is not None:
        step = checkpoints.step
        checkpoints.step = lambda node: None if node in skip else step(node)
        checkpoints.after_each_executed_node()
    from pipeline import cli

    code = cli.main(["run", "--work-dir", str(work), *options])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    from tests.faults import run_until

    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("options", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    options = [o for o in args.options if o != "--"]
    from lenspipe.config import RuntimeConfig

    RuntimeConfig().apply_process_env()  # as `lenspipe run` does, before TensorFlow loads
    import tensorflow  # noqa: F401 - imported once, before the forks; no TensorFlow op runs here
    import tfx.orchestration.beam.beam_dag_runner  # noqa: F401
    from pipeline import cli  # noqa: F401

    killed_after: list[str] = []
    runs = []
    for attempt in range(60):  # far more than there are nodes: a run that never ends the loop is a bug
        log = args.work / f"run-{attempt}.log"
        outcome = run_until(lambda cp: lenspipe_run(args.work, options, log, set(killed_after), cp), 1)
        runs.append({"killed": outcome.killed, "exit_code": outcome.exit_code, "log": str(log),
                     "after": outcome.steps[-1] if outcome.steps else None})
        if not outcome.killed:
            break
        killed_after.append(outcome.steps[-1])
    report = {"killed_after": killed_after, "runs": runs}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.rename(args.out)


if __name__ == "__main__":
    main()
