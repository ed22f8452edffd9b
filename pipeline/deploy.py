"""`lenspipe versions`, `lenspipe rollback [--to N] [--undo]`, `lenspipe promote N`: deploys by rename and config.

Everything here works on a TF Serving model base path, so real TF Serving and `lenspipe serve` follow
alike, without a restart:
- rollback renames the newer version directories to `<N>.rolled-back-<UTC time>` (not an integer,
  so no server loads them); servers with the default `latest` policy load the highest remaining
  version and only then unload the newer one, so no request fails. `--undo` renames them back.
  The rolled-back Model artifacts are marked in ML Metadata (components/versioned_pusher/rollback.py):
  the next run's baseline is the version actually serving, and a cached candidate is not pushed again.
- promote rewrites a TF Serving model_config_file (`specific` policy, `version_labels`) atomically, in
  two steps when a server answers at --url: first the new version is added and loaded, then the label
  moves (TF Serving refuses a label on a version that is not yet AVAILABLE).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional


_ROLLED_BACK = re.compile(r"^(?P<version>[0-9]+)\.rolled-back-(?P<stamp>[0-9]{8}T[0-9]{6}Z)$")
_VERSION = re.compile(r"^[0-9]+$")
ROLLBACK_EXECUTION_TYPE = "lenspipe.Rollback"


class DeployError(RuntimeError):
    """A deploy command cannot do what was asked; the message says why and what to do."""


@dataclasses.dataclass
class Push:
    """What ML Metadata knows about one pushed version."""

    run_id: str = ""
    model_id: Optional[int] = None
    test_accuracy: Optional[float] = None
    blessed: Optional[bool] = None
    serving_check: Optional[bool] = None
    rolled_back: bool = False


@dataclasses.dataclass
class VersionInfo:
    version: int
    path: Path
    pushed_at: str  # UTC, from saved_model.pb's mtime
    rolled_back_at: str = ""  # from the directory name
    push: Push = dataclasses.field(default_factory=Push)
    labels: list[str] = dataclasses.field(default_factory=list)
    server_state: str = ""


# ---- the base path on disk ---------------------------------------------------------------------------


def integer_versions(base_dir: Path) -> list[int]:
    """The version directories a server would consider, ascending."""
    if not base_dir.is_dir():
        return []
    return sorted(int(p.name) for p in base_dir.iterdir() if _VERSION.match(p.name) and p.is_dir())


def rolled_back_dirs(base_dir: Path) -> list[tuple[int, str, Path]]:
    """(version, UTC stamp, path) of every rolled-back directory, oldest rollback first."""
    if not base_dir.is_dir():
        return []
    found = [(int(m["version"]), m["stamp"], p) for p in base_dir.iterdir() if (m := _ROLLED_BACK.match(p.name))]
    return sorted(found, key=lambda t: (t[1], t[0]))


def _utc_stamp(now: Optional[dt.datetime] = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def _iso(stamp: str) -> str:
    return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%d %H:%M:%S")


def rollback(base_dir: Path, to: Optional[int] = None, now: Optional[dt.datetime] = None) -> tuple[int, list[int], str]:
    """Take every version above ``to`` (default: the one below the newest) out of service by rename.

    Returns (the version now newest, the versions taken out, the stamp). Lower versions are renamed
    first, so a watching server moves straight to ``to`` rather than through the versions between.
    """
    versions = integer_versions(base_dir)
    if not versions:
        raise DeployError(f"{base_dir}: no version directories; nothing to roll back")
    if to is None:
        if len(versions) < 2:
            raise DeployError(f"{base_dir}: only version {versions[0]} is on disk; nothing to roll back to")
        to = versions[-2]
    if to not in versions:
        raise DeployError(f"{base_dir}: version {to} is not on disk (versions: {', '.join(map(str, versions))})")
    newer = [v for v in versions if v > to]
    if not newer:
        raise DeployError(f"{base_dir}: version {to} is already the newest; nothing to roll back")
    stamp = _utc_stamp(now)
    for version in newer:
        target = base_dir / f"{version}.rolled-back-{stamp}"
        if target.exists():
            raise DeployError(f"{target} exists (a rollback in the same second); try again")
        os.rename(base_dir / str(version), target)
    return to, newer, stamp


def undo_rollback(base_dir: Path) -> tuple[list[int], str]:
    """Restore the versions of the most recent rollback (newest first); returns (versions, stamp)."""
    rolled = rolled_back_dirs(base_dir)
    if not rolled:
        raise DeployError(f"{base_dir}: no rolled-back versions to restore")
    stamp = rolled[-1][1]
    batch = sorted((t for t in rolled if t[1] == stamp), reverse=True)
    for version, _, path in batch:
        if (base_dir / str(version)).exists():
            raise DeployError(f"{base_dir / str(version)} exists; cannot restore {path.name} over it")
    for version, _, path in batch:
        os.rename(path, base_dir / str(version))
    return sorted(v for v, _, _ in batch), stamp


# ---- ML Metadata ------------------------------------------------------------------------------------


def _store(metadata_path: Path, writable: bool = False):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = (metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE if writable
                                     else metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
    return mlmd.MetadataStore(config)


def _value(artifact, name: str):
    props = artifact.custom_properties
    if name not in props:
        return None
    v = props[name]
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def pushes(store, base_dir: Path) -> dict[int, Push]:
    """version -> Push for every successful push into ``base_dir`` that ML Metadata recorded."""
    from ml_metadata.proto import metadata_store_pb2

    from components.versioned_pusher.rollback import ROLLED_BACK_PROPERTY

    found: dict[int, Push] = {}
    base = os.path.normpath(str(base_dir))
    try:
        pushed_models = store.get_artifacts_by_type("PushedModel")
    except Exception:  # noqa: BLE001 - a store that never saw a push
        return found
    for pushed in pushed_models:
        destination = _value(pushed, "pushed_destination")
        if _value(pushed, "pushed") != 1 or not destination or os.path.dirname(os.path.normpath(destination)) != base:
            continue
        push = Push()
        executions = [e.execution_id for e in store.get_events_by_artifact_ids([pushed.id])
                      if e.type == metadata_store_pb2.Event.OUTPUT]
        if executions:
            inputs = {}
            for event in store.get_events_by_execution_ids(executions[:1]):
                if event.type == metadata_store_pb2.Event.INPUT and event.path.steps:
                    inputs[event.path.steps[0].key] = event.artifact_id
            by_id = {a.id: a for a in store.get_artifacts_by_id(list(inputs.values()))}
            model, blessing, infra = (by_id.get(inputs.get(k)) for k in ("model", "model_blessing", "infra_blessing"))
            if model is not None:
                push.model_id, push.rolled_back = model.id, _value(model, ROLLED_BACK_PROPERTY) == 1
            if blessing is not None:
                push.blessed = _value(blessing, "blessed") == 1
                push.test_accuracy = _value(blessing, "candidate_accuracy")
            if infra is not None:
                push.serving_check = _value(infra, "blessed") == 1
            runs = [c.name for c in store.get_contexts_by_execution(executions[0]) if c.type == "pipeline_run"]
            push.run_id = runs[0] if runs else ""
        found[int(_value(pushed, "pushed_version") or os.path.basename(destination))] = push
    return found


def record_rollback(metadata_path: Path, base_dir: Path, versions: list[int], rolled_back: bool,
                    stamp: str) -> list[int]:
    """Mark (or unmark) the Model artifacts pushed as ``versions`` and log a lenspipe.Rollback execution.

    Returns the ids of the Model artifacts changed ([] when ML Metadata has no record of the pushes).
    """
    from ml_metadata.proto import metadata_store_pb2

    from components.versioned_pusher.rollback import ROLLED_BACK_AT_PROPERTY, ROLLED_BACK_PROPERTY

    if not metadata_path.exists():
        return []
    store = _store(metadata_path, writable=True)
    known = pushes(store, base_dir)
    ids = [known[v].model_id for v in versions if v in known and known[v].model_id is not None]
    models = store.get_artifacts_by_id(ids) if ids else []
    for model in models:
        model.custom_properties[ROLLED_BACK_PROPERTY].int_value = int(rolled_back)
        model.custom_properties[ROLLED_BACK_AT_PROPERTY].string_value = _iso(stamp) + " UTC" if rolled_back else ""
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name=ROLLBACK_EXECUTION_TYPE))
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    execution.custom_properties["base_path"].string_value = str(base_dir)
    execution.custom_properties["versions"].string_value = json.dumps(versions)
    execution.custom_properties["action"].string_value = "rollback" if rolled_back else "undo"
    execution.custom_properties["at"].string_value = _iso(stamp)
    events = [(m, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)) for m in models]
    store.put_execution(execution, artifact_and_events=events, contexts=[])
    return [m.id for m in models]


# ---- a running server -------------------------------------------------------------------------------


def server_states(url: str, model_name: str, timeout: float = 5.0) -> Optional[dict[int, str]]:
    """version -> state from a server's model status API; None if nothing answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/v1/models/{model_name}", timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        return None
    except (OSError, ValueError):
        return None
    return {int(s["version"]): s.get("state", "") for s in body.get("model_version_status", [])}


