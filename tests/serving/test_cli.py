"""`lenspipe serve` / `python -m serving` flags and shutdown, and the `lenspipe predict` client."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, http, install_version, wait_until_ready
from fixture_models import LABELS, png_bytes
from serving.cli import predict_main, serve_main
from serving.flags import (ConfigError, parse_server_options, read_batching_parameters, read_model_server_config,
                           read_monitoring_config)

REPO = Path(__file__).resolve().parents[2]


def test_model_config_file_with_policies_and_labels(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("""
model_config_list {
  config { name: "a" base_path: "/models/a" model_platform: "tensorflow"
           model_version_policy { specific { versions: 3 versions: 5 } }
           version_labels { key: "stable" value: 3 } version_labels { key: "canary" value: 5 } }
  config { name: "b" base_path: "/models/b" model_version_policy { latest { num_versions: 2 } } }
}""")
    config = read_model_server_config(str(path))
    a, b = config.model_config_list.config
    assert list(a.model_version_policy.specific.versions) == [3, 5]
    assert dict(a.version_labels) == {"stable": 3, "canary": 5}
    assert b.model_version_policy.latest.num_versions == 2


@pytest.mark.parametrize("text,message", [
    ('model_config_list { config { name: "a" } }', "has no base_path"),
    ('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }', "duplicate"),
    ('model_config_list { config { nme: "a" } }', "Error parsing text-format tensorflow.serving.ModelServerConfig"),
    ('model_config_list { config { name: "a" base_path: "/x" model_platform: "pytorch" } }', "only model_platform"),
])
def test_invalid_model_config_files(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_model_server_config(str(path))


def test_batching_and_monitoring_text_protos(tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 32 } batch_timeout_micros { value: 1000 }\n"
                        "num_batch_threads { value: 3 } max_enqueued_batches { value: 7 }\n"
                        "allowed_batch_sizes: 16 allowed_batch_sizes: 32")
    options = read_batching_parameters(str(batching))
    assert (options.max_batch_size, options.batch_timeout_micros, options.num_batch_threads,
            options.max_enqueued_batches, options.allowed_batch_sizes) == (32, 1000, 3, 7, (16, 32))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true path: '/metrics' }")
    assert read_monitoring_config(str(monitoring)) == "/metrics"
    monitoring.write_text("prometheus_config { enable: false }")
    assert read_monitoring_config(str(monitoring)) is None
    batching.write_text("max_batch_size { value: 0 }")
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        read_batching_parameters(str(batching))


def test_flag_defaults_and_errors(capsys):
    options = parse_server_options(["--model_base_path=/m", "--enable_batching"])
    assert (options.port, options.rest_api_port, options.host, options.model_name, options.enable_batching,
            options.rest_api_timeout_in_ms) == (8500, 8501, "127.0.0.1", "default", True, 30000)
    assert serve_main(["--model_base_path=/m", "--port=70000"]) == 2
    assert "--port must be in [0, 65535]" in capsys.readouterr().err
    assert serve_main(["--model_name=x"]) == 2
    assert "--model_base_path or --model_config_file" in capsys.readouterr().err


def test_predict_client_rest_and_grpc(main_server, tmp_path, capsys):
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes(2))
    assert predict_main([str(image), "--url", main_server.url, "--model", "demo", "--label", "stable"]) == 0
    rest_line = capsys.readouterr().out.strip()
    path, label, probability = rest_line.split("\t")
    assert path == str(image) and label in LABELS and 0 < float(probability) <= 1
    assert predict_main([str(image), "--grpc", main_server.grpc_target, "--model", "demo", "--version", "1"]) == 0
    assert capsys.readouterr().out.strip() == rest_line


def test_predict_client_errors_are_one_line(main_server, tmp_path, capsys):
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes(2))
    port = free_port()
    assert predict_main([str(image), "--url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"http://127.0.0.1:{port}" in err and "lenspipe serve" in err and "\n" not in err
    assert predict_main([str(image), "--url", main_server.url, "--model", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert "HTTP 404" in err and "Servable not found" in err
    assert predict_main([str(tmp_path / "missing.png"), "--url", main_server.url]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_python_m_serving_drains_in_flight_requests_on_sigterm(model_cache, tmp_path):
    base = tmp_path / "demo"
    base.mkdir()
    install_version(model_cache, base, 1)
    batching = tmp_path / "batching.config"
    # The request waits 3 s in the batch queue: SIGTERM arrives while it is in flight.
    batching.write_text("max_batch_size { value: 64 } batch_timeout_micros { value: 3000000 } "
                        "num_batch_threads { value: 1 }")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    rest = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model_name=demo", f"--model_base_path={base}",
         f"--rest_api_port={rest}", f"--port={free_port()}", "--enable_batching",
         f"--batching_parameters_file={batching}", f"--monitoring_config_file={monitoring}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{rest}"
    try:
        wait_until_ready(url, process)
        assert http("GET", f"{url}/monitoring/prometheus/metrics").status == 200
        result: list = []
        request = threading.Thread(target=lambda: result.append(http(
            "POST", f"{url}/v1/models/demo:predict",
            {"instances": [{"b64": base64.b64encode(png_bytes(1)).decode()}]})))
        request.start()
        time.sleep(1.0)  # ordering only: let the request reach the batch queue
        process.send_signal(signal.SIGTERM)
        request.join(60)
        assert process.wait(60) == 0
        assert result and result[0].status == 200 and result[0].json()["predictions"][0]["label"] in LABELS
        with pytest.raises(OSError):
            http("GET", f"{url}/healthz", timeout=2)
        assert b"shutting down" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
