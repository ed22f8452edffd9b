"""VersionedPusher: consecutive integer versions, published by rename, never half-written."""

from __future__ import annotations

import threading

from components.versioned_pusher.executor import existing_versions, push_model


def fake_model(root):
    (root / "variables").mkdir(parents=True)
    (root / "variables" / "variables.index").write_bytes(b"idx")
    (root / "saved_model.pb").write_bytes(b"pb")
    return root


def test_versions_count_up_from_one_and_ignore_non_integer_dirs(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "serving" / "m"
    (base / "123.tmp").mkdir(parents=True)  # TF Serving ignores it; so do we
    assert push_model(str(model), str(base)) == (str(base / "1"), 1)
    assert push_model(str(model), str(base)) == (str(base / "2"), 2)
    assert existing_versions(str(base)) == [1, 2]
    assert (base / "2" / "saved_model.pb").read_bytes() == b"pb"
    assert (base / "2" / "variables" / "variables.index").read_bytes() == b"idx"
    assert sorted(p.name for p in base.iterdir()) == ["1", "123.tmp", "2"]  # no temp copy left


def test_next_version_follows_the_highest_existing(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    (base / "41").mkdir(parents=True)
    assert push_model(str(model), str(base))[1] == 42


def test_concurrent_pushes_get_distinct_versions(tmp_path):
    model = fake_model(tmp_path / "model")
    base = tmp_path / "m"
    results = []
    threads = [threading.Thread(target=lambda: results.append(push_model(str(model), str(base)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for _, v in results) == [1, 2, 3, 4]
    for version in range(1, 5):
        assert (base / str(version) / "saved_model.pb").is_file()
