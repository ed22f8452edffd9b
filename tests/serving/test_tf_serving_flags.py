"""Every tensorflow_model_server flag starts the server: implemented ones act, the others warn."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import free_port, half_models_config, http, start_server, wait_until_ready
from serving.cli import serve_main
from serving.model_server import ModelServer, StartupError
from serving.flags import (UNSUPPORTED_FLAGS, ConfigError, build_parser, parse_grpc_channel_arguments,
                           parse_server_options)

REPO = Path(__file__).resolve().parents[2]

# The flag_list of tensorflow_serving/model_servers/main.cc (tensorflow/serving@9d981c5c).
MAIN_CC_FLAGS = """port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models batching_parameters_file
enable_per_model_batching_parameters model_config_file model_config_file_poll_wait_seconds model_name
model_base_path num_load_threads num_unload_threads max_num_load_retries load_retry_interval_micros
file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism tensorflow_session_config_file
tensorflow_intra_op_parallelism tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file
platform_config_file per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads
enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools num_tflite_interpreters_per_pool
enable_signature_method_name_check xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler
thread_pool_factory_config_file mixed_precision skip_initialize_tpu enable_grpc_healthcheck_service
enable_serialization_as_tensor_content""".split()


def test_every_main_cc_flag_is_known():
    known = {option.lstrip("-") for action in build_parser()._actions for option in action.option_strings}
    assert set(MAIN_CC_FLAGS) - known == set()


def _sample(kind: type) -> str:
    return {bool: "true", int: "3", float: "0.5", str: "/etc/some.config"}[kind]


def test_each_unsupported_flag_parses_and_draws_one_warning_naming_it():
    argv = ["--model_base_path=/m"] + [f"--{name}={_sample(kind)}" for name, (kind, _, _) in UNSUPPORTED_FLAGS.items()]
    options = parse_server_options(argv)
    assert len(options.warnings) == len(UNSUPPORTED_FLAGS)
    for name, line in zip(UNSUPPORTED_FLAGS, options.warnings):
        assert line.startswith(f"warning: --{name}=") and "\n" not in line
    # The values at which lenspipe already behaves as TF Serving are silent.
    quiet = parse_server_options(["--model_base_path=/m", "--enable_model_warmup=false", "--prefer_tflite_model=false",
                                  "--ssl_config_file=", "--tensorflow_intra_op_parallelism=0"])
    assert quiet.warnings == ()


def test_grpc_channel_arguments_parse_like_tf_serving():
    assert parse_grpc_channel_arguments("grpc.max_connection_age_ms=2000,grpc.primary_user_agent=me,a=9999999999") \
        == (("grpc.max_connection_age_ms", 2000), ("grpc.primary_user_agent", "me"), ("a", "9999999999"))
    assert parse_grpc_channel_arguments("") == ()
    with pytest.raises(ConfigError, match="--grpc_channel_arguments: expected key=value, got 'oops'"):
        parse_grpc_channel_arguments("a=1,oops")


def test_malformed_model_config_file_fails_with_tf_servings_message(tmp_path, capsys):
    path = tmp_path / "models.config"
    path.write_text('model_config_list {\n  config { nme: "a" } }\n')
    assert serve_main([f"--model_config_file={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("lenspipe serve: --model_config_file: Error parsing text-format tensorflow.serving.ModelServerConfig: "
                   '2:12: Message type "tensorflow.serving.ModelConfig" has no field named "nme". '
                   f"Invalid protobuf file: '{path}'")


def test_version_flag_prints_and_exits_0(capsys):
    assert serve_main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TensorFlow ModelServer: lenspipe-") and f"TensorFlow Library: {tf.__version__}" in out


def test_tf_serving_launch_line_with_socket_channel_args_and_unsupported_flags(half_models, tmp_path):
    """A tensorflow_model_server command line: gRPC on a UNIX socket with a 4 KiB receive limit."""
    socket_path = tmp_path / "grpc.sock"
    rest = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", f"--model_config_file={half_models_config(half_models, tmp_path)}",
         "--port=0", f"--rest_api_port={rest}", f"--grpc_socket_path={socket_path}",
         "--grpc_channel_arguments=grpc.max_receive_message_length=4096", "--prefer_tflite_model=true",
         "--rest_api_num_threads=8", "--enable_model_warmup=false", "--tensorflow_intra_op_parallelism=2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        wait_until_ready(f"http://127.0.0.1:{rest}", process)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0], [5.0]], np.float32)))
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout=30)
            assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5], [4.5]]
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros([2000, 1], np.float32)))  # 8 KB
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        warnings = [line for line in process.stderr.read().decode().splitlines() if "warning: --" in line]
        assert [w.split("warning: ", 1)[1].split(" ")[0] for w in warnings] == [
            "--rest_api_num_threads=8", "--tensorflow_intra_op_parallelism=2", "--prefer_tflite_model=true"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_file_system_poll_wait_seconds_0_polls_once_as_tf_serving(half_models, tmp_path):
    assert parse_server_options(["--model_base_path=/m", "--file_system_poll_wait_seconds=0"]) \
        .file_system_poll_wait_seconds == 0
    with pytest.raises(ConfigError, match="--file_system_poll_wait_seconds must be >= 0"):
        parse_server_options(["--model_base_path=/m", "--file_system_poll_wait_seconds=-1"])
    server = start_server(model_name="half_plus_two", model_base_path=str(half_models / "half_plus_two"),
                          file_system_poll_wait_seconds=0)
    try:
        assert http("POST", f"{server.url}/v1/models/half_plus_two:predict", {"instances": [1.0]}).json() == \
            {"predictions": [2.5]}
        assert server.server._tasks == []  # no periodic version poll
    finally:
        server.stop()


def test_saved_model_tags_choose_the_meta_graph(half_models):
    options = parse_server_options(["--model_name=half_plus_two", f"--model_base_path={half_models / 'half_plus_two'}",
                                    "--port=0", f"--rest_api_port={free_port()}", "--saved_model_tags=serve,gpu"])
    assert options.saved_model_tags == ("serve", "gpu")

    async def start_and_stop() -> None:
        server = ModelServer(options, drain_seconds=1)
        try:
            with pytest.raises(StartupError, match=r"Could not find meta graph def matching supplied tags: "
                                                   r"\{ serve gpu \}"):
                await server.start()
        finally:
            await server.stop()
    asyncio.run(start_and_stop())
