"""PreviousBlessedModelStrategy: the newest blessed model that is not the candidate."""

from __future__ import annotations

from tfx.types import standard_artifacts

from components.baseline import CANDIDATE_KEY, MODEL_BLESSING_KEY, MODEL_KEY, PreviousBlessedModelStrategy


def model(artifact_id):
    m = standard_artifacts.Model()
    m.id = artifact_id
    return m


def blessing(model_id, blessed):
    b = standard_artifacts.ModelBlessing()
    b.set_int_custom_property("current_model_id", model_id)
    b.set_int_custom_property("blessed", 1 if blessed else 0)
    return b


def resolve(models, blessings, candidates):
    return PreviousBlessedModelStrategy().resolve_artifacts(
        None, {MODEL_KEY: models, MODEL_BLESSING_KEY: blessings, CANDIDATE_KEY: candidates}
    )


def test_newest_blessed_model_wins():
    out = resolve([model(1), model(2), model(3)], [blessing(1, True), blessing(2, True), blessing(3, False)], [model(4)])
    assert [m.id for m in out[MODEL_KEY]] == [2]
    assert out[MODEL_BLESSING_KEY][0].get_int_custom_property("current_model_id") == 2
    assert out[CANDIDATE_KEY] == []


def test_the_candidate_is_never_its_own_baseline():
    # An unchanged re-run: the cached candidate (id 2) is also the newest blessed model.
    out = resolve([model(1), model(2)], [blessing(1, True), blessing(2, True)], [model(2)])
    assert [m.id for m in out[MODEL_KEY]] == [1]
    first_run = resolve([model(2)], [blessing(2, True)], [model(2)])
    assert first_run[MODEL_KEY] == [] and first_run[MODEL_BLESSING_KEY] == []


def test_nothing_blessed_means_no_baseline():
    out = resolve([model(1)], [blessing(1, False)], [model(2)])
    assert out[MODEL_KEY] == []


def test_a_rolled_back_model_is_not_the_baseline_the_serving_one_is():
    from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

    rolled_back = model(3)
    rolled_back.set_int_custom_property(ROLLED_BACK_PROPERTY, 1)
    out = resolve([model(1), model(2), rolled_back], [blessing(i, True) for i in (1, 2, 3)], [model(4)])
    assert [m.id for m in out[MODEL_KEY]] == [2]
    rolled_back.set_int_custom_property(ROLLED_BACK_PROPERTY, 0)  # `lenspipe rollback --undo`
    out = resolve([model(1), model(2), rolled_back], [blessing(i, True) for i in (1, 2, 3)], [model(4)])
    assert [m.id for m in out[MODEL_KEY]] == [3]
