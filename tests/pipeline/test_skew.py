"""`lenspipe skew` pieces that need no pipeline run: the schema it validates with, the report section, bad
request logs. The whole command on a real run and real served requests is in tests/e2e/test_pipeline_e2e.py."""
from __future__ import annotations

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from lenspipe import features
from pipeline import html_report, skew


def test_the_skew_schema_compares_every_image_property_and_leaves_training_only_features_out_of_serving():
    schema = schema_pb2.Schema()
    for name, kind in ((features.IMAGE_KEY, schema_pb2.BYTES), (features.LABEL_NAME_KEY, schema_pb2.BYTES),
                       (features.CLASS_INDEX_KEY, schema_pb2.INT), (features.BRIGHTNESS_KEY, schema_pb2.FLOAT),
                       (features.HEIGHT_KEY, schema_pb2.INT), (features.FORMAT_KEY, schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind)
    out = skew.skew_schema(schema, infinity_norm=0.3, jensen_shannon=0.05)
    by_name = {f.name: f for f in out.feature}
    assert by_name[features.FORMAT_KEY].skew_comparator.infinity_norm.threshold == 0.3
    assert by_name[features.BRIGHTNESS_KEY].skew_comparator.jensen_shannon_divergence.threshold == 0.05
    assert by_name[features.HEIGHT_KEY].skew_comparator.jensen_shannon_divergence.threshold == 0.05
    for name in (features.IMAGE_KEY, features.LABEL_NAME_KEY, features.CLASS_INDEX_KEY):
        assert list(by_name[name].not_in_environment) == [skew.SERVING_ENVIRONMENT]
        assert not by_name[name].HasField("skew_comparator")
    assert list(out.default_environment) == ["TRAINING", skew.SERVING_ENVIRONMENT]
    assert not any(f.HasField("skew_comparator") for f in schema.feature)  # the run's schema is not changed


def test_the_report_section_is_added_once_and_replaced_when_skew_runs_again(tmp_path):
    page = tmp_path / "run.html"
    page.write_text('<html><body><nav><a href="#data">Data</a></nav><main><section id="data"><h2>Data</h2>x'
                    "</section></main></body></html>")
    html_report.add_section(str(page), "skew", "Serving skew", "<p>first</p>")
    html_report.add_section(str(page), "skew", "Serving skew", "<p>second</p>")
    text = page.read_text()
    assert text.count('<section id="skew">') == 1 and text.count('href="#skew"') == 1
    assert "second" in text and "first" not in text
    assert text.index('<section id="data">') < text.index('<section id="skew">') < text.index("</main>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.html"]  # the temporary file was renamed


def test_a_missing_empty_or_foreign_request_log_fails_with_one_line_naming_it(tmp_path):
    with pytest.raises(skew.SkewError, match="no such directory"):
        skew.read_request_log(tmp_path / "nope", "lenspipe")
    with pytest.raises(skew.SkewError, match="no closed request log files"):
        skew.read_request_log(tmp_path, "lenspipe")
    (tmp_path / "requests-20260101T000000.000000Z-1-000001.tfrecord").write_bytes(b"not a tfrecord at all")
    with pytest.raises(skew.SkewError, match="requests-20260101T000000.000000Z-1-000001.tfrecord: not a request log") as err:
        skew.read_request_log(tmp_path, "lenspipe")
    assert "\n" not in str(err.value)
