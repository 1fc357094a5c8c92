"""Charts as inline SVG, drawn on the server: no chart library, no CDN, nothing to load.

Steps run from 0 to many thousands with dense early checkpoints, so the x axis is log(1 + step):
the early steps get room, as in the plots `zoo compare` writes. Every text (titles, labels, a
prompt's tokens) is escaped by markupsafe, and a chart is returned as Markup, so a template
inserts it as it is and escapes nothing twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


@dataclass
class Series:
    label: str
    steps: list
    values: list
    color: str
    width: float = 1.0
    opacity: float = 1.0
    band: tuple | None = None  # (lows, highs) aligned with steps


@dataclass
class Chart:
    title: str
    y_label: str
    series: list = field(default_factory=list)
    marks: dict = field(default_factory=dict)  # label -> (steps, color): ticks along the x axis
    lines: list = field(default_factory=list)  # (step, label): vertical lines (a branch point)
    levels: list = field(default_factory=list)  # (value, label): horizontal dotted lines


def _x(step: float) -> float:
    return math.log10(1 + max(step, 0))


def svg(chart: Chart, *, width: int = 760, height: int = 320) -> Markup:
    """The chart as an <svg class="chart"> element (empty axes when there is nothing to draw)."""
    left, right, top, bottom = 64, 16, 28, 58
    points = [(s, v) for ser in chart.series for s, v in zip(ser.steps, ser.values)
              if v is not None and math.isfinite(v)]
    points += [(s, v) for ser in chart.series if ser.band for s, lo, hi in
               zip(ser.steps, *ser.band) for v in (lo, hi) if v is not None and math.isfinite(v)]
    steps = [s for s, _ in points] + [s for m in chart.marks.values() for s in m[0]]
    points += [(0, v) for v, _ in chart.levels]
    x_max = _x(max(steps, default=1)) or 1.0
    y_lo = min((v for _, v in points), default=0.0)
    y_hi = max((v for _, v in points), default=1.0)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = 0.05 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom
    px = lambda s: left + plot_w * _x(s) / x_max
    py = lambda v: top + plot_h * (1 - (v - y_lo) / (y_hi - y_lo))
    out = [(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(chart.title)}">'),
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(chart.title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    for v in _y_ticks(y_lo, y_hi):  # y grid
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
                   f'stroke="#eee"/><text x="{left - 6}" y="{py(v) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{v:.4g}</text>')
    for s in _x_ticks(max(steps, default=1)):
        out.append(f'<line x1="{px(s):.1f}" x2="{px(s):.1f}" y1="{top}" y2="{top + plot_h}" '
                   f'stroke="#eee"/><text x="{px(s):.1f}" y="{top + plot_h + 14}" font-size="10" '
                   f'text-anchor="middle">{s:,}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 24}" font-size="11" '
               f'text-anchor="middle">step (log scale)</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(chart.y_label)}</text>')
    for ser in chart.series:
        if ser.band:
            pairs = [(s, lo, hi) for s, lo, hi in zip(ser.steps, *ser.band)
                     if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)]
            if pairs:
                upper = " ".join(f"{px(s):.1f},{py(hi):.1f}" for s, _, hi in pairs)
                lower = " ".join(f"{px(s):.1f},{py(lo):.1f}" for s, lo, _ in reversed(pairs))
                out.append(f'<polygon class="band" points="{upper} {lower}" fill="{ser.color}" '
                           f'opacity="0.18"/>')
        good = [(s, v) for s, v in zip(ser.steps, ser.values) if v is not None and math.isfinite(v)]
        if good:
            d = " ".join(f"{'M' if i == 0 else 'L'}{px(s):.1f},{py(v):.1f}" for i, (s, v) in enumerate(good))
            out.append(f'<path class="series" d="{d}" fill="none" stroke="{ser.color}" '
                       f'stroke-width="{ser.width}" opacity="{ser.opacity}">'
                       f'<title>{escape(ser.label)}</title></path>')
    for row, (label, (steps_marked, color)) in enumerate(chart.marks.items()):
        y = top + plot_h + 22 + 6 * row
        for s in steps_marked:
            out.append(f'<line class="mark" x1="{px(s):.1f}" x2="{px(s):.1f}" y1="{y}" y2="{y + 4}" '
                       f'stroke="{color}"/>')
        out.append(f'<text x="{left + plot_w}" y="{height - 6 - 12 * row}" font-size="9" '
                   f'text-anchor="end" fill="{color}">| {escape(label)}</text>')
    for v, label in chart.levels:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
                   f'stroke="#888" stroke-dasharray="1,3"/><text x="{left + plot_w - 3}" '
                   f'y="{py(v) - 3:.1f}" font-size="9" fill="#666" text-anchor="end">'
                   f'{escape(label)}</text>')
    for s, label in chart.lines:
        out.append(f'<line x1="{px(s):.1f}" x2="{px(s):.1f}" y1="{top}" y2="{top + plot_h}" '
                   f'stroke="#555" stroke-dasharray="3,3"/><text x="{px(s) + 3:.1f}" y="{top + 12}" '
                   f'font-size="10" fill="#555">{escape(label)}</text>')
    legend = [ser for ser in chart.series if ser.width >= 2]
    if legend:  # a pale box under the legend, so the curves it covers do not hide its words
        longest = max(len(ser.label) for ser in legend)
        out.append(f'<rect class="legend" x="{left + 4}" y="{top + 3}" width="{34 + 5.6 * longest:.0f}" '
                   f'height="{14 * len(legend) + 4}" fill="#fff" opacity="0.85"/>')
    for k, ser in enumerate(legend):
        y = top + 14 + 14 * k
        out.append(f'<line x1="{left + 10}" x2="{left + 28}" y1="{y - 4}" y2="{y - 4}" '
                   f'stroke="{ser.color}" stroke-width="2"/><text x="{left + 32}" y="{y}" '
                   f'font-size="10">{escape(ser.label)}</text>')
    out.append("</svg>")
    return Markup("\n".join(out))


def _y_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) between low and high."""
    span = high - low
    magnitude = 10 ** math.floor(math.log10(span / most))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= most + 1e-9)
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _x_ticks(largest: float) -> list[int]:
    ticks, k = [0], 1
    while k <= largest:
        ticks.append(k)
        k *= 10
    return ticks


