"""lenspipe: the command line.

  lenspipe run [--data DIR] [--config FILE] [--no-cache] [--set section.field=value ...]
  lenspipe serve ...     (TF Serving flags; see serving/)
  lenspipe predict ...   (client for a running server; --tflite FILE / --saved-model DIR run locally)
  lenspipe compile --target kubeflow|airflow --output PATH [...]   (see docs/orchestration.md)
  lenspipe config [--explain]   (print the effective config as YAML, or each field with its source)
  lenspipe completion bash|zsh  (print a shell completion script)
  lenspipe report [RUN_ID] / lenspipe runs [--json]   (HTML report of a run; past runs from MLMD)

Every config field is an option, ``--<section>.<field> VALUE`` (``lenspipe run --help``
lists them by section with their defaults), and an environment variable,
``LENSPIPE_<SECTION>__<FIELD>``. Precedence: default < --config file < environment < options.
  lenspipe versions | rollback [--to N] [--undo] | promote N   (pipeline/deploy.py)
  lenspipe skew --request-log DIR [--model-name NAME]   (served requests vs training data; pipeline/skew.py)

Errors a user can fix end in one line naming the file or field, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Optional, Sequence

EXIT_USAGE = 2
EXIT_FAILED = 1


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file with config sections (see `lenspipe config`).")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
        help="Override any config field, e.g. --set trainer.epochs=10 (repeatable).",
    )
    p.add_argument("--data", metavar="DIR", help="Image folder <DIR>/<class>/<image> (or TFRecords with --set data.format=tfrecord).")
    p.add_argument("--work-dir", metavar="DIR", help="Pipeline root, metadata, logs (default ./lenspipe-work).")
    p.add_argument("--serving-dir", metavar="DIR", help="Where versions are pushed (default <work-dir>/serving).")
    p.add_argument("--model-name", help="Model name: versions go to <serving-dir>/<model-name>/<N>.")
    p.add_argument("--no-cache", action="store_true", help="Re-execute every component.")
    p.add_argument(
        "--beam-arg", dest="beam_args", action="append", metavar="ARG",
        help="Beam option for every Beam component, e.g. --beam-arg --runner=PortableRunner "
        "(repeatable; replaces runtime.beam_args; docs/orchestration.md).",
    )
    p.add_argument("--verbose", action="store_true", help="Also show TensorFlow, Beam and TFX log lines (always in the log file).")
    p.add_argument("--image-size", type=int, metavar="PX", help="Square model input size (sets image.height and image.width).")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 = greyscale, 3 = RGB.")
    p.add_argument("--trials", type=int, help="KerasTuner trials (tuner.max_trials).")
    p.add_argument("--epochs", type=int, help="Trainer epochs (trainer.epochs).")
    p.add_argument(
        "--architecture", help="cnn, mobilenet_v3_small, efficientnet_v2_b0 or resnet50 (trainer.architecture)."
    )
    p.add_argument(
        "--backbone-weights", metavar="imagenet|FILE|none", help="Backbone start (trainer.backbone_weights)."
    )
    p.add_argument("--min-accuracy", type=float, help="Accuracy needed to bless (evaluator.min_accuracy).")
    p.add_argument("--seed", type=int, help="Seed for splits-independent randomness (runtime.seed).")
    p.add_argument(
        "--allow-class-change", action="store_true",
        help="Push even if the class list differs from the newest pushed version's (pusher.allow_class_change).",
    )


_FIELD_DEST = "field:"  # argparse dest prefix of the generated --<section>.<field> options


def _add_field_options(p: argparse.ArgumentParser) -> None:
    """One ``--<section>.<field>`` option per config field, grouped by section, help and default from the model."""
    from lenspipe.config import LenspipeConfig, fields

    groups = {}
    for dotted, field in fields():
        section = dotted.split(".", 1)[0]
        if section not in groups:
            doc = (LenspipeConfig.model_fields[section].annotation.__doc__ or "").strip().splitlines()
            groups[section] = p.add_argument_group(f"{section} options", doc[0] if doc else None)
        default = field.default
        help_text = (field.description or "").rstrip(".") + f" (default: {default!r})" if field.description else f"default: {default!r}"
        groups[section].add_argument(
            f"--{dotted}", dest=_FIELD_DEST + dotted, default=argparse.SUPPRESS, metavar="VALUE", help=help_text
        )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    from lenspipe.config import ConfigError, parse_assignments

    out: dict[str, str] = {k[len(_FIELD_DEST):]: v for k, v in vars(args).items() if k.startswith(_FIELD_DEST)}
    try:
        out.update(parse_assignments(args.overrides))
    except ConfigError as e:
        raise SystemExit(f"lenspipe: {e}") from None
    shortcuts = {
        "data.root": args.data,
        "runtime.work_dir": args.work_dir,
        "pusher.serving_model_dir": args.serving_dir,
        "pusher.model_name": args.model_name,
        "image.height": args.image_size,
        "image.width": args.image_size,
        "image.channels": args.channels,
        "tuner.max_trials": args.trials,
        "trainer.epochs": args.epochs,
        "trainer.architecture": args.architecture,
        "trainer.backbone_weights": args.backbone_weights,
        "evaluator.min_accuracy": args.min_accuracy,
        "runtime.seed": args.seed,
    }
    out.update({k: v for k, v in shortcuts.items() if v is not None})
    if args.beam_args:  # a list, not parsed as YAML
        out["runtime.beam_args"] = list(args.beam_args)
    if args.no_cache:
        out["runtime.enable_cache"] = False
    if args.allow_class_change:
        out["pusher.allow_class_change"] = True
    return out


def _load(args: argparse.Namespace):
    from lenspipe.config import ConfigError, load_config

    try:
        return load_config(args.config, _overrides(args), environ=os.environ)
    except ConfigError as e:
        raise SystemExit(f"lenspipe: config: {e}") from None


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from lenspipe.config import ConfigError, explain_config

    if args.explain:
        try:
            rows = explain_config(args.config, _overrides(args), environ=os.environ)
        except ConfigError as e:
            raise SystemExit(f"lenspipe: config: {e}") from None
        width = max(len(dotted) for dotted, _, _ in rows)
        for dotted, value, source in rows:
            print(f"{dotted:<{width}}  {source:<7}  {json.dumps(value)}")
        return 0
    cfg = _load(args)
    print(yaml.safe_dump(cfg.model_dump(), sort_keys=False), end="")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """A completion script: subcommands, then each subcommand's options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {
        name: " ".join(sorted(o for action in p._actions for o in action.option_strings))
        for name, p in sub.choices.items()
    }
    commands = " ".join(sub.choices)
    cases = "\n".join(f'    {name}) opts="{opts}" ;;' for name, opts in options.items())
    script = f"""# lenspipe {args.shell} completion: eval "$(lenspipe completion {args.shell})"
_lenspipe() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" opts
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "{commands}" -- "$cur")); return; fi
  case "${{COMP_WORDS[1]}}" in
{cases}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
"""
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    print(script + "complete -o default -F _lenspipe lenspipe")
    return 0


