"""Server flags (TF Serving's names and defaults) and the text-proto config files they point at.

Every `tensorflow_model_server` flag (model_servers/main.cc) parses, so TF Serving launch scripts run
unchanged; the ones for features lenspipe lacks are listed in UNSUPPORTED_FLAGS and each draws one
warning line at start-up instead of an exit.

Config files are parsed with protobuf's text_format into TF Serving's own message types:
`ModelServerConfig` comes from the tensorflow-serving-api wheel; `BatchingParameters` and
`MonitoringConfig` are not shipped in that wheel, so they are declared here from TF Serving's
.proto files (same package, names and field numbers) and built with protobuf's descriptor pool.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from serving.request_log import RequestLogOptions

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def _build_config_messages() -> tuple[type[Message], type[Message]]:
    """Declare tensorflow.serving.BatchingParameters and MonitoringConfig in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="lenspipe/serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    f = descriptor_pb2.FieldDescriptorProto
    int64v, stringv = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    batching = fdp.message_type.add(name="BatchingParameters")
    # Field numbers from tensorflow_serving/servables/tensorflow/session_bundle_config.proto.
    for number, (name, type_name) in enumerate(
            [("max_batch_size", int64v), ("batch_timeout_micros", int64v), ("max_enqueued_batches", int64v),
             ("num_batch_threads", int64v), ("thread_pool_name", stringv)], start=1):
        batching.field.add(name=name, number=number, type=f.TYPE_MESSAGE, type_name=type_name,
                           label=f.LABEL_OPTIONAL)
    batching.field.add(name="allowed_batch_sizes", number=6, type=f.TYPE_INT64, label=f.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
    batching.field.add(name="enable_large_batch_splitting", number=8, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
    # From tensorflow_serving/config/monitoring_config.proto.
    prom = fdp.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    mon = fdp.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=f.TYPE_MESSAGE,
                  type_name=".tensorflow.serving.PrometheusConfig", label=f.LABEL_OPTIONAL)
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")))


BatchingParameters, MonitoringConfig = _build_config_messages()


class ConfigError(ValueError):
    """A flag or config file is invalid; the message names the flag or file."""


class VersionRequested(Exception):
    """`--version` was given: print version_text() and exit 0, as tensorflow_model_server does."""


def version_text() -> str:
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"
    return f"TensorFlow ModelServer: lenspipe-{version('lenspipe')}\nTensorFlow Library: {version('tensorflow')}"


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Dynamic batching knobs; defaults are TF Serving's (BatchingParameters comments)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"batching parameter {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batching parameter batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ConfigError("allowed_batch_sizes must be increasing and end with max_batch_size "
                              f"({self.max_batch_size}), got {list(sizes)}")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Everything `lenspipe serve` was told; validated at start-up."""

    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    port: int = 8500
    rest_api_port: int = 8501
    host: str = "127.0.0.1"
    file_system_poll_wait_seconds: float = 1.0
    model_config_file_poll_wait_seconds: float = 0.0
    enable_batching: bool = False
    batching: BatchingOptions = dataclasses.field(default_factory=BatchingOptions)
    prometheus_path: str | None = None
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    rest_api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    load_threads: int = 1
    grpc_socket_path: str = ""
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    enable_signature_method_name_check: bool = False
    saved_model_tags: tuple[str, ...] = ("serve",)
    warnings: tuple[str, ...] = ()  # one line per accepted-but-ignored TF Serving flag
    enable_model_warmup: bool = True  # TF Serving's default: replay assets.extra/tf_serving_warmup_requests
    request_log: "RequestLogOptions | None" = None  # --request_log_dir (lenspipe addition)


def _read_text_proto(path: str, message: Message, flag: str) -> Message:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from exc
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        # The two lines TF Serving logs (libprotobuf's parser error, then ParseProtoTextFile's status),
        # joined into one, so log alerts written for TF Serving still match.
        detail = str(exc).split(" : ", 1)[-1]
        where = f"{exc.GetLine()}:{exc.GetColumn()}: " if exc.GetLine() > 0 else ""
        raise ConfigError(f"{flag}: Error parsing text-format {message.DESCRIPTOR.full_name}: {where}{detail} "
                          f"Invalid protobuf file: '{path}'") from exc


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parse a `--model_config_file` (ModelServerConfig text proto); only model_config_list is supported."""
    config = _read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "--model_config_file")
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"--model_config_file: {path} must contain a model_config_list")
    validate_model_server_config(config)
    return config