def heatmap(matrix, *, labels: list[str], title: str, cell: int | None = None) -> Markup:
    """One attention pattern [query, key] as an SVG grid (darker = more attention), about 260
    pixels wide whatever the prompt's length, so a layer's heads fit side by side. Where a cell
    is tall enough to read (>= 8 px), the tokens label the rows (queries, left) and the columns
    (keys, top); every cell's tooltip names its pair either way."""
    n = len(matrix)
    cell = cell or max(3, min(14, 260 // max(n, 1)))
    size = cell * n
    named = cell >= 8
    left, top = (44, 60) if named else (2, 16)
    out = [(f'<svg class="pattern" xmlns="http://www.w3.org/2000/svg" width="{size + left + 2}" '
            f'height="{size + top + 2}" viewBox="0 0 {size + left + 2} {size + top + 2}">'),
           f'<text x="2" y="12" font-size="11">{escape(title)}</text>']
    if named:
        font = min(10, cell - 1)
        for i, label in enumerate(labels[:n]):
            short = escape(label.strip()[:7] or "␣")
            mid = i * cell + cell / 2
            out.append(f'<text class="token" x="{left - 3}" y="{top + mid + font / 3:.1f}" '
                       f'font-size="{font}" text-anchor="end">{short}</text>')
            out.append(f'<text class="token" x="{left + mid + font / 3:.1f}" y="{top - 3}" '
                       f'font-size="{font}" transform="rotate(-90 {left + mid + font / 3:.1f} '
                       f'{top - 3})">{short}</text>')
    for q in range(n):
        for k in range(n):
            weight = float(matrix[q][k])
            if weight > 0.005:
                out.append(f'<rect x="{left + k * cell}" y="{top + q * cell}" width="{cell}" '
                           f'height="{cell}" fill="#08306b" opacity="{min(1.0, weight):.3f}">'
                           f'<title>{escape(labels[q])} -> {escape(labels[k])}: '
                           f'{weight:.3f}</title></rect>')
    out.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#bbb"/>')
    out.append("</svg>")
    return Markup("\n".join(out))


def histogram(values, *, title: str, x_label: str, bins: int = 30, width: int = 560,
              height: int = 220) -> Markup:
    """Counts of log10(value) for the positive values (a dictionary's feature densities), as
    bars; the values at zero (dead features) are counted in the title, not drawn."""
    positive = [math.log10(v) for v in values if v > 0]
    zeros = len(values) - len(positive)
    left, right, top, bottom = 48, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = (min(positive), max(positive)) if positive else (-1.0, 0.0)
    low, high = math.floor(low * 2) / 2, max(math.ceil(high * 2) / 2, math.floor(low * 2) / 2 + 0.5)
    counts = [0] * bins
    for v in positive:
        counts[min(bins - 1, int((v - low) / (high - low) * bins))] += 1
    tallest = max(counts, default=0) or 1
    heading = f"{title} ({zeros} at zero, not drawn)" if zeros else title
    out = [(f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(heading)}">'),
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(heading)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    bar = plot_w / bins
    for k, count in enumerate(counts):
        if count:
            h = plot_h * count / tallest
            out.append(f'<rect class="bar" x="{left + k * bar:.1f}" y="{top + plot_h - h:.1f}" '
                       f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="#1f77b4">'
                       f'<title>{count}</title></rect>')
    for power in range(math.ceil(low), math.floor(high) + 1):
        x = left + plot_w * (power - low) / (high - low)
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="10" '
                   f'text-anchor="middle">1e{power}</text>')
    out.append(f'<text x="{left - 6}" y="{top + 10}" font-size="10" text-anchor="end">{tallest}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" font-size="11" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append("</svg>")
    return Markup("\n".join(out))
