"""Calendars with closed days or hours (timer1.data.calendars): business-day files are read as five
steps a week, not as weeks missing two days (issue 38, item 2); trading hours likewise; scattered gaps
stay gaps."""

import warnings

import numpy as np
import pytest

from timer1.core.baselines import period_for_step
from timer1.data import calendars
from timer1.data.csv_io import future_dates, read_csv, series_from_values
from timer1.data.dates import Step, grid_positions
from timer1.forecast.resolve import default_horizon


def business_days(start: str, stop: str) -> np.ndarray:
    days = np.arange(np.datetime64(start), np.datetime64(stop))
    return days[calendars.weekday((days - np.datetime64("1970-01-01")).astype(np.int64)) < 5]


def write(path, dates, values):
    path.write_text("date,value\n" + "".join(f"{d},{v:.3f}\n" for d, v in zip(dates, values)))
    return path


def test_weekday_of_known_dates():
    days = (np.array(["2024-01-01", "2024-01-06", "2024-01-07"], dtype="datetime64[D]")
            - np.datetime64("1970-01-01")).astype(np.int64)
    assert calendars.weekday(days).tolist() == [0, 5, 6]          # Monday, Saturday, Sunday


def test_a_business_day_file_is_five_steps_a_week(tmp_path):
    dates = business_days("2024-01-01", "2024-04-01")               # Mon 1 Jan .. Fri 29 Mar 2024
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(write(tmp_path / "stock.csv", dates, np.arange(len(dates))))
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "open Monday to Friday" in said[0] and "business-day" in said[0]
    assert series.step.weekdays == (0, 1, 2, 3, 4) and series.step.name == "business-day"
    assert period_for_step(series.step) == 5 and default_horizon(series) == 10
    # Fri 29 Mar -> Mon 1 Apr: the weekend is skipped, not forecast
    assert future_dates(series, None, 3) == ["2024-04-01", "2024-04-02", "2024-04-03"]
    positions = grid_positions(series.timestamps, series.step)
    np.testing.assert_array_equal(positions, np.arange(len(dates)))   # no step missing
    # a missing Wednesday is still one missing step
    holed = np.delete(dates, 7)
    np.testing.assert_array_equal(grid_positions(holed.astype("datetime64[s]"), series.step)[6:9], [6, 8, 9])


def test_business_days_through_the_api():
    dates = [str(d) for d in business_days("2024-01-01", "2024-02-10")]   # ends Fri 9 Feb
    series = series_from_values(np.arange(len(dates), dtype=float), dates)
    assert series.step.weekdays == (0, 1, 2, 3, 4)
    assert future_dates(series, None, 2) == ["2024-02-12", "2024-02-13"]


def test_trading_hours_are_eight_steps_a_day(tmp_path):
    days = business_days("2024-01-01", "2024-02-03")                  # five weeks, ends Fri 2 Feb
    stamps = [f"{d} {h:02d}:00:00" for d in days for h in range(9, 17)]
    series = read_csv(write(tmp_path / "hours.csv", stamps, np.arange(len(stamps))))
    assert series.step.kind == "hourly" and series.step.times == tuple(3600 * h for h in range(9, 17))
    assert series.step.weekdays == (0, 1, 2, 3, 4)
    assert period_for_step(series.step) == 8 and default_horizon(series) == 16
    # Fri 2 Feb 16:00 -> Mon 5 Feb 09:00
    assert future_dates(series, None, 2) == ["2024-02-05 09:00:00", "2024-02-05 10:00:00"]
    assert calendars.describe(series.step) == "open 09:00 to 16:00, Monday to Friday"


def test_a_week_that_wraps_is_described_from_its_first_open_day():
    step = Step("daily", 86400.0, weekdays=(0, 1, 2, 3, 6))          # Sunday to Thursday
    assert calendars.describe(step) == "open Sunday to Thursday"
    sunday_to_monday = np.array(["2024-01-04", "2024-01-07", "2024-01-08"], dtype="datetime64[s]")  # Thu, Sun, Mon
    np.testing.assert_array_equal(calendars.positions(sunday_to_monday, step), [0, 1, 2])


def test_scattered_gaps_are_not_a_calendar(tmp_path):
    """Missing days that are not one stretch of the week stay missing values, reported as such."""
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-03-01"))
    weekdays = calendars.weekday((days - np.datetime64("1970-01-01")).astype(np.int64))
    kept = days[(weekdays != 1) & (weekdays != 3)]                      # no Tuesday, no Thursday
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(write(tmp_path / "gappy.csv", kept, np.arange(len(kept))))
    assert series.step.weekdays == () and series.step.name == "daily"
    assert any("daily steps are missing" in str(w.message) for w in caught)


def test_a_short_daily_file_is_not_read_as_a_calendar():
    dates = [str(d) for d in business_days("2024-01-01", "2024-01-13")]  # two weeks: too short to tell
    assert series_from_values(np.arange(len(dates), dtype=float), dates).step.weekdays == ()


@pytest.mark.parametrize("step, period", [
    (Step("hourly", 3600.0), 24), (Step("minutes", 900.0), 96), (Step("daily", 86400.0), 7),
    (Step("monthly", 30 * 86400.0, 1), 12), (Step("quarterly", 91 * 86400.0, 3), 4), (Step("index", 1.0), None),
    (Step("daily", 86400.0, weekdays=(0, 1, 2, 3, 4, 5)), 6), (Step("hourly", 3600.0, times=(0, 3600, 7200)), 3)])
def test_period_for_step(step, period):
    assert period_for_step(step) == period
