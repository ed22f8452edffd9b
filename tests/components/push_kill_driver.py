"""Kill the VersionedPusher with SIGKILL at chosen points of real pushes; what each kill left, as JSON.

Run as ``python -m tests.components.push_kill_driver MODEL_DIR WORK OUT.json --kills 20 --seed 0``.
Each push is a real TFX run (LocalDagRunner: the portable launcher without Beam; SQLite ML Metadata) of Importer(model) + Importer(blessing)
-> VersionedPusher, in a process forked from this one (TFX imported once). First one calibration push
counts the push's steps (every fileio operation from the executor's start, then the launcher's ML
Metadata writes); then, for model copy i, a push killed after step k_i (seeded; the steps around the
rename always among them), a look at the base path, and a re-run of the same push that must complete.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from pathlib import Path


def build(work: Path, model_uri: str, base_dir: Path):
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts

    from components.versioned_pusher import VersionedPusher

    blessing_dir = work / "blessing"
    blessing_dir.mkdir(parents=True, exist_ok=True)
    model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id("model")
    blessing = tfx.dsl.Importer(source_uri=str(blessing_dir), artifact_type=standard_artifacts.ModelBlessing,
                                custom_properties={"blessed": 1}).with_id("blessing")
    pusher = VersionedPusher(
        model=model.outputs["result"], model_blessing=blessing.outputs["result"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(base_dir))),
    )
    return tfx.dsl.Pipeline(
        pipeline_name="push-faults", pipeline_root=str(work / "root"), components=[model, blessing, pusher],
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(work / "metadata.sqlite")),
    )


def push(work: Path, model_uri: str, base_dir: Path, checkpoints=None) -> None:
    """One pipeline run that pushes ``model_uri``; with ``checkpoints``, a step after each write of the push."""
    import logging

    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from components.versioned_pusher.executor import Executor

    logging.getLogger().setLevel(logging.WARNING)
    if checkpoints is not None:
        checkpoints.on_file_and_metadata_writes(arm_on=(Executor, "Do"))
    LocalDagRunner().run(build(work, model_uri, base_dir))


def entries(base_dir: Path) -> list[str]:
    return sorted(os.listdir(base_dir)) if base_dir.is_dir() else []


def holding(base_dir: Path, model_uri: str) -> list[int]:
    from components.versioned_pusher.executor import existing_versions, pushed_source

    return [v for v in existing_versions(str(base_dir)) if pushed_source(str(base_dir / str(v))) == model_uri]


def main() -> None:
    from tests.faults import run_until

    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import tfx.orchestration.local.local_dag_runner  # noqa: F401 - imported once, before the forks
    import components.versioned_pusher  # noqa: F401

    base_dir = args.work / "serving" / "m"

    def model_copy(i: int) -> str:
        uri = args.work / "models" / f"m{i}"
        shutil.copytree(args.model_dir, uri / "Format-Serving")
        return str(uri / "Format-Serving")

    first = model_copy(0)
    calibration = run_until(lambda cp: push(args.work, str(Path(first).parent), base_dir, cp), None)
    assert calibration.exit_code == 0, "calibration push failed"
    steps = calibration.steps
    rename = next(i for i, s in enumerate(steps, 1) if s.startswith("fileio.rename"))
    rng = random.Random(args.seed)
    points = {rename - 1, rename, rename + 1}
    while len(points) < min(args.kills, len(steps) - 1):
        points.add(rng.randint(1, len(steps) - 1))  # never after the last step: that run has finished
    order = sorted(points)
    rng.shuffle(order)
    report = {"calibration_steps": steps, "rename_step": rename, "iterations": [], "done": False}
    for i, k in enumerate(order, 1):
        uri = model_copy(i)
        model_uri = str(Path(uri).parent)
        killed = run_until(lambda cp: push(args.work, model_uri, base_dir, cp), k)
        after_kill = {"entries": entries(base_dir), "holding": holding(base_dir, uri)}
        rerun = run_until(lambda cp: push(args.work, model_uri, base_dir), None)
        report["iterations"].append({
            "model_path": uri, "kill_after": k, "killed": killed.killed, "last_step": killed.steps[-1],
            "after_kill": after_kill, "rerun_exit": rerun.exit_code,
            "after_rerun": {"entries": entries(base_dir), "holding": holding(base_dir, uri)},
        })
        write(args.out, report)  # after each iteration: a driver stopped by a timeout still tells how far it got
    report["done"] = True
    write(args.out, report)


def write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.rename(path)


if __name__ == "__main__":
    main()
