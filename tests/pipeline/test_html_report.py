"""The HTML report's parts that need no pipeline run: charts, words, tables, a failed run's page.

The page of a real run is opened in Chromium in tests/e2e/test_pipeline_e2e.py.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
from google.protobuf import json_format

from lenspipe.config import load_config
from pipeline import html_report, report, svg_charts
from pipeline.pipeline import eval_config

SVG = "{http://www.w3.org/2000/svg}"


def test_charts_are_well_formed_svg_with_one_mark_per_value():
    bars = ET.fromstring(svg_charts.grouped_bars(["a", "b", "c"], {"train": [3, 0, 5], "test": [1, 1, 1]}, "t", "n"))
    assert len(bars.findall(f".//{SVG}rect")) == 6 + 2  # a bar per value, a legend swatch per series
    curve = ET.fromstring(svg_charts.lines({"loss": [1.0, 0.5, float("nan"), 0.2]}, "t", "epoch", "loss", highlight=1))
    assert len(curve.findall(f".//{SVG}circle")) == 3 + 1  # the nan is left out; the best point gets a ring
    heat = ET.fromstring(svg_charts.heatmap(["x", "y"], [[4, 1], [0, 2]], "t"))
    assert [t.text for t in heat.findall(f".//{SVG}text")].count("4") == 1
    assert heat.get("viewBox") and heat.get("width") == "100%"
    assert "&lt;b&gt;" in svg_charts.grouped_bars(["<b>"], {"s": [1]}, "t", "n")  # names are escaped


def test_thresholds_in_words_come_from_the_eval_config():
    cfg = load_config(None, {"evaluator.min_accuracy": "0.93", "evaluator.min_class_recall": "0.7"})
    text = html_report.thresholds(json_format.MessageToJson(eval_config(cfg)))
    assert "accuracy on overall ≥ 0.93" in text
    assert "accuracy on overall may drop by at most 0.01 against the previous blessed model" in text
    assert "accuracy on each label_name slice ≥ 0.7" in text


def test_macro_precision_recall_f1_of_a_slice():
    # true 0: 3 right, 1 called 1; true 1: 1 right. precision 1.0 and 0.5; recall 0.75 and 1.0.
    precision, recall, f1 = html_report._macro({(0, 0): 3, (0, 1): 1, (1, 1): 1})
    assert np.isclose(precision, 0.75) and np.isclose(recall, 0.875)
    assert np.isclose(f1, (report.f1_score(1.0, 0.75) + report.f1_score(0.5, 1.0)) / 2)


def test_overlay_keeps_the_image_size_and_colours_the_hot_region():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(buf, format="PNG")
    heat = np.zeros((16, 16), np.float32)
    heat[:8, :8] = 1.0
    im = np.asarray(html_report.overlay(buf.getvalue(), heat, px=32))
    assert im.shape == (32, 32, 3)
    hot, cold = im[2, 2], im[-2, -2]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red where the heat is, blue where there is none


def test_format_runs_aligns_one_line_per_run():
    rows = [
        {"run_id": "r1", "date": "2026-01-01 00:00:00 UTC", "data_root": "/d", "examples": 200, "test_accuracy": 0.95,
         "blessed": True, "pushed_version": "1", "executed": 11, "cached": 0, "failed": []},
        {"run_id": "r2", "date": "2026-01-02 00:00:00 UTC", "data_root": "/d", "examples": None, "test_accuracy": None,
         "blessed": None, "pushed_version": None, "executed": 4, "cached": 1, "failed": ["DataGate"]},
    ]
    lines = html_report.format_runs(rows).splitlines()
    assert lines[0].split()[:2] == ["run", "id"] and len(lines) == 3
    assert lines[1].split()[:6] == ["r1", "2026-01-01", "00:00:00", "UTC", "200", "0.9500"]
    assert "- (failed: DataGate)" in lines[2]


def test_a_run_that_stopped_at_the_data_gate_still_gets_every_section():
    summary = report.RunSummary(run_id="r-failed", node_states={"ImageExampleGen": "complete", "DataGate": "failed"})
    summary.node_seconds = {"ImageExampleGen": 2.0, "DataGate": 0.5}
    summary.anomalies = ["train: feature 'height': Unexpectedly small value: 8."]
    page = html_report.render(html_report.RunInfo(summary=summary, created_ms=0))
    for sid, title in html_report.SECTIONS:
        assert f'<section id="{sid}"><h2>{title}</h2>' in page
    assert "Unexpectedly small value" in page and "failed: DataGate" in page
    assert "the run stopped before the Pusher" in page and "No evaluation in this run" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
