"""timer1.plot: the SVG is valid XML with one point per value, labelled dates, escaped text."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from timer1.plot import Panel, render_svg, write_svg

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
    # the band's upper edge (value + 0.2) is drawn above the forecast: smaller SVG y
    assert np.all(band[:12, 1] < forecast[:, 1]) and np.all(band[12:, 1][::-1] > forecast[:, 1])
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "ETTh1 forecast" in texts and 'OT <&> "load"' in texts  # escaped in the file, intact when parsed
    dates = [t.text for t in root.findall("svg:text[@class='date']", NS)]
    assert dates[0] == "2020-01-01 00:00" and dates[-1] == "2020-01-02 11:00" and len(dates) == 6
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_several_panels_stack_and_nan_is_skipped():
    second = panel("HUFL")
    second.history = np.array([1.0, np.nan, 3.0] + [2.0] * 27)
    second.low = second.high = None
    root = ET.fromstring(render_svg([panel(), second]))
    histories = root.findall("svg:polyline[@class='history']", NS)
    assert len(histories) == 2 and len(points(histories[1])) == 29
    assert len(root.findall("svg:polygon[@class='band']", NS)) == 1
    assert float(root.get("height")) == 2 * 260


def test_flat_series_and_no_panel():
    flat = Panel("flat", ["1", "2"], [5.0, 5.0], ["3"], [5.0])
    root = ET.fromstring(render_svg([flat]))
    assert np.all(np.isfinite(points(root.find("svg:polyline[@class='history']", NS))))
    with pytest.raises(ValueError, match="at least one panel"):
        render_svg([])
