"""Small SVG pictures with no plotting dependency: valid XML, written atomically, open in any browser.

Forecasts (`render_svg`, forecast.py --plot): one panel per channel with the history's tail, the
forecast and the 10-90% band of the slow-thinking drafts. Charts (`render_charts`): a grid of line
(`Lines`) or bar (`Bars`) panels, e.g. training curves or a method's MSE.

    python -m timer1.tools.plot RUN_DIR [--out curves.svg]
    python -m timer1.tools.plot RUN_A RUN_B ... --out compare.svg [--keys reward val_mase]

draws a training run's ``metrics.jsonl`` (SFT or GRIP), one panel per logged quantity; several runs
are compared with one panel per key, one line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np

from timer1.util.atomic import write_text_atomic

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


def _span(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of the finite values, widened by 1 each way when they are all equal."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return (low - 1.0, high + 1.0) if low == high else (low, high)


def _panel_svg(panel: Panel, top: float, width: int, height: int) -> list[str]:
    history = np.asarray(panel.history, dtype=np.float64)  # (L,)
    forecast = np.asarray(panel.forecast, dtype=np.float64)  # (H,)
    low = forecast if panel.low is None else np.asarray(panel.low, dtype=np.float64)
    high = forecast if panel.high is None else np.asarray(panel.high, dtype=np.float64)
    y_min, y_max = _span(np.concatenate([history, forecast, low, high]))
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
    return _document(WIDTH, height, body + [legend])


def _document(width: float, height: float, body: list[str]) -> str:
    """A standalone SVG document of `body` on a white background."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
            f'<rect width="{width}" height="{height}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def write_svg(path: str | os.PathLike, panels: Sequence[Panel], title: str = "") -> Path:
    """Render and write atomically."""
    return write_text_atomic(Path(path), render_svg(panels, title))


# ----------------------------------------------------------------------------------------------
# Charts: panels of lines or bars in a grid

CHART_WIDTH, CHART_HEIGHT = 430, 270     # px, one panel
CHART_MARGIN = dict(left=64, right=14, top=30, bottom=80)   # the bottom holds tick labels, x label, legend
COLUMNS = 2
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MARKERS_BELOW = 20   # series with fewer points get a dot per point (sparse validation scores stay visible)


@dataclass
class Lines:
    """A line panel: ``series`` maps a name to (xs, ys); NaN / None ys are skipped."""

    title: str
    x_label: str
    y_label: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]]


@dataclass
class Bars:
    """A bar panel: one horizontal bar per named value (None = no value, drawn as "n/a")."""

    title: str
    x_label: str
    values: dict[str, float | None]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _frame(left: float, top: float, chart_title: str, x_label: str, y_label: str) -> tuple[list[str], tuple]:
    """Title, plot box and axis labels of one panel; returns the SVG and the box (x0, y0, x1, y1)."""
    x0, x1 = left + CHART_MARGIN["left"], left + CHART_WIDTH - CHART_MARGIN["right"]
    y0, y1 = top + CHART_MARGIN["top"], top + CHART_HEIGHT - CHART_MARGIN["bottom"]
    out = [f'<text class="title" x="{(x0 + x1) / 2:.0f}" y="{top + 18:.0f}" text-anchor="middle" '
           f'font-size="13">{escape(chart_title)}</text>',
           f'<rect x="{x0:.0f}" y="{y0:.0f}" width="{x1 - x0:.0f}" height="{y1 - y0:.0f}" fill="none" stroke="#ccc"/>',
           f'<text class="x-label" x="{(x0 + x1) / 2:.0f}" y="{y1 + 30:.0f}" text-anchor="middle" '
           f'font-size="11">{escape(x_label)}</text>']
    if y_label:
        out.append(f'<text class="y-label" x="{left + 12:.0f}" y="{(y0 + y1) / 2:.0f}" text-anchor="middle" '
                   f'font-size="11" transform="rotate(-90 {left + 12:.0f} {(y0 + y1) / 2:.0f})">{escape(y_label)}</text>')
    return out, (x0, y0, x1, y1)


def _legend(names: Sequence[str], x0: float, x1: float, y: float) -> list[str]:
    """Colour keys flowing left to right from (x0, y), wrapping at x1 (about 5 px per character)."""
    out, x = [], x0
    for k, name in enumerate(names):
        width = 20 + 5 * len(name)
        if x + width > x1 and x > x0:
            x, y = x0, y + 12
        color = PALETTE[k % len(PALETTE)]
        out.append(f'<rect x="{x:.0f}" y="{y - 7:.0f}" width="8" height="8" fill="{color}"/>'
                   f'<text class="legend" x="{x + 11:.0f}" y="{y:.0f}" font-size="9">{escape(name)}</text>')
        x += width
    return out


