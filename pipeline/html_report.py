"""The HTML report of one run: ``<work-dir>/reports/<run id>.html``, one self-contained page.

Everything comes from ML Metadata and the run's artifacts (pipeline/report.py reads the
summary; this module reads the rest: sample images, statistics, history, explanations,
signatures). Images are embedded as PNG data URIs and charts as inline SVG: the page
loads nothing, runs no script, and reads on a phone-width window.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from lenspipe import features
from pipeline import report, svg_charts

SECTIONS = (  # (id, heading): the page's table of contents, and what the browser test looks for
    ("data", "Data"),
    ("tuning", "Tuning"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("why", "Why"),
    ("push", "Push"),
    ("timings", "Timings"),
)
SAMPLES_PER_CLASS = 6
THUMB_PX = 72
REST_PORT = 8501  # lenspipe serve's and TF Serving's default REST port


@dataclass
class RunInfo:
    """What the report needs beyond the RunSummary: artifacts by node and output key, and run facts."""

    summary: report.RunSummary
    created_ms: int = 0
    data_root: str = ""
    outputs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # node -> key -> [mlmd Artifact]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> execution properties

    def uri(self, node: str, key: str) -> Optional[str]:
        arts = self.outputs.get(node, {}).get(key) or []
        return arts[0].uri if arts else None

    @property
    def date(self) -> str:
        when = datetime.datetime.fromtimestamp(self.created_ms / 1000, datetime.timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def read_run_info(metadata_path: str, run_id: str) -> RunInfo:
    """RunSummary plus every node's outputs and properties for pipeline run ``run_id``.

    Raises LookupError when the store has no such run.
    """
    store = report._store(metadata_path)
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if ctx is None:
        raise LookupError(f"no run {run_id!r} in {metadata_path}; `lenspipe runs` lists the runs")
    info = RunInfo(summary=report.read_run(metadata_path, run_id), created_ms=ctx.create_time_since_epoch)
    for execution in sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id):
        nodes = [c for c in store.get_contexts_by_execution(execution.id) if c.type == "node"]
        node = nodes[0].name.split(".", 1)[-1] if nodes else str(execution.id)
        info.outputs[node] = report._outputs(store, execution.id)
        info.properties[node] = {k: report._prop(execution, k) for k in (*execution.properties, *execution.custom_properties)}
    info.data_root = str(info.properties.get("ImageExampleGen", {}).get("input_base") or "")
    return info


def run_ids(metadata_path) -> list[str]:
    """Every pipeline run in the store (a SQLite path or a server's ConnectionConfig), oldest first."""
    if isinstance(metadata_path, str) and not os.path.exists(metadata_path):
        return []
    runs = report._store(metadata_path).get_contexts_by_type("pipeline_run")
    return [c.name for c in sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))]


def list_runs(metadata_path: str) -> list[dict[str, Any]]:
    """One row per run, oldest first: id, date, data root, examples, test accuracy, blessed, pushed version, counts."""
    rows = []
    for run_id in run_ids(metadata_path):
        info = read_run_info(metadata_path, run_id)
        s = info.summary
        rows.append({
            "run_id": run_id,
            "date": info.date,
            "data_root": info.data_root,
            "examples": sum(s.split_counts.values()) if s.split_counts else None,
            "test_accuracy": s.overall.accuracy if s.overall else None,
            "blessed": s.blessed,
            "pushed_version": s.pushed_version if s.pushed else None,
            "executed": len(s.executed),
            "cached": len(s.cached),
            "failed": s.failed,
        })
    return rows


