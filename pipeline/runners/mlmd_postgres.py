"""Work around ML Metadata 1.16's PostgreSQL quoting of strings that contain a backslash.

MLMD escapes a string with libpq's PQescapeLiteral, which returns `` E'...'`` for such a
string, then strips the first and last characters assuming `'...'`: the query holds
``'E'...'`` and fails ("syntax error at or near ..."). TFX stores JSON with nested
strings as properties (StatsOptions, the Evaluator's EvalConfig), so every pipeline run
hits it. Until MLMD is fixed (google/ml-metadata, postgresql_metadata_source.cc,
EscapeString), string values sent to a PostgreSQL store have their backslashes replaced
by a private-use marker, and values read back are restored: through the Python client
the store round-trips every string unchanged.
"""

from __future__ import annotations

import re

_MARK = "\ue05c"  # a private-use code point: never produced by TFX or lenspipe
_ENCODED = re.compile(_MARK + "([01])")
_installed = False


def encode(text: str) -> str:
    """``text`` without backslashes; ``decode`` restores it exactly."""
    if "\\" not in text and _MARK not in text:
        return text
    return text.replace(_MARK, _MARK + "0").replace("\\", _MARK + "1")


def decode(text: str) -> str:
    if _MARK not in text:
        return text
    return _ENCODED.sub(lambda m: _MARK if m.group(1) == "0" else "\\", text)


def _map_values(message, fn) -> None:
    """Apply ``fn`` to the string_value of every MLMD Value inside ``message``."""
    from ml_metadata.proto import metadata_store_pb2

    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type != field.TYPE_MESSAGE:
                continue
            items = list(value.values())
        elif field.label == field.LABEL_REPEATED:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, metadata_store_pb2.Value):
                if item.WhichOneof("value") == "string_value":
                    item.string_value = fn(item.string_value)
            else:
                _map_values(item, fn)


def install() -> None:
    """Patch MetadataStore once per process; only stores opened on PostgreSQL are affected."""
    global _installed
    if _installed:
        return
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    original = metadata_store.MetadataStore._call_method

    def _call_method(self, method_name, request, response):
        config = getattr(self, "_config", None)
        on_postgres = (
            getattr(self, "_using_db_connection", False)
            and isinstance(config, metadata_store_pb2.ConnectionConfig)
            and config.WhichOneof("config") == "postgresql"
        )
        if not on_postgres:
            return original(self, method_name, request, response)
        encoded = type(request)()
        encoded.CopyFrom(request)
        _map_values(encoded, encode)
        result = original(self, method_name, encoded, response)
        _map_values(response, decode)
        return result

    metadata_store.MetadataStore._call_method = _call_method
    _installed = True
