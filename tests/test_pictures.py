"""Every picture timer1 draws can be read: each label lies inside the canvas (and inside its own panel),
every numeric axis has 4-6 ticks at round values, no two tick labels of an axis overlap, and a band too
wide for the panel is cut at its edge and said so. The SVG is parsed here, and text extents are
estimated with this file's own table of DejaVu Sans advance widths (the font most Linux viewers pick
for sans-serif), not with the library's estimate."""

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from timer1.tools.plot import Bars, Lines, Panel, compare_panels, render_charts, render_svg, run_panels
from timer1.tools.svg import nice_ticks, short_dates, tick_labels

REPO = Path(__file__).resolve().parents[1]
NS = "{http://www.w3.org/2000/svg}"
# DejaVu Sans advances in ems (units / 2048): digits 1303, "." 651, "-" 739, ":" 690, " " 651, "/" 690
EM = {**dict.fromkeys("0123456789", 0.636), ".": 0.318, "-": 0.361, ":": 0.337, " ": 0.318, "/": 0.337,
      ",": 0.318, "%": 0.950, "(": 0.390, ")": 0.390}


def width(label: str, size: float) -> float:
    """An upper estimate of the label's width: the table, else 0.82 em for capitals, 0.64 for others."""
    return sum(size * EM.get(c, 0.82 if c.isupper() else 0.64) for c in label)


def extents(text) -> tuple[float, float, float, float]:
    """(left, right, top, bottom) of a <text> element (rotated labels: their vertical run)."""
    x, y, size = float(text.get("x")), float(text.get("y")), float(text.get("font-size"))
    w = width(text.text or "", size)
    if text.get("transform", "").startswith("rotate(-90"):
        return x - size, x, y - w / 2, y + w / 2
    left = {"start": x, "middle": x - w / 2, "end": x - w}[text.get("text-anchor", "start")]
    return left, left + w, y - size, y + 0.25 * size


def check_layout(document: str) -> ET.Element:
    """Parse ``document`` and assert every label is inside the canvas and each axis's tick labels
    neither overlap nor number fewer than 4."""
    root = ET.fromstring(document)
    canvas_w, canvas_h = float(root.get("width")), float(root.get("height"))
    for text in root.iter(f"{NS}text"):
        left, right, top, bottom = extents(text)
        assert 0 <= left and right <= canvas_w and 0 <= top and bottom <= canvas_h, (text.text, left, right)
    return root


def ticks_by_axis(root: ET.Element, axis: str) -> list[list]:
    """The tick labels of each panel's ``axis`` ("x" or "y"), grouped by panel: every panel draws its
    title first, so a tick belongs to the title before it in the document."""
    groups: list[list] = []
    for text in root.iter(f"{NS}text"):
        if text.get("class") == "title":
            groups.append([])
        elif f"tick {axis}" in (text.get("class") or ""):
            groups[-1].append(text)
    return [g for g in groups if g]


def check_ticks(root: ET.Element, axes=("x", "y"), panels: int = 1) -> None:
    for axis in axes:
        groups = ticks_by_axis(root, axis)
        assert len(groups) == panels, axis
        for group in groups:
            assert 4 <= len(group) <= 6, [t.text for t in group]
            if axis == "x":   # side by side: no overlap
                spans = sorted(extents(t)[:2] for t in group)
                assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), [t.text for t in group]


def hourly(n: int, start_day: int = 1) -> list[str]:
    return [f"2016-05-{start_day + k // 24:02d} {k % 24:02d}:00:00" for k in range(n)]


def test_nice_ticks_cover_the_range_with_4_to_6_round_values():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        low = rng.normal() * 10.0 ** rng.integers(-4, 7)
        high = low + max(abs(rng.normal()) * 10.0 ** rng.integers(-5, 7), 1e-6 * abs(low))   # a range floats resolve
        ticks = nice_ticks(low, high)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** np.floor(np.log10(step) + 1e-9)
        assert 4 <= len(ticks) <= 6 and ticks[0] <= low and ticks[-1] >= high, (low, high, ticks)
        assert any(np.isclose(mantissa, m, rtol=1e-6) for m in (1, 2, 2.5, 5, 10)), step   # 10: 1 after rounding
        assert np.allclose(np.diff(ticks), step, rtol=1e-6)
    np.testing.assert_allclose(nice_ticks(0.0, 97.0), [0, 20, 40, 60, 80, 100])
    np.testing.assert_allclose(nice_ticks(3.2, 3.2), [2, 2.5, 3, 3.5, 4, 4.5])   # one value: 2.2..4.2, step 0.5
    assert tick_labels(nice_ticks(0.0, 1.0)) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert tick_labels(np.array([0.0, 2.5, 5.0, 7.5])) == ["0.0", "2.5", "5.0", "7.5"]
    assert tick_labels(np.array([0.0, 250.0, 500.0])) == ["0", "250", "500"]
    assert short_dates(["2016-05-01 00:00:00", "2016-05-02 00:00:00"]) == ["2016-05-01", "2016-05-02"]
    assert short_dates(["2016-05-01 13:00:00", "2016-05-01 14:00:00"]) == ["2016-05-01 13:00", "2016-05-01 14:00"]


