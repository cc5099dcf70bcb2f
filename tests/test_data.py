"""timer1.data (csv_io, dates, protocol, repair, synthetic): CSV reading, date styles and steps, the paper's protocol, windows, synthetic series."""

import warnings

import numpy as np
import pytest

from timer1.core.window import interpolate_gaps
from timer1.data.csv_io import future_dates, read_csv, write_csv
from timer1.data.dates import Step
from timer1.data.protocol import (make_window, paper_windows, protocol_for, rolling_windows, split_bounds,
                                  split_test_region, train_windows)
from timer1.data.repair import forecast_window
from timer1.data.synthetic import synthetic_frame, synthetic_series

# Paper sample counts (README: 10 windows per channel).
PAPER_COUNTS = {"ETTh1": 70, "ETTh2": 70, "exchange": 80, "aqwan": 110, "aqshunyi": 110, "wind": 70, "nasdaq": 50}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_text(dates, values, header="date,value"):
    return header + "\n" + "\n".join(f"{d},{v}" for d, v in zip(dates, values)) + "\n"


# ---------------------------------------------------------------------------------------------
# the paper's protocol on the real data

@pytest.mark.parametrize("dataset", list(PAPER_COUNTS))
def test_paper_sample_counts(shared_data, dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real data reads cleanly and no window may be skipped
        series = read_csv(shared_data / f"{dataset}.csv")
        windows = paper_windows(series)
    assert len(windows) == PAPER_COUNTS[dataset]
    p = protocol_for(dataset)
    assert {len(w.history) for w in windows} == {p.lookback}
    assert {len(w.target) for w in windows} == {p.horizon}
    per_channel = {c: [w for w in windows if w.channel == c] for c in series.channels}
    assert all(len(ws) == 10 for ws in per_channel.values())
    test_start, _ = split_test_region(series, dataset)
    for ws in per_channel.values():
        # the first target starts at the test start; windows advance by the stride
        assert ws[0].start + p.lookback == test_start
        assert [w.start - ws[0].start for w in ws] == [i * p.stride for i in range(10)]
        for w in ws:
            col = series.column(w.channel)
            np.testing.assert_array_equal(w.target, col[w.start + p.lookback:w.start + p.lookback + p.horizon])
            assert w.history_dates == series.dates[w.start:w.start + p.lookback]
            assert w.target_dates == series.dates[w.start + p.lookback:w.start + p.lookback + p.horizon]


def test_etth1_ot_first_window_boundary(shared_data):
    series = read_csv(shared_data / "ETTh1.csv")
    ot = paper_windows(series, channels=["OT"])
    assert len(ot) == 10
    first = ot[0]
    assert first.start == 11424  # inputs are rows [11520 - 96, 11520)
    assert first.history_dates[0] == "2017-10-20 00:00:00"
    assert first.history_dates[-1] == "2017-10-23 23:00:00"
    assert first.target_dates[0] == "2017-10-24 00:00:00"
    assert ot[1].start == 11520 and ot[9].start == 11424 + 9 * 96
    # ETT inputs are not rounded (the official code keeps them raw)
    np.testing.assert_array_equal(first.history, series.column("OT")[11424:11520])
    assert split_bounds(series) == (8640, 11520)
    assert split_test_region(series) == (11520, 14400)


def test_ratio_split_uses_len_minus_int_20_percent(shared_data):
    """Test start = T - int(0.2 T) (Time-Series-Library / official code), not int(0.8 T)."""
    series = read_csv(shared_data / "exchange.csv")
    T = len(series)
    assert T - int(0.2 * T) != int(0.8 * T)  # this file tells the two rules apart
    assert split_bounds(series) == (int(0.7 * T), T - int(0.2 * T))
    first = paper_windows(series, channels=["Japan"])[0]
    start = T - int(0.2 * T)
    assert first.start == start - 96
    col = series.column("Japan")
    np.testing.assert_array_equal(first.history, np.round(col[start - 96:start], 3))  # inputs rounded
    np.testing.assert_array_equal(first.target, col[start:start + 96])  # targets raw
    assert not np.array_equal(first.target, np.round(first.target, 3))


def test_nasdaq_stride_one(shared_data):
    series = read_csv(shared_data / "nasdaq.csv")
    assert len(series) == 1244 and series.timestamps is None and series.step.kind == "index"
    closes = paper_windows(series, channels=["Close"])
    assert [w.start for w in closes] == list(range(996 - 36, 996 - 36 + 10))  # 1244 - int(248.8) = 996
    assert closes[0].target_dates[0] == "997.0"  # row 996 holds the running index 997.0


def test_rolling_windows_cover_test_region(shared_data):
    series = read_csv(shared_data / "ETTh1.csv")
    windows = rolling_windows(series, 96, 96, channels=["OT"])  # stride defaults to the horizon
    assert len(windows) == (14400 - 11520) // 96
    assert windows[0].start + 96 == 11520 and windows[-1].start + 192 <= 14400
    ws = rolling_windows(series, 48, 24, stride=12, channels=["HUFL", "OT"])
    starts = [w.start for w in ws if w.channel == "OT"]
    assert starts[0] == 11520 - 48 and np.all(np.diff(starts) == 12)
    assert starts[-1] + 48 + 24 <= 14400 < starts[-1] + 12 + 48 + 24


def test_train_windows_stay_in_train_region(shared_data):
    series = read_csv(shared_data / "ETTh1.csv")
    train_end, _ = split_bounds(series)
    ws = train_windows(series, 96, 96, stride=48, channels=["OT"])
    assert len(ws) == (train_end - 192) // 48 + 1
    assert all(w.start + 192 <= train_end for w in ws)
    with pytest.raises(ValueError, match="positive"):
        train_windows(series, 96, 0, 24)


# ---------------------------------------------------------------------------------------------
# date styles, steps, future dates

def test_real_date_styles(shared_data):
    ett = read_csv(shared_data / "ETTh1.csv")
    assert ett.step.kind == "hourly" and ett.step.seconds == 3600
    assert ett.timestamps[0] == np.datetime64("2016-07-01T00:00:00")
    assert future_dates(ett, n=2) == ["2018-06-26 20:00:00", "2018-06-26 21:00:00"]
    wind = read_csv(shared_data / "wind.csv")
    assert wind.step.kind == "minutes" and wind.step.seconds == 900
    assert wind.dates[0] == "2020/1/1 0:00" and wind.timestamps[1] == np.datetime64("2020-01-01T00:15")
    assert future_dates(wind, n=2) == ["2021/5/22 0:15", "2021/5/22 0:30"]
    nasdaq = read_csv(shared_data / "nasdaq.csv")
    assert nasdaq.timestamps is None and nasdaq.dates[:2] == ["1.0", "2.0"]
    assert future_dates(nasdaq, n=3) == ["1245.0", "1246.0", "1247.0"]
    exchange = read_csv(shared_data / "exchange.csv")
    assert exchange.step.kind == "daily" and exchange.channels[0] == "Australia"
    assert future_dates(exchange, n=1) == ["2010/10/11 0:00"]


@pytest.mark.parametrize("dates, kind, expected_next", [
    (["2020-01-31", "2020-02-29", "2020-03-31", "2020-04-30"], "monthly",
     ["2020-05-31", "2020-06-30", "2020-07-31"]),  # month ends stay month ends
    (["2020-01-15", "2020-02-15", "2020-03-15"], "monthly", ["2020-04-15", "2020-05-15"]),
    (["2020-10", "2020-11", "2020-12"], "monthly", ["2021-01", "2021-02"]),  # month style
    (["2019-03-31", "2019-06-30", "2019-09-30", "2019-12-31"], "quarterly", ["2020-03-31", "2020-06-30"]),
    (["2020-01-01", "2020-04-01", "2020-07-01"], "quarterly", ["2020-10-01", "2021-01-01"]),
    (["2017-12-31", "2018-12-31", "2019-12-31"], "yearly", ["2020-12-31", "2021-12-31"]),
    (["2020-01-06", "2020-01-13", "2020-01-20"], "weekly", ["2020-01-27", "2020-02-03"]),
    (["2020-02-27", "2020-02-28", "2020-02-29"], "daily", ["2020-03-01", "2020-03-02"]),
    (["2020/12/31 22:00", "2020/12/31 23:00"], "hourly", ["2021/1/1 0:00", "2021/1/1 1:00"]),
    (["2020-01-01T00:00:00", "2020-01-01T00:05:00"], "minutes", ["2020-01-01T00:10:00"]),
])
def test_synthetic_date_styles_and_future_dates(tmp_path, dates, kind, expected_next):
    path = write(tmp_path, "s.csv", csv_text(dates, range(len(dates))))
    series = read_csv(path)
    assert series.step.kind == kind
    assert series.timestamps is not None and series.dates == dates
    assert future_dates(series, n=len(expected_next)) == expected_next
    # from the last date alone (string or datetime64) plus the step, the same continuation
    assert future_dates(dates[-1], series.step, len(expected_next)) == expected_next
    assert future_dates(series.timestamps[-1], series.step, len(expected_next)) == expected_next


def test_month_end_continuation_handles_leap_years():
    step = Step("monthly", 0.0, 1, "{Y:04d}-{m:02d}-{d:02d}")
    assert future_dates("2023-12-31", step, 3) == ["2024-01-31", "2024-02-29", "2024-03-31"]
    assert future_dates("2024-01-30", step, 2) == ["2024-02-29", "2024-03-30"]  # clipped, not month end


def test_unparseable_dates_warn_and_use_running_index(tmp_path):
    path = write(tmp_path, "odd.csv", "date,x\nmonday,1\ntuesday,2\nwednesday,3\n")
    with pytest.warns(UserWarning, match="does not parse as dates"):
        series = read_csv(path)
    assert series.timestamps is None and series.step.kind == "index"
    assert series.dates == ["0", "1", "2"]
    np.testing.assert_array_equal(series.values[:, 0], [1, 2, 3])


def test_messy_cells_become_nan_or_numbers(tmp_path):
    text = 'date,a,b\n2020-01-01,1,"1,234.5"\n2020-01-02,NA,inf\n2020-01-03,x, 7 \n'
    series = read_csv(write(tmp_path, "messy.csv", text))
    np.testing.assert_array_equal(series.values, [[1, 1234.5], [np.nan, np.nan], [np.nan, 7]])
    assert series.step.kind == "daily"


def test_no_date_column_makes_every_column_a_channel(tmp_path):
    path = write(tmp_path, "plain.csv", "a,b\n1,10\n2,20\n3,30\n")
    with pytest.warns(UserWarning, match="no date column"):
        series = read_csv(path)
    assert series.channels == ["a", "b"] and series.values.shape == (3, 2)


# ---------------------------------------------------------------------------------------------
# missing cells

def test_gaps_are_interpolated_in_history_only(tmp_path):
    dates = [f"2020-01-01 {h:02d}:00:00" for h in range(10)]
    cells = ["1", "", "3", "", "", "6", "7", "", "9", "10"]
    series = read_csv(write(tmp_path, "gaps.csv", csv_text(dates, cells)))
    assert np.isnan(series.values[[1, 3, 4, 7], 0]).all()  # Series keeps NaN
    w = make_window(series, "value", 0, 6, 4)
    np.testing.assert_allclose(w.history, [1, 2, 3, 4, 5, 6])  # linear between neighbours
    assert np.isnan(w.target[1]) and w.target[0] == 7 and w.target[3] == 10  # target never filled
    np.testing.assert_allclose(interpolate_gaps(np.array([np.nan, np.nan, 2.0, np.nan, 4.0, np.nan])),
                               [2, 2, 2, 3, 4, 4])  # edges take the nearest valid value
    with pytest.raises(ValueError, match="no valid value"):
        interpolate_gaps(np.array([np.nan, np.nan]))


def test_windows_with_missing_target_are_excluded(tmp_path):
    series = synthetic_frame(1000, seed=1, channels=("a", "b"), name="mydata")
    test_start = series.values.shape[0] - int(0.2 * 1000)  # unknown name: 70/10/20
    p = protocol_for("mydata")
    assert (p.lookback, p.horizon, p.stride) == (96, 96, 96)
    hole_row = test_start + 96 + 5  # inside the target of window 1 (a history row of window 2)
    series.values[hole_row, 0] = np.nan
    path = tmp_path / "mydata.csv"
    write_csv(series, path)
    series = read_csv(path)
    assert np.isnan(series.column("a")[hole_row])
    with pytest.warns(UserWarning, match="missing values"):
        windows = paper_windows(series)
    a_starts = [w.start for w in windows if w.channel == "a"]
    # window 1 (its target has the hole) is gone: test region [800, 1000) fits 2 windows, minus one
    assert a_starts == [test_start - 96] and len([w for w in windows if w.channel == "b"]) == 2
    rolled = rolling_windows(series, 96, 96, stride=1, channels=["a"])
    assert all(not (w.start + 96 <= hole_row < w.start + 192) for w in rolled)
    assert all(np.isfinite(w.target).all() and np.isfinite(w.history).all() for w in rolled)
    assert any(w.start <= hole_row < w.start + 96 for w in rolled)  # history gaps are fine


# ---------------------------------------------------------------------------------------------
# bad input

def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such CSV"):
        read_csv(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="empty"):
        read_csv(write(tmp_path, "empty.csv", ""))
    with pytest.raises(ValueError, match="header only"):
        read_csv(write(tmp_path, "header.csv", "date,a,b\n"))
    with pytest.warns(UserWarning, match="no numeric value"):
        with pytest.raises(ValueError, match="no numeric column"):
            read_csv(write(tmp_path, "text.csv", "date,name\n2020-01-01,x\n2020-01-02,y\n"))
    with pytest.raises(ValueError, match="line 3 has 4 fields"):
        read_csv(write(tmp_path, "ragged.csv", "date,a\n2020-01-01,1\n2020-01-02,2,3,4\n"))
    with pytest.raises(ValueError, match="not a readable CSV"):
        path = tmp_path / "binary.csv"
        path.write_bytes(b"date,a\n\xff\xfe\x00\x81,1\n")
        read_csv(path)
    with pytest.raises(ValueError, match="directory"):
        read_csv(tmp_path)
    series = read_csv(write(tmp_path, "ok.csv", "date,a\n2020-01-01,1\n2020-01-02,2\n"))
    with pytest.raises(ValueError, match="no channel 'zz'"):
        series.column("zz")
    with pytest.raises(ValueError, match="too few for the ETT split"):
        split_bounds(series, "ETTh1")


def test_write_read_round_trip(tmp_path):
    series = synthetic_frame(50, seed=4, channels=("x", "y"), start="2021/3/1 0:00",
                             step=Step("minutes", 900.0, 0, "{Y:04d}/{m}/{d} {H}:{M:02d}"))
    path = tmp_path / "rt.csv"
    write_csv(series, path)
    back = read_csv(path)
    assert back.dates == series.dates and back.channels == ["x", "y"]
    assert back.dates[:2] == ["2021/3/1 0:00", "2021/3/1 0:15"]
    np.testing.assert_array_equal(back.values, series.values)
    assert back.step == series.step


# ---------------------------------------------------------------------------------------------
# synthetic series

def test_synthetic_series_is_seeded():
    a = synthetic_series(300, 7, trend=0.01, level_shifts=2, spikes=3, noise=0.5)
    b = synthetic_series(300, 7, trend=0.01, level_shifts=2, spikes=3, noise=0.5)
    c = synthetic_series(300, 8, trend=0.01, level_shifts=2, spikes=3, noise=0.5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (300,) and not np.allclose(a, c)


def test_synthetic_components():
    t = np.arange(200)
    np.testing.assert_allclose(synthetic_series(200, 0, level=5.0, trend=0.5, periods=(), noise=0.0), 5 + 0.5 * t)
    periodic = synthetic_series(240, 0, periods=((24, 2.0),), noise=0.0)
    np.testing.assert_allclose(periodic[24:], periodic[:-24], atol=1e-9)
    assert np.ptp(periodic) == pytest.approx(4.0, abs=0.05)  # amplitude 2 around the level
    shifted = synthetic_series(100, 3, periods=(), level_shifts=1, shift_size=3.0, noise=0.0)
    steps = np.flatnonzero(np.diff(shifted))
    assert len(steps) == 1 and abs(np.diff(shifted)[steps[0]]) == pytest.approx(3.0)
    spiky = synthetic_series(100, 3, periods=(), spikes=4, spike_size=5.0, noise=0.0)
    assert np.sum(np.isclose(np.abs(spiky - 10.0), 5.0)) == 4 and np.sum(np.isclose(spiky, 10.0)) == 96
    noisy = synthetic_series(20000, 1, periods=(), noise=0.3)
    assert np.std(noisy) == pytest.approx(0.3, rel=0.05)


def test_forecast_window_continues_the_file(shared_data):
    series = read_csv(shared_data / "wind.csv")
    w, repairs = forecast_window(series, "target", 8, 3)
    assert repairs.count == 0
    np.testing.assert_array_equal(w.history, series.column("target")[-8:])
    assert w.history_dates[-1] == "2021/5/22 0:00" and w.target_dates == ["2021/5/22 0:15", "2021/5/22 0:30", "2021/5/22 0:45"]
    assert w.target.shape == (3,) and np.isnan(w.target).all()  # the future is unknown, never invented
    with pytest.raises(ValueError, match="lookback 0"):
        forecast_window(series, "target", 0, 3)
