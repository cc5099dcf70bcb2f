"""timer1.tools.plot: the SVG is valid XML with one point per value, labelled dates, escaped text."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from timer1.tools.plot import Panel, render_svg, write_svg

NS = {"svg": "http://www.w3.org/2000/svg"}


def panel(title="OT <&> \"load\"", L=30, H=12):
    history = np.sin(np.arange(L) / 3.0)
    forecast = np.sin(np.arange(L, L + H) / 3.0)
    return Panel(title, [f"2020-01-01 {i:02d}:00" for i in range(L)], history,
                 [f"2020-01-02 {i:02d}:00" for i in range(H)], forecast, forecast - 0.2, forecast + 0.2)


def points(element) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in element.get("points").split()])


def test_svg_parses_with_the_expected_points(tmp_path):
    path = write_svg(tmp_path / "fc.svg", [panel()], title="ETTh1 forecast")
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    history = points(root.find("svg:polyline[@class='history']", NS))
    forecast = points(root.find("svg:polyline[@class='forecast']", NS))
    band = points(root.find("svg:polygon[@class='band']", NS))
    assert history.shape == (30, 2) and forecast.shape == (12, 2) and band.shape == (24, 2)
    assert np.all(np.diff(history[:, 0]) > 0) and forecast[0, 0] > history[-1, 0]  # time runs left to right
    # the band's upper edge (value + 0.2) is drawn above the forecast (smaller SVG y), its lower edge below
    # (or on the panel's bottom, where it is cut: the y range is the history's and the forecast's)
    assert np.all(band[:12, 1] < forecast[:, 1]) and np.all(band[12:, 1][::-1] >= forecast[:, 1])
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "ETTh1 forecast" in texts and 'OT <&> "load"' in texts  # escaped in the file, intact when parsed
    dates = [t.text for t in root.findall("svg:text[@class='tick x date']", NS)]
    assert dates[0] == "2020-01-01 00:00" and dates[-1] == "2020-01-02 11:00" and 4 <= len(dates) <= 6
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_several_panels_stack_and_nan_is_skipped():
    second = panel("HUFL")
    second.history = np.array([1.0, np.nan, 3.0] + [2.0] * 27)
    second.low = second.high = None
    root = ET.fromstring(render_svg([panel(), second]))
    histories = root.findall("svg:polyline[@class='history']", NS)
    assert len(histories) == 2 and len(points(histories[1])) == 29
    assert len(root.findall("svg:polygon[@class='band']", NS)) == 1
    assert float(root.get("height")) == 260 + 22      # small multiples: side by side, then the legend line
    left, right = (points(h)[:, 0] for h in histories)
    assert left.max() < 430 <= right.min()


def test_flat_series_and_no_panel():
    flat = Panel("flat", ["1", "2"], [5.0, 5.0], ["3"], [5.0])
    root = ET.fromstring(render_svg([flat]))
    assert np.all(np.isfinite(points(root.find("svg:polyline[@class='history']", NS))))
    with pytest.raises(ValueError, match="at least one panel"):
        render_svg([])


def test_moving_average_by_hand():
    from timer1.tools.plot import moving_average
    assert moving_average([1, 2, 3, 4, 5], 2) == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert moving_average([4, 0, 2], 10) == [4.0, 2.0, 2.0]


def test_compare_runs_one_line_per_run(tmp_path):
    import json
    import xml.etree.ElementTree as ET

    from timer1.tools.plot import main
    for name, offset in (("grpo", 0.0), ("grip", 1.0)):
        run = tmp_path / name
        run.mkdir()
        records = [{"step": s, "reward": offset + s} for s in range(1, 6)]
        records[-1]["val_mase"] = 3.0 - offset                             # validated once, at the end
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "compare.svg"
    assert main([str(tmp_path / "grpo"), str(tmp_path / "grip"), "--out", str(out), "--smooth", "2"]) == 0
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(f"{ns}text") if t.get("class") == "title"]
    assert titles == ["reward (mean of the last 2 steps)", "val_mase"]
    lines = [p for p in root.iter(f"{ns}path") if p.get("class") == "series"]
    assert sorted(p.get("data-series") for p in lines) == ["grip", "grip", "grpo", "grpo"]
    assert [p.get("d").count("L") + 1 for p in lines] == [5, 5, 1, 1]      # one vertex per logged value


def test_compare_runs_errors(tmp_path, capsys):
    from timer1.tools.plot import main
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1, "reward": 1.0}\n')
    assert main([str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == "error: several runs: say where the comparison goes with --out FILE.svg"
    assert main([str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "c.svg"), "--keys", "kl"]) == 2
    assert "two runs share a directory name" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.jsonl").write_text('{"step": 1, "reward": 2.0}\n')
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.svg"), "--keys", "kl"]) == 2
    assert capsys.readouterr().err.strip() == "error: no run logged 'kl'"
    assert not (tmp_path / "c.svg").exists()
