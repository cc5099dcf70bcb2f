"""The forecast CSV that forecast.py writes, wide (one file, one channel or ``--column all``) or long
(``--id-column``): one row per future date with the point forecast, one column per quantile level
named ``q<level>`` (``q0.05``, ``q0.5``, as `Forecaster.predict_df` names them) and the ``source``
that answered. Cells of levels other than the median are left empty when there is no band (fewer
than two drafts kept, a single pass, a fallback): a zero-width band would claim a certainty that
nothing measured."""

from __future__ import annotations

import csv
import io
from typing import Sequence

import numpy as np

from timer1.forecast.inputs import quantile_column


def format_number(value: float) -> str:
    return f"{float(value):.10g}"


def has_band(result) -> bool:
    """Whether ``result`` (a SlowThinkResult) has a band: from backtest errors (the default's combination,
    reflection's choice), the drafts' moved to reflection's point, or the drafts' own (two or more kept,
    not a fallback)."""
    if result.answer.startswith("reflection") or result.band == "backtest errors":
        return len(result.samples) >= 2
    return result.kept >= 2 and not result.used_fallback


def header(first: Sequence[str], levels: Sequence[float]) -> list[str]:
    """The leading columns ``first`` (date; channel and date; id and timestamp), then forecast,
    q<level>..., source."""
    return [*first, "forecast", *(quantile_column(q) for q in levels), "source"]


def forecast_rows(first: Sequence[str], dates: Sequence[str], forecast, index: int) -> list[list[str]]:
    """Series ``index`` of ``forecast`` (a timer1.forecast.forecaster.Forecast) as one row per date in
    ``dates``: ``first`` cells (its channel or id, or none), date, forecast, its quantiles, source."""
    result = forecast.results[index]
    rows = []
    for k, date in enumerate(dates):   # no band: NaN levels (Forecaster's assemble), written empty
        levels = ["" if np.isnan(values[index, k]) else format_number(values[index, k])
                  for values in forecast.quantiles.values()]
        rows.append([*first, date, format_number(forecast.point[index, k]), *levels, result.source])
    return rows


def csv_text(columns: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()