def _prepare_data(cfg) -> Path:
    """The data root to run on (the embedded digits written first when unset), checked."""
    from pipeline import datasets

    if cfg.data.root is None:
        data_root = cfg.work_path / "data" / (
            "digits" if cfg.data.embedded_per_class is None else f"digits-{cfg.data.embedded_per_class}"
        )
        print(f"lenspipe: embedded dataset: scikit-learn digits -> {data_root}", file=sys.stderr)
        datasets.write_digits(data_root, per_class=cfg.data.embedded_per_class)
    else:
        data_root = Path(cfg.data.root).expanduser().resolve()
        if not data_root.is_dir():
            raise SystemExit(f"lenspipe: --data {cfg.data.root}: not a directory; give a folder of <class>/<image> files")
    if cfg.data.schema_file and not Path(cfg.data.schema_file).expanduser().is_file():
        raise SystemExit(
            f"lenspipe: data.schema_file {cfg.data.schema_file}: no such file; give a schema.pbtxt "
            "(e.g. the one SchemaGen wrote under <work-dir>/pipelines/<name>/SchemaGen/schema/)"
        )
    if cfg.data.inference_root:
        inference_root = Path(cfg.data.inference_root).expanduser().resolve()
        if not inference_root.is_dir():
            raise SystemExit(f"lenspipe: data.inference_root {cfg.data.inference_root}: not a directory; give a folder of images")
        cfg.data.inference_root = str(inference_root)
    if cfg.data.format == "images" and cfg.data.span_pattern is None:
        counts, empty = datasets.describe_image_folder(data_root)
        for name in empty:
            print(f"lenspipe: warning: class folder {data_root / name} holds no image files: not a class", file=sys.stderr)
        if len(counts) < 2:
            raise SystemExit(
                f"lenspipe: --data {data_root}: found {len(counts)} class folder(s) with images; need at least 2 "
                "sub-folders with images, one per class (<DIR>/<class>/<image>)"
            )
        print(f"lenspipe: {sum(counts.values())} image files in {len(counts)} classes", file=sys.stderr)
    return data_root


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    cfg.runtime.apply_process_env()  # before TensorFlow is first imported
    return _run_pipeline(cfg, str(_prepare_data(cfg)), verbose=args.verbose)


