"""`lenspipe skew`: are the served requests like the data the serving version was trained on?

Reads the closed files of `lenspipe serve --request_log_dir` (serving/request_log.py), groups the
logged images by the model version that answered them, finds that version's training statistics
through ML Metadata (the push of the version -> the Model it copied -> the Trainer's `examples` ->
the StatisticsGen run on them; the schema is the one the Trainer read), computes TFDV statistics of
the logged image properties with the same options, and lets TFDV compare them: skew comparators in
the schema (L-infinity distance for categorical properties, Jensen-Shannon divergence for numeric
ones, thresholds from the `skew` config section) and the schema's domains in a SERVING environment.
The anomalies are printed; a run's HTML report gains a "Serving skew" section when it exists.
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

from lenspipe import features

EXIT_SKEW = 1
EXIT_USAGE = 2
TRAIN_SPLIT = "train"
SERVING_ENVIRONMENT = "SERVING"
STATISTICS_KEY = "statistics"  # StatisticsGen's output key


class SkewError(RuntimeError):
    """`lenspipe skew` cannot compare; the message names the file or version and what to do."""


@dataclasses.dataclass
class Lineage:
    """Where one served version came from."""

    version: int
    run_id: str
    model_id: int
    statistics_uri: str
    schema_uri: str


@dataclasses.dataclass
class VersionResult:
    version: int
    images: int
    lineage: Optional[Lineage] = None
    anomalies: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (feature, description)
    measurements: list[tuple[str, str, float, float]] = dataclasses.field(default_factory=list)  # feature, kind, value, threshold
    note: str = ""  # why the version was not compared

    @property
    def skewed(self) -> bool:
        return bool(self.anomalies)


# ---- the request log ------------------------------------------------------------------------------


def read_request_log(directory: Path, model_name: str) -> tuple[dict[int, list[bytes]], int, set[str]]:
    """Serialized tf.Examples of ``model_name`` by served version, the number of files, every model name seen."""
    import tensorflow as tf

    from serving.request_log import finished_files

    if not directory.is_dir():
        raise SkewError(f"--request-log {directory}: no such directory; give the --request_log_dir of `lenspipe serve`")
    files = finished_files(directory)
    if not files:
        raise SkewError(f"--request-log {directory}: no closed request log files (requests-*.tfrecord); the server "
                        "closes one at --request_log_max_file_bytes, after --request_log_max_file_seconds, and on stop")
    by_version: dict[int, list[bytes]] = defaultdict(list)
    names: set[str] = set()
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                example = tf.train.Example.FromString(record)
                feature = example.features.feature
                name = feature[features.REQUEST_MODEL_NAME_KEY].bytes_list.value[0].decode("utf-8")
                names.add(name)
                if name == model_name:
                    by_version[int(feature[features.REQUEST_MODEL_VERSION_KEY].int64_list.value[0])].append(record)
        except (tf.errors.OpError, IndexError, ValueError) as exc:
            raise SkewError(f"--request-log {path}: not a request log file ({type(exc).__name__}); "
                            "remove it or point --request-log at the server's --request_log_dir") from None
    return dict(by_version), len(files), names


# ---- ML Metadata ----------------------------------------------------------------------------------


def find_lineage(store, base_dir: Path, versions: list[int]) -> dict[int, Lineage]:
    """Training statistics and schema of each version pushed into ``base_dir`` that ML Metadata knows."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import deploy

    known = deploy.pushes(store, base_dir)
    found: dict[int, Lineage] = {}
    for version in versions:
        push = known.get(version)
        if push is None or push.model_id is None:
            continue
        trainer_inputs: dict[str, int] = {}
        for event in store.get_events_by_artifact_ids([push.model_id]):
            if event.type != metadata_store_pb2.Event.OUTPUT:
                continue
            for e in store.get_events_by_execution_ids([event.execution_id]):
                if e.type == metadata_store_pb2.Event.INPUT and e.path.steps:
                    trainer_inputs.setdefault(e.path.steps[0].key, e.artifact_id)
            if "examples" in trainer_inputs:
                break
        examples_id, schema_id = trainer_inputs.get("examples"), trainer_inputs.get("schema")
        if examples_id is None or schema_id is None:
            continue
        statistics_id = None
        for event in store.get_events_by_artifact_ids([examples_id]):
            if event.type != metadata_store_pb2.Event.INPUT:
                continue
            for e in store.get_events_by_execution_ids([event.execution_id]):
                if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps and e.path.steps[0].key == STATISTICS_KEY:
                    statistics_id = e.artifact_id
            if statistics_id is not None:
                break
        if statistics_id is None:
            continue
        stats, schema = store.get_artifacts_by_id([statistics_id, schema_id])
        found[version] = Lineage(version, push.run_id, push.model_id, stats.uri, schema.uri)
    return found


