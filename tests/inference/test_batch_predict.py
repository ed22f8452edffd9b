"""Offline prediction: `lenspipe predict --saved-model/--tflite` over files and folders."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from inference import batch


def lenspipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from pipeline.cli import entry; entry()", *args],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


@pytest.fixture(scope="module")
def held_out(digits_model, tmp_path_factory) -> Path:
    """The held-out digits as PNG files in class folders."""
    root = tmp_path_factory.mktemp("held-out")
    for i, (png, label) in enumerate(digits_model.test):
        (root / label).mkdir(exist_ok=True)
        (root / label / f"{i:04d}.png").write_bytes(png)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(digits_model, tmp_path_factory):
    """`lenspipe serve` on free ports with the digits model as version 1; yields its REST URL."""
    base = tmp_path_factory.mktemp("serving") / "digits"
    shutil.copytree(digits_model.saved_model_dir, base / "1")
    port, grpc_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pipeline.cli import entry; entry()", "serve", "--model_name", "digits",
         "--model_base_path", str(base), "--rest_api_port", str(port), "--port", str(grpc_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v1/models/digits", timeout=5) as r:
                    if b"AVAILABLE" in r.read():
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "lenspipe serve did not come up"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_predictions_over_held_out_images_equal_the_served_models_answers(digits_model, held_out, served, tmp_path):
    from serving.client import predict_rest

    out = tmp_path / "preds.jsonl"
    summary = batch.predict_to_files(
        batch.SavedModelBackend(digits_model.saved_model_dir), [str(held_out)], str(out), batch_size=32,
        show_progress=False,
    )
    rows = _rows(out)
    assert summary.images == len(rows) == len(digits_model.test) and summary.skipped_count == 0
    paths = [r["path"] for r in rows]
    answers = {}
    for start in range(0, len(paths), 100):
        for p in predict_rest(served, "digits", paths[start:start + 100]):
            answers[p.image] = p
    for row in rows:
        assert row["label"] == answers[row["path"]].label
        assert row["class_id"] == answers[row["path"]].class_id
        assert abs(row["probability"] - answers[row["path"]].probability) < 1e-5
        assert [t["probability"] for t in row["top_k"]] == sorted((t["probability"] for t in row["top_k"]), reverse=True)
    accuracy = np.mean([r["label"] == Path(r["path"]).parent.name for r in rows])
    assert accuracy >= 0.95
    assert sum(summary.per_class.values()) == len(rows)


@pytest.fixture(scope="module")
def messy_folder(held_out, tmp_path_factory) -> tuple[Path, int]:
    """Twenty good digits, a broken PNG, a text file named .png, an empty file and a README."""
    root = tmp_path_factory.mktemp("messy")
    good = sorted(held_out.glob("*/*.png"))[:20]
    for p in good:
        shutil.copy(p, root / f"{p.parent.name}_{p.name}")
    (root / "sub").mkdir()
    (root / "sub" / "broken.png").write_bytes(good[0].read_bytes()[:8] + b"\x00garbage" * 20)
    (root / "sub" / "notes.png").write_text("not an image at all")
    (root / "empty.png").write_bytes(b"")
    (root / "README.txt").write_text("hello")
    return root, len(good)


@pytest.mark.parametrize("backend", ["saved-model", "tflite"])
def test_a_folder_with_broken_and_non_image_files_still_predicts_all_the_others(
    backend, digits_model, messy_folder, tmp_path, tflite_float32
):
    root, good = messy_folder
    out = tmp_path / "out" / "preds.jsonl"
    model = digits_model.saved_model_dir if backend == "saved-model" else tflite_float32
    result = lenspipe("predict", f"--{backend}", model, str(root), "--output", str(out), "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(out)
    assert len(rows) == good
    assert all("/sub/" not in r["path"] and r["path"].endswith(".png") for r in rows)
    assert len((out.parent / "preds.csv").read_text().splitlines()) == good + 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["preds.csv", "preds.jsonl"]  # no temp files left
    err = result.stderr
    assert f"predicted: {good} image(s)" in err and "skipped:   4 file(s)" in err
    assert "broken.png: cannot decode" in err
    assert "notes.png: not an image" in err
    assert "empty.png: empty file" in err
    assert "README.txt: unsupported extension .txt" in err


@pytest.fixture(scope="module")
def tflite_float32(digits_model, tmp_path_factory) -> str:
    from inference.tflite_model import write_labels
    from trainer import tflite_export
    import tensorflow_transform as tft

    out = tmp_path_factory.mktemp("tflite-cli")
    mean, std = tflite_export.read_normalisation(tft.TFTransformOutput(digits_model.transform_dir), (16, 16, 1))
    prep = tflite_export.Preprocessing((8, 8, 1), (16, 16, 1), tuple(map(float, mean)), tuple(map(float, std)))
    path = out / "float32.tflite"
    path.write_bytes(tflite_export.convert(digits_model.saved_model_dir, prep, "float32"))
    write_labels(str(out / "labels.txt"), digits_model.class_names)
    return str(path)


def test_predict_tflite_prints_the_server_clients_lines(digits_model, held_out, tflite_float32):
    images = sorted(held_out.glob("*/*.png"))[:5]
    result = lenspipe("predict", "--tflite", tflite_float32, *map(str, images))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    reference = batch.SavedModelBackend(digits_model.saved_model_dir)
    probs = reference.predict_encoded([p.read_bytes() for p in images])
    for line, image, p in zip(lines, images, probs):
        path, label, probability = line.split("\t")
        assert path == str(image)
        assert label == digits_model.class_names[int(p.argmax())]
        assert abs(float(probability) - float(p.max())) < 1e-4


def test_predict_tflite_names_a_missing_model_in_one_line(tmp_path):
    result = lenspipe("predict", "--tflite", str(tmp_path / "nope.tflite"), str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"lenspipe predict: --tflite {tmp_path / 'nope.tflite'}: no such file"
