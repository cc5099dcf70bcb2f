"""Long CSVs (timer1.data.long_csv and ``forecast.py --id-column``): rows in any order read back per
series in time order, missing cells as NaN, one-line errors; the command forecasts every series in one
batched call and writes the answer long, equal to `Forecaster.predict` on the same series."""

import csv
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from timer1.data.long_csv import LongColumns, read_long

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_rows_in_any_order_come_back_per_series_in_time_order(tmp_path):
    path = write(tmp_path / "long.csv", [["unique_id", "ds", "y"], ["b", "2020-03-01", "3"], ["a", "2020-02-01", ""],
                                         ["b", "2020-01-01", "1"], ["a", "2020-01-01", "5.5"], ["b", "2020-02-01", "NA"]])
    b, a = read_long(path, LongColumns())                          # ids in order of first appearance
    assert (b.id, b.dates, a.id, a.dates) == ("b", ["2020-01-01", "2020-02-01", "2020-03-01"], "a",
                                              ["2020-01-01", "2020-02-01"])
    np.testing.assert_array_equal(b.values, [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(a.values, [5.5, np.nan])
    assert not a.indexed


def test_a_running_index_continues_on_its_own_step(tmp_path):
    path = write(tmp_path / "long.csv", [["id", "t", "v"], *[["x", str(10 + 5 * k), str(k)] for k in range(6)]])
    (x,) = read_long(path, LongColumns("id", "t", "v"))
    assert x.indexed and x.next_index(3) == ["40", "45", "50"]


@pytest.mark.parametrize("rows, message", [
    ([["id", "ds", "y"], ["a", "2020-01-01", "1"]], "no column 'unique_id' (columns: id, ds, y)"),
    ([["unique_id", "ds", "y"], ["a", "2020-01-01", "abc"]], "line 2, column 'y': 'abc' is not a number"),
    ([["unique_id", "ds", "y"], ["a", "2020-01-01", "1"], ["a", "2020-01-01", "2"]], "the date '2020-01-01' appears twice"),
    ([["unique_id", "ds", "y"], ["a", "soon", "1"]], "dates do not parse as one layout, first 'soon'"),
    ([["unique_id", "ds", "y"]], "no rows below the header"),
    ([["unique_id", "ds", "y"], ["a", "2020-01-01", "1"], ["b", "7", "1"]], "some series are dated and some have a running"),
])
def test_bad_long_files_are_one_line(tmp_path, rows, message):
    with pytest.raises(ValueError) as caught:
        read_long(write(tmp_path / "bad.csv", rows), LongColumns())
    assert message in str(caught.value) and "\n" not in str(caught.value)


def stores(tmp_path: Path) -> tuple[Path, dict]:
    series, rows = {}, [["unique_id", "ds", "y"]]
    for k, n in enumerate((40, 52, 46)):
        t = np.arange(n)
        values = np.round(20 + 5 * np.sin(2 * np.pi * t / 12 + k) + 0.1 * k * t, 3)
        dates = [f"{2015 + m // 12}-{m % 12 + 1:02d}-01" for m in range(n)]
        series[f"store_{k}"] = (values, dates)
        rows += [[f"store_{k}", d, f"{v:g}"] for d, v in zip(dates, values)]
    return write(tmp_path / "stores.csv", rows), series


def test_forecast_py_writes_every_series_long_as_predict_forecasts_them(tmp_path):
    from timer1 import Forecaster

    path, series = stores(tmp_path)
    out = tmp_path / "out.csv"
    picture = tmp_path / "stores.svg"
    done = subprocess.run([sys.executable, "forecast.py", str(path), "--id-column", "unique_id", "--horizon", "6",
                           "--mode", "single", "--out", str(out), "--plot", str(picture), "--threads", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "3 series x 6 steps" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["unique_id", "ds", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert [r["unique_id"] for r in rows] == [name for name in series for _ in range(6)]
    assert [r["ds"] for r in rows[:6]] == [f"2018-{m:02d}-01" for m in range(5, 11)]   # store_0 ends 2018-04
    assert all(r["q0.1"] == r["q0.9"] == "" for r in rows)          # one greedy answer: no band, as in a wide file
    alone = Forecaster.from_pretrained("timer1-tiny", threads=1).predict(
        [v for v, _ in series.values()], 6, mode="single", timestamps=[d for _, d in series.values()], seed=0)
    np.testing.assert_allclose(np.array([float(r["forecast"]) for r in rows]).reshape(3, 6), alone.point, rtol=1e-9)
    root = ET.parse(picture).getroot()          # small multiples: one panel per store, its last 18 months drawn
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert [t.text for t in root.findall("svg:text[@class='title']", ns)] == list(series)
    assert [len(p.get("points").split()) for p in root.findall("svg:polyline[@class='history']", ns)] == [18] * 3


def test_long_mode_refuses_the_wide_only_option_in_one_line(tmp_path):
    path, _ = stores(tmp_path)
    done = subprocess.run([sys.executable, "forecast.py", str(path), "--id-column", "unique_id", "--column", "y"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "error: --column is for wide CSVs; a long CSV (--id-column) forecasts every series")
    done = subprocess.run([sys.executable, "forecast.py", str(path), "--id-column", "store"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no column 'store'" in done.stderr and "Traceback" not in done.stderr