def wait_available(url: str, model_name: str, version: int, timeout: float, gone: tuple[int, ...] = ()) -> None:
    """Block until ``version`` is AVAILABLE (and none of ``gone`` is) at ``url``; DeployError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = server_states(url, model_name) or {}
        if states.get(version) == "AVAILABLE" and all(states.get(v) != "AVAILABLE" for v in gone):
            return
        time.sleep(0.2)
    raise DeployError(f"version {version} of {model_name} was not AVAILABLE at {url} within {timeout:g}s; "
                      "is the server watching this model_config_file (--model_config_file_poll_wait_seconds)?")


# ---- promote ----------------------------------------------------------------------------------------


def promote(base_dir: Path, model_name: str, version: int, config_path: Path, *, canary: Optional[int] = None,
            url: Optional[str] = None, timeout: float = 120.0) -> dict[str, int]:
    """Label ``version`` stable (and ``canary`` canary) in the model_config_file; returns the labels written.

    Promoting the current canary drops the canary label. With a server at ``url``, the new versions
    are first added to the `specific` policy and awaited, then the labels move.
    """
    from components.versioned_pusher import model_config

    for v in (version, canary):
        if v is not None and not (base_dir / str(v)).is_dir():
            raise DeployError(f"{base_dir / str(v)}: no such version directory "
                              f"(versions: {', '.join(map(str, integer_versions(base_dir))) or 'none'})")
    config = model_config.read_config(str(config_path))
    entry = model_config.model_entry(config, model_name, str(base_dir))
    old = dict(entry.version_labels)
    labels = dict(old)
    labels[model_config.STABLE] = version
    if canary is not None:
        labels[model_config.CANARY] = canary
    elif labels.get(model_config.CANARY) == version:
        del labels[model_config.CANARY]
    states = server_states(url, model_name) if url else None
    if old and states is not None:
        new_versions = tuple(v for v in set(labels.values()) if states.get(v) != "AVAILABLE")
        if new_versions:
            model_config.set_labels(entry, old, extra_versions=new_versions)
            model_config.write_config(str(config_path), config)
            for v in new_versions:
                wait_available(url, model_name, v, timeout)
    model_config.set_labels(entry, labels)
    model_config.write_config(str(config_path), config)
    return labels


# ---- versions ---------------------------------------------------------------------------------------


def list_versions(base_dir: Path, model_name: str, metadata_path: Optional[Path] = None,
                  config_path: Optional[Path] = None, url: Optional[str] = None) -> list[VersionInfo]:
    """Every pushed version (serving candidates and rolled back), newest first, with what is known of it."""
    from components.versioned_pusher import model_config

    def pushed_at(path: Path) -> str:
        pb = path / "saved_model.pb"
        when = pb.stat().st_mtime if pb.exists() else path.stat().st_mtime
        return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    rows = [VersionInfo(v, base_dir / str(v), pushed_at(base_dir / str(v))) for v in integer_versions(base_dir)]
    rows += [VersionInfo(v, p, pushed_at(p), rolled_back_at=_iso(stamp)) for v, stamp, p in rolled_back_dirs(base_dir)]
    known = pushes(_store(metadata_path), base_dir) if metadata_path and metadata_path.exists() else {}
    labels = model_config.labels_of(model_config.read_config(str(config_path)), model_name) if config_path else {}
    states = server_states(url, model_name) if url else None
    if url and states is None:
        raise DeployError(f"no server answered at {url}; start one or leave out --url")
    for row in rows:
        row.push = known.get(row.version, Push())
        if not row.rolled_back_at:
            row.labels = sorted(label for label, v in labels.items() if v == row.version)
            row.server_state = (states or {}).get(row.version, "not loaded" if states is not None else "")
    return sorted(rows, key=lambda r: (r.version, not r.rolled_back_at), reverse=True)


def format_versions(rows: list[VersionInfo], with_server: bool) -> str:
    """A plain table, one version a line."""
    header = ["version", "on disk", "pushed (UTC)", "run id", "test acc", "blessed", "labels"]
    if with_server:
        header.append("server")
    lines = [header]
    newest = max((r.version for r in rows if not r.rolled_back_at), default=None)
    for r in rows:
        disk = f"rolled back {r.rolled_back_at}" if r.rolled_back_at else ("latest" if r.version == newest else "kept")
        blessed = "" if r.push.blessed is None else ("yes" if r.push.blessed else "no")
        if r.push.serving_check is not None:
            blessed += ", served ok" if r.push.serving_check else ", serving check failed"
        acc = f"{r.push.test_accuracy:.4f}" if r.push.test_accuracy is not None else "-"
        line = [str(r.version), disk, r.pushed_at, r.push.run_id or "-", acc, blessed or "-", ",".join(r.labels) or "-"]
        if with_server:
            line.append(r.server_state or "-")
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)


# ---- the commands -----------------------------------------------------------------------------------


def add_commands(sub, add_config_args: Callable, load: Callable) -> None:
    """Register versions, rollback and promote on the `lenspipe` subparsers."""
    def paths(args):
        from components.versioned_pusher import model_config
        from pipeline.runners.local import LocalPaths

        cfg = load(args)
        local = LocalPaths.from_config(cfg)
        config_file = Path(args.model_config_file or cfg.pusher.model_config_file
                           or model_config.default_model_config_file(str(local.serving_model_dir)))
        return cfg, local, config_file

    def run(fn):
        def wrapped(args) -> int:
            try:
                return fn(args, *paths(args))
            except (DeployError, ValueError) as exc:
                print(f"lenspipe {args.command}: {exc}", file=sys.stderr)
                return 1
        return wrapped

    def common(p, url_help):
        add_config_args(p)
        p.add_argument("--url", help=url_help)
        p.add_argument("--model-config-file", metavar="FILE",
                       help="TF Serving model_config_file with the labels (default <serving-dir>/models.config).")

    p = sub.add_parser("versions", help="List pushed versions: run id, date, test accuracy, blessing, labels, server state.")
    common(p, "REST URL of a running server (e.g. http://127.0.0.1:8501): show each version's state there.")
    p.set_defaults(func=run(cmd_versions))
    p = sub.add_parser("rollback", help="Take the newest version(s) out of service by rename; --undo restores.")
    common(p, "REST URL of a running server: wait until it serves the version rolled back to.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--to", type=int, metavar="N", help="Serve version N (default: the one below the newest).")
    which.add_argument("--undo", action="store_true", help="Restore the versions of the last rollback.")
    p.add_argument("--timeout", type=float, default=120.0, help="Seconds to wait for the server (with --url).")
    p.set_defaults(func=run(cmd_rollback))
    p = sub.add_parser("promote", help="Label version N stable in the TF Serving model_config_file (atomically).")
    common(p, "REST URL of a server watching the config file: load N there before the label moves.")
    p.add_argument("version", type=int, metavar="N", help="The version to label stable.")
    p.add_argument("--canary", type=int, metavar="M", help="Also label version M canary.")
    p.add_argument("--timeout", type=float, default=120.0, help="Seconds to wait for the server (with --url).")
    p.set_defaults(func=run(cmd_promote))


def cmd_versions(args, cfg, local, config_file) -> int:
    rows = list_versions(local.serving_model_dir, cfg.pusher.model_name, local.metadata_path, config_file, args.url)
    if not rows:
        print(f"no versions under {local.serving_model_dir}")
        return 0
    print(f"{cfg.pusher.model_name} at {local.serving_model_dir}")
    print(format_versions(rows, with_server=bool(args.url)))
    return 0


def cmd_rollback(args, cfg, local, config_file) -> int:
    from components.versioned_pusher import model_config

    base = local.serving_model_dir
    if args.undo:
        versions, stamp = undo_rollback(base)
        changed = record_rollback(local.metadata_path, base, versions, False, stamp)
        target = integer_versions(base)[-1]
        print(f"restored version(s) {', '.join(map(str, versions))} (rolled back {_iso(stamp)} UTC); newest now {target}")
        gone: tuple[int, ...] = ()
    else:
        target, versions, stamp = rollback(base, args.to)
        changed = record_rollback(local.metadata_path, base, versions, True, stamp)
        print(f"rolled back version(s) {', '.join(map(str, versions))} (renamed to <N>.rolled-back-{stamp}); "
              f"servers watching {base} return to version {target}")
        gone = tuple(versions)
    print(f"ML Metadata: {len(changed)} model(s) marked in {local.metadata_path}" if changed
          else "ML Metadata: no record of these pushes (nothing marked)")
    if config_file.exists() and model_config.labels_of(model_config.read_config(str(config_file)), cfg.pusher.model_name):
        print(f"note: {config_file} pins versions by label; use `lenspipe promote` to move the labels")
    if args.url:
        wait_available(args.url, cfg.pusher.model_name, target, args.timeout, gone)
        print(f"{args.url}: version {target} is AVAILABLE" + (", the rolled-back ones are not" if gone else ""))
    return 0


def cmd_promote(args, cfg, local, config_file) -> int:
    labels = promote(local.serving_model_dir, cfg.pusher.model_name, args.version, config_file,
                     canary=args.canary, url=args.url, timeout=args.timeout)
    print(f"{config_file}: {cfg.pusher.model_name} " + ", ".join(f"{k} -> {v}" for k, v in sorted(labels.items())))
    return 0


__all__ = ["DeployError", "list_versions", "promote", "pushes", "record_rollback", "rollback", "undo_rollback"]
