"""Small line charts as inline SVG, rendered on the server: no JavaScript, nothing fetched.

Counts are whole numbers, so the value axis has whole-number ticks only. The funnel draws
:func:`panel_chart_svg`: each series in a band of its own, so no line can hide another.
:func:`line_chart_svg` draws several series in one plot, each with its own colour, dash
pattern, marker and width (the first drawn widest, so a later line lying exactly on it still
shows it as an outline), and a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e08e0b", "#2f9e44", "#1c5fb8", "#8e44ad", "#ba2121", "#6d4c41")
#: ``stroke-dasharray`` per series ("" is a solid line).
DASHES = ("", "9 4", "2 3", "12 3 2 3", "5 5", "1 6", "6 2 1 2")
#: Marker shapes per series, drawn at each point while there are few enough to tell apart.
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "bar")
#: More points than this and the markers are left out (they would merge into a band).
MAX_MARKED_POINTS = 45


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return max(1, int(step * magnitude))
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def integer_ticks(peak: float, *, most: int = 5) -> list[int]:
    """Whole-number axis ticks from 0 to at least ``peak``: at most ``most`` + 1 of them, a
    step of 1, 2 or 5 times a power of ten (``integer_ticks(2) == [0, 1, 2]``)."""
    peak = max(1, math.ceil(peak))
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(peak / step) <= most:
                return list(range(0, step * math.ceil(peak / step) + 1, step))
        magnitude *= 10


def _marker(shape: str, cx: float, cy: float, colour: str) -> str:
    """One marker of ``shape`` centred on (cx, cy)."""
    if shape == "circle":
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}"/>'
    if shape == "square":
        return f'<rect x="{cx - 3:.1f}" y="{cy - 3:.1f}" width="6" height="6" fill="{colour}"/>'
    if shape == "triangle":
        points = f"{cx:.1f},{cy - 4:.1f} {cx + 4:.1f},{cy + 3:.1f} {cx - 4:.1f},{cy + 3:.1f}"
        return f'<polygon points="{points}" fill="{colour}"/>'
    if shape == "diamond":
        corners = ((cx, cy - 4), (cx + 4, cy), (cx, cy + 4), (cx - 4, cy))
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in corners)
        return f'<polygon points="{points}" fill="{colour}"/>'
    if shape == "cross":
        return (
            f'<path d="M{cx - 3.5:.1f} {cy - 3.5:.1f}L{cx + 3.5:.1f} {cy + 3.5:.1f}'
            f'M{cx - 3.5:.1f} {cy + 3.5:.1f}L{cx + 3.5:.1f} {cy - 3.5:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
    return f'<rect x="{cx - 1.5:.1f}" y="{cy - 5:.1f}" width="3" height="10" fill="{colour}"/>'


def line_chart_svg(
    *,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    title: str,
    width: int = 760,
    height: int = 260,
    styles: Sequence[int] = (),
) -> SafeString:
    """An SVG line chart: one line per ``(name, values)`` over ``labels`` (e.g. days).

    ``styles`` picks each series' colour, dash and marker by index (by default the series'
    position), so one quantity can look the same in several charts.

    Every text is escaped; the chart has a ``<title>`` and ``role="img"`` for screen readers.
    """
    left, right, top, bottom = 52, 16, 48, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = integer_ticks(max((v for _name, values in series for v in values), default=0))
    peak = ticks[-1]
    count = len(labels)
    marked = count <= MAX_MARKED_POINTS

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="backpain-chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    for value in ticks:
        gy = y(value)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{gy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{value}</text>'
        )
    step = max(1, math.ceil(count / 8))
    for i in range(0, count, step):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="#555">{escape(labels[i])}</text>'
        )
    legend_x, legend_y = left, 14
    widest = 2 + 1.5 * (len(series) - 1)
    for index, (name, values) in enumerate(series):
        style = styles[index] if index < len(styles) else index
        colour = PALETTE[style % len(PALETTE)]
        dash = DASHES[style % len(DASHES)]
        shape = MARKERS[style % len(MARKERS)]
        stroke = widest - 1.5 * index  # the first drawn is the widest: a line on it shows it
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        line = f'stroke="{colour}" stroke-width="{stroke:g}"{dash_attr}'
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        if count > 1:
            out.append(
                f'<polyline class="backpain-series" fill="none" {line} stroke-linejoin="round" '
                f'points="{points}"><title>{escape(name)}</title></polyline>'
            )
        if marked or count == 1:
            out.extend(_marker(shape, x(i), y(v), colour) for i, v in enumerate(values))
        label_w = 40 + 7 * len(name)
        if legend_x + label_w > width - right:  # the legend wraps rather than overflowing
            legend_x, legend_y = left, legend_y + 16
        out.append(
            f'<line x1="{legend_x}" x2="{legend_x + 24}" y1="{legend_y}" y2="{legend_y}" '
            f"{line}/>{_marker(shape, legend_x + 12, legend_y, colour)}"
            f'<text x="{legend_x + 30}" y="{legend_y + 4}" font-size="12" fill="#333">'
            f"{escape(name)}</text>"
        )
        legend_x += label_w
    out.append("</svg>")
    return mark_safe("".join(out))  # every text above is escaped


def panel_chart_svg(
    *,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    title: str,
    width: int = 760,
    panel_height: int = 74,
    styles: Sequence[int] = (),
) -> SafeString:
    """Several series over ``labels`` as stacked panels sharing the day axis: each series in
    its own band with its own whole-number scale, a solid line in its colour, named above it.

    Lines drawn in one plot lay on top of each other (a handful of sign-ups a day beside
    hundreds of views, or sign-ups and deliveries with the same counts) and dash patterns
    crossing made them unreadable; in panels no line can hide another, and a small count
    keeps a readable scale. ``styles`` picks each series' colour, as in :func:`line_chart_svg`.
    Every text is escaped; the chart has a ``<title>`` and ``role="img"``.
    """
    left, right, bottom, gap, head = 52, 16, 28, 10, 18
    plot_w = width - left - right
    plot_h = panel_height - head
    height = len(series) * (panel_height + gap) + bottom
    count = len(labels)
    marked = count <= MAX_MARKED_POINTS

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="backpain-chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    for index, (name, values) in enumerate(series):
        style = styles[index] if index < len(styles) else index
        colour = PALETTE[style % len(PALETTE)]
        top = index * (panel_height + gap) + head
        peak = integer_ticks(max(values, default=0), most=2)[-1]

        def y(v: float, top: int = top, peak: int = peak) -> float:
            return top + plot_h - plot_h * v / peak

        out.append(
            f'<text x="{left}" y="{top - 5}" font-size="12" font-weight="bold" '
            f'fill="{colour}">{escape(name)}</text>'
        )
        for value in (0, peak):
            out.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" '
                f'y2="{y(value):.1f}" stroke="#ddd" stroke-width="1"/>'
                f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="11" '
                f'text-anchor="end" fill="#555">{value}</text>'
            )
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        if count > 1:
            out.append(
                f'<polyline class="backpain-series" fill="none" stroke="{colour}" '
                f'stroke-width="2" stroke-linejoin="round" points="{points}">'
                f"<title>{escape(name)}</title></polyline>"
            )
        if marked or count == 1:
            out.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>'
                for i, v in enumerate(values)
            )
    step = max(1, math.ceil(count / 8))
    for i in range(0, count, step):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="#555">{escape(labels[i])}</text>'
        )
    out.append("</svg>")
    return mark_safe("".join(out))  # every text above is escaped
