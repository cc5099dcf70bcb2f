"""What a new user hits first (issue 38): dates in every form Python and pandas hand over, reproducible
quantiles, one rule for a forecast without a band, long files read as long, date columns anywhere."""

import datetime
import re
import json
import warnings

import numpy as np
import pytest

from timer1 import Forecaster

VALUES = np.sin(np.arange(48) / 3.0) + 5.0


@pytest.fixture(scope="module")
def forecaster():
    return Forecaster.from_pretrained("timer1-tiny")


def test_python_dates_and_pandas_indexes_are_timestamps(forecaster):
    pandas = pytest.importorskip("pandas")
    days = [datetime.date(2020, 1, 1) + datetime.timedelta(days=k) for k in range(48)]
    out = forecaster.predict(VALUES, 2, mode="single", timestamps=days)
    assert out.timestamps == [["2020-02-18", "2020-02-19"]]
    index = pandas.date_range("2020-01-01", periods=48, freq="D")
    indexed = forecaster.predict(VALUES, 2, mode="single", timestamps=index)
    assert indexed.timestamps == [["2020-02-18 00:00:00", "2020-02-19 00:00:00"]]
    np.testing.assert_array_equal(indexed.point, out.point)
    as_series = forecaster.predict(VALUES, 2, mode="single", timestamps=pandas.Series(index))
    assert as_series.timestamps == indexed.timestamps


def test_year_strings_and_numbers_are_years(forecaster):
    out = forecaster.predict(VALUES, 2, mode="single", timestamps=[str(1950 + k) for k in range(48)])
    assert out.timestamps == [["1998", "1999"]]
    numbers = forecaster.predict(VALUES, 2, mode="single", timestamps=list(range(1950, 1998)))
    assert numbers.timestamps == out.timestamps


def test_a_bad_timestamp_is_named_briefly(forecaster):
    with pytest.raises(ValueError) as caught:
        forecaster.predict(VALUES, 2, mode="single", timestamps=[{"day": k} for k in range(48)])
    message = str(caught.value)
    assert "timestamps must be date strings" in message and "(dict)" in message and len(message) < 160


def test_predict_quantiles_is_seeded_like_predict_with_seed_0(forecaster):
    levels = (0.1, 0.5, 0.9)
    first, point = forecaster.predict_quantiles(VALUES, 6, levels, mode="slow")
    again, _ = forecaster.predict_quantiles(VALUES, 6, levels, mode="slow")
    reference = forecaster.predict(VALUES, 6, quantiles=levels, mode="slow", seed=0)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, np.stack([reference.quantiles[q] for q in levels], axis=-1))
    np.testing.assert_array_equal(point, reference.point)


def test_without_a_band_the_other_levels_are_missing_not_the_point(forecaster):
    """A single pass has no band: q0.1 and q0.9 are NaN in the API (null in the service, empty in the
    CSV), never equal to the point, which would read as certainty (issue 38, item 8)."""
    out = forecaster.predict(VALUES, 4, mode="single")
    assert np.isnan(out.quantiles[0.1]).all() and np.isnan(out.quantiles[0.9]).all()
    np.testing.assert_array_equal(out.quantiles[0.5], out.point)
    banded = forecaster.predict(VALUES, 4, mode="auto", seed=0)
    assert (banded.quantiles[0.9] > banded.quantiles[0.1]).all()


def test_the_service_answers_null_where_there_is_no_band(forecaster):
    from timer1.forecast.serve import json_numbers

    assert json.dumps(json_numbers(np.array([[1.5, np.nan]]))) == "[[1.5, null]]"


