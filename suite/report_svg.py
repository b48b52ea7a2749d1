"""Inline SVG charts drawn by hand (no JavaScript, no external assets), for the HTML report.

Two kinds: a line chart (optionally with min–max whiskers, e.g. across seeds) and a grouped bar
histogram. Every plotted point carries its exact value in `data-x`/`data-y` attributes and a
`<title>` tooltip, so a reader (or a test) can check a chart against the store. All text is
escaped; colours are the Okabe–Ito palette (distinguishable with colour-blindness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
WIDTH, HEIGHT = 440, 270
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 30, 62  # plot margins; the legend sits under the x axis


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    whiskers: list[tuple[float, float]] = field(default_factory=list)  # (low, high) per point, or none


def _nice_step(span: float, target: int = 5) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _ticks(low: float, high: float) -> list[float]:
    if low == high:
        low, high = low - (abs(low) or 1) * 0.05, high + (abs(high) or 1) * 0.05
    step = _nice_step(high - low)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{100 * value:.4g}%"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.4g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.4g}k"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="12" font-weight="600">{escape(title)}</text>',
        f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}" y="{HEIGHT - BOTTOM + 30}" text-anchor="middle" '
        f'font-size="11" fill="#57606a">{escape(x_label)}</text>',
        f'<text transform="translate(13 {TOP + (HEIGHT - TOP - BOTTOM) / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="11" fill="#57606a">{escape(y_label)}</text>',
    ]


def _legend(names: list[str]) -> list[str]:
    """Legend rows under the plot; the last item is the height the chart needs."""
    out, x, y = [], LEFT, HEIGHT - BOTTOM + 46
    for index, name in enumerate(names):
        label = name if len(name) <= 28 else name[:27] + "…"
        width = 18 + 6.2 * len(label) + 14
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = LEFT, y + 13
        colour = PALETTE[index % len(PALETTE)]
        out.append(f'<rect x="{x:.1f}" y="{y - 8}" width="12" height="8" fill="{colour}"/>'
                   f'<text x="{x + 16:.1f}" y="{y}" font-size="10">{escape(label)}</text>')
        x += width
    return out + [f"<!-- height {max(HEIGHT, y + 6)} -->"]


def _close(out: list[str]) -> str:
    """Grow the canvas to the legend's height, then close the SVG."""
    height = int(out[-1].split()[2])
    out[0] = out[0].replace(f'0 0 {WIDTH} {HEIGHT}"', f'0 0 {WIDTH} {height}"').replace(
        f'height="{HEIGHT}"', f'height="{height}"')
    return "\n".join(out[:-1] + ["</svg>"])


def line_chart(title: str, series: list[Series], x_label: str, y_label: str, percent: bool = False,
               integer_x: bool = False) -> str:
    """Lines with dots, one colour per series; whiskers drawn where given."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [v for s in series for w in s.whiskers for v in w]
    out = _frame(title, x_label, y_label)
    if not xs:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="12" fill="#57606a">no data</text></svg>')
        return "\n".join(out)
    x_ticks = sorted(set(xs)) if integer_x and len(set(xs)) <= 12 else _ticks(min(xs), max(xs))
    y_ticks = _ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    pad = 0.04 * pw if integer_x else 0.0

    def sx(x: float) -> float:
        return LEFT + pad + (pw - 2 * pad) * ((x - x0) / (x1 - x0) if x1 != x0 else 0.5)

    def sy(y: float) -> float:
        return TOP + ph * (1 - ((y - y0) / (y1 - y0) if y1 != y0 else 0.5))

    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>')
    for t in y_ticks:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eaeef2"/>'
                   f'<text x="{LEFT - 4}" y="{sy(t) + 3:.1f}" text-anchor="end" font-size="10" fill="#57606a">{_fmt(t, percent)}</text>')
    for t in x_ticks:
        label = f"{t:g}" if integer_x else _fmt(t, False)
        out.append(f'<text x="{sx(t):.1f}" y="{TOP + ph + 13}" text-anchor="middle" font-size="10" fill="#57606a">{label}</text>')
    # Each distinct x is placed and labelled once per chart (a training chart's thousands of curves
    # share their steps); escape() works character by character, so escaping the tooltip's parts is
    # escaping the tooltip (its numbers need none).
    x_text: dict[float, tuple[str, str]] = {}
    x_name, y_name = escape(x_label), escape(y_label)
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        name = escape(s.name)
        radius = 2.8 if len(s.points) < 40 else 1.2
        placed = []
        for x, y in s.points:
            if x not in x_text:
                x_text[x] = (f"{sx(x):.1f}", f"{x:g}")
            placed.append((*x_text[x], f"{sy(y):.1f}"))
        path = " ".join(f"{'M' if i == 0 else 'L'}{px},{py}" for i, (px, _, py) in enumerate(placed))
        out.append(f'<g class="series" data-series="{name}"><path d="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.8"/>')
        for i, ((x, y), (px, xg, py)) in enumerate(zip(s.points, placed)):
            if s.whiskers:
                low, high = s.whiskers[i]
                out.append(f'<line x1="{px}" x2="{px}" y1="{sy(low):.1f}" y2="{sy(high):.1f}" '
                           f'stroke="{colour}" data-low="{low!r}" data-high="{high!r}"/>')
            out.append(f'<circle cx="{px}" cy="{py}" r="{radius}" fill="{colour}" data-x="{x!r}" data-y="{y!r}">'
                       f'<title>{name}: {x_name} {xg}, {y_name} {_fmt(y, percent)}</title></circle>')
        out.append("</g>")
    out += _legend([s.name for s in series])
    return _close(out)


def bar_histogram(title: str, bins: list[str], series: list[tuple[str, list[int]]], x_label: str,
                  y_label: str) -> str:
    """Grouped bars: one group per bin (labelled by `bins`), one bar per series."""
    out = _frame(title, x_label, y_label)
    counts = [c for _, values in series for c in values]
    if not counts:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="12" fill="#57606a">no data</text></svg>')
        return "\n".join(out)
    y_ticks = _ticks(0, max(max(counts), 1))
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = y_ticks[-1]
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>')
    for t in y_ticks:
        y = TOP + ph * (1 - t / top)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
                   f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" font-size="10" fill="#57606a">{t:g}</text>')
    group = pw / max(len(bins), 1)
    bar = group * 0.8 / max(len(series), 1)
    every = max(1, math.ceil(len(bins) / 8))
    for b, label in enumerate(bins):
        if b % every == 0:
            out.append(f'<text x="{LEFT + group * (b + 0.5):.1f}" y="{TOP + ph + 13}" text-anchor="middle" '
                       f'font-size="10" fill="#57606a">{escape(label)}</text>')
    for index, (name, values) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        out.append(f'<g class="series" data-series="{escape(name)}">')
        for b, count in enumerate(values):
            h = ph * count / top
            x = LEFT + group * b + group * 0.1 + bar * index
            out.append(f'<rect x="{x:.1f}" y="{TOP + ph - h:.1f}" width="{max(bar - 0.5, 0.5):.1f}" height="{h:.1f}" '
                       f'fill="{colour}" data-bin="{escape(bins[b])}" data-y="{count}">'
                       f"<title>{escape(f'{name}, {bins[b]}: {count}')}</title></rect>")
        out.append("</g>")
    out += _legend([name for name, _ in series])
    return _close(out)
