"""Long-format frames (timer1.forecast.frames): `Forecaster.predict_df` and `predict_quantiles` give the
numbers `predict` gives on the same series; ids, timestamps and columns come back in statsforecast's
long layout; bad frames are one-line errors; without pandas, one clear ImportError."""

import sys

import numpy as np
import pandas   # a test dependency (pyproject's [test]), never one of timer1's own
import pytest

from timer1.core.slow_think import SlowThinkConfig
from timer1.forecast.forecaster import Forecaster


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster.from_pretrained("timer1-tiny", threads=1, config=SlowThinkConfig(samples=2, rounds=1))


def monthly(k: int, n: int) -> tuple[list, np.ndarray]:
    dates = list(pandas.date_range("2015-01-01", periods=n, freq="MS"))
    t = np.arange(n)
    return dates, 20 + 5 * np.sin(2 * np.pi * t / 12 + k) + 0.2 * k * t


def long_frame() -> pandas.DataFrame:
    parts = []
    for name, n in (("store_b", 40), ("store_a", 52), ("store_c", 46)):   # lengths differ; ids not sorted
        dates, values = monthly(len(parts), n)
        parts.append(pandas.DataFrame({"unique_id": name, "ds": dates, "y": values}))
    return pandas.concat(parts, ignore_index=True)


@pytest.mark.parametrize("mode", ["auto", "single"])
def test_predict_df_gives_what_predict_gives(forecaster, mode):
    df = long_frame()
    out = forecaster.predict_df(df, 6, quantile_levels=(0.1, 0.5, 0.9), mode=mode, seed=3)
    ids = ["store_b", "store_a", "store_c"]
    contexts = [df.loc[df.unique_id == i, "y"].to_numpy() for i in ids]
    stamps = [list(df.loc[df.unique_id == i, "ds"]) for i in ids]
    alone = forecaster.predict(contexts, 6, mode=mode, timestamps=stamps, seed=3)
    assert list(out.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert list(out.unique_id) == [i for i in ids for _ in range(6)]
    np.testing.assert_array_equal(out.forecast.to_numpy().reshape(3, 6), alone.point)
    for q in (0.1, 0.5, 0.9):
        np.testing.assert_array_equal(out[f"q{q:g}"].to_numpy().reshape(3, 6), alone.quantiles[q])
    assert list(out.source[::6]) == alone.source
    last = df.groupby("unique_id").ds.max()
    for i in ids:   # each id's own next six months
        expected = pandas.date_range(last[i], periods=7, freq="MS")[1:]
        assert list(out.loc[out.unique_id == i, "ds"]) == list(expected)


def test_row_order_does_not_matter_and_the_answer_reads_back_from_csv(forecaster, tmp_path):
    df = long_frame()
    shuffled = df.sample(frac=1.0, random_state=0)
    a = forecaster.predict_df(df, 4, mode="single")
    b = forecaster.predict_df(shuffled, 4, mode="single")
    b = b.set_index("unique_id").loc[list(a.unique_id.unique())].reset_index()   # ids come in first-seen order
    pandas.testing.assert_frame_equal(a, b)
    a.to_csv(tmp_path / "out.csv", index=False)
    back = pandas.read_csv(tmp_path / "out.csv", parse_dates=["ds"])
    assert set(back.unique_id) == set(df.unique_id)
    for _, rows in back.groupby("unique_id"):   # regular: month starts one after another
        assert list(rows.ds) == list(pandas.date_range(rows.ds.iloc[0], periods=len(rows), freq="MS"))


def test_other_column_names_and_a_running_index(forecaster):
    df = pandas.DataFrame({"item": np.repeat(["x", "y"], 30), "t": np.tile(np.arange(100, 130), 2),
                           "sales": np.r_[np.arange(30.0), 50 - np.arange(30.0)]})
    out = forecaster.predict_df(df, 3, id_column="item", timestamp_column="t", target="sales", quantile_levels=[0.25],
                                mode="single")
    assert list(out.columns) == ["item", "t", "forecast", "q0.25", "source"]
    assert list(out.t) == [130, 131, 132] * 2 and pandas.api.types.is_numeric_dtype(out.t)


def test_predict_quantiles_stacks_the_levels_asked(forecaster):
    x = 10 + np.sin(np.arange(48) / 3.0)
    quantiles, point = forecaster.predict_quantiles([x, x + 1], 5, [0.9, 0.1], mode="single", seed=1)
    alone = forecaster.predict([x, x + 1], 5, quantiles=[0.9, 0.1], mode="single", seed=1)
    assert quantiles.shape == (2, 5, 2)
    np.testing.assert_array_equal(quantiles[..., 0], alone.quantiles[0.9])
    np.testing.assert_array_equal(quantiles[..., 1], alone.quantiles[0.1])
    np.testing.assert_array_equal(point, alone.point)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns="y"), "the frame has no column 'y'"),
    (lambda df: df.assign(y="n/a"), "column 'y' must hold numbers"),
])
def test_bad_frames_are_one_line(forecaster, change, message):
    with pytest.raises(ValueError, match=message):
        forecaster.predict_df(change(long_frame()), 3)
    with pytest.raises(ValueError, match="takes a pandas DataFrame"):
        forecaster.predict_df({"y": [1, 2]}, 3)


def test_without_pandas_the_error_says_what_to_install(forecaster, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)   # import pandas now raises ImportError
    with pytest.raises(ImportError, match="predict_df needs pandas"):
        forecaster.predict_df(None, 3)
