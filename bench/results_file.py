"""Writing a benchmark's results file: never half-written (temporary file, then rename); the CPU it ran on."""

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


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo: timings and even the last digits of metrics depend on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
