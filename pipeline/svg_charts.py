"""Small inline SVG charts for the HTML report: grouped bars, lines, a heatmap.

Hand-written SVG instead of a plotting library: no new dependency, text stays text, and a
``viewBox`` with ``width=100%`` scales the chart to a phone's width without blurring.
"""

from __future__ import annotations

import html
import math
from typing import Mapping, Optional, Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_W, _H = 520, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 34, 52


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(body: list[str], title: str, width: int = _W, height: int = _H) -> str:
    # At most its natural size on a wide screen (a 5-cell heatmap need not fill 1000 px), narrower on a phone.
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="13">'
        f"<title>{_esc(title)}</title>"
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{_esc(title)}</text>'
        + "".join(body) + "</svg>"
    )


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _y_axis(lo: float, hi: float, plot_h: float, label: str) -> list[str]:
    out = []
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(
        f'<text transform="translate(14 {_TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">{_esc(label)}</text>'
    )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], _LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{_H - 16}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{_H - 7}">{_esc(name)}</text>')
        x += 24 + 7 * len(str(name))
    return out


def grouped_bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str) -> str:
    """One group of bars per category, one bar per series (e.g. images per class, a bar per split)."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = _nice_max(max((v for vals in series.values() for v in vals), default=0))
    body = _y_axis(0, top, plot_h, ylabel)
    group_w = plot_w / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    for ci, category in enumerate(categories):
        x0 = _LEFT + ci * group_w + group_w * 0.1
        for si, (name, vals) in enumerate(series.items()):
            v = vals[ci]
            h = plot_h * v / top
            body.append(
                f'<rect x="{x0 + si * bar_w:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[si % len(PALETTE)]}"><title>{_esc(category)}, {_esc(name)}: {v:g}</title></rect>'
            )
        body.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">{_esc(category)}</text>'
        )
    return _svg(body + _legend(list(series)), title)


def lines(
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    x_values: Optional[Sequence[object]] = None,
    highlight: Optional[int] = None,
) -> str:
    """Lines over x = 1..n (or ``x_values``), a dot per point; ``highlight`` rings one point of the first series."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    values = [v for vals in series.values() for v in vals if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo = min(lo, 0.0) if lo >= 0 else lo
    hi = _nice_max(hi) if hi > 0 else 1.0
    n = max((len(v) for v in series.values()), default=1)
    xs = list(x_values) if x_values is not None else list(range(1, n + 1))

    def px(i: int) -> float:
        return _LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return _TOP + plot_h - plot_h * (v - lo) / ((hi - lo) or 1.0)

    body = _y_axis(lo, hi, plot_h, ylabel)
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        body.append(f'<text x="{px(i):.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">{_esc(xs[i])}</text>')
    body.append(f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h + 32}" text-anchor="middle">{_esc(xlabel)}</text>')
    for si, (name, vals) in enumerate(series.items()):
        color = PALETTE[si % len(PALETTE)]
        points = [(px(i), py(v)) for i, v in enumerate(vals) if v is not None and math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in enumerate(vals):
            if v is not None and math.isfinite(v):
                body.append(
                    f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3" fill="{color}">'
                    f"<title>{_esc(name)} at {_esc(xs[i])}: {v:.4g}</title></circle>"
                )
        if si == 0 and highlight is not None and highlight < len(vals):
            body.append(
                f'<circle cx="{px(highlight):.1f}" cy="{py(vals[highlight]):.1f}" r="8" fill="none" '
                f'stroke="#d62728" stroke-width="2"><title>best</title></circle>'
            )
    return _svg(body + _legend(list(series)), title)


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str) -> str:
    """A square matrix (rows: true class, columns: predicted) with the count in each cell."""
    n = len(labels)
    cell = max(18, min(48, 520 // max(1, n)))
    left, top = 70, 56
    width, height = left + n * cell + 16, top + n * cell + 40
    peak = max((v for row in matrix for v in row), default=0) or 1
    body = [
        f'<text x="{left + n * cell / 2}" y="{top - 26}" text-anchor="middle">predicted</text>',
        f'<text transform="translate(16 {top + n * cell / 2}) rotate(-90)" text-anchor="middle">true</text>',
    ]
    for i, name in enumerate(labels):
        body.append(f'<text x="{left + i * cell + cell / 2}" y="{top - 6}" text-anchor="middle">{_esc(name)}</text>')
        body.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end">{_esc(name)}</text>')
    for r, row in enumerate(matrix):
        for c, v in enumerate(row):
            share = v / peak
            # Diagonal cells blue, errors red: a mistake stands out even when it is one image.
            rgb = (int(255 - 200 * share), int(255 - 130 * share), 255) if r == c else (255, int(255 - 200 * share), int(255 - 200 * share))
            ink = "#fff" if share > 0.6 else "#000"
            body.append(
                f'<rect x="{left + c * cell}" y="{top + r * cell}" width="{cell}" height="{cell}" '
                f'fill="rgb{rgb}" stroke="#fff"><title>true {_esc(labels[r])}, predicted {_esc(labels[c])}: {v:g}</title></rect>'
            )
            if v:
                body.append(
                    f'<text x="{left + c * cell + cell / 2}" y="{top + r * cell + cell / 2 + 4}" '
                    f'text-anchor="middle" fill="{ink}">{v:g}</text>'
                )
    return _svg(body, title, width, height)
