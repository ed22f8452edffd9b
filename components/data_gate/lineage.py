"""ServingSpanStatisticsStrategy: the statistics of the span the serving model was trained on, found in ML Metadata.

ExampleValidator takes no previous statistics, so this resolver hands them to the data gate:
the newest successful push whose model was not rolled back -> the Pusher execution's input
model -> the Trainer execution that output it -> that execution's input examples -> the
statistics a StatisticsGen execution computed from them. Nothing resolves on the first run,
and nothing when the serving model was trained on this run's own files (the same statistics, or
examples with the same ExampleGen input fingerprint): there is nothing to compare, and the
gate's inputs stay those of an unchanged re-run, a full cache hit. Under TFX's legacy launcher (Airflow) the ``current`` channel holds every
statistics artifact ever produced; only the newest StatisticsGen execution's counts.
"""

from __future__ import annotations

from typing import Iterable, Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from tfx.components.example_gen import utils as example_gen_utils

from components.baseline import newest_execution_outputs
from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

PUSHED_MODEL_KEY = "pushed_model"
STATISTICS_KEY = "statistics"
CURRENT_KEY = "current"

_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def _key(event: metadata_store_pb2.Event) -> str:
    return event.path.steps[0].key if event.path.steps else ""


def _producer(store: mlmd.MetadataStore, artifact_id: int) -> Optional[int]:
    """The newest execution that output ``artifact_id`` (a cached execution outputs it again)."""
    ids = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in _OUTPUTS]
    return max(ids) if ids else None


def _input_of(store: mlmd.MetadataStore, execution_id: int, key: str) -> Optional[int]:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type in _INPUTS and _key(e) == key]
    return max(ids) if ids else None


def pushed_model_input(store: mlmd.MetadataStore, pushed: types.Artifact) -> Optional[int]:
    """Id of the Model the Pusher execution that wrote ``pushed`` took as input."""
    pusher = _producer(store, pushed.id)
    return _input_of(store, pusher, "model") if pusher is not None else None


def input_examples(store: mlmd.MetadataStore, artifact_id: int) -> Optional[int]:
    """Id of the Examples that the execution which output ``artifact_id`` (a Model, statistics) read."""
    producer = _producer(store, artifact_id)
    return _input_of(store, producer, "examples") if producer is not None else None


def fingerprint(store: mlmd.MetadataStore, examples_id: Optional[int]) -> Optional[str]:
    """ExampleGen's input fingerprint (which files, their sizes and times) of an Examples artifact."""
    if examples_id is None:
        return None
    (examples,) = store.get_artifacts_by_id([examples_id])
    for props in (examples.custom_properties, examples.properties):
        if example_gen_utils.FINGERPRINT_PROPERTY_NAME in props:
            return props[example_gen_utils.FINGERPRINT_PROPERTY_NAME].string_value or None
    return None


def training_statistics(store: mlmd.MetadataStore, examples: Optional[int], candidates: Iterable[int]) -> Optional[int]:
    """Id (among ``candidates``) of the statistics computed from the Examples ``examples``."""
    if examples is None:
        return None
    readers = [e.execution_id for e in store.get_events_by_artifact_ids([examples]) if e.type in _INPUTS]
    wanted = set(candidates)
    found = [e.artifact_id for e in store.get_events_by_execution_ids(readers)
             if e.type in _OUTPUTS and _key(e) == STATISTICS_KEY and e.artifact_id in wanted]
    return max(found) if found else None


class ServingSpanStatisticsStrategy(resolver.ResolverStrategy):
    """The serving model's PushedModel and its training span's ExampleStatistics, unless those are this run's."""

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> Optional[dict[str, list[types.Artifact]]]:
        nothing = {PUSHED_MODEL_KEY: [], STATISTICS_KEY: [], CURRENT_KEY: []}
        statistics = {a.id: a for a in input_dict.get(STATISTICS_KEY, [])}
        current = newest_execution_outputs(store, input_dict.get(CURRENT_KEY, []))
        pushes = [p for p in input_dict.get(PUSHED_MODEL_KEY, []) if p.get_int_custom_property("pushed") == 1]
        for pushed in sorted(pushes, key=lambda a: a.id, reverse=True):
            model_id = pushed_model_input(store, pushed)
            if model_id is None:
                continue
            (model,) = store.get_artifacts_by_id([model_id])
            rolled_back = ROLLED_BACK_PROPERTY in model.custom_properties and (
                model.custom_properties[ROLLED_BACK_PROPERTY].int_value == 1)
            if rolled_back:
                continue
            examples = input_examples(store, model_id)
            stats_id = training_statistics(store, examples, statistics)
            trained_on = fingerprint(store, examples)
            same_files = bool(current) and trained_on is not None and (
                trained_on == fingerprint(store, input_examples(store, max(current))))
            if stats_id is None or stats_id in current or same_files:
                return nothing
            return {PUSHED_MODEL_KEY: [pushed], STATISTICS_KEY: [statistics[stats_id]], CURRENT_KEY: []}
        return nothing
