"""Small SVG pictures with no plotting dependency: valid XML, written atomically, open in any browser.

Forecasts (`render_svg`, forecast.py --plot): a panel per series (small multiples for several) with
the history's tail, the forecast and its band. Charts (`render_charts`): a grid of line (`Lines`) or
bar (`Bars`) panels: training curves, or each method's MASE per dataset (evaluate.py --plot). Every
label is placed inside the canvas and every numeric axis has 4-6 round ticks (timer1.tools.svg).

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

from timer1.tools import svg
from timer1.util.atomic import write_text_atomic

WIDTH = 860           # px, the whole figure
PANEL_HEIGHT = 260    # px, one series
COLUMNS = 2           # small multiples: two series a row
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass
class Panel:
    """One series: history (dates, values), forecast (dates, point, low and high edges of the band)."""

    title: str
    history_dates: Sequence[str]
    history: Sequence[float]
    forecast_dates: Sequence[str]
    forecast: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None


@dataclass(frozen=True)
class Box:
    """A panel's plot area in px: x0 left, x1 right, y0 top, y1 bottom (SVG y grows downwards)."""

    x0: float
    y0: float
    x1: float
    y1: float


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys) if np.isfinite(y))


def _span(values: np.ndarray) -> tuple[float, float]:
    """(low, high) of the finite values ((0, 1) when there are none)."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


BAND_MARGIN = 0.25   # how far past the history and the point forecast the y range reaches for the band


def _y_limits(panel: Panel, history: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
    """The y range: the history's and the point forecast's, widened for the band by at most
    BAND_MARGIN of that span each way (a band wider than that is cut, not allowed to squash the
    history into a thin line)."""
    low, high = _span(np.concatenate([history, forecast]))
    if panel.low is None or panel.high is None:
        return low, high
    reach = BAND_MARGIN * (high - low)
    band_low, band_high = _span(np.concatenate([np.asarray(panel.low, float), np.asarray(panel.high, float)]))
    return max(min(low, band_low), low - reach), min(max(high, band_high), high + reach)


def _y_axis(ticks: np.ndarray, box: Box, at) -> list[str]:
    """Grid lines and labels at the y ticks, labels right-aligned left of the box."""
    out = []
    for value, label in zip(ticks, svg.tick_labels(ticks)):
        y = float(at(value))
        out.append(f'<line x1="{box.x0:.1f}" y1="{y:.1f}" x2="{box.x1:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(svg.text(box.x0 - 5, y + 3.5, label, anchor="end", css="tick y"))
    return out


def _x_dates(dates: list[str], box: Box, panel_edges: tuple[float, float], at) -> list[str]:
    """4 to 6 date labels under the box, as many as fit at the largest font that lets 4 fit, each
    kept inside the panel."""
    labels = svg.short_dates(dates)
    widest = max(len(label) for label in labels)
    for size in (10, 9, 8, 7):
        count = svg.TICKS[1]
        while count > svg.TICKS[0] and count * (svg.CHAR_EM * size * widest + 8) > box.x1 - box.x0:
            count -= 1
        if count * (svg.CHAR_EM * size * widest + 8) <= panel_edges[1] - panel_edges[0]:
            break
    per_index = (float(at(len(labels) - 1)) - float(at(0))) / max(len(labels) - 1, 1)   # px between dates
    where = round_date_ticks(dates, count, (svg.CHAR_EM * size * widest + 8) / max(per_index, 1e-9))
    return [svg.text(svg.inside(float(at(i)), labels[i], size, *panel_edges), box.y1 + 15, labels[i],
                     size=size, css="tick x date") for i in where]


def round_date_ticks(dates: Sequence[str], most: int, min_gap: float = 1.0) -> np.ndarray:
    """Indices of 4 to ``most`` date ticks, at least ``min_gap`` dates apart (a label's width), that
    fall on round times: the coarsest of year, quarter, month, Monday, midnight, 6-hour and hour
    starts that gives 4, every k-th mark of it; evenly spaced when the dates do not parse or no unit
    gives 4 (a running index, a short span)."""
    from timer1.data.dates import date_components, parse_dates

    parsed = parse_dates([str(d) for d in dates]) if len(dates) else None
    if parsed is not None:
        c = date_components(parsed[0])
        midnight = (c["H"] == 0) & (c["M"] == 0) & (c["S"] == 0)
        monday = (parsed[0].astype("datetime64[D]").astype(np.int64) + 3) % 7 == 0
        units = [midnight & (c["d"] == 1) & (c["m"] == 1), midnight & (c["d"] == 1) & (c["m"] % 3 == 1),
                 midnight & (c["d"] == 1), midnight & monday, midnight, (c["H"] % 6 == 0) & (c["M"] == 0),
                 (c["M"] == 0) & (c["S"] == 0)]
        for marks in units:
            where = np.flatnonzero(marks)
            if len(where) < 4:
                continue
            every = max(int(np.ceil(len(where) / most)), int(np.ceil(min_gap / np.diff(where).min())))
            if len(where[::every]) >= 4:
                return where[::every]
    return np.unique(np.linspace(0, len(dates) - 1, min(most, len(dates))).round().astype(int))


def _band(panel: Panel, fc_x, y_range: tuple[float, float], at) -> tuple[list[str], bool]:
    """The band's polygon, clipped to the y range; whether anything was clipped."""
    if panel.low is None or panel.high is None:
        return [], False
    low, high = (np.asarray(v, dtype=np.float64) for v in (panel.low, panel.high))
    clipped = bool(np.nanmin(low) < y_range[0] or np.nanmax(high) > y_range[1])
    low, high = np.clip(low, *y_range), np.clip(high, *y_range)
    outline = _points(np.concatenate([fc_x, fc_x[::-1]]), np.concatenate([at(high), at(low)[::-1]]))
    return [f'<polygon class="band" points="{outline}" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>'], clipped


def _panel_svg(panel: Panel, left: float, top: float, width: float) -> tuple[list[str], bool]:
    """One series' panel at (left, top): the y range is the history's and the point forecast's, at
    round ticks; the band is clipped to it (a wide band must not squash the history into a line).
    Returns the SVG and whether the band was clipped."""
    history = np.asarray(panel.history, dtype=np.float64)  # (L,)
    forecast = np.asarray(panel.forecast, dtype=np.float64)  # (H,)
    ticks = svg.nice_ticks(*_y_limits(panel, history, forecast))
    y_range = float(ticks[0]), float(ticks[-1])
    label_room = max(svg.text_width(label, 10) for label in svg.tick_labels(ticks)) + 12
    box = Box(left + label_room, top + 30, left + width - 18, top + PANEL_HEIGHT - 30)
    n = len(history) + len(forecast)

    def x_at(i):  # row index -> px
        return box.x0 + (box.x1 - box.x0) * np.asarray(i, dtype=np.float64) / max(n - 1, 1)

    def y_at(v):  # value -> px
        return box.y1 - (box.y1 - box.y0) * (np.asarray(v, dtype=np.float64) - y_range[0]) / (y_range[1] - y_range[0])

    fc_x = x_at(np.arange(len(history), n))
    band, clipped = _band(panel, fc_x, y_range, y_at)
    out = [svg.text(left + width / 2, top + 19, svg.fit(panel.title, 13, width - 8), size=13, css="title"),
           *_y_axis(ticks, box, y_at), *band,
           f'<rect x="{box.x0:.1f}" y="{box.y0:.1f}" width="{box.x1 - box.x0:.1f}" height="{box.y1 - box.y0:.1f}" '
           'fill="none" stroke="#ccc"/>',
           f'<polyline class="history" points="{_points(x_at(np.arange(len(history))), y_at(history))}" '
           'fill="none" stroke="#555" stroke-width="1.5"/>',
           f'<polyline class="forecast" points="{_points(fc_x, y_at(forecast))}" '
           'fill="none" stroke="#1f77b4" stroke-width="2"/>']
    if len(history) and len(forecast):
        split = float(x_at(len(history) - 0.5))
        out.append(f'<line x1="{split:.1f}" y1="{box.y0:.1f}" x2="{split:.1f}" y2="{box.y1:.1f}" '
                   'stroke="#999" stroke-dasharray="4 3"/>')
    dates = [str(d) for d in [*panel.history_dates, *panel.forecast_dates]] or [str(i) for i in range(n)]
    return out + _x_dates(dates, box, (left, left + width), x_at), clipped


def render_svg(panels: Sequence[Panel], title: str = "", band: str = "10-90% band") -> str:
    """The SVG document of one or more series: one full-width panel, or small multiples COLUMNS a row,
    under an optional title, with one legend line (naming the ``band`` and where it was cut)."""
    if not panels:
        raise ValueError("render_svg needs at least one panel")
    columns = 1 if len(panels) == 1 else COLUMNS
    width, head = WIDTH / columns, 28 if title else 0
    rows = -(-len(panels) // columns)
    height = head + PANEL_HEIGHT * rows + 22
    body = [svg.text(WIDTH / 2, 20, svg.fit(title, 16, WIDTH - 8), size=16, extra=' font-weight="bold"')] if title else []
    clipped = []
    for k, panel in enumerate(panels):
        drawn, cut = _panel_svg(panel, width * (k % columns), head + PANEL_HEIGHT * (k // columns), width)
        body += drawn
        clipped += [panel.title] if cut else []
    banded = any(p.low is not None and p.high is not None for p in panels)
    legend = "history (grey), forecast (blue)" + (f", {band} (shaded)" if banded else "")
    if clipped:
        legend += "; band cut at the panel's edge " + (f"in {len(clipped)} of {len(panels)} panels" if len(clipped) > 2
                                                        else "in " + " and ".join(clipped))
    body.append(svg.text(8, height - 8, svg.fit(legend, 11, WIDTH - 16), size=11, anchor="start", css="legend",
                         extra=' fill="#555"'))
    return svg.document(WIDTH, height, body)


def write_svg(path: str | os.PathLike, panels: Sequence[Panel], title: str = "", band: str = "10-90% band") -> Path:
    """Render and write atomically."""
    return write_text_atomic(Path(path), render_svg(panels, title, band))


# ----------------------------------------------------------------------------------------------
# Charts: panels of lines or bars in a grid

CHART_WIDTH, CHART_HEIGHT = 430, 270     # px, one panel
MARKERS_BELOW = 20   # series with fewer points get a dot per point (sparse validation scores stay visible)
HIGHLIGHT = "#d62728"  # the highlighted bar; the others are MUTED
MUTED = "#6b8fb5"


@dataclass
class Lines:
    """A line panel: ``series`` maps a name to (xs, ys); NaN / None ys are skipped."""

    title: str
    x_label: str
    y_label: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]]


@dataclass
class Bars:
    """A bar panel: one horizontal bar per named value (None = no value, drawn as "n/a"); the bar
    named ``highlight`` stands out."""

    title: str
    x_label: str
    values: dict[str, float | None]
    highlight: str | None = None


def _frame(left: float, top: float, panel: Lines | Bars, box: Box) -> list[str]:
    """Title, plot box and axis titles of one chart panel."""
    out = [svg.text(left + CHART_WIDTH / 2, top + 18, svg.fit(panel.title, 13, CHART_WIDTH - 8), size=13, css="title"),
           f'<rect x="{box.x0:.0f}" y="{box.y0:.0f}" width="{box.x1 - box.x0:.0f}" height="{box.y1 - box.y0:.0f}" '
           'fill="none" stroke="#ccc"/>',
           svg.text((box.x0 + box.x1) / 2, box.y1 + 30, svg.fit(panel.x_label, 11, CHART_WIDTH - 8), size=11,
                    css="x-label")]
    y_label = getattr(panel, "y_label", "")
    if y_label:
        x, y = left + 12, (box.y0 + box.y1) / 2
        out.append(svg.text(x, y, svg.fit(y_label, 11, box.y1 - box.y0), size=11, css="y-label",
                            extra=f' transform="rotate(-90 {x:.0f} {y:.0f})"'))
    return out


def _legend(names: Sequence[str], x0: float, x1: float, y: float) -> list[str]:
    """Colour keys flowing left to right from (x0, y), wrapping at x1."""
    out, x = [], x0
    for k, name in enumerate(names):
        label = svg.fit(name, 9, x1 - x0 - 12)
        width = 16 + svg.text_width(label, 9)
        if x + width > x1 and x > x0:
            x, y = x0, y + 12
        out.append(f'<rect x="{x:.0f}" y="{y - 7:.0f}" width="8" height="8" fill="{PALETTE[k % len(PALETTE)]}"/>'
                   + svg.text(x + 11, y, label, size=9, anchor="start", css="legend"))
        x += width
    return out


def _lines_svg(panel: Lines, left: float, top: float) -> list[str]:
    data = {name: (np.asarray(xs, dtype=np.float64), np.array(ys, dtype=np.float64))
            for name, (xs, ys) in panel.series.items()}
    x_ticks = svg.nice_ticks(*_span(np.concatenate([xs for xs, _ in data.values()])))
    y_ticks = svg.nice_ticks(*_span(np.concatenate([ys for _, ys in data.values()])))
    room = max(svg.text_width(label, 10) for label in svg.tick_labels(y_ticks)) + 30
    box = Box(left + room, top + 30, left + CHART_WIDTH - 16, top + CHART_HEIGHT - 80)

    def at(x, y):
        return (box.x0 + (box.x1 - box.x0) * (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]),
                box.y1 - (box.y1 - box.y0) * (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]))

    out = _frame(left, top, panel, box) + _y_axis(y_ticks, box, lambda v: at(x_ticks[0], v)[1])
    for value, label in zip(x_ticks, svg.tick_labels(x_ticks)):
        x = svg.inside(at(value, 0)[0], label, 10, left, left + CHART_WIDTH)
        out.append(svg.text(x, box.y1 + 14, label, css="tick x"))
    for k, (name, (xs, ys)) in enumerate(data.items()):
        color = PALETTE[k % len(PALETTE)]
        keep = np.isfinite(xs) & np.isfinite(ys)
        points = [at(x, y) for x, y in zip(xs[keep], ys[keep])]
        path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(points))
        out.append(f'<path class="series" data-series="{escape(name)}" d="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5"/>')
        if len(points) < MARKERS_BELOW:
            out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in points]
    return out + _legend(list(data), box.x0, left + CHART_WIDTH - 4, box.y1 + 46)


