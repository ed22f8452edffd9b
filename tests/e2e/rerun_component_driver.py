"""Run a finished Trainer or Tuner again, alone in this fresh process, as a Kubeflow container would.

Run as ``python -m tests.e2e.rerun_component_driver METADATA.sqlite NODE OUT``. It takes the
first completed execution of NODE (Trainer or Tuner) recorded in the ML Metadata store, and runs
TFX's executor for it with the same input artifacts and execution properties, writing each output
under ``OUT/<output key>``: the same code on the same artifacts, without the rest of the pipeline
having run in the process before it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EXECUTORS = {
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
    "Tuner": "tfx.components.tuner.executor.Executor",
}


def first_execution(store, node: str):
    from ml_metadata.proto import metadata_store_pb2

    done = [
        e for context in store.get_contexts_by_type("node") if context.name.endswith(f".{node}")
        for e in store.get_executions_by_context(context.id)
        if e.last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    if not done:
        raise SystemExit(f"rerun: no completed {node} execution in the store")
    return min(done, key=lambda e: e.id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("metadata", type=Path)
    parser.add_argument("node", choices=sorted(EXECUTORS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()

    from ml_metadata.proto import metadata_store_pb2
    from tfx.dsl.components.base.base_executor import BaseExecutor
    from tfx.types import artifact_utils
    from tfx.utils import import_utils

    from pipeline.report import _store

    store = _store(str(args.metadata))  # read-only: the outputs go under OUT, not into the store
    execution = first_execution(store, args.node)
    # The launcher passes execution properties as the plain values MLMD recorded (protos as JSON).
    properties = {
        key: getattr(value, value.WhichOneof("value"))
        for key, value in execution.custom_properties.items() if not key.startswith("__")
    }
    events = store.get_events_by_execution_ids([execution.id])
    stored = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    types = {t.id: t for t in store.get_artifact_types()}
    inputs: dict[str, list] = {}
    outputs: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key
        artifact = artifact_utils.deserialize_artifact(types[stored[event.artifact_id].type_id], stored[event.artifact_id])
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs.setdefault(key, []).append(artifact)
        elif event.type == metadata_store_pb2.Event.OUTPUT:
            artifact.uri = str(args.out / key)
            os.makedirs(artifact.uri, exist_ok=True)
            outputs.setdefault(key, []).append(artifact)
    executor_class = import_utils.import_class_by_path(EXECUTORS[args.node])
    context = BaseExecutor.Context(tmp_dir=str(args.out / ".tmp"), unique_id=str(execution.id))
    executor_class(context).Do(inputs, outputs, properties)


if __name__ == "__main__":
    main()
