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


def test_every_config_field_is_an_option_and_an_environment_variable(capsys, monkeypatch, tmp_path):
    from lenspipe.config import fields

    config_file = tmp_path / "c.yaml"
    config_file.write_text("trainer:\n  batch_size: 16\n")
    monkeypatch.setenv("LENSPIPE_TRAINER__EPOCHS", "7")
    code = cli.main(["config", "--explain", "--config", str(config_file), "--trainer.dropout", "0.2", "--epochs", "9"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert code == 0 and set(rows) == {dotted for dotted, _ in fields()}
    assert rows["trainer.batch_size"] == ["file", "16"]
    assert rows["trainer.epochs"] == ["flag", "9"]  # an option beats the environment
    assert rows["trainer.dropout"] == ["flag", "0.2"]
    assert rows["tuner.max_trials"] == ["default", "4"]
    monkeypatch.setenv("LENSPIPE_TRAINER__DROPOUT", "0.4")
    cli.main(["config"])
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["dropout"] == 0.4  # env beats the default


def test_a_misspelt_option_or_variable_suggests_the_nearest(capsys, monkeypatch):
    code, _ = run(capsys, "run", "--trainer.epoch", "3")  # no abbreviations: a prefix is an error, not a run
    assert "unknown option --trainer.epoch (did you mean --trainer.epochs?)" in str(code)
    code, _ = run(capsys, "config", "--set", "trainer.epoch=3")
    assert "did you mean trainer.epochs?" in str(code)
    monkeypatch.setenv("LENSPIPE_TRAINER__EPOCS", "3")
    code, _ = run(capsys, "config")
    assert "LENSPIPE_TRAINER__EPOCS: no such config field (did you mean LENSPIPE_TRAINER__EPOCHS?)" in str(code)


def test_help_lists_sections_with_defaults_and_completion_knows_the_options(capsys):
    code, out = run(capsys, "run", "--help")
    assert code == 0
    for section in ("data", "image", "tuner", "trainer", "evaluator", "classical", "pusher", "runtime"):
        assert f"{section} options:" in out.out
    assert "--trainer.epochs VALUE" in out.out and "(default: 40)" in out.out
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o default -F _lenspipe lenspipe" in script
    assert "--trainer.epochs" in script
    commands = script.split('compgen -W "', 1)[1].split('"', 1)[0].split()
    assert {"run", "config", "completion", "serve", "predict"} <= set(commands)
