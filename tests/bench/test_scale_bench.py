"""The scale benchmark's plumbing: which components it runs (from the pipeline) and how it reports targets."""

from __future__ import annotations

from pathlib import Path

from bench import scale_bench


def test_steps_are_the_trainers_ancestors_taken_from_the_pipeline(tmp_path):
    _, pipeline = scale_bench._pipeline(scale_bench.run_overrides(tmp_path / "data", tmp_path / "run", {}))
    needed = scale_bench.ancestors_and_self(pipeline, scale_bench.TARGET_NODE)
    ids = [c.id for c in needed]
    order = [c.id for c in pipeline.components]
    assert ids == [i for i in order if i in ids]  # pipeline order
    assert ids[-1] == scale_bench.TARGET_NODE and set(scale_bench.STEPS) <= set(ids)
    for node in needed:  # closed under "upstream of"
        assert {u.id for u in node.upstream_nodes} <= set(ids), node.id
    downstream = {c.id for c in pipeline.components} - set(ids)
    assert downstream and not any(scale_bench.TARGET_NODE in {u.id for u in c.upstream_nodes} for c in needed)


def _result(factor: int, images: int, seconds: float, rss: int) -> dict:
    rows = [
        {"node": step, "ran": [step], "states": {step: "complete"}, "node_seconds": {step: seconds},
         "state": "complete", "seconds": seconds, "wall": seconds + 30, "rss_mib": rss, "exit": 0, "load": 1.0}
        for step in scale_bench.STEPS
    ]
    return {"factor": factor, "images": images, "nodes": rows, "data": {"seconds": 1.0, "cached": False},
            "load_start": (1.0, 2.0, 3.0), "load_end": (1.5, 2.5, 3.5), "started": "2026-12-02 07:00 UTC",
            "beam_mode": "in_memory", "beam_workers": 1, "cache_budget_mb": 1024, "extra": {}}


def test_the_report_checks_time_per_image_and_rss_growth():
    linear = [_result(1, 100, 10.0, 900), _result(10, 1000, 100.0, 900), _result(100, 10000, 1000.0, 950)]
    text = scale_bench.render(linear, "python -m bench.scale_bench")
    assert "## 100x: 10,000 images" in text and "load average at start 1.00 / 2.00 / 3.00" in text
    assert text.count("| met |") == len(scale_bench.STEPS) and "NOT met" not in text

    slower = [_result(1, 100, 10.0, 900), _result(10, 1000, 100.0, 900), _result(100, 10000, 1400.0, 900)]
    assert "| 1.40 | 1.00 | NOT met |" in scale_bench.render(slower, "cmd")  # 1.4x the time per image
    bigger = [_result(1, 100, 10.0, 900), _result(10, 1000, 100.0, 900), _result(100, 10000, 1000.0, 1200)]
    assert "| 1.00 | 1.33 | NOT met |" in scale_bench.render(bigger, "cmd")  # RSS grew by a third
