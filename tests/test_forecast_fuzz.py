"""forecast.py over generated messy CSVs (issue 16): every run either exits 0 with a finite forecast of
the requested length whose dates continue the last date, or exits 2 with one ``error:`` line; the
input is never changed and no file other than the requested outputs appears.

Each case draws, from one seed: delimiter (with decimal commas for ``;``), encoding, date layout,
row order, missing rows, bad cells, an outlier and the size. The expected dates are computed here
from the generator's own grid, independently of timer1.data.dates. main() runs in-process (no interpreter
start per case) with a tiny random checkpoint, so the whole test takes seconds.
"""

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

CASES = 40
LAYOUTS = {  # name: (step, how a datetime is written)
    "iso hourly": ("hourly", lambda t: t.strftime("%Y-%m-%d %H:%M:%S")),
    "iso Z": ("hourly", lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
    "offset": ("hourly", lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+02:00")),
    "slashes": ("hourly", lambda t: f"{t.year}/{t.month}/{t.day} {t.hour}:{t.minute:02d}"),
    "daily": ("daily", lambda t: t.strftime("%Y-%m-%d")),
    "us monthly": ("monthly", lambda t: t.strftime("%m/%d/%Y")),
    "dotted daily": ("daily", lambda t: t.strftime("%d.%m.%Y")),
    "index": ("index", None),
    "words": ("words", None),  # dates that do not parse: a running row index, with a warning
}



def grid(step: str, n: int) -> list:
    """n + 400 points of the step: the rows, then room for any horizon the case asks for."""
    if step in ("index", "words"):
        return list(range(1, n + 401))
    if step == "monthly":
        return [dt.datetime(1950 + (6 + k) // 12, (6 + k) % 12 + 1, 1) for k in range(n + 400)]
    delta = dt.timedelta(hours=1) if step == "hourly" else dt.timedelta(days=1)
    return [dt.datetime(2020, 1, 1) + k * delta for k in range(n + 400)]


def make_case(seed: int, folder: Path):
    """(csv path, argv options, the dates a forecast must carry after the last row, or None when the
    file repeats a date and must be refused)."""
    rng = np.random.default_rng(seed)
    layout = list(LAYOUTS)[seed % len(LAYOUTS)]
    step, write_date = LAYOUTS[layout]
    n = int(rng.integers(30, 400)) if rng.random() < 0.9 else int(rng.integers(2000, 5000))
    points = grid(step, n)
    label = {"index": lambda p: f"{p}.0", "words": lambda p: f"day {p}"}.get(step, write_date)
    keep = np.sort(rng.choice(n, size=n - int(rng.integers(0, n // 10 + 1)), replace=False)) \
        if step not in ("index", "words") else np.arange(n)  # no grid to fill: the rows are the steps
    t = np.arange(n)
    values = 50 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, n)
    cells = [f"{v:.3f}" for v in values]
    for row in rng.choice(n, size=int(rng.integers(0, 4)), replace=False):
        cells[row] = str(rng.choice(["n/a", "oops", "inf", "", "-"]))
    if rng.random() < 0.5:
        cells[int(rng.integers(n - 20, n))] = "1e9"
    delimiter = str(rng.choice([",", ";", "\t"]))
    if delimiter == ";":
        cells = [c.replace(".", ",") for c in cells]
    rows = [(label(points[k]), cells[k]) for k in keep]
    duplicated = rng.random() < 0.1 and step != "words"
    if duplicated:  # the same date twice: no order can be trusted, an error naming the lines
        rows.insert(int(rng.integers(0, len(rows))), rows[int(rng.integers(0, len(rows)))])
    order = str(rng.choice(["oldest first", "newest first", "shuffled"], p=[0.6, 0.2, 0.2])) if step != "words" \
        else "oldest first"
    if order == "newest first":
        rows = rows[::-1]
    elif order == "shuffled":
        rows = [rows[k] for k in rng.permutation(len(rows))]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows([("date", "valeur é"), *rows])
    path = folder / f"case{seed}.csv"
    path.write_bytes(buffer.getvalue().encode(str(rng.choice(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))))
    horizon = int(rng.integers(1, 30))
    lookback = int(rng.choice([8, 24, 48]))
    last = int(keep[-1])
    expected = [label(p) for p in points[last + 1:last + 1 + horizon]] if step != "words" \
        else [str(len(rows) + k) for k in range(horizon)]
    options = ["--horizon", str(horizon), "--lookback", str(lookback)]
    return path, options, (None if duplicated else expected)


@pytest.mark.parametrize("seed", range(CASES))
def test_fuzzed_csvs_forecast_or_fail_in_one_line(seed, tmp_path, compact_checkpoint, forecast_cli, capsys):
    path, options, expected = make_case(seed, tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    outputs = [tmp_path / "fc.csv"] + ([tmp_path / "fc.svg"] if seed % 3 == 0 else [])
    argv = [str(path), "--model", str(compact_checkpoint), "--samples", "2", "--rounds", "1",
            "--max-new-tokens", "6", "--out", str(outputs[0]), *options]
    if len(outputs) == 2:
        argv += ["--plot", str(outputs[1])]
    code = forecast_cli.main(argv)
    captured = capsys.readouterr()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and captured.out == ""
    if code == 2 or expected is None:
        assert code == 2, "duplicated dates must be refused"
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        assert sorted(tmp_path.iterdir()) == [path]
        return
    assert code == 0, captured.err
    assert sorted(tmp_path.iterdir()) == sorted([path, *outputs])
    rows = list(csv.DictReader(outputs[0].open()))
    assert [r["date"] for r in rows] == expected
    assert np.isfinite([float(r["forecast"]) for r in rows]).all()


def test_most_fuzzed_cases_succeed(tmp_path, compact_checkpoint, forecast_cli, capsys):
    """The fuzz must exercise the success path: refusals are the exception, not the rule."""
    codes = []
    for seed in range(0, CASES, 4):
        path, options, _ = make_case(seed, tmp_path)
        codes.append(forecast_cli.main([str(path), "--model", str(compact_checkpoint), "--samples", "1",
                                           "--rounds", "1", "--max-new-tokens", "2", *options]))
        capsys.readouterr()
    assert codes.count(0) >= 0.7 * len(codes), codes
