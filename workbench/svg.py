"""Small server-side SVG charts: no script, no external asset, readable on a phone (they scale to the width).

Every value is also in the chart's <title> tooltips and in a table beside it, so a chart is never the only
place a number is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2f6fb2", "#e07b39", "#3a9b5c", "#c2453d", "#8a63b8", "#9a7b4f", "#d06aa8", "#6b7785"]
W, H = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 16, 46


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if v <= step * 5:
            return float(step * (int(v // step) + 1))
    return float(v * 1.1)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def _frame(label: str, body: list[str], top: float, unit: str = "") -> str:
    plot_h = H - PAD_T - PAD_B
    grid = []
    for i in range(5):
        y = PAD_T + plot_h - plot_h * i / 4
        grid.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        grid.append(
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{_fmt(top * i / 4)}{unit}</text>'
        )
    return (
        f'<svg viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(grid) + "".join(body) + "</svg>"
    )


def stacked_bars(
    label: str, columns: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], unit: str = ""
) -> str:
    """One bar per column, stacked by series; a legend under the axis."""
    totals = [sum(vals[i] for _, vals in series) for i in range(len(columns))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / max(len(columns), 1)
    bar = slot * 0.62
    body: list[str] = []
    for i, col in enumerate(columns):
        x = PAD_L + slot * i + (slot - bar) / 2
        y = float(PAD_T + plot_h)
        for k, (name, vals) in enumerate(series):
            v = vals[i]
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}">'
                f"<title>{escape(col)} {escape(name)}：{_fmt(v)}{unit}</title></rect>"
            )
        if totals[i]:
            body.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" class="value">{_fmt(totals[i])}</text>'
            )
        body.append(
            f'<text x="{x + bar / 2:.1f}" y="{PAD_T + plot_h + 14}" text-anchor="middle" class="axis">{escape(col)}</text>'
        )
    lx = PAD_L
    for k, (name, _) in enumerate(series):
        if lx > W - 60:
            break
        body.append(
            f'<rect x="{lx}" y="{H - 16}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
            f'<text x="{lx + 14}" y="{H - 7}" class="legend">{escape(name)}</text>'
        )
        lx += 18 + 13 * len(name)
    return _frame(label, body, top, unit)


def lines(
    label: str, columns: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], unit: str = ""
) -> str:
    """One line per series over the columns; a missing value breaks the line."""
    values = [v for _, vals in series for v in vals if v is not None]
    top = _nice_max(max(values, default=0))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / max(len(columns), 1)
    body: list[str] = []
    for i, col in enumerate(columns):
        body.append(
            f'<text x="{PAD_L + slot * (i + 0.5):.1f}" y="{PAD_T + plot_h + 14}" text-anchor="middle" '
            f'class="axis">{escape(col)}</text>'
        )
    for k, (name, vals) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts: list[str] = []
        for i, v in enumerate(vals):
            if v is None:
                if len(pts) > 1:
                    body.append(
                        f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2"/>'
                    )
                pts = []
                continue
            x, y = PAD_L + slot * (i + 0.5), PAD_T + plot_h - plot_h * v / top
            pts.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(columns[i])} {escape(name)}：{_fmt(v)}{unit}</title></circle>"
            )
        if len(pts) > 1:
            body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2"/>')
        body.append(
            f'<rect x="{PAD_L + 150 * k}" y="{H - 16}" width="10" height="10" fill="{color}"/>'
            f'<text x="{PAD_L + 150 * k + 14}" y="{H - 7}" class="legend">{escape(name)}</text>'
        )
    return _frame(label, body, top, unit)


def hbars(label: str, items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Horizontal bars, largest first (hot spots)."""
    rows = list(items)[:10]
    h = 24 * max(len(rows), 1) + 10
    top = _nice_max(max((v for _, v in rows), default=0))
    name_w, plot_w = 170, W - 170 - 50
    body = []
    for i, (name, v) in enumerate(rows):
        y = 6 + 24 * i
        w = plot_w * v / top
        short = name if len(name) <= 12 else name[:11] + "…"
        body.append(
            f'<text x="{name_w - 6}" y="{y + 14}" text-anchor="end" class="axis">{escape(short)}</text>'
            f'<rect x="{name_w}" y="{y}" width="{w:.1f}" height="17" fill="{PALETTE[0]}">'
            f"<title>{escape(name)}：{_fmt(v)}{unit}</title></rect>"
            f'<text x="{name_w + w + 4:.1f}" y="{y + 14}" class="value">{_fmt(v)}</text>'
        )
    return (
        f'<svg viewBox="0 0 {W} {h}" class="chart" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def gauge(label: str, share: float | None, caption: str) -> str:
    """A share (0..1) as a ring with the percentage in it; None shows 无数据."""
    r, c = 46, 2 * 3.14159 * 46
    done = 0.0 if share is None else max(0.0, min(1.0, share))
    text = "无数据" if share is None else f"{share * 100:.0f}%"
    return (
        f'<svg viewBox="0 0 120 130" class="gauge" role="img" aria-label="{escape(label)}：{text}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<circle cx="60" cy="60" r="{r}" fill="none" stroke="#e3e7ec" stroke-width="12"/>'
        f'<circle cx="60" cy="60" r="{r}" fill="none" stroke="{PALETTE[2]}" stroke-width="12" '
        f'stroke-dasharray="{c * done:.1f} {c:.1f}" transform="rotate(-90 60 60)"/>'
        f'<text x="60" y="66" text-anchor="middle" class="big">{text}</text>'
        f'<text x="60" y="124" text-anchor="middle" class="axis">{escape(caption)}</text></svg>'
    )


def place_plot(
    points: Sequence[tuple[float, float, str, bool]], *, width: int = 320, height: int = 220
) -> str:
    """Coordinates drawn to scale without a tile server: (lat, lon, label, highlighted). A scale bar in metres;
    north is up. A single point sits in the middle of a 200 m square."""
    import math

    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    lat0 = sum(lats) / len(lats)
    k = math.cos(math.radians(lat0))
    # metres from the centre
    xs = [(lon - sum(lons) / len(lons)) * 111_320 * k for lon in lons]
    ys = [(lat - lat0) * 110_540 for lat in lats]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 200.0) * 1.3
    scale = min(width, height) / span
    cx, cy = width / 2, height / 2
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" class="mapbg"/>']
    for gx in range(1, 4):
        body.append(
            f'<line x1="{width * gx / 4:.0f}" x2="{width * gx / 4:.0f}" y1="0" y2="{height}" class="grid"/>'
        )
        body.append(
            f'<line x1="0" x2="{width}" y1="{height * gx / 4:.0f}" y2="{height * gx / 4:.0f}" class="grid"/>'
        )
    for (_, _, label, hi), x, y in sorted(zip(points, xs, ys, strict=True), key=lambda t: t[0][3]):
        px, py = cx + x * scale, cy - y * scale
        cls = "pin hi" if hi else "pin"
        body.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{7 if hi else 5}" class="{cls}"><title>{escape(label)}</title></circle>'
        )
    bar_m = next(m for m in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if m * scale >= width / 6)
    bx = 10
    body.append(
        f'<line x1="{bx}" x2="{bx + bar_m * scale:.1f}" y1="{height - 12}" y2="{height - 12}" class="scale"/>'
        f'<text x="{bx}" y="{height - 17}" class="axis">{bar_m} 米</text>'
        f'<text x="{width - 14}" y="18" text-anchor="middle" class="axis">北↑</text>'
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" class="map" role="img" aria-label="位置示意图" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )
