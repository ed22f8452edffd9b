"""The CLI's own checks: one clear line and exit 2 before any TFX work starts."""

from __future__ import annotations

import pytest
import yaml

from pipeline import cli


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    return exit_info.value.code, capsys.readouterr()


def test_missing_data_dir_names_it(tmp_path, capsys):
    code, _ = run(capsys, "run", "--work-dir", str(tmp_path), "--data", str(tmp_path / "nope"))
    assert "nope: not a directory" in str(code)


def test_one_class_is_not_enough(tmp_path, capsys):
    (tmp_path / "data" / "only").mkdir(parents=True)
    (tmp_path / "data" / "only" / "a.png").write_bytes(b"x")
    code, _ = run(capsys, "run", "--work-dir", str(tmp_path), "--data", str(tmp_path / "data"))
    assert "found 1 class folder(s) with images; need at least 2" in str(code)


def test_empty_class_folder_is_warned_about_and_not_a_class(tmp_path, capsys):
    (tmp_path / "data" / "only").mkdir(parents=True)
    (tmp_path / "data" / "only" / "a.png").write_bytes(b"x")
    (tmp_path / "data" / "hollow").mkdir()
    code, err = run(capsys, "run", "--work-dir", str(tmp_path), "--data", str(tmp_path / "data"))
    assert "found 1 class folder(s) with images" in str(code)
    assert "hollow holds no image files: not a class" in err.err


def test_missing_schema_file_names_it(tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir(parents=True)
    code, _ = run(
        capsys, "run", "--work-dir", str(tmp_path), "--data", str(tmp_path / "data"),
        "--set", f"data.schema_file={tmp_path / 'missing.pbtxt'}",
    )
    assert "missing.pbtxt: no such file" in str(code)


def test_bad_override_names_the_field(capsys):
    code, _ = run(capsys, "config", "--set", "trainer.dropout=1.5")
    assert str(code).startswith("lenspipe: config: trainer.dropout:")
    code, _ = run(capsys, "config", "--set", "trainer.dropout")
    assert "expected SECTION.FIELD=VALUE" in str(code)


def test_config_prints_effective_yaml_with_flag_overrides(capsys):
    assert cli.main(["config", "--image-size", "64", "--channels", "1", "--no-cache", "--trials", "5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["image"] == {"height": 64, "width": 64, "channels": 1}
    assert printed["runtime"]["enable_cache"] is False
    assert printed["tuner"]["max_trials"] == 5


def test_gate_failure_message_is_extracted_from_beams_wrapper():
    from components.data_gate import DataGateFailed

    wrapped = RuntimeError("data gate: 1 anomaly against the schema\n  train: feature 'x': bad [while running 'Run[DataGate]']")
    assert cli._root_message(wrapped) == "data gate: 1 anomaly against the schema\n  train: feature 'x': bad"
    chained = RuntimeError("outer")
    chained.__cause__ = DataGateFailed("data gate: 2 anomalies")
    assert cli._root_message(chained) == "data gate: 2 anomalies"
