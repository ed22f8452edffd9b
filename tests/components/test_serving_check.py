"""ServingCheck: a candidate is served by `lenspipe serve` in a subprocess and compared before any push.

Broken candidates (answers over REST differ from the exported signature; fails to load in the
server; fails to load at all) fail the check, and the VersionedPusher then pushes nothing.
"""
from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from fixture_models import png_bytes, save_demo_model  # noqa: E402

import dataclasses  # noqa: E402

from components.serving_check.check import judge, percentile, run_serving_check  # noqa: E402
from components.serving_check.component import read_result, write_result  # noqa: E402
from components.versioned_pusher.executor import Executor  # noqa: E402
from trainer.warmup import prediction_logs, write_warmup_file  # noqa: E402

IMAGES = [png_bytes(seed) for seed in range(30)]


class NoisyModel(tf.Module):
    """Answers differ from call to call: what a served model that drifts from its export looks like."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image_bytes):
        n = tf.shape(image_bytes)[0]
        probs = tf.nn.softmax(tf.random.uniform([n, 3]))
        return {"probabilities": probs, "class_id": tf.argmax(probs, axis=1)}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("candidates")
    good = save_demo_model(root / "good", 1)
    write_warmup_file(str(good), IMAGES[:4])  # as the trainer does: the first measured request is warm
    noisy = root / "noisy"
    module = NoisyModel()
    tf.saved_model.save(module, str(noisy), signatures={"serving_default": module.serve})
    # Loads in this process, but its warm-up request names a signature it lacks: the server refuses it.
    unloadable = root / "unloadable"
    shutil.copytree(good, unloadable)
    record = prediction_logs(IMAGES[:1])[0]
    record.predict_log.request.model_spec.signature_name = "missing"
    with tf.io.TFRecordWriter(str(unloadable / "assets.extra" / "tf_serving_warmup_requests")) as w:
        w.write(record.SerializeToString())
    corrupt = root / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"not a SavedModel")
    return {"good": good, "noisy": noisy, "unloadable": unloadable, "corrupt": corrupt}


@pytest.fixture(scope="module")
def checked(models) -> dict:
    """One check per candidate (each starts a server subprocess); the tests read the results."""
    return {
        "good": run_serving_check(str(models["good"]), IMAGES, model_name="demo", max_p99_ms=60_000),
        "noisy": run_serving_check(str(models["noisy"]), IMAGES, max_p99_ms=60_000),
        "unloadable": run_serving_check(str(models["unloadable"]), IMAGES, start_timeout_seconds=120),
        "corrupt": run_serving_check(str(models["corrupt"]), IMAGES),
    }


def test_a_sound_model_passes_with_every_answer_equal_over_rest_and_grpc(checked):
    result = checked["good"]
    assert result.passed, result.reason
    assert result.requests == {"rest": len(IMAGES), "grpc": len(IMAGES)}
    assert result.mismatches == 0 and result.max_abs_diff <= 1e-6
    assert set(result.latency_ms) == {"rest", "grpc"}
    assert 0 < result.latency_ms["rest"]["p50"] <= result.latency_ms["rest"]["p99"]
    assert json.loads(result.to_json())["requests"] == result.requests


def test_answers_that_differ_from_the_exported_signature_fail(checked):
    result = checked["noisy"]
    assert not result.passed
    assert result.reason.startswith("rest: answers differ from the in-process predictions: max |dp|")
    assert result.max_abs_diff > 1e-6


def test_a_model_the_server_cannot_load_fails_with_the_servers_error(checked):
    result = checked["unloadable"]
    assert not result.passed
    assert result.reason.startswith("load: the server exited (code 1) before the model was AVAILABLE")
    assert "missing" in result.reason  # the server's own message: the warm-up request's signature
    assert result.requests == {"rest": 0, "grpc": 0}


def test_a_model_that_does_not_load_at_all_fails_before_serving(checked):
    result = checked["corrupt"]
    assert not result.passed and "failed in-process" in result.reason


def test_the_latency_budget_is_checked_on_p99(checked):
    result = judge(dataclasses.replace(checked["good"], max_p99_ms=1e-3))
    assert not result.passed
    assert "p99 latency" in result.reason and "> budget 0.001 ms" in result.reason
    exact = judge(dataclasses.replace(checked["good"], max_abs_diff_allowed=0.0))
    assert exact.passed == (checked["good"].max_abs_diff == 0.0)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def _infra_blessing(tmp_path, passed, reason=""):
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / f"infra-{uuid.uuid4().hex}")
    Path(blessing.uri).mkdir()
    write_result(blessing, passed, json.dumps({"passed": passed, "reason": reason}), reason)
    return blessing


def _push(tmp_path, model_dir, base, infra):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / f"model-{uuid.uuid4().hex}")
    shutil.copytree(model_dir, Path(model.uri) / "Format-Serving")
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{uuid.uuid4().hex}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    Executor().Do({"model": [model], "model_blessing": [blessing], "infra_blessing": [infra]},
                  {"pushed_model": [pushed]}, {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def test_a_candidate_that_failed_the_serving_check_is_never_pushed(models, checked, tmp_path):
    base = tmp_path / "serving" / "m"
    result = checked["noisy"]
    failed = _infra_blessing(tmp_path, result.passed, result.reason)
    assert failed.get_int_custom_property("blessed") == 0
    assert (Path(failed.uri) / "INFRA_NOT_BLESSED").exists()  # TFX InfraValidator's marker
    assert read_result(failed.uri)["reason"] == result.reason
    pushed = _push(tmp_path, models["noisy"], base, failed)
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property("not_pushed_reason") == f"serving check failed: {result.reason}"
    assert not base.exists()

    passed = _infra_blessing(tmp_path, True)
    assert _push(tmp_path, models["good"], base, passed).get_int_custom_property("pushed") == 1
    assert sorted(p.name for p in base.iterdir()) == ["1"]