# ---- TFDV -----------------------------------------------------------------------------------------


def _load_schema(schema_uri: str):
    import tensorflow_data_validation as tfdv

    path = os.path.join(schema_uri, "schema.pbtxt")
    if not os.path.exists(path):
        raise SkewError(f"schema artifact {schema_uri} has no schema.pbtxt")
    return tfdv.load_schema_text(path)


def skew_schema(schema, infinity_norm: float, jensen_shannon: float):
    """A copy of ``schema`` with skew comparators on the image properties and a SERVING environment.

    Only the image properties exist at serving time: the label, path and image-bytes features are
    marked not in SERVING, so their absence from the request log is not an anomaly.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    del out.default_environment[:]
    out.default_environment.extend(["TRAINING", SERVING_ENVIRONMENT])
    for feature in out.feature:
        if feature.name not in features.IMAGE_PROPERTY_FEATURES:
            feature.not_in_environment.append(SERVING_ENVIRONMENT)
        elif feature.type == schema_pb2.BYTES:
            feature.skew_comparator.infinity_norm.threshold = infinity_norm
        else:
            feature.skew_comparator.jensen_shannon_divergence.threshold = jensen_shannon
    return out


def serving_statistics(records: list[bytes], workdir: Path):
    """TFDV statistics of logged records, with StatisticsGen's options restricted to the image properties."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from pipeline.pipeline import stats_options

    path = workdir / "requests.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    options = stats_options()
    options.feature_allowlist = list(features.IMAGE_PROPERTY_FEATURES)
    return tfdv.generate_statistics_from_tfrecord(data_location=str(path), stats_options=options)


def training_statistics(statistics_uri: str):
    import tensorflow_data_validation as tfdv

    path = os.path.join(statistics_uri, f"Split-{TRAIN_SPLIT}", "FeatureStats.pb")
    if not os.path.exists(path):
        raise SkewError(f"statistics artifact {statistics_uri} has no {TRAIN_SPLIT} split ({path})")
    return tfdv.load_stats_binary(path)


def compare(training, serving, schema, infinity_norm: float, jensen_shannon: float
            ) -> tuple[list[tuple[str, str]], list[tuple[str, str, float, float]]]:
    """(anomalies as (feature, description), every skew measurement as (feature, kind, value, threshold))."""
    import tensorflow_data_validation as tfdv

    with_comparators = skew_schema(schema, infinity_norm, jensen_shannon)
    skew = tfdv.validate_statistics(training, with_comparators, serving_statistics=serving)
    domain = tfdv.validate_statistics(serving, with_comparators, environment=SERVING_ENVIRONMENT)
    anomalies: dict[tuple[str, str], None] = {}
    for result in (skew, domain):
        for name, info in sorted(result.anomaly_info.items()):
            for reason in info.reason:
                anomalies[(name, reason.description or reason.short_description)] = None
        if result.HasField("dataset_anomaly_info"):
            for reason in result.dataset_anomaly_info.reason:
                anomalies[("(dataset)", reason.description or reason.short_description)] = None
    measurements = []
    for info in skew.drift_skew_info:
        name = ".".join(info.path.step)
        for m in info.skew_measurements:
            kind = {1: "L-infinity", 2: "Jensen-Shannon"}.get(int(m.type), str(m.type))
            measurements.append((name, kind, float(m.value), float(m.threshold)))
    return list(anomalies), sorted(measurements)


def check_skew(request_log: Path, model_name: str, base_dir: Path, metadata, cfg_skew,
               scratch: Optional[Path] = None) -> tuple[list[VersionResult], int]:
    """Compare every version's logged requests with its training statistics. Returns (results, files read)."""
    from pipeline import report

    by_version, files, names = read_request_log(request_log, model_name)
    if not by_version:
        seen = ", ".join(sorted(names)) or "none"
        raise SkewError(f"--request-log {request_log}: no requests of model {model_name!r} in {files} file(s) "
                        f"(models logged: {seen}); pass --model-name")
    if isinstance(metadata, str) and not Path(metadata).exists():
        raise SkewError(f"ML Metadata {metadata} does not exist; give the --work-dir of the run that pushed the model")
    lineage = find_lineage(report._store(metadata), base_dir, sorted(by_version))
    results = []
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for version in sorted(by_version):
            records = by_version[version]
            result = VersionResult(version, len(records), lineage.get(version))
            results.append(result)
            if result.lineage is None:
                result.note = (f"ML Metadata has no push of version {version} into {base_dir} with a Trainer and "
                               "StatisticsGen behind it; not compared")
                continue
            if len(records) < cfg_skew.min_images:
                result.note = f"only {len(records)} logged image(s), fewer than skew.min_images={cfg_skew.min_images}; not compared"
                continue
            workdir = Path(tmp) / str(version)
            workdir.mkdir()
            result.anomalies, result.measurements = compare(
                training_statistics(result.lineage.statistics_uri), serving_statistics(records, workdir),
                _load_schema(result.lineage.schema_uri), cfg_skew.infinity_norm_threshold,
                cfg_skew.jensen_shannon_threshold)
    return results, files


