"""The less common date layouts a CSV or the Python API may carry: YYYYMMDD digits, year numbers,
quarters, month names, ISO weeks. Each is read as dates on its own step, written back as it came,
continued into the future in the same layout, and a reading that is a guess is said in one warning."""

import warnings

import numpy as np
import pytest

from timer1.data.csv_io import future_dates, read_csv, series_from_values
from timer1.data.dates import parse_other_layouts

LAYOUTS = [
    # header, first cells (4 rows), step, the first date as numpy reads it, the next 2 dates, the warning
    ("date", ["19580329", "19580405", "19580412", "19580419"], "weekly", "1958-03-29",
     ["19580426", "19580503"], "8-digit numbers read as dates YYYYMMDD"),
    ("YEAR", ["1700.0", "1701.0", "1702.0", "1703.0"], "yearly", "1700-01-01", ["1704", "1705"],
     "column 'YEAR' read as years"),
    ("year", ["1871", "1872", "1873", "1874"], "yearly", "1871-01-01", ["1875", "1876"], "read as years"),
    ("quarter", ["1959Q3", "1959Q4", "1960Q1", "1960Q2"], "quarterly", "1959-07-01", ["1960Q3", "1960Q4"],
     "read as quarters"),
    ("quarter", ["1959-Q3", "1959-Q4", "1960-Q1", "1960-Q2"], "quarterly", "1959-07-01", ["1960-Q3", "1960-Q4"],
     "read as quarters"),
    ("Month", ["Oct-1-1995", "Nov-1-1995", "Dec-1-1995", "Jan-1-1996"], "monthly", "1995-10-01",
     ["Feb-1-1996", "Mar-1-1996"], None),
    ("Month", ["1995 Oct", "1995 Nov", "1995 Dec", "1996 Jan"], "monthly", "1995-10-01", ["1996 Feb", "1996 Mar"], None),
    ("Month", ["October 1995", "November 1995", "December 1995", "January 1996"], "monthly", "1995-10-01",
     ["February 1996", "March 1996"], None),
    ("week", ["2020-W51", "2020-W52", "2020-W53", "2021-W01"], "weekly", "2020-12-14", ["2021-W02", "2021-W03"],
     "ISO weeks read as their Mondays"),
]


def write(tmp_path, header, cells):
    path = tmp_path / "s.csv"
    path.write_text(f"{header},value\n" + "".join(f"{c},{k}.5\n" for k, c in enumerate(cells)))
    return path


@pytest.mark.parametrize("header, cells, kind, first, following, said", LAYOUTS)
def test_a_layout_is_read_written_back_and_continued(tmp_path, header, cells, kind, first, following, said):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_csv(write(tmp_path, header, cells))
    lines = [str(w.message) for w in caught]
    assert series.channels == ["value"]                       # the date column is never a channel
    assert series.step.kind == kind
    assert series.timestamps[0] == np.datetime64(first, "s")
    np.testing.assert_array_equal(series.column("value"), [0.5, 1.5, 2.5, 3.5])
    written = list(series.dates)
    assert written == (cells if header != "YEAR" else ["1700", "1701", "1702", "1703"])
    assert future_dates(series, n=2) == following
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1 and said in lines[0]


def test_the_python_api_reads_the_same_layouts():
    with pytest.warns(UserWarning, match="read as quarters"):
        series = series_from_values([1.0, 2.0, 3.0], ["2019Q4", "2020Q1", "2020Q2"])
    assert series.step.kind == "quarterly" and future_dates(series, n=1) == ["2020Q3"]


@pytest.mark.parametrize("cells", [["1959Q1", "1959-Q2"],            # two layouts in one column
                                   ["19581329", "19581330"],         # month 13
                                   ["Foo 1995", "Bar 1995"],         # not month names
                                   ["2020-W54", "2020-W55"]])        # no such ISO week
def test_mixed_or_impossible_cells_are_not_dates(cells):
    assert parse_other_layouts(cells) is None


def test_numbers_that_could_be_years_stay_a_channel_without_a_date_name(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("load,other\n1500,1\n1501,2\n1502,3\n")
    with pytest.warns(UserWarning, match="no date column found"):
        series = read_csv(path)
    assert series.channels == ["load", "other"] and series.step.kind == "index"
