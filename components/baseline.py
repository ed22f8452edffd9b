"""PreviousBlessedModelStrategy: the baseline for the Evaluator's change threshold.

TFX's LatestBlessedModelStrategy returns the newest blessed model, which on a
re-run with nothing changed is the (cached) candidate itself: the Evaluator then
compares the model with itself, re-executes, and the Pusher pushes a duplicate.
This strategy also takes the candidate channel and skips it, so the baseline is
the newest blessed model *other than the candidate*, and an unchanged re-run is
a full cache hit. A model `lenspipe rollback` took out of service is skipped too, so the
baseline is the version actually serving.

Under TFX's legacy launcher (Airflow) the resolver driver fills ``candidate`` with every
model the Trainer ever produced, not only this run's: excluding all of them would leave
no baseline and silently disable the change threshold. Only the output of the newest
Trainer execution counts as the candidate.
"""

from __future__ import annotations

from typing import Optional

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"

_CURRENT_MODEL_ID = "current_model_id"
_BLESSED = "blessed"


def newest_execution_outputs(store: mlmd.MetadataStore, artifacts: list[types.Artifact]) -> set[int]:
    """Ids of those ``artifacts`` that the newest execution producing any of them output.

    A cached Trainer execution outputs the earlier model again, so it is the newest
    execution, not the newest artifact, that names this run's candidate.
    """
    if len(artifacts) <= 1:
        return {a.id for a in artifacts}
    outputs: dict[int, set[int]] = {}
    for event in store.get_events_by_artifact_ids([a.id for a in artifacts]):
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT):
            outputs.setdefault(event.execution_id, set()).add(event.artifact_id)
    if not outputs:
        return {a.id for a in artifacts}
    return outputs[max(outputs)]


class PreviousBlessedModelStrategy(resolver.ResolverStrategy):
    """Newest blessed Model (and its ModelBlessing) that is neither the current candidate nor rolled back."""

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> Optional[dict[str, list[types.Artifact]]]:
        candidates = newest_execution_outputs(store, input_dict.get(CANDIDATE_KEY, []))
        blessings = {
            b.get_int_custom_property(_CURRENT_MODEL_ID): b
            for b in input_dict.get(MODEL_BLESSING_KEY, [])
            if b.get_int_custom_property(_BLESSED) == 1
        }
        for model in sorted(input_dict.get(MODEL_KEY, []), key=lambda a: a.id, reverse=True):
            rolled_back = model.get_int_custom_property(ROLLED_BACK_PROPERTY) == 1
            if model.id in blessings and model.id not in candidates and not rolled_back:
                return {MODEL_KEY: [model], MODEL_BLESSING_KEY: [blessings[model.id]], CANDIDATE_KEY: []}
        return {MODEL_KEY: [], MODEL_BLESSING_KEY: [], CANDIDATE_KEY: []}
