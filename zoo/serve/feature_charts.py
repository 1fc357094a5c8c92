"""The superposition model's pictures as inline SVG (Elhage et al. 2022), drawn on the server.

    gram_heatmap(W, b)      W^T W (n x n) beside b, on a diverging scale, feature indices labelled
    norm_bars(norms, inter) ||W_i|| as bars coloured by interference sum_{j != i} (W_i_hat . W_j)^2
    plane(W)                for m = 2: the columns W_i as vectors in the plane (the k-gon)
    feature_key(n)          the colour of each feature, for the plane and the dimensionality lines

Numbers come from zoo.eval.superposition_metrics; every text is escaped by markupsafe, and each
picture is returned as Markup, as charts.py does.
"""
from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
from markupsafe import Markup, escape

# (position, colour) anchors: a blue-white-red diverging scale and plasma (dark: 0, yellow: 1)
_DIVERGING = ((0.0, "#2166ac"), (0.25, "#92c5de"), (0.5, "#f7f7f7"), (0.75, "#f4a582"),
              (1.0, "#b2182b"))
_PLASMA = ((0.0, "#0d0887"), (0.25, "#7e03a8"), (0.5, "#cc4778"), (0.75, "#f89540"),
           (1.0, "#f0f921"))
INTERFERENCE_CAP = 1.0  # the bars' colour scale ends here (the paper's: 0 .. 1)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[k:k + 2], 16) for k in (1, 3, 5))


def _ramp(anchors, t: float) -> str:
    t = min(1.0, max(0.0, float(t))) if math.isfinite(t) else 0.0
    for (t0, c0), (t1, c1) in itertools.pairwise(anchors):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            rgb = [round(a + (b - a) * f) for a, b in zip(_rgb(c0), _rgb(c1))]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return anchors[-1][1]


def diverging(value: float, limit: float) -> str:
    """The colour of `value` on a blue (-limit) - white (0) - red (+limit) scale."""
    return _ramp(_DIVERGING, 0.5 + 0.5 * value / limit)


def interference_colour(value: float) -> str:
    return _ramp(_PLASMA, value / INTERFERENCE_CAP)


def feature_colour(i: int, n: int) -> str:
    """Feature i of n: hues around the wheel (red, then orange, ... to purple), mid lightness."""
    r, g, b = colorsys.hls_to_rgb(0.85 * i / max(n - 1, 1), 0.42, 0.75)
    return f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}"


def _gradient(gid: str, anchors) -> str:
    stops = "".join(f'<stop offset="{t:.2f}" stop-color="{c}"/>' for t, c in anchors)
    return f'<defs><linearGradient id="{gid}">{stops}</linearGradient></defs>'


def _scale_bar(gid: str, anchors, x: float, y: float, width: float, ticks, caption: str) -> str:
    """A horizontal colour bar with tick labels [(position 0..1, text)] and a caption above."""
    out = [_gradient(gid, anchors),
           f'<text x="{x}" y="{y - 4}" font-size="11">{escape(caption)}</text>',
           (f'<rect x="{x}" y="{y}" width="{width}" height="10" fill="url(#{gid})" stroke="#999" '
           f'stroke-width="0.5"/>')]
    for t, text in ticks:
        tx = x + width * t
        anchor = "start" if t == 0 else "end" if t == 1 else "middle"
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y + 10}" y2="{y + 14}" stroke="#555"/>'
                   f'<text x="{tx:.1f}" y="{y + 25}" font-size="10" text-anchor="{anchor}">'
                   f'{escape(text)}</text>')
    return "".join(out)


def _index_labels(n: int, cell: float) -> list[int]:
    step = 1 if cell >= 11 else 5
    return [i for i in range(n) if i % step == 0 or i == n - 1]


