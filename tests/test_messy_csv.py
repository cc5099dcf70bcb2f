"""Messy CSVs (issue 16): fix what is safe and say so, refuse what is not, naming the lines.

timer1.data.csv_io.read_csv and forecast_window directly, plus forecast.py in-process for the one-line reports.
"""

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from timer1.core.prompts import build_prompt
from timer1.data.csv_io import future_dates, read_csv
from timer1.data.repair import forecast_window

HOURS = [f"2021-03-{1 + k // 24:02d} {k % 24:02d}:00:00" for k in range(240)]


def write(path: Path, header: str, rows, sep: str = ",", encoding: str = "utf-8") -> Path:
    path.write_bytes((sep.join(header.split(",")) + "\n" + "".join(sep.join(map(str, r)) + "\n" for r in rows))
                     .encode(encoding))
    return path


def daily_cycle(n: int) -> np.ndarray:
    return 20 + 4 * np.sin(2 * np.pi * np.arange(n) / 24)


def read_quietly(path: Path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(path, **kwargs)
    return series, [str(w.message) for w in caught]



# ---------------------------------------------------------------------------------------------
# row order

def test_newest_first_is_sorted_and_said(tmp_path):
    values = daily_cycle(48)
    path = write(tmp_path / "prices.csv", "date,close", reversed(list(zip(HOURS[:48], values))))
    series, notes = read_quietly(path)
    assert notes == [f"{path}: rows are newest first; sorted oldest first by date"]
    assert list(series.dates) == HOURS[:48]
    np.testing.assert_array_equal(series.column("close"), values)
    assert future_dates(series, n=1) == [HOURS[48]]


def test_shuffled_rows_on_one_step_are_sorted(tmp_path):
    order = np.random.default_rng(0).permutation(48)
    path = write(tmp_path / "s.csv", "date,v", [(HOURS[k], k) for k in order if k not in (7, 30)])  # two gaps too
    series, notes = read_quietly(path)
    assert f"{path}: rows are not in date order; sorted by date" in notes
    assert list(series.column("v")) == [k for k in range(48) if k not in (7, 30)]


def test_duplicated_dates_are_an_error_naming_the_lines(tmp_path):
    rows = [(HOURS[k], k) for k in range(10)] + [(HOURS[3], 99)]
    path = write(tmp_path / "dup.csv", "date,v", rows)
    with pytest.raises(ValueError, match=f"^{path}: lines 5 and 12 have the same date {HOURS[3]}; a series needs one row per date$"):
        read_csv(path)


def test_shuffled_dates_with_no_regular_step_are_an_error(tmp_path):
    dates = ["2021-03-01 00:00:00", "2021-03-01 05:17:00", "2021-03-01 01:00:00", "2021-03-02 00:00:00"]
    path = write(tmp_path / "mess.csv", "date,v", [(d, k) for k, d in enumerate(dates)])
    with pytest.raises(ValueError, match=r"out of order with no regular step: line 4 \(2021-03-01 01:00:00\) comes "
                                         r"after line 3 \(2021-03-01 05:17:00\)"):
        read_csv(path)


# ---------------------------------------------------------------------------------------------
# cells that are not numbers, outliers, gaps in the dates

def test_bad_cells_are_repaired_and_reported_in_one_line(tmp_path, compact_checkpoint, forecast_cli, capsys):
    values = [f"{v:.3f}" for v in daily_cycle(96)]
    for row, junk in ((70, "n/a"), (80, "oops"), (95, "inf")):
        values[row] = junk
    path = write(tmp_path / "bad.csv", "date,v", zip(HOURS, values))
    argv = [str(path), "--model", str(compact_checkpoint), "--lookback", "48", "--horizon", "4", "--samples", "2",
            "--max-new-tokens", "4"]
    assert forecast_cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    reports = [line for line in err if "repaired" in line]
    assert reports == [f"warning: v: repaired 3 of 48 look-back values by interpolation: 3 empty or non-number "
                       f"cells at {HOURS[70]}, {HOURS[80]}, {HOURS[95]}"]


def test_a_look_back_with_too_many_repairs_is_refused(tmp_path):
    values = [f"{v:.3f}" if k % 3 else "n/a" for k, v in enumerate(daily_cycle(96))]  # a third missing
    series = read_csv(write(tmp_path / "holes.csv", "date,v", zip(HOURS, values)))
    with pytest.raises(ValueError, match=r"holes/v: 16 of the last 48 values are missing, not numbers or outliers "
                                         r"\(more than 25%\)"):
        forecast_window(series, "v", 48, 4)
    window, repairs = forecast_window(series, "v", 2, 4)  # the last two rows are fine
    assert repairs.count == 0


def test_one_huge_outlier_does_not_flatten_the_compact_prompt(tmp_path):
    values = daily_cycle(96)
    values[90] = 1e9
    series = read_csv(write(tmp_path / "glitch.csv", "date,v", zip(HOURS, values)))
    window, repairs = forecast_window(series, "v", 48, 4)
    assert repairs.outliers == [HOURS[90]] and repairs.count == 1
    assert window.history.max() < 25 and window.history[42] == pytest.approx((values[89] + values[91]) / 2)
    scaled = [int(v) for v in build_prompt(window, style="compact").split("\n")[1].split(",")]
    assert min(scaled) == 10 and max(scaled) == 89 and len(set(scaled)) > 8  # the cycle keeps its shape


def test_a_level_shift_is_not_an_outlier(tmp_path):
    values = np.r_[np.full(40, 10.0), np.full(8, 500.0)] + 0.01 * np.arange(48)
    series = read_csv(write(tmp_path / "shift.csv", "date,v", zip(HOURS, values)))
    window, repairs = forecast_window(series, "v", 48, 4)
    assert repairs.count == 0 and window.history[-1] == pytest.approx(values[-1])


def test_missing_steps_are_reported_and_filled_on_the_grid(tmp_path):
    keep = [k for k in range(96) if k not in (60, 61, 90)]
    values = daily_cycle(96)
    path = write(tmp_path / "gappy.csv", "date,v", [(HOURS[k], values[k]) for k in keep])
    series, notes = read_quietly(path)
    assert notes == [f"{path}: 3 hourly steps are missing from the dates (the first after {HOURS[59]}, line 61); "
                     f"forecasts fill them on the regular grid"]
    window, repairs = forecast_window(series, "v", 48, 2)
    assert window.history_dates == HOURS[48:96] and repairs.missing_steps == [HOURS[60], HOURS[61], HOURS[90]]
    assert window.history[60 - 48] == pytest.approx(values[59] + (values[62] - values[59]) / 3)
    assert window.target_dates == HOURS[96:98]


# ---------------------------------------------------------------------------------------------
# dialects and date layouts

@pytest.mark.parametrize("sep, decimal, encoding, note", [
    (";", ",", "utf-8", "fields separated by ';'; decimal commas"),
    ("\t", ".", "utf-8", "fields separated by '\\t'"),
    ("|", ",", "latin-1", "not UTF-8, read as Latin-1; fields separated by '|'; decimal commas"),
    (",", ".", "utf-16", "read as UTF-16"),
])
def test_delimiters_decimal_commas_and_encodings(sep, decimal, encoding, note, tmp_path):
    values = daily_cycle(30)
    rows = [(d, f"{v:.3f}".replace(".", decimal)) for d, v in zip(HOURS, values)]
    path = write(tmp_path / "d.csv", "date,température", rows, sep=sep, encoding=encoding)
    series, notes = read_quietly(path)
    assert notes == [f"{path}: {note}"]
    assert series.channels == ["température"] and series.step.kind == "hourly"
    np.testing.assert_allclose(series.column("température"), np.round(values, 3))


def test_a_semicolon_file_read_as_one_column_says_what_it_saw(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("date;name\n2021-01-01;a\n")  # one row: nothing to tell the delimiter by but the header
    with pytest.raises(ValueError, match="no numeric column"):
        read_quietly(path)


@pytest.mark.parametrize("dates, expected_next", [
    (["2021-03-01T00:00:00Z", "2021-03-01T01:00:00Z"], ["2021-03-01T02:00:00Z"]),
    (["2021-03-01T00:00:00+02:00", "2021-03-01T01:00:00+02:00"], ["2021-03-01T02:00:00+02:00"]),
    (["2021-03-01 00:00:00 +0530", "2021-03-01 01:00:00 +0530"], ["2021-03-01 02:00:00 +0530"]),
    (["07/01/1950", "08/01/1950", "09/01/1950"], ["10/01/1950"]),        # US month first: monthly
    (["30/12/2020", "31/12/2020", "01/01/2021"], ["02/01/2021"]),        # a day above 12: day first
    (["31.12.2020 22:00", "31.12.2020 23:00"], ["01.01.2021 00:00"]),
])
def test_date_layouts_with_offsets_and_year_last(dates, expected_next, tmp_path):
    series, _ = read_quietly(write(tmp_path / "d.csv", "date,v", [(d, k) for k, d in enumerate(dates)]))
    assert series.timestamps is not None and list(series.dates) == dates
    assert future_dates(series, n=1) == expected_next


def test_ambiguous_day_month_order_is_said(tmp_path):
    path = write(tmp_path / "d.csv", "date,v", [("07/01/1950", 1), ("08/01/1950", 2)])
    _, notes = read_quietly(path)
    assert any("could be day or month first; read as MM/DD (month first)" in n for n in notes)


# ---------------------------------------------------------------------------------------------
# huge files

def test_a_large_file_streams_with_progress_and_memory_for_what_is_used(tmp_path, monkeypatch):
    import timer1.data.csv_io as csv_io

    n = 60_000
    rng = np.random.default_rng(0)
    start = np.datetime64("2000-01-01T00:00:00")
    stamps = (start + np.arange(n).astype("timedelta64[m]") * 5).astype(str)
    table = np.round(rng.normal(size=(n, 6)), 4)
    path = tmp_path / "big.csv"
    path.write_text("date,a,b,c,d,e,OT\n" + "".join(f"{s.replace('T', ' ')},{','.join(map(str, r))}\n"
                                                    for s, r in zip(stamps, table)))
    monkeypatch.setattr(csv_io, "BLOCK_ROWS", 8192)
    calls = []
    tracemalloc.start()
    series = read_csv(path, columns=["OT"], progress=lambda done, size: calls.append((done, size)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert series.channels == ["OT"] and len(series) == n
    np.testing.assert_array_equal(series.column("OT"), table[:, 5])
    assert len(calls) == 8 and calls[-1][0] == calls[-1][1] == path.stat().st_size
    # the file is ~3.6 MB; the old reader kept every cell as a Python string (~25x the file)
    assert peak < 3 * path.stat().st_size, f"peak {peak / 1e6:.1f} MB"
    assert list(series.dates[-1:]) == [str(stamps[-1]).replace("T", " ")]