def _bars_svg(panel: Bars, left: float, top: float) -> list[str]:
    names = {name: svg.fit(name, 10, 120) for name in panel.values}
    room = max(svg.text_width(label, 10) for label in names.values()) + 12
    box = Box(left + room, top + 30, left + CHART_WIDTH - 16, top + CHART_HEIGHT - 80)
    known = [v for v in panel.values.values() if v is not None and np.isfinite(v)]
    ticks = svg.nice_ticks(0.0, max(known, default=1.0) or 1.0)
    scale = (box.x1 - box.x0 - 36) / ticks[-1]   # 36 px right of the longest bar keep its value's label
    out = _frame(left, top, panel, box)
    for value, label in zip(ticks, svg.tick_labels(ticks)):
        x = box.x0 + scale * value
        out.append(f'<line x1="{x:.1f}" y1="{box.y0:.1f}" x2="{x:.1f}" y2="{box.y1:.1f}" stroke="#eee"/>')
        out.append(svg.text(svg.inside(x, label, 10, left, left + CHART_WIDTH), box.y1 + 14, label, css="tick x"))
    height = (box.y1 - box.y0) / max(len(panel.values), 1)
    for k, (name, value) in enumerate(panel.values.items()):
        y, bold = box.y0 + k * height, name == panel.highlight
        weight = ' font-weight="bold"' if bold else ""
        out.append(svg.text(box.x0 - 4, y + height / 2 + 4, names[name], anchor="end", css="bar-label", extra=weight))
        if value is None or not np.isfinite(value):
            out.append(svg.text(box.x0 + 4, y + height / 2 + 4, "n/a", anchor="start"))
            continue
        length = scale * max(value, 0.0)
        out.append(f'<path class="bar" data-series="{escape(name)}" d="M{box.x0:.1f},{y + 0.15 * height:.1f} '
                   f'h{length:.1f} v{0.7 * height:.1f} h{-length:.1f} Z" fill="{HIGHLIGHT if bold else MUTED}"/>')
        out.append(svg.text(box.x0 + length + 3, y + height / 2 + 4, f"{value:.4g}", size=9, anchor="start",
                            css="value", extra=weight))
    return out


def render_charts(panels: Sequence[Lines | Bars], title: str = "") -> str:
    """The SVG document for a grid of line and bar panels, COLUMNS wide, under an optional title."""
    if not panels:
        raise ValueError("render_charts needs at least one panel")
    head = 30 if title else 0
    rows = -(-len(panels) // COLUMNS)
    width, height = CHART_WIDTH * min(COLUMNS, len(panels)), head + CHART_HEIGHT * rows
    body = [svg.text(width / 2, 20, svg.fit(title, 15, width - 8), size=15, extra=' font-weight="bold"')] if title else []
    for k, panel in enumerate(panels):
        left, top = CHART_WIDTH * (k % COLUMNS), head + CHART_HEIGHT * (k // COLUMNS)
        body += (_lines_svg if isinstance(panel, Lines) else _bars_svg)(panel, left, top)
    return svg.document(width, height, body)


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