def gram_heatmap(W: np.ndarray, b: np.ndarray, *, title: str = "W\u1d40W and b") -> Markup:
    """W^T W [n, n] (entry i, j: W_i . W_j; the diagonal ||W_i||^2) and the bias b as a column
    beside it, on one diverging scale symmetric about 0 (at least -1 .. 1, so the slider's steps
    compare); every cell's value in its tooltip."""
    gram = W.T @ W
    n = gram.shape[0]
    top = float(max(np.abs(gram).max(initial=0.0), np.abs(b).max(initial=0.0)))
    limit = max(1.0, math.ceil(top * 10) / 10)
    cell = max(6, min(28, 380 // max(n, 1)))
    left, head = 34, 50
    size = cell * n
    gap = cell + 8  # the b column
    width = left + size + gap + cell + 20
    height = head + size + 60
    out = [(f'<svg class="gram" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}">'),
           f'<text x="2" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
           (f'<text x="{left + size / 2}" y="{head - 24}" font-size="10" text-anchor="middle">'
           f'feature j</text>'),
           (f'<text x="10" y="{head + size / 2}" font-size="10" text-anchor="middle" '
           f'transform="rotate(-90 10 {head + size / 2})">feature i</text>')]
    font = min(11, max(7, cell - 4))
    for i in _index_labels(n, cell):
        centre = cell * i + cell / 2
        out.append(f'<text x="{left - 4}" y="{head + centre + font / 3:.1f}" font-size="{font}" '
                   f'text-anchor="end">{i}</text>'
                   f'<text x="{left + centre:.1f}" y="{head - 5}" font-size="{font}" '
                   f'text-anchor="middle">{i}</text>')
    for i in range(n):
        for j in range(n):
            value = float(gram[i, j])
            out.append(f'<rect x="{left + j * cell}" y="{head + i * cell}" width="{cell}" '
                       f'height="{cell}" fill="{diverging(value, limit)}"><title>W_{i} . W_{j} = '
                       f'{value:.3f}</title></rect>')
    bx = left + size + 8
    out.append(f'<text x="{bx + cell / 2}" y="{head - 5}" font-size="{font}" '
               f'text-anchor="middle">b</text>')
    for i in range(n):
        value = float(b[i])
        out.append(f'<rect x="{bx}" y="{head + i * cell}" width="{cell}" height="{cell}" '
                   f'fill="{diverging(value, limit)}"><title>b_{i} = {value:.3f}</title></rect>')
    out.append(f'<rect x="{left}" y="{head}" width="{size}" height="{size}" fill="none" '
               f'stroke="#999"/><rect x="{bx}" y="{head}" width="{cell}" height="{size}" '
               f'fill="none" stroke="#999"/>')
    bar_w = min(size, 240)
    out.append(_scale_bar("gram-scale", _DIVERGING, left, head + size + 26, bar_w,
                          [(0, f"{-limit:g}"), (0.5, "0"), (1, f"{limit:g}")],
                          "colour: W_i \u00b7 W_j (and b_i)"))
    out.append("</svg>")
    return Markup("\n".join(out))


def norm_bars(norms: np.ndarray, interference: np.ndarray, dimensionality: np.ndarray, *,
              threshold: float, title: str = "feature norms \u2016W_i\u2016") -> Markup:
    """One horizontal bar per feature (feature 0 on top): length ||W_i||, colour its interference
    sum_{j != i} (W_i_hat . W_j)^2 (dark: a dimension of its own; yellow: 1 or more); a dashed
    line at the `threshold` above which a feature counts as represented."""
    n = len(norms)
    row = max(6, min(22, 420 // max(n, 1)))
    left, head, plot_w = 34, 40, 300
    x_max = max(1.0, float(np.max(norms, initial=0.0))) * 1.08
    width = left + plot_w + 70
    height = head + row * n + 78
    px = lambda v: left + plot_w * v / x_max
    out = [(f'<svg class="norms" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}">'),
           f'<text x="2" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
           (f'<text x="10" y="{head + row * n / 2}" font-size="10" text-anchor="middle" '
           f'transform="rotate(-90 10 {head + row * n / 2})">feature i</text>')]
    font = min(11, max(7, row - 3))
    for tick in [t / 2 for t in range(int(x_max * 2) + 1)]:
        out.append(f'<line x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{head - 4}" '
                   f'y2="{head + row * n}" stroke="#eee"/><text x="{px(tick):.1f}" '
                   f'y="{head - 8}" font-size="10" text-anchor="middle">{tick:g}</text>')
    for i in range(n):
        y = head + i * row
        norm, inter, dims = float(norms[i]), float(interference[i]), float(dimensionality[i])
        if i in _index_labels(n, row):
            out.append(f'<text x="{left - 4}" y="{y + row / 2 + font / 3:.1f}" '
                       f'font-size="{font}" text-anchor="end">{i}</text>')
        out.append(f'<rect class="bar" x="{left}" y="{y + 1}" width="{px(norm) - left:.1f}" '
                   f'height="{max(row - 2, 1)}" fill="{interference_colour(inter)}" stroke="#444" '
                   f'stroke-width="0.4"><title>feature {i}: \u2016W_i\u2016 = {norm:.3f}, '
                   f'interference = {inter:.3f}, D_i = {dims:.3f}</title></rect>')
        if row >= 10:
            out.append(f'<text x="{px(norm) + 3:.1f}" y="{y + row / 2 + font / 3:.1f}" '
                       f'font-size="{min(font, 10)}" fill="#555">{norm:.2f}</text>')
    out.append(f'<line x1="{px(threshold):.1f}" x2="{px(threshold):.1f}" y1="{head - 4}" '
               f'y2="{head + row * n}" stroke="#555" stroke-dasharray="3,3"/>'
               f'<text x="{px(threshold) + 3:.1f}" y="{head + row * n + 12}" font-size="10" '
               f'fill="#555">represented above {threshold:g}</text>')
    out.append(_scale_bar("interference-scale", _PLASMA, left, head + row * n + 40, 240,
                          [(0, "0: own dimension"), (1, f"\u2265{INTERFERENCE_CAP:g}")],
                          "colour: interference \u03a3_{j\u2260i} (\u0174_i \u00b7 W_j)\u00b2"))
    out.append("</svg>")
    return Markup("\n".join(out))


def plane(W: np.ndarray, *, threshold: float, title: str) -> Markup:
    """For m = 2: each column W_i as an arrow from the origin in its feature's colour, labelled
    with its index; the unit circle (solid) and the `threshold` circle (dotted) for scale."""
    n = W.shape[1]
    size, pad = 360, 30
    centre = size / 2
    reach = max(1.0, float(np.linalg.norm(W, axis=0).max(initial=0.0)))
    scale = (centre - pad) / reach
    out = [(f'<svg class="plane" xmlns="http://www.w3.org/2000/svg" width="{size}" '
            f'height="{size + 20}" viewBox="0 0 {size} {size + 20}" role="img" '
            f'aria-label="{escape(title)}">'),
           f'<text x="2" y="14" font-size="13" font-weight="bold">{escape(title)}</text>']
    cy = centre + 20
    out.append(f'<line x1="{pad / 2}" x2="{size - pad / 2}" y1="{cy}" y2="{cy}" stroke="#ddd"/>'
               f'<line x1="{centre}" x2="{centre}" y1="{20 + pad / 2}" y2="{size + 20 - pad / 2}" '
               f'stroke="#ddd"/>'
               f'<circle cx="{centre}" cy="{cy}" r="{scale:.1f}" fill="none" stroke="#bbb"/>'
               f'<circle cx="{centre}" cy="{cy}" r="{scale * threshold:.1f}" fill="none" '
               f'stroke="#ccc" stroke-dasharray="2,3"/>'
               f'<text x="{centre + scale * 0.71 + 3:.1f}" y="{cy - scale * 0.71 - 3:.1f}" '
               f'font-size="9" fill="#999">1</text>')
    order = np.argsort(np.linalg.norm(W, axis=0))  # the longest drawn last, on top
    for i in order.tolist():
        x, y = float(W[0, i]), float(W[1, i])
        norm = math.hypot(x, y)
        tx, ty = centre + scale * x, cy - scale * y
        colour = feature_colour(i, n)
        out.append(f'<g class="feature"><title>feature {i}: W_i = ({x:.3f}, {y:.3f}), '
                   f'\u2016W_i\u2016 = {norm:.3f}, angle {math.degrees(math.atan2(y, x)):.1f}'
                   f'\u00b0</title><line x1="{centre}" y1="{cy}" x2="{tx:.1f}" y2="{ty:.1f}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        if norm * scale > 8:  # an arrowhead
            ux, uy = (tx - centre) / (norm * scale), (ty - cy) / (norm * scale)
            head = [(tx, ty), (tx - 9 * ux + 4 * uy, ty - 9 * uy - 4 * ux),
                    (tx - 9 * ux - 4 * uy, ty - 9 * uy + 4 * ux)]
            points = " ".join(f"{a:.1f},{b:.1f}" for a, b in head)
            out.append(f'<polygon points="{points}" fill="{colour}"/>')
        lx = tx + (10 * (tx - centre) / (norm * scale) if norm * scale > 1e-9 else 6)
        ly = ty + (10 * (ty - cy) / (norm * scale) if norm * scale > 1e-9 else -6)
        out.append(f'<text x="{lx:.1f}" y="{ly + 4:.1f}" font-size="11" text-anchor="middle" '
                   f'fill="{colour}" font-weight="bold">{i}</text></g>')
    out.append("</svg>")
    return Markup("\n".join(out))


def feature_key(n: int, *, title: str = "feature") -> Markup:
    """A row of swatches: feature i's colour, labelled i."""
    per_row = 20
    rows = math.ceil(n / per_row)
    width, height = 70 + 34 * min(n, per_row), 16 * rows + 6
    out = [(f'<svg class="key" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">'),
           f'<text x="2" y="13" font-size="11">{escape(title)}</text>']
    for i in range(n):
        x, y = 64 + 34 * (i % per_row), 4 + 16 * (i // per_row)
        out.append(f'<rect x="{x}" y="{y}" width="12" height="10" fill="{feature_colour(i, n)}"/>'
                   f'<text x="{x + 15}" y="{y + 9}" font-size="10">{i}</text>')
    out.append("</svg>")
    return Markup("\n".join(out))
