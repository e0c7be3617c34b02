"""A small line chart as inline SVG, rendered on the server: no JavaScript, nothing fetched."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#417690", "#e08e0b", "#2f9e44", "#1c5fb8", "#8e44ad", "#ba2121")


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return max(1, int(step * magnitude))
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def line_chart_svg(
    *,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    title: str,
    width: int = 760,
    height: int = 240,
) -> SafeString:
    """An SVG line chart: one line per ``(name, values)`` over ``labels`` (e.g. days).

    Every text is escaped; the chart has a ``<title>`` and ``role="img"`` for screen readers.
    """
    left, right, top, bottom = 52, 16, 40, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max((v for _name, values in series for v in values), default=0))
    count = len(labels)

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
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        value = peak * fraction
        gy = y(value)
        text = f"{value:g}"
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{gy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{text}</text>'
        )
    step = max(1, math.ceil(count / 8))
    for i in range(0, count, step):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="#555">{escape(labels[i])}</text>'
        )
    legend_x = left
    for index, (name, values) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        if count == 1:
            out.append(f'<circle cx="{x(0):.1f}" cy="{y(values[0]):.1f}" r="3" fill="{colour}"/>')
        elif count:
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                f'stroke-linejoin="round" points="{points}"><title>{escape(name)}</title>'
                f"</polyline>"
            )
        out.append(
            f'<rect x="{legend_x}" y="12" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="22" font-size="12" fill="#333">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    out.append("</svg>")
    return mark_safe("".join(out))  # every text above is escaped
