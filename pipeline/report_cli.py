"""`lenspipe report [RUN_ID]` and `lenspipe runs [--json]`: the HTML report of a past run, and the list of runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", metavar="DIR", help="Work dir of the runs (default ./lenspipe-work).")
    p.add_argument("--config", metavar="FILE", help="Config file (its runtime.work_dir and pipeline_name are used).")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="Override a config field, e.g. --set runtime.pipeline_name=pets.")


def _metadata_path(args: argparse.Namespace):
    """(the MLMD store, the reports dir) of the work dir and pipeline the arguments name."""
    from lenspipe.config import ConfigError, load_config
    from pipeline.runners import common

    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        raise SystemExit(f"lenspipe: --set {bad[0]!r}: expected SECTION.FIELD=VALUE, e.g. runtime.pipeline_name=pets")
    overrides = dict(item.split("=", 1) for item in args.overrides)
    if args.work_dir:
        overrides["runtime.work_dir"] = args.work_dir
    try:
        cfg = load_config(args.config, overrides, environ=os.environ)
    except ConfigError as e:
        raise SystemExit(f"lenspipe: config: {e}") from None
    try:
        metadata = common.metadata_for_reading(cfg)  # the same store `lenspipe run` wrote: SQLite or a server
    except common.MetadataConfigError as e:
        raise SystemExit(f"lenspipe: {e}") from None
    if isinstance(metadata, str) and not Path(metadata).exists():
        raise SystemExit(f"lenspipe: no runs: {metadata} does not exist; give the work dir of a run with --work-dir")
    return metadata, cfg.work_path / "reports"


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline import html_report

    metadata, reports = _metadata_path(args)
    ids = html_report.run_ids(metadata)
    run_id = args.run_id or (ids[-1] if ids else None)
    if run_id not in ids:
        raise SystemExit(f"lenspipe: report: no run {run_id!r} in {metadata}; `lenspipe runs` lists them")
    print(html_report.write_report(metadata, run_id, str(reports)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline import html_report

    metadata, _ = _metadata_path(args)
    rows = html_report.list_runs(metadata)
    print(json.dumps(rows, indent=2) if args.json else html_report.format_runs(rows))
    return 0


def add_parsers(sub, **kwargs) -> None:
    """Register both subcommands on the `lenspipe` subparsers (``kwargs`` go to each add_parser)."""
    report_p = sub.add_parser(
        "report", help="(Re)write a run's HTML report and print its path (default: the newest run).", **kwargs
    )
    report_p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="A run id from `lenspipe runs`.")
    _add_store_args(report_p)
    report_p.set_defaults(func=cmd_report)
    runs_p = sub.add_parser("runs", help="List past runs from ML Metadata.", **kwargs)
    runs_p.add_argument("--json", action="store_true", help="One JSON list, for scripts.")
    _add_store_args(runs_p)
    runs_p.set_defaults(func=cmd_runs)
