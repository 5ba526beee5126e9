"""Inline SVG charts for ``mlobs report``: no JavaScript, no fonts or files to fetch.

Three kinds, each a function returning an ``<svg>`` string that scales with the page width:

* :func:`line_chart` — series over time, each with an optional shaded band (95% intervals);
* :func:`timeline` — one bar per item from a start to an end time (alerts);
* :func:`bar_chart` — horizontal bars with labels (suspect scores, pattern lifts).

Every mark carries a ``<title>``, which browsers show as a tooltip. Text is escaped; numbers
that are missing (``None``/NaN) break a line instead of drawing through zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH = 760
PALETTE = {
    "estimated": "#1f77b4",
    "realized": "#d62728",
    "combined": "#2ca02c",
    "critical": "#d62728",
    "warning": "#ff7f0e",
    "info": "#1f77b4",
    "bar": "#6a51a3",
}
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 48, 28, 14, 34


@dataclass
class Series:
    """One line: ``ys[i]`` at ``xs[i]`` (epoch seconds), with an optional band around it."""

    name: str
    color: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    lower: Sequence[float | None] = field(default_factory=list)
    upper: Sequence[float | None] = field(default_factory=list)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if v == v else "0"


def _date(ts: float, with_time: bool = False) -> str:
    when = datetime.fromtimestamp(ts, tz=UTC)
    return when.strftime("%Y-%m-%d %H:%M" if with_time else "%b %d")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``count`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _svg(height: int, body: list[str], label: str) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _segments(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append(p)
    return [s for s in out if s]


def line_chart(
    series: Sequence[Series],
    *,
    label: str,
    y_unit: str = "",
    y_range: tuple[float, float] | None = None,
    height: int = 260,
) -> str:
    """Lines over event time with shaded bands; y from the data (or ``y_range``)."""
    xs = [x for s in series for x in s.xs]
    values = [v for s in series for seq in (s.ys, s.lower, s.upper) for v in seq if _finite(v)]
    if not xs or not values:
        raise ValueError("line_chart needs at least one finite point")
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 43200, x1 + 43200
    if y_range is None:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.1 or 0.05
        y_range = (lo - pad, hi + pad)
    y0, y1 = y_range
    plot_w = WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM

    def sx(x: float) -> float:
        return _MARGIN_LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        y = min(max(y, y0), y1)
        return _MARGIN_TOP + (y1 - y) / (y1 - y0) * plot_h

    body = [_axes(height, plot_w, plot_h)]
    for tick in nice_ticks(y0, y1):
        ty = sy(tick)
        text = f"{tick * 100:.0f}%" if y_unit == "%" else _fmt(tick)
        body.append(
            f'<line class="grid" x1="{_MARGIN_LEFT}" x2="{WIDTH - _MARGIN_RIGHT}" '
            f'y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="tick" x="{_MARGIN_LEFT - 6}" y="{ty + 4:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    ticks = sorted(set(xs))
    stride = max(1, math.ceil(len(ticks) / 8))
    for x in ticks[::stride]:
        body.append(
            f'<text class="tick" x="{sx(x):.1f}" y="{height - 12}" '
            f'text-anchor="middle">{escape(_date(x))}</text>'
        )
    for s in series:
        for seg in _segments(_band_points(s)):
            top = [(sx(x), sy(u)) for x, _, u in seg]
            bottom = [(sx(x), sy(lo_)) for x, lo_, _ in reversed(seg)]
            if len(seg) == 1:  # a lone point: a short vertical band
                (px, pu), (_, pl) = top[0], bottom[0]
                top, bottom = [(px - 3, pu), (px + 3, pu)], [(px + 3, pl), (px - 3, pl)]
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in top + bottom)
            body.append(
                f'<polygon class="band" points="{pts}" fill="{s.color}" '
                f'fill-opacity="0.15"><title>{escape(s.name)} 95% band</title></polygon>'
            )
    for s in series:
        points = [(x, y) if _finite(y) else None for x, y in zip(s.xs, s.ys, strict=True)]
        for seg in _segments(points):
            d = "M" + " L".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in seg)
            body.append(
                f'<path class="line" d="{d}" stroke="{s.color}" fill="none" stroke-width="2"/>'
            )
            for x, y in seg:
                value = f"{y * 100:.1f}%" if y_unit == "%" else _fmt(y)
                body.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{s.color}">'
                    f"<title>{escape(s.name)} {escape(_date(x))}: {value}</title>"
                    "</circle>"
                )
    body.append(_legend([(s.name, s.color) for s in series]))
    return _svg(height, body, label)


def _band_points(s: Series) -> list[tuple[float, float, float] | None]:
    if not s.lower or not s.upper:
        return []
    return [
        (x, lo, hi) if _finite(lo) and _finite(hi) else None
        for x, lo, hi in zip(s.xs, s.lower, s.upper, strict=True)
    ]


def _axes(height: int, plot_w: int, plot_h: int) -> str:
    return (
        f'<rect class="frame" x="{_MARGIN_LEFT}" y="{_MARGIN_TOP}" width="{plot_w}" '
        f'height="{plot_h}" fill="none"/>'
    )


def _legend(items: list[tuple[str, str]]) -> str:
    parts = []
    x = _MARGIN_LEFT + 8
    for name, color in items:
        parts.append(
            f'<rect x="{x}" y="{_MARGIN_TOP + 6}" width="12" height="4" '
            f'fill="{color}"/><text class="legend" x="{x + 16}" '
            f'y="{_MARGIN_TOP + 12}">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return "".join(parts)


@dataclass
class Bar:
    """One timeline row: ``label`` from ``start`` to ``end`` (None: still open at ``now``)."""

    label: str
    start: float
    end: float | None
    color: str
    title: str


def timeline(bars: Sequence[Bar], *, now: float, label: str, row_height: int = 22) -> str:
    """Bars over event time, one row each, open ones drawn up to ``now`` with an arrow."""
    if not bars:
        raise ValueError("timeline needs at least one bar")
    label_w = 250
    starts = [b.start for b in bars]
    ends = [b.end if b.end is not None else now for b in bars]
    x0, x1 = min(starts), max(max(ends), now)
    if x1 - x0 < 3600:
        x1 = x0 + 3600
    height = _MARGIN_TOP + row_height * len(bars) + _MARGIN_BOTTOM
    plot_w = WIDTH - label_w - _MARGIN_RIGHT

    def sx(x: float) -> float:
        return label_w + (x - x0) / (x1 - x0) * plot_w

    body = [
        f'<rect class="frame" x="{label_w}" y="{_MARGIN_TOP}" width="{plot_w}" '
        f'height="{row_height * len(bars)}" fill="none"/>'
    ]
    span_days = (x1 - x0) / 86400
    for tick in nice_ticks(x0 / 86400, x1 / 86400, 6 if span_days > 1 else 3):
        tx = sx(tick * 86400)
        if label_w <= tx <= WIDTH - _MARGIN_RIGHT:
            body.append(
                f'<line class="grid" x1="{tx:.1f}" x2="{tx:.1f}" y1="{_MARGIN_TOP}" '
                f'y2="{height - _MARGIN_BOTTOM}"/><text class="tick" x="{tx:.1f}" '
                f'y="{height - 12}" text-anchor="middle">'
                f"{escape(_date(tick * 86400, with_time=span_days < 2))}</text>"
            )
    for i, (bar, end) in enumerate(zip(bars, ends, strict=True)):
        y = _MARGIN_TOP + i * row_height
        left, right = sx(bar.start), max(sx(end), sx(bar.start) + 4)
        text = bar.label if len(bar.label) <= 38 else bar.label[:35] + "..."
        body.append(
            f'<text class="rowlabel" x="{label_w - 6}" y="{y + row_height * 0.68:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
        shape = (
            f"M{left:.1f},{y + 4} L{right:.1f},{y + 4} L{right:.1f},{y + row_height - 4} "
            f"L{left:.1f},{y + row_height - 4} Z"
        )
        if bar.end is None:  # still active: an arrow head at "now"
            mid = y + row_height / 2
            shape = (
                f"M{left:.1f},{y + 4} L{right:.1f},{y + 4} L{right + 7:.1f},{mid:.1f} "
                f"L{right:.1f},{y + row_height - 4} L{left:.1f},{y + row_height - 4} Z"
            )
        body.append(
            f'<path class="bar" d="{shape}" fill="{bar.color}">'
            f"<title>{escape(bar.title)}</title></path>"
        )
    return _svg(height, body, label)


def bar_chart(
    items: Sequence[tuple[str, float, str]],
    *,
    label: str,
    unit: str = "",
    max_value: float | None = None,
    row_height: int = 22,
) -> str:
    """Horizontal bars: (label, value, tooltip) each, longest first as given."""
    if not items:
        raise ValueError("bar_chart needs at least one item")
    label_w = 300
    top = max_value if max_value is not None else max(v for _, v, _ in items)
    top = top if top > 0 else 1.0
    height = _MARGIN_TOP + row_height * len(items) + 10
    plot_w = WIDTH - label_w - 70
    body = []
    for i, (name, value, tip) in enumerate(items):
        y = _MARGIN_TOP + i * row_height
        w = max(min(value / top, 1.0), 0.0) * plot_w
        text = name if len(name) <= 44 else name[:41] + "..."
        shown = f"{value * 100:.0f}%" if unit == "%" else f"{value:.3g}{unit}"
        body.append(
            f'<text class="rowlabel" x="{label_w - 6}" y="{y + row_height * 0.68:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
            f'<path class="bar" d="M{label_w},{y + 4} h{w:.1f} v{row_height - 8} '
            f'h{-w:.1f} Z" fill="{PALETTE["bar"]}"><title>{escape(tip)}</title></path>'
            f'<text class="tick" x="{label_w + w + 6:.1f}" y="{y + row_height * 0.68:.1f}">'
            f"{escape(shown)}</text>"
        )
    return _svg(height, body, label)