def cmd_compile(args: argparse.Namespace) -> int:
    """Write a Kubeflow PipelineJob JSON or an Airflow DAG file for the same pipeline."""
    cfg = _load(args)
    if args.schedule is not None:  # not through --set: '@daily' and cron lines are not YAML scalars
        cfg.runtime.schedule = args.schedule
    if args.target == "kubeflow":
        from pipeline.runners import kubeflow

        # The data lives where the cluster reads it: a URI, not checked or written here.
        path = kubeflow.compile_pipeline(
            cfg, Path(args.output), data_root=cfg.data.root, image=args.image, pipeline_root=args.pipeline_root
        )
        print(f"lenspipe: wrote Kubeflow pipeline {path} (image {args.image or kubeflow.DEFAULT_IMAGE})")
    else:
        from pipeline.runners import airflow

        from lenspipe.config import ConfigError

        try:
            path = airflow.compile_dag(cfg, str(_prepare_data(cfg)), Path(args.output))
        except ConfigError as e:  # airflow.queues naming no component
            raise SystemExit(f"lenspipe: {e}") from None
        schedule = cfg.runtime.schedule or "none (trigger it)"
        print(f"lenspipe: wrote Airflow DAG {path} (dag id {cfg.runtime.pipeline_name}, schedule {schedule})")
    return 0


def _run_pipeline(cfg, data_root: str, verbose: bool = False) -> int:
    from pipeline import report
    from pipeline.runners import local

    log_file = cfg.work_path / "logs" / "last-run.log"
    print(
        f"lenspipe: running pipeline '{cfg.runtime.pipeline_name}' on {data_root} "
        f"(cache {'on' if cfg.runtime.enable_cache else 'off'}, seed {cfg.runtime.seed}); log: {log_file}",
        file=sys.stderr,
    )
    paths = local.LocalPaths.from_config(cfg)
    metadata = _metadata_store(cfg)
    error: Optional[BaseException] = None
    try:
        local.run(cfg, data_root, log_file=log_file, verbose=verbose)
    except Exception as e:  # noqa: BLE001 - summarised below, full traceback in the log
        error = e
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as f:
            f.write("lenspipe: pipeline failed\n" + "".join(traceback.format_exception(e)))
    run_id = report.latest_run_id(metadata, cfg.runtime.pipeline_name)
    summary = report.read_run(metadata, run_id) if run_id else None
    if summary is not None:
        names = report.class_names_of(summary.model_dir) if summary.model_dir else []
        report_path = cfg.work_path / "reports" / f"{summary.run_id}.md"
        report.write_markdown(summary, str(report_path), names)
        print("\n" + report.format_summary(summary, names))
        print(f"  report:     {report_path}")
        html_path = _write_html(metadata, summary.run_id, cfg.work_path / "reports", log_file)
        if html_path:
            print(f"  html:       {html_path}")
    if error is not None:
        print(f"\nlenspipe: run failed: {_root_message(error)}", file=sys.stderr)
        print(f"lenspipe: full log: {log_file}", file=sys.stderr)
        return EXIT_FAILED
    if summary is not None and summary.pushed:
        print(f"\nServe it:  lenspipe serve --model_name {cfg.pusher.model_name} --model_base_path {paths.serving_model_dir}")
    return 0


def _metadata_store(cfg):
    """What the report reads: the SQLite path, or the database server's connection."""
    from pipeline.runners import common

    try:
        return common.metadata_for_reading(cfg)
    except common.MetadataConfigError as e:
        raise SystemExit(f"lenspipe: {e}") from None


def _write_html(metadata, run_id: str, reports_dir: Path, log_file: Path) -> Optional[str]:
    """The run's HTML report; a rendering bug is a warning (the run itself succeeded), traceback in the log."""
    from pipeline import html_report

    try:
        return html_report.write_report(metadata, run_id, str(reports_dir))  # a SQLite path or a server's config
    except Exception as e:  # noqa: BLE001
        with open(log_file, "a") as f:
            f.write("lenspipe: HTML report failed\n" + "".join(traceback.format_exception(e)))
        print(f"lenspipe: warning: HTML report not written: {e} (traceback in {log_file})", file=sys.stderr)
        return None