def format_runs(rows: list[dict[str, Any]]) -> str:
    """``lenspipe runs`` as an aligned table."""
    head = ("run id", "date", "examples", "test acc", "blessed", "pushed", "executed", "cached", "data root")
    table = [head]
    for r in rows:
        blessed = {True: "yes", False: "no", None: "-"}[r["blessed"]]
        table.append((
            r["run_id"], r["date"], "-" if r["examples"] is None else str(r["examples"]),
            "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}",
            blessed + (" (failed: " + ", ".join(r["failed"]) + ")" if r["failed"] else ""),
            r["pushed_version"] or "-", str(r["executed"]), str(r["cached"]), r["data_root"],
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


# ---------------------------------------------------------------- small HTML helpers

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(v: Optional[float], digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """A table in a horizontally scrolling box (wide tables must not widen the page on a phone). Cells are HTML."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _png_uri(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnail(encoded: bytes, px: int = THUMB_PX):
    """A PIL image at most ``px`` on its longer side: small scans are enlarged without smoothing."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as im:
        im = im.convert("RGB")
        scale = px / max(im.size)
        size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
        return im.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)


def _img(uri: str, alt: str, width: int, height: int) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}" width="{width}" height="{height}">'


def _figure(encoded: bytes, caption: str, alt: str) -> str:
    im = _thumbnail(encoded)
    return f'<figure>{_img(_png_uri(im), alt, *im.size)}<figcaption>{caption}</figcaption></figure>'


def _colormap(heat: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8, dark blue (nothing) through green and yellow to red (most)."""
    stops = np.array([[0, 0, 128], [0, 90, 255], [0, 200, 120], [255, 230, 0], [220, 0, 0]], np.float32)
    pos = np.clip(heat, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def overlay(encoded: bytes, heat: np.ndarray, px: int = THUMB_PX):
    """The image with its heatmap blended over it, both at ``px``."""
    from PIL import Image

    base = _thumbnail(encoded, px)
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(base.size, Image.BILINEAR)
    colored = Image.fromarray(_colormap(np.asarray(heat_img, np.float32) / 255))
    return Image.blend(base, colored, 0.5)


# ---------------------------------------------------------------- reading artifacts

def _split_uris(examples_uri: Optional[str]) -> dict[str, str]:
    if not examples_uri or not os.path.isdir(examples_uri):
        return {}
    return {e[len("Split-"):]: os.path.join(examples_uri, e) for e in sorted(os.listdir(examples_uri)) if e.startswith("Split-")}


def sample_images(
    examples_uri: Optional[str], per_class: int = SAMPLES_PER_CLASS, counts: Optional[dict[str, int]] = None,
) -> dict[str, list[tuple[str, bytes]]]:
    """The first ``per_class`` (path, encoded image) of each class in the train split, by class name.

    Reading stops once each class of ``counts`` (train images per class, when known) has its
    samples: a large split is not read to the end.
    """
    import tensorflow as tf

    split = _split_uris(examples_uri).get("train")
    if split is None:
        return {}
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
        features.PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    files = sorted(os.path.join(split, f) for f in os.listdir(split))
    out: dict[str, list[tuple[str, bytes]]] = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.io.parse_single_example(record, spec)
        label = ex[features.LABEL_NAME_KEY].numpy().decode("utf-8")
        got = out.setdefault(label, [])
        if len(got) < per_class:
            got.append((ex[features.PATH_KEY].numpy().decode("utf-8"), ex[features.IMAGE_KEY].numpy()))
        if counts and all(len(out.get(c, ())) >= min(per_class, n) for c, n in counts.items()):
            break
    return dict(sorted(out.items()))


def property_statistics(stats_uri: Optional[str]) -> dict[str, dict[str, str]]:
    """feature -> split -> a one-cell description of its TFDV statistics (numbers, top values, bytes)."""
    from tensorflow_data_validation.utils import stats_util

    table: dict[str, dict[str, str]] = {}
    if not stats_uri or not os.path.isdir(stats_uri):
        return table
    for entry in sorted(os.listdir(stats_uri)):
        path = os.path.join(stats_uri, entry, "FeatureStats.pb")
        if not (entry.startswith("Split-") and os.path.exists(path)):
            continue
        split = entry[len("Split-"):]
        for dataset in stats_util.load_stats_binary(path).datasets:
            for f in dataset.features:
                name = ".".join(f.path.step) or f.name
                table.setdefault(name, {})[split] = _describe(f)
    return dict(sorted(table.items()))


def _describe(f) -> str:
    kind = f.WhichOneof("stats")
    if kind == "num_stats":
        s = f.num_stats
        missing = f" · {s.common_stats.num_missing} missing" if s.common_stats.num_missing else ""
        return (f"mean {s.mean:.4g} ± {s.std_dev:.3g} · median {s.median:.4g} · "
                f"range {s.min:.4g}–{s.max:.4g} · {s.common_stats.num_non_missing} values{missing}")
    if kind == "string_stats":
        s = f.string_stats
        top = ", ".join(f"{v.value} ({v.frequency:g})" for v in list(s.top_values)[:6])
        return f"{s.unique} distinct: {top}"
    if kind == "bytes_stats":
        s = f.bytes_stats
        return f"{s.common_stats.num_non_missing} values · {s.avg_num_bytes:.0f} bytes on average (max {s.max_num_bytes:.0f})"
    return kind or "-"


def model_metadata(model_dir: str) -> dict[str, Any]:
    return report._read_json(os.path.join(model_dir, features.MODEL_METADATA_FILE)) or {} if model_dir else {}


def signatures_of(saved_model_dir: str) -> list[dict[str, Any]]:
    """[{name, method, inputs: [(name, dtype, shape)], outputs: [...]}] read from saved_model.pb."""
    path = os.path.join(saved_model_dir, "saved_model.pb")
    if not saved_model_dir or not os.path.exists(path):
        return []
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())

    def tensors(m) -> list[tuple[str, str, str]]:
        out = []
        for key, t in sorted(m.items()):
            dims = "?" if t.tensor_shape.unknown_rank else ", ".join("None" if d.size < 0 else str(d.size) for d in t.tensor_shape.dim)
            out.append((key, types_pb2.DataType.Name(t.dtype).replace("DT_", "").lower(), f"[{dims}]"))
        return out

    sigs = []
    for name, sig in sorted(proto.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):
            continue
        sigs.append({"name": name, "method": sig.method_name, "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)})
    return sigs


@dataclass
class SliceRow:
    name: str
    count: int
    accuracy: Optional[float]
    precision: Optional[float] = None
    recall: Optional[float] = None
    f1: Optional[float] = None
    baseline_accuracy: Optional[float] = None


def slice_rows(evaluation_uri: Optional[str], summary: report.RunSummary, class_names: list[str]) -> list[SliceRow]:
    """Accuracy, precision, recall and F1 per slice, and the baseline's accuracy beside each.

    A label slice holds one true class, so its precision is that class's precision in the
    overall matrix (predictions of the class on other slices count); other slices show macro
    averages over the classes present in the slice's own confusion matrix.
    """
    import tensorflow_model_analysis as tfma

    if not evaluation_uri:
        return []
    baseline: dict[str, float] = {}
    for m in tfma.load_metrics(evaluation_uri):
        for kv in m.metric_keys_and_values:
            k = kv.key
            if k.model_name == "baseline" and not k.is_diff and k.name == "accuracy" and not k.HasField("sub_key"):
                baseline[report._slice_name(m.slice_key)] = kv.value.double_value.value
    macro: dict[str, tuple[float, float, float]] = {}
    for p in tfma.load_plots(evaluation_uri):
        for kv in p.plot_keys_and_values:
            if kv.key.model_name in ("", "candidate") and kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                matrix = {(e.actual_class_id, e.predicted_class_id): e.num_weighted_examples
                          for e in kv.value.multi_class_confusion_matrix_at_thresholds.matrices[0].entries}
                macro[report._slice_name(p.slice_key)] = _macro(matrix)
    by_name = {n: i for i, n in enumerate(class_names)}
    rows = []
    for s in sorted(summary.slices, key=lambda s: (s.slice_name != "overall", s.slice_name)):
        row = SliceRow(s.slice_name, s.count, s.accuracy, baseline_accuracy=baseline.get(s.slice_name))
        label = s.slice_name.split("=", 1)[1] if s.slice_name.startswith(f"{features.LABEL_NAME_KEY}=") else None
        if label is not None and by_name.get(label) in summary.per_class:
            v = summary.per_class[by_name[label]]
            row.precision, row.recall, row.f1 = v["precision"], v["recall"], v["f1"]
        elif s.slice_name in macro:
            row.precision, row.recall, row.f1 = macro[s.slice_name]
        rows.append(row)
    return rows


def _macro(matrix: dict[tuple[int, int], float]) -> tuple[float, float, float]:
    """Macro precision, recall and F1 over the true classes of a confusion matrix (undefined counts as 0)."""
    classes = sorted({a for a, _ in matrix})
    p, r, f = [], [], []
    for c in classes:
        tp = matrix.get((c, c), 0.0)
        predicted = sum(v for (_, b), v in matrix.items() if b == c)
        actual = sum(v for (a, _), v in matrix.items() if a == c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        p.append(precision)
        r.append(recall)
        f.append(report.f1_score(precision, recall))
    n = len(classes) or 1
    return sum(p) / n, sum(r) / n, sum(f) / n


def thresholds(eval_config_json: Optional[str]) -> list[str]:
    """Each threshold of the Evaluator's EvalConfig in words."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    if not eval_config_json:
        return []
    config = json_format.Parse(eval_config_json, tfma.EvalConfig(), ignore_unknown_fields=True)
    out = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            name = json.loads(metric.config or "{}").get("name", metric.class_name)
            for pst in metric.per_slice_thresholds:
                where = ", ".join(", ".join(s.feature_keys) or "overall" for s in pst.slicing_specs) or "every slice"
                where = where if where == "overall" else f"each {where} slice"
                t = pst.threshold
                if t.HasField("value_threshold"):
                    out.append(f"{name} on {where} ≥ {t.value_threshold.lower_bound.value:g}")
                if t.HasField("change_threshold"):
                    out.append(f"{name} on {where} may drop by at most {-t.change_threshold.absolute.value:g} "
                               "against the previous blessed model")
    return out


# ---------------------------------------------------------------- sections

def _data_section(info: RunInfo) -> str:
    s = info.summary
    parts = [f"<p>Data root: <code>{_e(info.data_root or 'unknown')}</code>. Images per split: "
             + (", ".join(f"{_e(k)} {v}" for k, v in s.split_counts.items()) or "unknown") + ".</p>"]
    if s.class_counts:
        splits = list(s.class_counts)
        classes = sorted({c for counts in s.class_counts.values() for c in counts})
        parts.append(svg_charts.grouped_bars(
            classes, {sp: [s.class_counts[sp].get(c, 0) for c in classes] for sp in splits},
            "Images per class and split", "images"))
    samples = sample_images(info.uri("ImageExampleGen", "examples"), counts=s.class_counts.get("train"))
    if samples:
        parts.append("<h3>Sample images (train split)</h3>")
        for label, items in samples.items():
            figs = "".join(_figure(b, _e(os.path.basename(p)), f"{label}: {p}") for p, b in items)
            parts.append(f'<div class="class-row"><div class="class-name">{_e(label)}</div><div class="grid">{figs}</div></div>')
    if s.empty_class_folders:
        parts.append(f"<p>Empty class folders (not classes): {_e(', '.join(s.empty_class_folders))}</p>")
    parts.append(f"<h3>Skipped files ({len(s.rejected)})</h3>")
    parts.append(_table(["file", "reason"], [[_e(r.get("path")), _e(r.get("reason"))] for r in s.rejected])
                 if s.rejected else "<p>None: every file was read.</p>")
    stats = property_statistics(info.uri("StatisticsGen", "statistics"))
    if stats:
        splits = sorted({sp for per in stats.values() for sp in per})
        parts.append("<h3>Image-property statistics (TFDV)</h3>")
        parts.append(_table(["feature", *splits], [[f"<code>{_e(n)}</code>", *(_e(per.get(sp, "-")) for sp in splits)]
                                                   for n, per in stats.items()], "stats"))
    parts.append(f"<h3>Anomalies ({len(s.anomalies)})</h3>")
    parts.append("<ul>" + "".join(f"<li>{_e(a)}</li>" for a in s.anomalies) + "</ul>" if s.anomalies
                 else "<p>None: every split matches the schema.</p>")
    return "".join(parts)


def _tuning_section(info: RunInfo) -> str:
    trials = info.summary.trials
    if not trials:
        return "<p>No tuning in this run (tuner.enabled=false): the Trainer used the configured hyperparameters.</p>"
    best = trials[0]
    ordered = sorted(trials, key=lambda t: int(t["trial_id"]) if str(t.get("trial_id", "")).isdigit() else 0)
    names = sorted({k for t in trials for k in t if k not in ("trial_id", "score")})
    rows = []
    for t in ordered:
        mark = ' <span class="badge">best</span>' if t is best else ""
        rows.append([_e(t.get("trial_id")) + mark, _num(t.get("score")), *(_e(report._fmt(t.get(n))) for n in names)])
    plot = svg_charts.lines(
        {"val_accuracy": [t.get("score") for t in ordered]}, "Objective per trial", "trial", "val_accuracy",
        x_values=[t.get("trial_id") for t in ordered], highlight=ordered.index(best))
    return (f"<p>{len(trials)} trial(s); the best (marked) scored {_num(best.get('score'))} validation accuracy.</p>"
            + _table(["trial", "val_accuracy", *names], rows) + plot)


def _training_section(meta: dict[str, Any]) -> str:
    history = meta.get("history") or {}
    if not history:
        return "<p>The model has no training history recorded.</p>"
    parts = [f"<p>{meta.get('epochs_run', len(history.get('loss', [])))} epoch(s) run; eval accuracy at the end "
             f"{_num(meta.get('eval_accuracy'))}. Hyperparameters: "
             + _e(", ".join(f"{k}={report._fmt(v)}" for k, v in sorted((meta.get("hyperparameters") or {}).items())))
             + ".</p>"]
    for metric, label in (("loss", "Loss per epoch"), ("accuracy", "Accuracy per epoch")):
        series = {name: history[key] for name, key in (("train", metric), ("validation", f"val_{metric}")) if key in history}
        if series:
            parts.append(svg_charts.lines(series, label, "epoch", metric))
    return "".join(parts)


def _class_name(cid: int, names: list[str]) -> str:
    return report._class_label(cid, names)


def _blessing_words(info: RunInfo) -> str:
    s = info.summary
    if s.blessed is None:
        return "No blessing: the run stopped before the Evaluator decided."
    acc = f"{s.overall.accuracy:.4f} test accuracy on {s.overall.count} held-out images" if s.overall else "its test accuracy"
    if s.blessed:
        versus = (f"it is {s.overall.accuracy - s.baseline_accuracy:+.4f} against the previous blessed model "
                  f"({s.baseline_accuracy:.4f}), within the allowed drop"
                  if s.baseline_accuracy is not None and s.overall
                  else "there was no earlier blessed model to compare with, so only the value threshold applied")
        return f"<strong>Blessed.</strong> The candidate reached {acc}, meeting every threshold; {versus}."
    return (f"<strong>Not blessed.</strong> The candidate reached {acc}, but {_e(s.blessing_reason or 'a threshold failed')}. "
            "It was not pushed; serving keeps the versions it had.")


def _evaluation_section(info: RunInfo, names: list[str], explanation: dict) -> str:
    s = info.summary
    if not s.slices:
        return "<p>No evaluation in this run.</p>"
    evaluation_uri = info.uri("Evaluator", "evaluation")
    rows = slice_rows(evaluation_uri, s, names)
    has_baseline = any(r.baseline_accuracy is not None for r in rows)
    head = ["slice", "images", "accuracy", "precision", "recall", "F1"] + (["baseline accuracy"] if has_baseline else [])
    table_rows = [[_e(r.name), str(r.count), _num(r.accuracy), _num(r.precision), _num(r.recall), _num(r.f1)]
                  + ([_num(r.baseline_accuracy)] if has_baseline else []) for r in rows]
    parts = [f'<p class="decision">{_blessing_words(info)}</p>',
             "<h3>Metrics by slice (held-out test split)</h3>", _table(head, table_rows),
             f'<p class="note">Label rows: that class\'s precision, recall and F1 in the overall confusion matrix. '
             f"Other rows: macro averages over the classes in the slice. Macro F1 overall: {_num(s.macro_f1)}.</p>"]
    rules = thresholds(info.properties.get("Evaluator", {}).get("eval_config"))
    if info.properties.get("Evaluator", {}).get("beat_baseline"):
        rules.append("test accuracy ≥ the classical baseline's (evaluator.beat_baseline)")
    parts.append("<h3>Thresholds</h3>" + ("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in rules) + "</ul>" if rules else "<p>None recorded.</p>"))
    parts.append("<h3>Candidate beside the baselines</h3>")
    compare = [["candidate (this run)", _num(s.overall.accuracy if s.overall else None), "the CNN being evaluated"]]
    compare.append(["previous blessed model", _num(s.baseline_accuracy),
                    "the model it must not fall behind" if s.baseline_accuracy is not None else "none: first blessed model"])
    c = s.classical
    if c.get("test_accuracy") is not None:
        params = ", ".join(f"{k}={report._fmt(v)}" for k, v in sorted((c.get("params") or {}).items()))
        compare.append(["classical baseline", _num(c["test_accuracy"]),
                        _e(f"{c.get('method')} on {c.get('image_size')}x{c.get('image_size')} grey pixels"
                           f"{', ' + params if params else ''}; same split")])
    parts.append(_table(["model", "test accuracy", "what"], compare))
    if s.confusion:
        # Every class of the model, also one with no test image and no prediction (an empty row says so).
        ids = sorted({a for a, _ in s.confusion} | {b for _, b in s.confusion} | set(range(len(names))))
        labels = [_class_name(i, names) for i in ids]
        parts.append(svg_charts.heatmap(labels, [[s.confusion.get((a, b), 0) for b in ids] for a in ids],
                                        "Confusion matrix (test split)"))
    parts.append(_misclassified(info, names, explanation))
    return "".join(parts)


def _explained(info: RunInfo) -> tuple[dict, np.ndarray, Optional[str]]:
    from components.explainer import read_explanation

    uri = info.uri("Explainer", "explanation")
    if not uri:
        return {}, np.zeros((0, 1, 1)), None
    result, heat = read_explanation(uri)
    return result, heat, uri


def _misclassified(info: RunInfo, names: list[str], explanation: dict) -> str:
    result, uri = explanation.get("result", {}), explanation.get("uri")
    if not result:
        return "<h3>Misclassified test images</h3><p>Not available: this run has no Explainer output (explainer.enabled=false, or a run from before the Explainer).</p>"
    wrong = [it for it in result["items"] if not it["correct"]]
    figs = "".join(
        _figure(_read(uri, it["image"]),
                f"true <b>{_e(_class_name(it['true'], names))}</b>, predicted <b>{_e(_class_name(it['predicted'], names))}</b> "
                f"({it['confidence']:.2f})<br><small>{_e(os.path.basename(it['path']))}</small>",
                f"misclassified {it['path']}")
        for it in wrong)
    shown = f" (the first {len(wrong)} shown)" if len(wrong) < result["misclassified"] else ""
    body = f'<div class="grid">{figs}</div>' if wrong else "<p>None: every test image was classified correctly.</p>"
    return f"<h3>Misclassified test images: {result['misclassified']} of {result['images']}{shown}</h3>{body}"


def _read(uri: str, name: str) -> bytes:
    with open(os.path.join(uri, name), "rb") as f:
        return f.read()


def _why_section(names: list[str], explanation: dict) -> str:
    result, heat, uri = explanation.get("result", {}), explanation.get("heatmaps"), explanation.get("uri")
    if not result:
        return "<p>Not available: this run has no Explainer output (explainer.enabled=false, or a run from before the Explainer).</p>"
    parts = [f"<p>Grad-CAM on layer <code>{_e(result['layer'])}</code> of the trained network: red marks the pixels "
             "that raised the score of the class the model predicted, blue the ones that did not. Each pair is the "
             f"image and its heatmap; computed once in the run ({result['seconds']:.1f} s for {len(result['items'])} images).</p>"]
    groups = [("Misclassified", [i for i, it in enumerate(result["items"]) if not it["correct"]])]
    for cid in sorted({it["true"] for it in result["items"]}):
        groups.append((f"Correct: {_class_name(cid, names)}",
                       [i for i, it in enumerate(result["items"]) if it["correct"] and it["true"] == cid]))
    for title, rows in groups:
        if not rows:
            continue
        figs = []
        for i in rows:
            it = result["items"][i]
            raw = _read(uri, it["image"])
            base, over = _thumbnail(raw), overlay(raw, heat[i])
            caption = (f"true {_e(_class_name(it['true'], names))} → {_e(_class_name(it['predicted'], names))} "
                       f"({it['confidence']:.2f})")
            figs.append(f'<figure class="pair">{_img(_png_uri(base), it["path"], *base.size)}'
                        f'{_img(_png_uri(over), "Grad-CAM of " + it["path"], *over.size)}<figcaption>{caption}</figcaption></figure>')
        parts.append(f"<h3>{_e(title)}</h3><div class=\"grid\">{''.join(figs)}</div>")
    return "".join(parts)


def _push_section(info: RunInfo) -> str:
    s = info.summary
    if not s.pushed:
        why = s.not_pushed_reason or ("model not blessed" if s.blessed is False else "the run stopped before the Pusher")
        parts = [f"<p><strong>Nothing pushed</strong> ({_e(why)}).</p>"]
        model_dir = s.model_dir
    else:
        parts = [f"<p>Version <strong>{_e(s.pushed_version)}</strong> at <code>{_e(s.pushed_path)}</code>.</p>"]
        model_dir = s.pushed_path
    sigs = signatures_of(model_dir)
    if sigs:
        parts.append("<h3>Signatures</h3>" if s.pushed else "<h3>Signatures of the trained (unpushed) model</h3>")
        rows = [[f"<code>{_e(g['name'])}</code>", _e(g["method"]),
                 "<br>".join(f"<code>{_e(n)}</code> {_e(d)} {_e(sh)}" for n, d, sh in g["inputs"]),
                 "<br>".join(f"<code>{_e(n)}</code> {_e(d)} {_e(sh)}" for n, d, sh in g["outputs"])] for g in sigs]
        parts.append(_table(["signature", "method", "inputs", "outputs"], rows))
    if s.pushed:
        name = os.path.basename(os.path.dirname(s.pushed_path.rstrip("/")))
        curl = (f'curl -s -X POST localhost:{REST_PORT}/v1/models/{name}/versions/{s.pushed_version}:predict '
                f'-d "{{\\"instances\\": [{{\\"b64\\": \\"$(base64 -w0 IMAGE.png)\\"}}]}}"')
        serve = f"lenspipe serve --model_name {name} --model_base_path {os.path.dirname(s.pushed_path.rstrip('/'))}"
        parts.append(f"<h3>Query it</h3><pre>{_e(serve)}\n{_e(curl)}</pre>")
    parts.append(_serving_check_section(info))
    return "".join(parts)


# ---- Hook: the serving check (another issue builds a ServingCheck component before the Pusher).
# Any node whose id starts with "ServingCheck" is rendered here: each output artifact's custom
# properties and the JSON files in its directory, as key/value tables. Nothing else reads it.
SERVING_CHECK_NODE_PREFIX = "ServingCheck"


def _serving_check_section(info: RunInfo) -> str:
    nodes = [n for n in info.outputs if n.startswith(SERVING_CHECK_NODE_PREFIX)]
    if not nodes:
        return ""
    parts = ["<h3>Serving check</h3>"]
    for node in nodes:
        state = info.summary.node_states.get(node, "unknown")
        parts.append(f"<p><code>{_e(node)}</code>: {_e(state)}</p>")
        for key, artifacts in sorted(info.outputs[node].items()):
            for a in artifacts:
                rows = [[_e(k), _e(report._prop(a, k))] for k in sorted(a.custom_properties)]
                for fname in sorted(os.listdir(a.uri)) if os.path.isdir(a.uri) else []:
                    data = report._read_json(os.path.join(a.uri, fname)) if fname.endswith(".json") else None
                    if isinstance(data, dict):
                        rows += [[_e(f"{fname}: {k}"), _e(json.dumps(v) if isinstance(v, (dict, list)) else v)] for k, v in data.items()]
                parts.append(f"<p>{_e(key)}</p>" + _table(["field", "value"], rows))
    return "".join(parts)


def _timings_section(info: RunInfo) -> str:
    s = info.summary
    peak = max(s.node_seconds.values(), default=0) or 1
    rows = []
    for node, state in s.node_states.items():
        sec = s.node_seconds.get(node, 0.0)
        bar = f'<span class="bar" style="width:{100 * sec / peak:.0f}%"></span>'
        rows.append([_e(node), _e(state), f"{sec:.1f}", bar])
    total = sum(s.node_seconds.values())
    return (f"<p>{len(s.executed)} executed, {len(s.cached)} cached"
            + (f", failed: {_e(', '.join(s.failed))}" if s.failed else "")
            + f"; {total:.0f} s in components (as ML Metadata recorded them).</p>"
            + _table(["component", "state", "seconds", ""], rows, "timings"))


_CSS = """
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}main{max-width:980px;margin:0 auto;padding:12px}
header{background:#263238;color:#fff;padding:14px 12px}header h1{margin:0;font-size:1.3em;word-break:break-all}
header p{margin:4px 0 0}nav{display:flex;flex-wrap:wrap;gap:6px;margin-top:8px}nav a{color:#fff;background:#455a64;
padding:2px 8px;border-radius:10px;text-decoration:none;font-size:.9em}section{background:#fff;border:1px solid #e0e0e0;
border-radius:6px;padding:10px 14px;margin:14px 0}h2{margin:.2em 0 .4em}h3{margin:1em 0 .4em;font-size:1.05em}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.9em}th,td{border-bottom:1px solid #eee;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}td{overflow-wrap:break-word}
table.stats td{min-width:12em}.grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;text-align:center;max-width:160px;
font-size:.8em}figure.pair{max-width:160px}figure img{image-rendering:pixelated;border:1px solid #ccc;margin:1px}
.class-row{display:flex;gap:10px;align-items:center;margin:6px 0}.class-name{min-width:3em;font-weight:bold}
svg.chart{max-width:100%;height:auto;display:block;margin:8px 0}pre{background:#f5f5f5;padding:8px;overflow-x:auto;
white-space:pre-wrap;word-break:break-all}code{overflow-wrap:break-word}.badge{background:#2e7d32;color:#fff;
border-radius:8px;padding:0 6px;font-size:.8em}.decision{font-size:1.05em}.note{color:#555;font-size:.85em}
.bar{display:inline-block;height:10px;background:#1f77b4;min-width:1px}table.timings td:last-child{width:40%}
.ok{color:#2e7d32}.bad{color:#c62828}
"""


def render(info: RunInfo) -> str:
    """The whole page for one run."""
    s = info.summary
    meta = model_metadata(s.model_dir)
    names = list(meta.get("class_names") or [])
    result, heat, uri = _explained(info)
    explanation = {"result": result, "heatmaps": heat, "uri": uri}
    status = []
    if s.overall:
        status.append(f"test accuracy {s.overall.accuracy:.4f}")
    if s.blessed is not None:
        status.append('<span class="ok">blessed</span>' if s.blessed else '<span class="bad">not blessed</span>')
    status.append(f"pushed version {_e(s.pushed_version)}" if s.pushed else "nothing pushed")
    if s.failed:
        status.append(f'<span class="bad">failed: {_e(", ".join(s.failed))}</span>')
    builders: dict[str, Callable[[], str]] = {
        "data": lambda: _data_section(info),
        "tuning": lambda: _tuning_section(info),
        "training": lambda: _training_section(meta),
        "evaluation": lambda: _evaluation_section(info, names, explanation),
        "why": lambda: _why_section(names, explanation),
        "push": lambda: _push_section(info),
        "timings": lambda: _timings_section(info),
    }
    sections = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{builders[sid]()}</section>' for sid, title in SECTIONS)
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network, no script: a CSP makes the browser refuse anything that slipped in.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>lenspipe run {_e(s.run_id)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>lenspipe run {_e(s.run_id)}</h1><p>{_e(info.date)} · {' · '.join(status)}</p><nav>{nav}</nav></header>"
        f"<main>{sections}</main></body></html>\n"
    )


def write_report(metadata_path: str, run_id: str, reports_dir: str) -> str:
    """Render run ``run_id`` to ``<reports_dir>/<run id>.html`` (temporary file, then rename); returns the path."""
    page = render(read_run_info(metadata_path, run_id))
    os.makedirs(reports_dir, exist_ok=True)
    path = os.path.join(reports_dir, f"{run_id}.html")
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path


def add_section(path: str, sid: str, title: str, body: str) -> None:
    """Put section ``sid`` into the written page ``path`` (replacing an earlier one), then rename into place.

    For results computed after the run (``lenspipe skew``); the page keeps everything else as written.
    """
    with open(path, encoding="utf-8") as f:
        page = f.read()
    section = f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'
    start = page.find(f'<section id="{sid}">')
    if start >= 0:
        end = page.index("</section>", start) + len("</section>")
        page = page[:start] + section + page[end:]
    else:
        page = page.replace("</main>", section + "</main>", 1)
        page = page.replace("</nav>", f'<a href="#{sid}">{_e(title)}</a></nav>', 1)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)


__all__ = ["SECTIONS", "add_section", "list_runs", "format_runs", "read_run_info", "render", "run_ids", "write_report"]