def test_a_forecast_with_long_dates_keeps_its_last_label_inside():
    """The issue's case: hourly dates to the right edge ("2016-05-0" was cut), a band wider than the
    history (it squeezed the history into a line): now cut at the panel's edge and said so."""
    history = 10 + 3 * np.sin(np.arange(144) * 2 * np.pi / 24)
    point = 10 + 3 * np.sin(np.arange(144, 192) * 2 * np.pi / 24)
    panel = Panel("OT", hourly(144), history, hourly(48, 7), point, point - 40, point + 40)
    root = check_layout(render_svg([panel], title="ETTh1.csv: timer1 forecast"))
    check_ticks(root)
    dates = [t.text for t in root.iter(f"{NS}text") if "date" in (t.get("class") or "")]
    # round ticks: midnights, every other day of the 8 drawn (issue 38, item 12)
    assert dates == ["2016-05-01 00:00", "2016-05-03 00:00", "2016-05-05 00:00", "2016-05-07 00:00"]
    ys = [float(t.text) for t in ticks_by_axis(root, "y")[0]]
    assert min(ys) <= history.min() and max(ys) >= history.max() and max(ys) - min(ys) < 20   # not the band's 80
    legend = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "legend"]
    assert legend == ["history (grey), forecast (blue), 10-90% band (shaded); band cut at the panel's edge in OT"]
    band = np.array([[float(v) for v in p.split(",")] for p in root.find(f"{NS}polygon").get("points").split()])
    box = root.findall(f"{NS}rect")[1]
    top, bottom = float(box.get("y")), float(box.get("y")) + float(box.get("height"))
    assert band[:, 1].min() >= top - 0.1 and band[:, 1].max() <= bottom + 0.1


def test_small_multiples_keep_every_label_in_its_own_panel():
    rng = np.random.default_rng(1)
    panels = []
    for k, (dates, future) in enumerate([(hourly(72), hourly(24, 4)),
                                         ([f"{2000 + m // 12}-{m % 12 + 1:02d}-01" for m in range(36)],
                                          [f"2003-{m + 1:02d}-01" for m in range(12)]),
                                         ([str(i) for i in range(50)], [str(i) for i in range(50, 60)])] * 2):
        history = 1000 * k + rng.normal(size=len(dates)).cumsum()
        point = np.full(len(future), history[-1])
        panels.append(Panel(f"series {k} with a rather long name that will not fit a small panel", dates, history,
                            future, point, point - 1, point + 1))
    root = check_layout(render_svg(panels, title="six series"))
    check_ticks(root, panels=6)
    half = float(root.get("width")) / 2
    for group in ticks_by_axis(root, "x"):     # a panel's dates stay on its side of the middle
        sides = {extents(t)[0] >= half for t in group}
        assert len(sides) == 1 and all(extents(t)[1] <= half or extents(t)[0] >= half for t in group)
    assert len(root.findall(f"{NS}polyline[@class='history']")) == 6


def test_charts_have_round_ticks_on_both_axes_and_the_default_stands_out():
    records = [{"step": s, "loss": 2.0 / s, "reward": 0.01 * s, "kl": 1e-4 * s, "val_mase": 3.0 - 0.1 * s}
               for s in range(1, 121)]
    root = check_layout(render_charts(run_panels(records), title="run: training curves"))
    check_ticks(root, panels=4)
    runs = {"grpo": records, "grip": [dict(r, reward=r["reward"] * 2) for r in records]}
    check_ticks(check_layout(render_charts(compare_panels(runs, ["reward", "val_mase"], 10))), panels=2)
    bars = Bars("ETTh1: MASE", "MASE (lower is better)",
                {"timer1-default": 1.67, "timer1-slow": 2.1, "seasonal_naive": 2.31, "linear": 1.66, "last": None},
                highlight="timer1-default")
    root = check_layout(render_charts([bars, Lines("x", "step", "y", {"a": ([0, 1, 2], [5, 6, 5.5])})]))
    check_ticks(root, axes=("x",), panels=2)
    fills = {p.get("data-series"): p.get("fill") for p in root.iter(f"{NS}path") if p.get("class") == "bar"}
    assert len(set(fills.values())) == 2 and list(fills.values()).count(fills["timer1-default"]) == 1


def test_the_evaluation_chart_reads(tmp_path):
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    methods = ("timer1-default", "timer1-slow", "timer1", "seasonal_naive", "linear", "last", "mean", "drift")
    results = {d: {m: {"mse": 0.4 + 0.1 * k + i, "mase": 1.5 + 0.2 * k + i} for k, m in enumerate(methods)}
               for i, d in enumerate(("ETTh1", "ETTh2", "exchange", "nasdaq"))}
    panels = evaluate.comparison_panels(results)
    root = check_layout(render_charts(panels, title="timer1 evaluation: MASE and MSE by dataset"))
    check_ticks(root, axes=("x",), panels=len(panels))
    titles = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "title"]
    assert titles[:3] == ["all 4 datasets: geometric-mean MASE", "ETTh1: MASE", "ETTh1: MSE"]
    values = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "value"]
    assert values[:len(methods)] == [f"{np.exp(np.mean(np.log([1.5 + 0.2 * k + i for i in range(4)]))):.4g}"
                                     for k in range(len(methods))]


@pytest.mark.parametrize("size", [1, 3])
def test_forecast_py_plots_read(size, tmp_path, compact_checkpoint, forecast_cli):
    """The pictures forecast.py itself draws: one hourly channel, and all three as small multiples."""
    rows = ["date,a,b,c"] + [f"{d},{10 + np.sin(k / 4):.3f},{k % 24},{1000 + k}" for k, d in enumerate(hourly(120))]
    source = tmp_path / "three.csv"
    source.write_text("\n".join(rows) + "\n")
    picture = tmp_path / "p.svg"
    options = ["--column", "all"] if size == 3 else []
    assert forecast_cli.main([str(source), "--model", str(compact_checkpoint), "--horizon", "24", "--samples", "2",
                              "--max-new-tokens", "4", "--plot", str(picture), "--out", str(tmp_path / "o.csv"),
                              *options]) == 0
    root = check_layout(picture.read_text())
    check_ticks(root, panels=size)
    assert len(root.findall(f"{NS}polyline[@class='history']")) == size