def _root_message(error: BaseException) -> str:
    """The most specific message in an exception chain (Beam wraps component errors)."""
    from components.data_gate import DataGateFailed
    from components.versioned_pusher.executor import PushFailed

    seen = error
    while seen is not None:
        if isinstance(seen, (DataGateFailed, PushFailed)):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = re.sub(r" \[while running '[^']*'\]$", "", str(error).strip())  # Beam's suffix
    for line in text.splitlines():
        if line.startswith("data gate:"):
            return text[text.index(line):]
    return text.splitlines()[-1] if text else type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lenspipe", description="Image classification from a folder of images to TF Serving.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub_kwargs = {"allow_abbrev": False}
    run_p = sub.add_parser("run", help="Run the whole pipeline locally (BeamDagRunner, MLMD on SQLite).", **sub_kwargs)
    _add_config_args(run_p)
    _add_field_options(run_p)
    run_p.set_defaults(func=cmd_run)
    compile_p = sub.add_parser(
        "compile", help="Write the pipeline for Kubeflow Pipelines (JSON) or Airflow (a DAG file).", **sub_kwargs
    )
    compile_p.add_argument("--target", required=True, choices=("kubeflow", "airflow"))
    compile_p.add_argument(
        "--output", required=True, metavar="PATH",
        help="kubeflow: the PipelineJob JSON file; airflow: the folder for <pipeline_name>_dag.py (Airflow's dags/).",
    )
    compile_p.add_argument("--image", help="kubeflow: container image of every step (default: the Dockerfile's, lenspipe:0.1.0).")
    compile_p.add_argument("--pipeline-root", metavar="URI", help="kubeflow: where artifacts go, e.g. gs://bucket/lenspipe.")
    compile_p.add_argument("--schedule", help="airflow: '@daily', a cron line ... (runtime.schedule; default: manual runs).")
    _add_config_args(compile_p)
    _add_field_options(compile_p)
    compile_p.set_defaults(func=cmd_compile)
    cfg_p = sub.add_parser("config", help="Print the effective configuration (defaults + file + env + options).", **sub_kwargs)
    _add_config_args(cfg_p)
    _add_field_options(cfg_p)
    cfg_p.add_argument("--explain", action="store_true", help="Print every field with its value and source.")
    cfg_p.set_defaults(func=cmd_config)
    completion_p = sub.add_parser("completion", help="Print a shell completion script (bash or zsh).", **sub_kwargs)
    completion_p.add_argument("shell", choices=("bash", "zsh"))
    completion_p.set_defaults(func=cmd_completion)
    from pipeline import deploy

    deploy.add_commands(sub, _add_config_args, _load)

    from pipeline import report_cli

    report_cli.add_parsers(sub, **sub_kwargs)
    from pipeline import skew

    skew.add_parser(sub, _add_config_args, _add_field_options, _load, **sub_kwargs)
    sub.add_parser("serve", help="Serve a model base path over TF Serving's REST and gRPC APIs.", add_help=False)
    sub.add_parser("predict", help="Classify images: via a running server, or locally with --tflite FILE / --saved-model DIR.", add_help=False)
    return parser


def _join_beam_args(argv: list[str]) -> list[str]:
    """``--beam-arg --runner=X`` as ``--beam-arg=--runner=X``: argparse would read ``--runner=X`` as an option."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] == "--beam-arg":
            out[-1] = f"--beam-arg={item}"
        else:
            out.append(item)
    return out  # a trailing --beam-arg stays: argparse says it expects one argument


def _unknown_options(parser: argparse.ArgumentParser, argv: list[str], unknown: list[str]) -> None:
    """Exit with the first unknown option and the nearest known one of that subcommand."""
    from lenspipe.config import suggest

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[argv[0]] if argv and argv[0] in sub.choices else parser
    known = [o for action in command._actions for o in action.option_strings]
    option = next((u.split("=", 1)[0] for u in unknown if u.startswith("-")), unknown[0])
    raise SystemExit(f"lenspipe: unknown option {option}{suggest(option, known)}; see `lenspipe {argv[0] if argv else ''} --help`")


def _quiet_libraries() -> None:
    """Keep the terminal for lenspipe's own progress; everything else goes to the log file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also hides the CUDA-plugin noise on CPU machines
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    if argv and argv[0] == "predict":
        from inference.cli import predict_main, wants_offline

        if wants_offline(argv[1:]):
            return predict_main(argv[1:])
    if argv and argv[0] in ("serve", "predict"):
        from serving import cli as serving_cli

        return (serving_cli.serve_main if argv[0] == "serve" else serving_cli.predict_main)(argv[1:])
    parser = build_parser()
    argv = _join_beam_args(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unknown_options(parser, argv, unknown)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


def entry() -> None:
    """Console-script entry point.

    Exits without interpreter teardown once output is flushed: TensorFlow's
    function finalizers otherwise print 'Exception ignored in AtomicFunction.__del__'
    noise after a successful run.
    """
    try:
        code = main()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # a message: argparse and our checks exit this way
            print(e.code, file=sys.stderr)
            code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