def _lines_svg(panel: Lines, left: float, top: float) -> list[str]:
    out, (x0, y0, x1, y1) = _frame(left, top, panel.title, panel.x_label, panel.y_label)
    data = {name: (np.asarray(xs, dtype=np.float64), np.array(ys, dtype=np.float64))
            for name, (xs, ys) in panel.series.items()}
    x_min, x_max = _span(np.concatenate([xs for xs, _ in data.values()]))
    y_min, y_max = _span(np.concatenate([ys for _, ys in data.values()]))

    def at(x, y):
        return x0 + (x1 - x0) * (x - x_min) / (x_max - x_min), y1 - (y1 - y0) * (y - y_min) / (y_max - y_min)

    for k, (name, (xs, ys)) in enumerate(data.items()):
        color = PALETTE[k % len(PALETTE)]
        keep = np.isfinite(xs) & np.isfinite(ys)
        points = [at(x, y) for x, y in zip(xs[keep], ys[keep])]
        path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(points))
        out.append(f'<path class="series" data-series="{escape(name)}" d="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5"/>')
        if len(points) < MARKERS_BELOW:
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in points]
    for value in (y_min, y_max):
        out.append(f'<text class="tick" x="{x0 - 4:.0f}" y="{at(x_min, value)[1] + 4:.1f}" text-anchor="end" '
                   f'font-size="10">{_fmt(value)}</text>')
    for value in (x_min, x_max):
        out.append(f'<text class="tick" x="{at(value, y_min)[0]:.1f}" y="{y1 + 14:.0f}" text-anchor="middle" '
                   f'font-size="10">{_fmt(value)}</text>')
    return out + _legend(list(data), x0, x1, y1 + 46)


def _bars_svg(panel: Bars, left: float, top: float) -> list[str]:
    out, (x0, y0, x1, y1) = _frame(left, top, panel.title, panel.x_label, "")
    label_width = 96  # method names sit inside the plot box, left of their bar
    known = [v for v in panel.values.values() if v is not None and np.isfinite(v)]
    top_value = max(known, default=1.0) or 1.0
    height = (y1 - y0) / max(len(panel.values), 1)
    for k, (name, value) in enumerate(panel.values.items()):
        y = y0 + k * height
        out.append(f'<text class="bar-label" x="{x0 + label_width - 4:.0f}" y="{y + height / 2 + 4:.1f}" '
                   f'text-anchor="end" font-size="10">{escape(name)}</text>')
        if value is None or not np.isfinite(value):
            out.append(f'<text x="{x0 + label_width + 4:.0f}" y="{y + height / 2 + 4:.1f}" font-size="10">n/a</text>')
            continue
        length = (x1 - x0 - label_width - 40) * max(value, 0.0) / top_value
        out.append(f'<path class="bar" data-series="{escape(name)}" d="M{x0 + label_width:.1f},{y + 0.15 * height:.1f} '
                   f'h{length:.1f} v{0.7 * height:.1f} h{-length:.1f} Z" fill="{PALETTE[k % len(PALETTE)]}"/>')
        out.append(f'<text class="value" x="{x0 + label_width + length + 3:.1f}" y="{y + height / 2 + 4:.1f}" '
                   f'font-size="9">{_fmt(value)}</text>')
    return out