def test_a_time_zone_comes_back_as_given_without_a_warning(forecaster):
    pandas = pytest.importorskip("pandas")
    stamps = pandas.date_range("2020-03-20", periods=300, freq="h", tz="Europe/Berlin")  # over the summer-time change
    df = pandas.DataFrame({"unique_id": "a", "ds": stamps, "y": np.sin(np.arange(300) / 3.0) + 5.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = forecaster.predict_df(df, 2, mode="single")
    assert str(out["ds"].dt.tz) == "Europe/Berlin"
    assert list(out["ds"]) == [stamps[-1] + pandas.Timedelta(hours=k) for k in (1, 2)]


def long_file(path, shuffled=True):
    rows = [f"{sid},2020-01-{d:02d},{k * 10 + d}" for k, sid in enumerate("abc") for d in range(1, 29)]
    if shuffled:
        rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_long_file_without_id_column_is_refused_naming_the_option(tmp_path, forecast_cli, capsys, shuffled):
    code = forecast_cli.main([str(long_file(tmp_path / "long.csv", shuffled)), "--single-pass", "--horizon", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "--id-column unique_id" in err[0] and "same date" in err[0]


def test_a_date_column_that_is_not_first_is_found(tmp_path, forecast_cli, capsys):
    path = tmp_path / "later.csv"
    path.write_text("sales,day\n" + "".join(f"{d % 7 + 1},2021-03-{d:02d}\n" for d in range(1, 31)))
    assert forecast_cli.main([str(path), "--single-pass", "--horizon", "2"]) == 0
    out, err = capsys.readouterr()
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["2021-03-31", "2021-04-01"]
    assert "column 'day' read as the dates" in err


def test_timestamp_column_picks_the_dates_of_a_wide_file(tmp_path, forecast_cli, capsys):
    path = tmp_path / "two_dates.csv"
    path.write_text("opened,closed,sales\n" + "".join(
        f"2021-01-{d:02d},2021-02-{d:02d},{d % 5}\n" for d in range(1, 29)))
    assert forecast_cli.main([str(path), "--single-pass", "--horizon", "1", "--timestamp-column", "closed"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2021-03-01,")
    assert forecast_cli.main([str(path), "--single-pass", "--horizon", "1", "--timestamp-column", "sales"]) == 2
    assert "column 'sales' does not parse as dates" in capsys.readouterr().err


def test_plot_of_a_wide_file_draws_three_horizons_of_history(tmp_path, forecast_cli, capsys):
    """README promises the last three horizons of history; the picture drew only the look-back."""
    path = tmp_path / "hourly.csv"
    path.write_text("date,load\n" + "".join(
        f"2016-05-{1 + k // 24:02d} {k % 24:02d}:00:00,{10 + np.sin(k / 4):.3f}\n" for k in range(300)))
    picture = tmp_path / "p.svg"
    assert forecast_cli.main([str(path), "--single-pass", "--horizon", "48", "--lookback", "24",
                              "--plot", str(picture), "--out", str(tmp_path / "o.csv")]) == 0
    history = re.search(r'<polyline class="history" points="([^"]*)"', picture.read_text()).group(1)
    assert len(history.split()) == 3 * 48


def mixed_long_file(path, short=False, gap=False):
    """A daily series (store_d), a monthly one (store_m) and, optionally, one of 5 values; store_d
    with an empty cell when ``gap``."""
    rows = [f"store_d,2021-01-{d:02d},{'' if gap and d == 20 else d % 7}" for d in range(1, 31)]
    rows += [f"store_m,{2018 + m // 12}-{m % 12 + 1:02d}-01,{m % 12}" for m in range(36)]
    rows += [f"tiny,2021-01-{d:02d},{d}" for d in range(1, 6)] if short else []
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    return path


def test_a_long_file_gives_each_series_its_own_default_horizon(tmp_path, forecast_cli, capsys):
    path = mixed_long_file(tmp_path / "mixed.csv", gap=True)
    assert forecast_cli.main([str(path), "--id-column", "unique_id", "--single-pass"]) == 0
    out, err = capsys.readouterr()
    ids = [line.split(",")[0] for line in out.splitlines()[1:]]
    assert ids == ["store_d"] * 14 + ["store_m"] * 24          # two weeks of days, two years of months
    assert "warning: store_d: repaired 1 of 30 look-back values" in err


def test_a_short_series_in_a_long_file_is_named_and_can_be_skipped(tmp_path, forecast_cli, capsys):
    path = mixed_long_file(tmp_path / "short.csv", short=True)
    assert forecast_cli.main([str(path), "--id-column", "unique_id", "--single-pass"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "series 'tiny' has fewer than 8 values" in err[0] and "--skip-short" in err[0]
    assert forecast_cli.main([str(path), "--id-column", "unique_id", "--single-pass", "--skip-short"]) == 0
    out, err = capsys.readouterr()
    assert "skipped 1 series with fewer than 8 values: tiny" in err
    assert {line.split(",")[0] for line in out.splitlines()[1:]} == {"store_d", "store_m"}


def test_predict_df_gives_each_series_its_own_default_horizon(forecaster, tmp_path):
    pandas = pytest.importorskip("pandas")
    df = pandas.read_csv(mixed_long_file(tmp_path / "mixed.csv"), parse_dates=["ds"])
    out = forecaster.predict_df(df, mode="single")
    assert list(out["unique_id"]) == ["store_d"] * 14 + ["store_m"] * 24
    assert out["ds"].iloc[14] == pandas.Timestamp("2021-01-01")   # store_m's next month
    with pytest.raises(ValueError, match="series 'tiny' has fewer than 8 values"):
        forecaster.predict_df(pandas.read_csv(mixed_long_file(tmp_path / "s.csv", short=True)), mode="single")


def test_progress_of_the_default_counts_the_callers_windows(forecaster):
    """Reflection also drafts each window's backtest problems; progress counts windows, as the
    report's seconds_per_window does (issue 38, item 11)."""
    from timer1.forecast.forecaster import WindowHints

    contexts = [np.sin(np.arange(150) / (3.0 + k)) + 5.0 for k in range(3)]
    batch = forecaster.prepare(contexts, 6)
    seen = []
    forecaster.forecast_windows(batch.windows, mode="auto", hints=WindowHints([0, 1, 2], full=batch.full),
                                progress=lambda done, total: seen.append((done, total)))
    assert {total for _, total in seen} == {3} and seen[-1] == (3, 3)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_api_errors_name_no_command_line_flag(forecaster):
    mostly_missing = np.where(np.arange(48) % 2 == 0, np.nan, VALUES)
    with pytest.raises(ValueError) as caught:
        forecaster.predict(mostly_missing, 4, mode="single")
    assert "more than 25%" in str(caught.value) and "--" not in str(caught.value)


RUN_WITHOUT_TORCH = """
import runpy, sys
sys.argv = {argv!r}
try:
    runpy.{runner}({target!r}, run_name="__main__")
except SystemExit as done:
    print("exit", done.code, file=sys.stderr)
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def run_without_torch(runner: str, target: str, argv: list[str], cwd) -> list[str]:
    import subprocess
    import sys

    code = RUN_WITHOUT_TORCH.format(argv=argv, runner=runner, target=target)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.stderr.strip().splitlines()


@pytest.mark.parametrize("argv", [["--help"], ["missing.csv"], ["x.csv", "--horizon", "0"], ["x.csv", "--bogus"]])
def test_help_and_bad_arguments_answer_before_torch_is_imported(argv, tmp_path):
    """--help and a bad argument answer in well under a second: torch (3-4 s to import) comes in only
    once the input is known to be good (issue 38, item 14)."""
    from pathlib import Path

    (tmp_path / "x.csv").write_text("date,y\n" + "".join(f"2020-01-{d:02d},{d}\n" for d in range(1, 21)))
    script = str(Path(__file__).resolve().parents[1] / "forecast.py")
    lines = run_without_torch("run_path", script, ["forecast.py", *argv], tmp_path)
    assert lines[-1] == "torch imported: False" and lines[-2] in ("exit 0", "exit 2"), lines


def test_a_port_in_use_is_named_before_the_model_loads(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lines = run_without_torch("run_module", "timer1.forecast.serve", ["serve", "--port", str(port)], tmp_path)
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "another server" in lines[0]
    assert lines[1:] == ["exit 2", "torch imported: False"]
