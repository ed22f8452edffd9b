"""The soak (bench/soak.py, `make soak`) for 60 s: 64 clients while versions are pushed and rolled back.

The same code as the 10-minute `make soak`, shortened: a new version every 15 s and a rollback every
30 s against a `python -m serving` subprocess. It asserts behaviour only: zero failed requests, every
swap and rollback actually served, and the server alive at the end. Latency and RSS figures belong in
bench/results/soak.md, not in assertions.
"""
from __future__ import annotations

from pathlib import Path

from bench import soak

DURATION_S = 60.0


def test_soak_60s_swaps_and_rollbacks_fail_no_request(model_cache: Path, tmp_path: Path) -> None:
    result = soak.run(model_cache / "1", tmp_path, model_name="demo", clients=64, duration=DURATION_S,
                      swap_every=15, rollback_every=30, warmup=20, images=8)
    assert result.failed == 0, f"{result.failed} of {result.requests} requests failed; first: {result.failures}"
    assert result.server_alive
    kinds = [e.kind for e in result.events]
    assert kinds == ["swap", "rollback", "swap", "swap", "rollback"]
    not_served = [e for e in result.events if e.available_after_s is None]
    assert not not_served, f"the server never switched for: {not_served}"
    # Each rollback put back the version below the newest, and the next push went above every version seen.
    assert [e.version for e in result.events] == [2, 1, 3, 4, 3]
    assert result.requests > 64 * len(result.events)  # load ran throughout, not just once per client
