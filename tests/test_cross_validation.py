"""Rolling-origin cross-validation (timer1.forecast.cross_validation): statsforecast's windows and layout,
and every window exactly what `predict` gives on the prefix up to its cutoff (issue 41, build 4)."""

import numpy as np
import pytest

from timer1 import Forecaster
from timer1.data.csv_io import read_csv
from timer1.forecast.cross_validation import Folds


@pytest.fixture(scope="module")
def forecaster():
    return Forecaster.from_pretrained("timer1-tiny")


def test_windows_end_the_series_and_step_back():
    assert Folds(6, 3).ends(100, "a") == [82, 88, 94]              # the last window's 6 values end the series
    assert Folds(6, 3, step_size=2).ends(100, "a") == [90, 92, 94]
    with pytest.raises(ValueError, match="series 'short' has 20 values: 3 windows of 6 steps, 6 apart, need at least 26"):
        Folds(6, 3).ends(20, "short")
    with pytest.raises(ValueError, match="h must be a positive whole number"):
        Folds(0)


def etth1_frame(shared_data, pandas):
    series = read_csv(shared_data / "ETTh1.csv", columns=["HUFL", "OT"])
    stamps = pandas.to_datetime(list(series.dates[-240:]))
    return pandas.concat([pandas.DataFrame({"unique_id": c, "ds": stamps, "y": series.column(c)[-240:]})
                          for c in ("HUFL", "OT")], ignore_index=True)


def test_each_window_is_predict_on_the_prefix(forecaster, shared_data):
    """The table equals a hand-written loop of predict calls, one series and one cutoff at a time."""
    pandas = pytest.importorskip("pandas")
    df = etth1_frame(shared_data, pandas)
    cv = forecaster.cross_validation(df, 12, n_windows=2, step_size=24)
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert len(cv) == 2 * 2 * 12
    for key in ("HUFL", "OT"):
        one = df[df.unique_id == key]
        for end in (240 - 12 - 24, 240 - 12):
            rows = cv[(cv.unique_id == key) & (cv.cutoff == one.ds.iloc[end - 1])]
            out = forecaster.predict(one.y.to_numpy()[:end], 12, timestamps=list(one.ds.iloc[:end]), seed=0)
            np.testing.assert_array_equal(rows.forecast.to_numpy(), out.point[0])
            np.testing.assert_array_equal(rows["q0.1"].to_numpy(), out.quantiles[0.1][0])
            np.testing.assert_array_equal(rows.y.to_numpy(), one.y.to_numpy()[end:end + 12])
            assert list(rows.ds) == list(one.ds.iloc[end:end + 12]) and set(rows.source) == {out.source[0]}


def test_the_command_line_writes_the_same_table_and_scores_it(forecaster, shared_data, tmp_path, forecast_cli, capsys):
    pandas = pytest.importorskip("pandas")
    df = etth1_frame(shared_data, pandas)
    path = tmp_path / "long.csv"
    df.assign(ds=df.ds.dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(path, index=False)
    assert forecast_cli.main([str(path), "--id-column", "unique_id", "--horizon", "12", "--cross-validation", "2",
                              "--step-size", "24", "--single-pass", "--out", str(tmp_path / "cv.csv")]) == 0
    err = capsys.readouterr().err
    written = pandas.read_csv(tmp_path / "cv.csv", parse_dates=["ds", "cutoff"])
    api = forecaster.cross_validation(df, 12, n_windows=2, step_size=24, mode="single")
    np.testing.assert_allclose(written.forecast, api.forecast, rtol=1e-9)
    assert list(written.cutoff) == list(api.cutoff) and written["q0.1"].isna().all()   # a single pass: no band
    assert "timer1 (single): MAE" in err and "seasonal naive: MAE" in err and "last value: MAE" in err