def render_charts(panels: Sequence[Lines | Bars], title: str = "") -> str:
    """The SVG document for a grid of line and bar panels, COLUMNS wide, under an optional title."""
    if not panels:
        raise ValueError("render_charts needs at least one panel")
    head = 30 if title else 0
    rows = -(-len(panels) // COLUMNS)
    width, height = CHART_WIDTH * min(COLUMNS, len(panels)), head + CHART_HEIGHT * rows
    body = [f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
            f'{escape(title)}</text>'] if title else []
    for k, panel in enumerate(panels):
        left, top = CHART_WIDTH * (k % COLUMNS), head + CHART_HEIGHT * (k // COLUMNS)
        body += (_lines_svg if isinstance(panel, Lines) else _bars_svg)(panel, left, top)
    return _document(width, height, body)


# ----------------------------------------------------------------------------------------------
# A training run's curves

# panel title, y label, and which metrics.jsonl keys it draws (a key ending in "*" is a prefix)
RUN_PANELS = (("loss", "loss", ("loss", "val_loss")),
              ("reward and its terms", "reward", ("reward", "reward_selected", "reward_*")),
              ("KL to the reference", "KL", ("kl",)),
              ("clip fraction", "fraction of tokens", ("clip_frac", "clip_frac_low", "clip_frac_high")),
              ("validation MSE", "MSE", ("val_mse",)),
              ("validation MASE", "MASE", ("val_mase",)),
              ("throughput", "tokens/s", ("tokens_per_s",)))


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn last line (a killed run) is skipped, none at all is an error."""
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log: {path} does not exist (is this a training run directory?)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no metrics records")
    return records


def _logged(records: list[dict], key: str) -> tuple[list, list]:
    """(steps, values) of the records that logged a number under `key`."""
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [x for x, _ in points], [y for _, y in points]


def _keys(pattern: str, records: list[dict]) -> list[str]:
    names = dict.fromkeys(k for r in records for k in r)
    if pattern.endswith("*"):
        return [k for k in names if k.startswith(pattern[:-1]) and k not in ("reward_selected", "reward_std", "reward_s")]
    return [pattern] if pattern in names else []


def run_panels(records: list[dict]) -> list[Lines]:
    """One line panel per RUN_PANELS entry the records have any number for, x = step."""
    panels = []
    for panel_title, y_label, patterns in RUN_PANELS:
        series = {}
        for key in dict.fromkeys(k for p in patterns for k in _keys(p, records)):
            xs, ys = _logged(records, key)
            if xs:
                series[key] = (xs, ys)
        if series:
            panels.append(Lines(panel_title, "optimizer step", y_label, series))
    return panels


def moving_average(ys: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): per-step RL rewards are
    noisy, their trend is what a comparison reads."""
    values = np.asarray(ys, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return ((sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)).tolist()


def compare_panels(runs: dict[str, list[dict]], keys: Sequence[str], smooth: int) -> list[Lines]:
    """One panel per key, one line per run (x = step); keys logged every step are smoothed."""
    panels = []
    for key in keys:
        series = {}
        for name, records in runs.items():
            xs, ys = _logged(records, key)
            if xs:
                series[name] = (xs, moving_average(ys, smooth) if len(xs) > smooth else ys)
        if not series:
            raise ValueError(f"no run logged {key!r}")
        smoothed = any(len(xs) > smooth for xs, _ in series.values()) and smooth > 1
        panels.append(Lines(key + (f" (mean of the last {smooth} steps)" if smoothed else ""),
                            "optimizer step", key, series))
    return panels


def main(argv=None) -> int:
    """``python -m timer1.tools.plot RUN_DIR [RUN_DIR ...] [--out curves.svg] [--keys K ...]``; errors are one
    line and exit code 2."""
    parser = argparse.ArgumentParser(
        prog="python -m timer1.tools.plot",
        allow_abbrev=False,
        description="Draw a training run's metrics.jsonl (SFT or GRIP) as an SVG; with several runs, "
                    "compare them: one panel per --keys entry, one line per run.")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="training run directories (each holding metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the SVG to write (default RUN_DIR/curves.svg; required with several runs)")
    parser.add_argument("--keys", nargs="+", default=["reward", "val_mase"],
                        help="several runs: the logged values to compare (default: reward val_mase)")
    parser.add_argument("--smooth", type=int, default=10,
                        help="several runs: moving average over this many steps for per-step values (default 10)")
    args = parser.parse_args(argv)
    try:
        from timer1.util.atomic import check_writable

        if len(args.run_dirs) > 1 and args.out is None:
            raise ValueError("several runs: say where the comparison goes with --out FILE.svg")
        if args.smooth < 1:
            raise ValueError(f"--smooth must be at least 1, got {args.smooth}")
        out = args.out or args.run_dirs[0] / "curves.svg"
        if out.suffix.lower() != ".svg":
            raise ValueError(f"--out {out}: the picture is an SVG; give a path ending in .svg")
        logs = {run.name: run / "metrics.jsonl" for run in args.run_dirs}
        if len(logs) < len(args.run_dirs):
            raise ValueError("two runs share a directory name; their lines could not be told apart")
        runs = {name: read_metrics(path) for name, path in logs.items()}
        if check_writable(out) in {path.resolve() for path in logs.values()}:
            raise ValueError(f"--out {out} is a metrics log; refusing to overwrite it")
        if len(runs) == 1:
            (name, records), = runs.items()
            svg = render_charts(run_panels(records), title=f"{name}: training curves")
        else:
            svg = render_charts(compare_panels(runs, args.keys, args.smooth),
                                title="training runs compared: " + ", ".join(runs))
        write_text_atomic(out, svg)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({sum(len(r) for r in runs.values())} logged steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
