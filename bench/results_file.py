"""Writing a benchmark's results file: never half-written (temporary file, then rename)."""

from __future__ import annotations

from pathlib import Path


def write(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) through ``<path>.tmp`` and a rename."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out
