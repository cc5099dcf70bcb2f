"""A small SVG writer for forecasts: no plotting dependency, valid XML, one panel per channel.

Each panel draws the history's tail (grey line), the forecast (blue line), the 10-90% band of the
slow-thinking drafts (light blue polygon), a dashed line where the forecast starts, a few date
labels on the x axis, min/max labels on the y axis and a title. Open the file in any browser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np

from timer1.atomic import write_text_atomic

WIDTH = 860           # px, whole figure
PANEL_HEIGHT = 260    # px, one channel
MARGIN = dict(left=70, right=20, top=34, bottom=46)
N_DATE_LABELS = 6


@dataclass
class Panel:
    """One channel: history (dates, values), forecast (dates, point, low, high band)."""

    title: str
    history_dates: Sequence[str]
    history: Sequence[float]
    forecast_dates: Sequence[str]
    forecast: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys) if np.isfinite(y))


def _panel_svg(panel: Panel, top: float, width: int, height: int) -> list[str]:
    history = np.asarray(panel.history, dtype=np.float64)  # (L,)
    forecast = np.asarray(panel.forecast, dtype=np.float64)  # (H,)
    low = forecast if panel.low is None else np.asarray(panel.low, dtype=np.float64)
    high = forecast if panel.high is None else np.asarray(panel.high, dtype=np.float64)
    everything = np.concatenate([history, forecast, low, high])
    everything = everything[np.isfinite(everything)]
    y_min, y_max = (float(everything.min()), float(everything.max())) if everything.size else (0.0, 1.0)
    if y_max == y_min:
        y_min, y_max = y_min - 1.0, y_max + 1.0
    n = len(history) + len(forecast)
    x0, x1 = MARGIN["left"], width - MARGIN["right"]
    y0, y1 = top + MARGIN["top"], top + height - MARGIN["bottom"]

    def x_at(i):  # row index -> px
        return x0 + (x1 - x0) * np.asarray(i, dtype=np.float64) / max(n - 1, 1)

    def y_at(v):  # value -> px (SVG y grows downwards)
        return y1 - (y1 - y0) * (np.asarray(v, dtype=np.float64) - y_min) / (y_max - y_min)

    hist_x = x_at(np.arange(len(history)))
    fc_x = x_at(np.arange(len(history), n))
    out = [f'<text x="{width / 2:.0f}" y="{top + 20:.0f}" text-anchor="middle" font-size="14">'
           f'{escape(panel.title)}</text>',
           f'<rect x="{x0}" y="{y0:.1f}" width="{x1 - x0}" height="{y1 - y0:.1f}" fill="none" stroke="#ccc"/>']
    if panel.low is not None and panel.high is not None:
        band = _points(np.concatenate([fc_x, fc_x[::-1]]), np.concatenate([y_at(high), y_at(low)[::-1]]))
        out.append(f'<polygon class="band" points="{band}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>')
    out.append(f'<polyline class="history" points="{_points(hist_x, y_at(history))}" '
               'fill="none" stroke="#555" stroke-width="1.5"/>')
    out.append(f'<polyline class="forecast" points="{_points(fc_x, y_at(forecast))}" '
               'fill="none" stroke="#1f77b4" stroke-width="2"/>')
    if len(history) and len(forecast):
        split = float(x_at(len(history) - 0.5))
        out.append(f'<line x1="{split:.1f}" y1="{y0:.1f}" x2="{split:.1f}" y2="{y1:.1f}" '
                   'stroke="#999" stroke-dasharray="4 3"/>')
    for value in (y_min, y_max):
        out.append(f'<text x="{x0 - 6}" y="{float(y_at(value)) + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{value:.4g}</text>')
    dates = list(panel.history_dates) + list(panel.forecast_dates)
    for i in np.unique(np.linspace(0, n - 1, min(N_DATE_LABELS, n)).round().astype(int)):
        label = dates[i] if i < len(dates) else str(i)
        out.append(f'<text class="date" x="{float(x_at(i)):.1f}" y="{y1 + 16:.1f}" text-anchor="middle" '
                   f'font-size="10">{escape(str(label))}</text>')
    return out


def render_svg(panels: Sequence[Panel], title: str = "") -> str:
    """The SVG document for one or more panels stacked vertically (a figure title on top if given)."""
    if not panels:
        raise ValueError("render_svg needs at least one panel")
    head = 28 if title else 0
    height = head + PANEL_HEIGHT * len(panels)
    body = [f'<text x="{WIDTH / 2:.0f}" y="20" text-anchor="middle" font-size="16" font-weight="bold">'
            f'{escape(title)}</text>'] if title else []
    for k, panel in enumerate(panels):
        body += _panel_svg(panel, head + k * PANEL_HEIGHT, WIDTH, PANEL_HEIGHT)
    # a panel without a band (one draft kept, a fallback) must not be read as a 10-90% interval
    band = ", 10-90% band (shaded)" if any(p.low is not None and p.high is not None for p in panels) else ""
    legend = ('<text x="{x}" y="{y}" font-size="11" fill="#555">history (grey), forecast (blue){band}'
              '</text>').format(x=MARGIN["left"], y=height - 8, band=band)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">\n'
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n'
            + "\n".join(body) + "\n" + legend + "\n</svg>\n")


def write_svg(path: str | os.PathLike, panels: Sequence[Panel], title: str = "") -> Path:
    """Render and write atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    text = render_svg(panels, title)
    return write_text_atomic(path, text)
