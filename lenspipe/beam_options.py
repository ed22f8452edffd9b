"""Beam pipeline arguments, checked by Beam's own option parser before any work.

Beam itself only logs "Discarding unparseable args" for a flag no options class knows and
runs on without it (a misspelt ``--job_endpoint`` would silently run on the DirectRunner);
here such a flag is a ``BeamArgsError`` naming it, with the closest real option.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Sequence


class BeamArgsError(ValueError):
    """A Beam argument is unknown to Beam's options classes, or its value does not parse."""


def _parser() -> argparse.ArgumentParser:
    """Every flag of Beam's PipelineOptions subclasses, as ``PipelineOptions.get_all_options`` gathers them.

    Without abbreviations: ``PipelineOptions.view_as``, which the runners read options through,
    does not expand them either, so ``--runn=X`` would be ignored there.
    """
    from apache_beam.options import pipeline_options

    class _Raising(pipeline_options._BeamArgumentParser):  # pylint: disable=protected-access
        def error(self, message):
            raise BeamArgsError(message)

    parser = _Raising(allow_abbrev=False, add_help=False)
    classes = {f"{c.__module__}.{c.__qualname__}": c for c in pipeline_options.PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def _check_runner(name: str, args: Sequence[str]) -> None:
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners import runner
    from apache_beam.runners.portability.portable_runner import PortableRunner

    try:
        created = runner.create_runner(name)  # a runner object does no work until it runs a pipeline
    except ValueError as e:  # "Unexpected pipeline runner: X. Valid values are ..."
        raise BeamArgsError(f"--runner={name}: not a Beam runner{suggest(name, StandardOptions.KNOWN_RUNNER_NAMES)}") from e
    except (ImportError, AttributeError) as e:
        raise BeamArgsError(f"--runner={name}: cannot load it here ({e})") from e
    # Beam 2.61's PortableRunner (and Flink's and Spark's, its subclasses) puts this timeout on the
    # job's state and message streams too: a job running longer fails in the client with
    # DEADLINE_EXCEEDED although the job itself goes on and succeeds.
    if isinstance(created, PortableRunner) and not any(a.startswith(_TIMEOUT_FLAGS) for a in args):
        raise BeamArgsError(
            f"--runner={name}: add --job_server_timeout=SECONDS longer than any one Beam job (e.g. 86400): "
            "Beam's default of 60 s also cuts off waiting for a running job"
        )


_TIMEOUT_FLAGS = ("--job_server_timeout", "--job-server-timeout")


def suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_beam_args(args: Sequence[str]) -> list[str]:
    """``args`` unchanged if Beam's parser takes every one of them; else ``BeamArgsError`` naming the first bad one.

    Flags take ``--flag=value`` or ``--flag value``. A value that does not parse
    (``--direct_num_workers=two``), a ``--runner`` Beam cannot create, and a portable
    runner (Portable, Flink, Spark) without ``--job_server_timeout`` are errors too.
    """
    args = [str(a) for a in args]
    parser = _parser()
    known_flags = [o for action in parser._actions for o in action.option_strings]  # pylint: disable=protected-access
    parsed, unknown = parser.parse_known_args(args)
    for item in unknown:
        if item.startswith("-"):
            flag = item.split("=", 1)[0]
            raise BeamArgsError(f"{flag}: not a Beam pipeline option{suggest(flag, known_flags)}")
        raise BeamArgsError(f"{item!r}: not a --flag=value Beam option (write e.g. --runner=PortableRunner)")
    if getattr(parsed, "runner", None):
        _check_runner(parsed.runner, args)
    return args