# ---- output ---------------------------------------------------------------------------------------


def format_results(results: list[VersionResult], model_name: str) -> str:
    lines = []
    for r in results:
        where = f" (run {r.lineage.run_id})" if r.lineage and r.lineage.run_id else ""
        head = f"{model_name} version {r.version}{where}: {r.images} logged image(s)"
        if r.note:
            lines.append(f"{head}: {r.note}")
            continue
        lines.append(f"{head}: {'SKEW, ' + str(len(r.anomalies)) + ' anomaly(ies)' if r.skewed else 'no skew'}")
        for feature, kind, value, threshold in r.measurements:
            mark = "  > threshold" if value > threshold else ""
            lines.append(f"  {feature:<18} {kind:<15} {value:.4f} (threshold {threshold:g}){mark}")
        for feature, description in r.anomalies:
            lines.append(f"  anomaly: {feature}: {description}")
    return "\n".join(lines)


def section_html(results: list[VersionResult], model_name: str, request_log: Path) -> str:
    """The report section: one table of measurements and the anomalies per version."""
    e = html.escape
    parts = [f'<p class="note">Requests logged by <code>lenspipe serve --request_log_dir {e(str(request_log))}</code>, '
             "compared by <code>lenspipe skew</code> with the training statistics of the version that served them "
             "(TFDV skew comparators).</p>"]
    for r in results:
        title = f"{e(model_name)} version {r.version}: {r.images} logged image(s)"
        if r.note:
            parts.append(f"<h3>{title}</h3><p>{e(r.note)}</p>")
            continue
        verdict = ('<span class="bad">skew</span>' if r.skewed else '<span class="ok">no skew</span>')
        above = '<span class="bad">above</span>'
        rows = "".join(f"<tr><td>{e(f)}</td><td>{e(k)}</td><td>{v:.4f}</td><td>{t:g}</td>"
                       f"<td>{above if v > t else 'ok'}</td></tr>" for f, k, v, t in r.measurements)
        parts.append(f"<h3>{title}: {verdict}</h3><table><tr><th>feature</th><th>distance</th><th>value</th>"
                     f"<th>threshold</th><th></th></tr>{rows}</table>")
        if r.anomalies:
            parts.append("<ul>" + "".join(f"<li><b>{e(f)}</b>: {e(d)}</li>" for f, d in r.anomalies) + "</ul>")
    return "".join(parts)


# ---- the command ----------------------------------------------------------------------------------


def add_parser(sub, add_config_args: Callable, add_field_options: Callable, load: Callable, **kwargs) -> None:
    """Register `lenspipe skew` on the `lenspipe` subparsers."""
    p = sub.add_parser("skew", help="Compare logged served requests (serve --request_log_dir) with the training "
                       "statistics of the version that served them; exit 1 on skew.", **kwargs)
    p.add_argument("--request-log", required=True, metavar="DIR", help="The --request_log_dir of `lenspipe serve`.")
    add_config_args(p)
    add_field_options(p)

    def run(args) -> int:
        try:
            return cmd_skew(args, load(args))
        except SkewError as exc:
            print(f"lenspipe skew: {exc}", file=sys.stderr)
            return EXIT_USAGE
    p.set_defaults(func=run)


def cmd_skew(args, cfg) -> int:
    from pipeline import html_report
    from pipeline.runners import common

    try:
        metadata = common.metadata_for_reading(cfg)
    except common.MetadataConfigError as exc:
        raise SkewError(str(exc)) from None
    model_name = cfg.pusher.model_name
    request_log = Path(args.request_log)
    results, files = check_skew(request_log, model_name, cfg.serving_model_path / model_name, metadata, cfg.skew)
    print(f"request log {request_log}: {files} file(s)")
    print(format_results(results, model_name))
    by_run: dict[str, list[VersionResult]] = defaultdict(list)
    for r in results:
        if r.lineage and r.lineage.run_id:
            by_run[r.lineage.run_id].append(r)
    for run_id, run_results in by_run.items():
        page = cfg.work_path / "reports" / f"{run_id}.html"
        if page.exists():
            html_report.add_section(str(page), "skew", "Serving skew", section_html(run_results, model_name, request_log))
            print(f"report: {page} (section Serving skew)")
    compared = [r for r in results if not r.note]
    if not compared:
        print("lenspipe skew: no version could be compared", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_SKEW if any(r.skewed for r in compared) else 0


__all__ = ["SkewError", "add_parser", "check_skew", "compare", "find_lineage", "read_request_log", "skew_schema"]