def validate_model_server_config(config: model_server_config_pb2.ModelServerConfig) -> None:
    """Reject configs TF Serving rejects: empty or duplicate names, missing base paths, non-TF platforms."""
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError("model config: every model needs a name")
        if model.name in seen:
            raise ConfigError(f"model config: duplicate model name {model.name!r}")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"model config: model {model.name!r} has no base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"model config: model {model.name!r}: only model_platform tensorflow is supported")


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config TF Serving builds from --model_name/--model_base_path."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, base_path, "tensorflow"
    return config


def read_batching_parameters(path: str) -> BatchingOptions:
    """Parse a `--batching_parameters_file` (BatchingParameters text proto); unset fields keep defaults."""
    params = _read_text_proto(path, BatchingParameters(), "--batching_parameters_file")
    kwargs: dict[str, object] = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                 "thread_pool_name"):
        if params.HasField(name):
            kwargs[name] = getattr(params, name).value
    kwargs["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
    kwargs["enable_large_batch_splitting"] = params.enable_large_batch_splitting
    try:
        return BatchingOptions(**kwargs)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"--batching_parameters_file {path}: {exc}") from exc


def read_monitoring_config(path: str) -> str | None:
    """Parse a `--monitoring_config_file`; return the Prometheus path if enabled, else None."""
    config = _read_text_proto(path, MonitoringConfig(), "--monitoring_config_file")
    if not config.prometheus_config.enable:
        return None
    path_ = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
    if not path_.startswith("/") or path_.startswith("/v1/"):
        raise ConfigError(f"--monitoring_config_file: prometheus path must start with / and not /v1/, got {path_!r}")
    return path_


