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


def _store_with_trainer_runs(outputs_per_execution: list[list[int]]):
    """An in-memory MLMD store where Trainer execution i output the models listed at i."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.fake_database.SetInParent()
    store = mlmd.MetadataStore(config)
    model_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    trainer_type = store.put_execution_type(pb.ExecutionType(name="Trainer"))
    count = max(i for ids in outputs_per_execution for i in ids)
    ids = store.put_artifacts([pb.Artifact(type_id=model_type, uri=f"/m/{i}") for i in range(count)])
    for produced in outputs_per_execution:
        (execution_id,) = store.put_executions([pb.Execution(type_id=trainer_type)])
        store.put_events(
            [pb.Event(artifact_id=ids[i - 1], execution_id=execution_id, type=pb.Event.OUTPUT) for i in produced]
        )
    return store, ids


def test_under_the_legacy_launcher_only_the_newest_trainer_output_is_the_candidate():
    # Airflow's resolver driver passes every model the Trainer ever made as the candidate.
    store, (first, second) = _store_with_trainer_runs([[1], [2]])
    models = [model(first), model(second)]
    out = PreviousBlessedModelStrategy().resolve_artifacts(
        store,
        {MODEL_KEY: models, MODEL_BLESSING_KEY: [blessing(first, True)], CANDIDATE_KEY: [model(first), model(second)]},
    )
    assert [m.id for m in out[MODEL_KEY]] == [first]  # not empty: the change threshold gets its baseline


def test_a_cached_trainer_execution_names_the_earlier_model_as_candidate():
    # Run 3 reused model 1 (cache hit): its execution is the newest, so model 1 is the candidate.
    store, (first, second) = _store_with_trainer_runs([[1], [2], [1]])
    out = PreviousBlessedModelStrategy().resolve_artifacts(
        store,
        {
            MODEL_KEY: [model(first), model(second)],
            MODEL_BLESSING_KEY: [blessing(first, True), blessing(second, True)],
            CANDIDATE_KEY: [model(first), model(second)],
        },
    )
    assert [m.id for m in out[MODEL_KEY]] == [second]


def test_a_rolled_back_model_is_not_the_baseline_the_serving_one_is():
    from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

    rolled_back = model(3)
    rolled_back.set_int_custom_property(ROLLED_BACK_PROPERTY, 1)
    out = resolve([model(1), model(2), rolled_back], [blessing(i, True) for i in (1, 2, 3)], [model(4)])
    assert [m.id for m in out[MODEL_KEY]] == [2]
    rolled_back.set_int_custom_property(ROLLED_BACK_PROPERTY, 0)  # `lenspipe rollback --undo`
    out = resolve([model(1), model(2), rolled_back], [blessing(i, True) for i in (1, 2, 3)], [model(4)])
    assert [m.id for m in out[MODEL_KEY]] == [3]