def _bool_flag(value: str) -> bool:
    # TF Serving's flags accept --flag, --flag=true and --flag=false.
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """The `lenspipe serve` argument parser, with TF Serving's flag names."""
    p = argparse.ArgumentParser(
        prog="lenspipe serve",
        description="Serve SavedModels from a TF Serving model base path over TF Serving's REST and gRPC APIs.")
    p.add_argument("--model_name", default="default", help="Name of the model (ignored with --model_config_file).")
    p.add_argument("--model_base_path", default="",
                   help="Path holding integer-named version directories (ignored with --model_config_file).")
    p.add_argument("--model_config_file", default="", help="ModelServerConfig text proto with a model_config_list.")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="Seconds between re-reads of --model_config_file; 0 reads it once.")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="Seconds between scans of the base paths for new versions; 0 scans only until "
                        "every model is available.")
    p.add_argument("--port", type=int, default=8500, help="gRPC port; 0 disables gRPC.")
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0 disables REST.")
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to bind (lenspipe addition; TF Serving binds all interfaces).")
    p.add_argument("--enable_batching", nargs="?", const=True, default=False, type=_bool_flag,
                   help="Merge concurrent requests into one model call.")
    p.add_argument("--batching_parameters_file", default="", help="BatchingParameters text proto.")
    p.add_argument("--monitoring_config_file", default="",
                   help="MonitoringConfig text proto; enables Prometheus metrics.")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="Per-request REST deadline in ms; answered with 504 when exceeded.")
    p.add_argument("--rest_api_enable_cors_support", nargs="?", const=True, default=False, type=_bool_flag,
                   help="Add CORS headers to REST responses.")
    p.add_argument("--rest_api_max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help="Largest REST request body accepted (lenspipe addition); larger bodies get 413.")
    p.add_argument("--grpc_socket_path", default="", help="Also serve gRPC on this UNIX socket path.")
    p.add_argument("--grpc_channel_arguments", default="",
                   help="Comma-separated key=value gRPC server arguments (e.g. grpc.max_connection_age_ms=2000).")
    p.add_argument("--enable_signature_method_name_check", nargs="?", const=True, default=False, type=_bool_flag,
                   help="Require method_name classify/regress for :classify/:regress (TF1 models); off serves "
                        "native TF2 signatures, whose method_name is predict.")
    p.add_argument("--saved_model_tags", default="serve", help="Comma-separated tags of the MetaGraphDef to load.")
    p.add_argument("--num_load_threads", type=int, default=0, help="Threads loading versions (0 = one).")
    p.add_argument("--allow_version_labels_for_unavailable_models", nargs="?", const=True, default=False,
                   type=_bool_flag, help="Accepted; lenspipe always resolves labels per request.")
    p.add_argument("--version", nargs="?", const=True, default=False, type=_bool_flag,
                   help="Print the version and exit.")
    for name, (kind, _, _) in UNSUPPORTED_FLAGS.items():
        if kind is bool:
            p.add_argument(f"--{name}", nargs="?", const=True, default=None, type=_bool_flag, help=argparse.SUPPRESS)
        else:
            p.add_argument(f"--{name}", type=kind, default=None, help=argparse.SUPPRESS)
    p.add_argument("--enable_model_warmup", nargs="?", const=True, default=True, type=_bool_flag,
                   help="Replay a version's assets.extra/tf_serving_warmup_requests before it is AVAILABLE.")
    log_defaults = RequestLogOptions(directory="", sample_rate=0.0)
    p.add_argument("--request_log_dir", default="",
                   help="Log a sample of :predict/:classify requests here as TFRecords of tf.Examples (the image "
                        "and its properties, the model version that answered); `lenspipe skew` reads them "
                        "(lenspipe addition).")
    p.add_argument("--request_log_sample_rate", type=float, default=0.0,
                   help="Fraction of requests logged, in [0, 1] (with --request_log_dir).")
    p.add_argument("--request_log_max_file_bytes", type=int, default=log_defaults.max_file_bytes,
                   help="A log file is closed (made visible) at this size.")
    p.add_argument("--request_log_max_file_seconds", type=float, default=log_defaults.max_file_seconds,
                   help="... or this many seconds after it was opened.")
    p.add_argument("--request_log_max_total_bytes", type=int, default=log_defaults.max_total_bytes,
                   help="Disk budget of --request_log_dir: the oldest files are deleted to stay under it.")
    p.add_argument("--request_log_queue_size", type=int, default=log_defaults.queue_size,
                   help="Sampled requests waiting for the writer process; when full, requests are not logged (counted).")
    return p


# tensorflow_model_server flags lenspipe parses but does not act on: name -> (type, the value at which
# lenspipe behaves as TF Serving does (None: no such value), what is missing). A flag given with any
# other value draws one warning line.
UNSUPPORTED_FLAGS: dict[str, tuple[type, object, str]] = {
    "rest_api_num_threads": (int, None, "REST runs on one asyncio event loop"),
    "enable_per_model_batching_parameters": (bool, False, "per-model batching_params.pbtxt is not read"),
    "num_unload_threads": (int, None, "versions unload on the event loop"),
    "max_num_load_retries": (int, None, "a failed version is retried when its saved_model.pb changes"),
    "load_retry_interval_micros": (int, None, "a failed version is retried when its saved_model.pb changes"),
    "flush_filesystem_caches": (bool, None, "no filesystem cache flushing"),
    "tensorflow_session_parallelism": (int, 0, "TensorFlow's default thread pools are used"),
    "tensorflow_session_config_file": (str, "", "no Session ConfigProto"),
    "tensorflow_intra_op_parallelism": (int, 0, "TensorFlow's default thread pools are used"),
    "tensorflow_inter_op_parallelism": (int, 0, "TensorFlow's default thread pools are used"),
    "use_alts_credentials": (bool, False, "no ALTS; gRPC is insecure"),
    "ssl_config_file": (str, "", "no SSL; gRPC is insecure"),
    "platform_config_file": (str, "", "only the TensorFlow platform"),
    "per_process_gpu_memory_fraction": (float, 0.0, "no GPU support"),
    "grpc_max_threads": (int, None, "gRPC runs on the asyncio event loop"),
    "num_request_iterations_for_warmup": (int, 0, "no model warm-up"),
    "remove_unused_fields_from_bundle_metagraph": (bool, None, "the MetaGraphDef is kept as written"),
    "prefer_tflite_model": (bool, False, "no TensorFlow Lite models"),
    "num_tflite_pools": (int, None, "no TensorFlow Lite models"),
    "num_tflite_interpreters_per_pool": (int, None, "no TensorFlow Lite models"),
    "xla_cpu_compilation_enabled": (bool, False, "XLA JIT is not enabled"),
    "xla_gpu_compilation_enabled": (bool, False, "XLA JIT is not enabled"),
    "enable_profiler": (bool, False, "no profiler service"),
    "thread_pool_factory_config_file": (str, "", "no thread pool factory"),
    "mixed_precision": (str, "", "no mixed precision mode"),
    "skip_initialize_tpu": (bool, None, "no TPU support"),
    "enable_grpc_healthcheck_service": (bool, False, "no grpc.health.v1 service (use /healthz, /readyz)"),
    "enable_serialization_as_tensor_content": (bool, False, "tensors are serialized as typed value fields"),
}


def _unsupported_warnings(args: argparse.Namespace) -> tuple[str, ...]:
    lines = []
    for name, (_, neutral, missing) in UNSUPPORTED_FLAGS.items():
        value = getattr(args, name)
        if value is not None and (neutral is None or value != neutral):
            shown = str(value).lower() if isinstance(value, bool) else value
            lines.append(f"warning: --{name}={shown} is accepted but not supported by lenspipe serve ({missing}); "
                         "ignoring it")
    return tuple(lines)


def parse_grpc_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """TF Serving's parseGrpcChannelArgs: `k=v,k=v`; a value that parses as int32 is passed as an int."""
    result: list[tuple[str, int | str]] = []
    for item in text.split(",") if text else []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        try:
            number = int(value)
            result.append((key, number) if -2**31 <= number < 2**31 else (key, value))
        except ValueError:
            result.append((key, value))
    return tuple(result)


def _request_log_options(args: argparse.Namespace) -> RequestLogOptions | None:
    if not args.request_log_dir:
        if args.request_log_sample_rate:
            raise ConfigError("--request_log_sample_rate needs --request_log_dir (where the sampled requests go)")
        return None
    try:
        options = RequestLogOptions(
            directory=args.request_log_dir, sample_rate=args.request_log_sample_rate,
            max_file_bytes=args.request_log_max_file_bytes, max_total_bytes=args.request_log_max_total_bytes,
            max_file_seconds=args.request_log_max_file_seconds, queue_size=args.request_log_queue_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if options.sample_rate == 0:
        raise ConfigError(f"--request_log_dir {args.request_log_dir} with --request_log_sample_rate 0 logs nothing; "
                          "give a rate in (0, 1], e.g. 0.1")
    path = Path(options.directory)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--request_log_dir {path} exists and is not a directory")
    return options


def parse_server_options(argv: list[str]) -> ServerOptions:
    """Parse and validate `lenspipe serve` flags. Raises ConfigError naming the bad flag."""
    args = build_parser().parse_args(argv)
    if args.version:
        raise VersionRequested()
    if not args.model_config_file and not args.model_base_path:
        raise ConfigError("either --model_base_path or --model_config_file is required")
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"--{flag} must be in [0, 65535], got {value}")
    if args.port == 0 and args.rest_api_port == 0 and not args.grpc_socket_path:
        raise ConfigError("--port and --rest_api_port are both 0 and there is no --grpc_socket_path: "
                          "nothing to serve on")
    if args.file_system_poll_wait_seconds < 0:
        raise ConfigError("--file_system_poll_wait_seconds must be >= 0 (TF Serving reserves negative values "
                          "for its tests)")
    if args.rest_api_timeout_in_ms < 0 or args.rest_api_max_body_bytes < 1:
        raise ConfigError("--rest_api_timeout_in_ms must be >= 0 and --rest_api_max_body_bytes >= 1")
    batching = BatchingOptions()
    if args.batching_parameters_file:
        if not args.enable_batching:
            raise ConfigError("--batching_parameters_file needs --enable_batching")
        batching = read_batching_parameters(args.batching_parameters_file)
    prometheus = read_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else None
    tags = tuple(t for t in args.saved_model_tags.split(",") if t)
    if not tags:
        raise ConfigError("--saved_model_tags must name at least one tag")
    if args.model_config_file:
        read_model_server_config(args.model_config_file)  # fail at start-up, not at first poll
    return ServerOptions(
        model_name=args.model_name, model_base_path=args.model_base_path,
        model_config_file=args.model_config_file, port=args.port, rest_api_port=args.rest_api_port,
        host=args.host, file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        enable_batching=args.enable_batching, batching=batching, prometheus_path=prometheus,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_enable_cors_support=args.rest_api_enable_cors_support,
        rest_api_max_body_bytes=args.rest_api_max_body_bytes,
        load_threads=max(1, args.num_load_threads), grpc_socket_path=args.grpc_socket_path,
        grpc_channel_arguments=parse_grpc_channel_arguments(args.grpc_channel_arguments),
        enable_signature_method_name_check=args.enable_signature_method_name_check,
        saved_model_tags=tags, warnings=_unsupported_warnings(args),
        enable_model_warmup=args.enable_model_warmup, request_log=_request_log_options(args))


def initial_model_config(options: ServerOptions) -> model_server_config_pb2.ModelServerConfig:
    """The model config to start with: the config file if given, else the single-model flags."""
    if options.model_config_file:
        return read_model_server_config(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path)
