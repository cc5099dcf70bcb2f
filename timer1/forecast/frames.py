"""Long-format tables in and out: the layout of Nixtla's statsforecast (``unique_id``, ``ds``, ``y``),
GluonTS and Chronos' ``predict_df``, one row per (series, time).

    forecaster.predict_df(df, horizon=12)      # df: unique_id, ds, y -> unique_id, ds, forecast, q0.1, ..., source

pandas is imported only here, only when called: it is not a dependency of timer1. The frame is split
into its series (rows sorted by time within each id; ids in order of first appearance), the series go
through one `Forecaster.predict` call (batched), and the answer comes back long: each id's
``horizon`` future timestamps (continuing its step) with the point forecast, one column per quantile
level (``q0.1``, named as forecast.py names them) and the candidate that answered (``source``).
"""

from __future__ import annotations

import numpy as np

from timer1.forecast.inputs import quantile_column


def require_pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("predict_df needs pandas (pip install pandas); timer1 itself does not") from None
    return pandas


def split_long(df, names: tuple[str, str, str]) -> tuple[list, list[np.ndarray], list[list]]:
    """(ids, values per id, timestamps per id) of a long frame, ``names`` its (id, timestamp, target)
    columns; ValueError naming a missing column or a target that is not numeric."""
    id_column, timestamp_column, target = names
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"the frame has no column {missing[0]!r}; its columns are {list(df.columns)}")
    try:
        values = df[target].astype("float64")
    except (TypeError, ValueError):
        raise ValueError(f"column {target!r} must hold numbers") from None
    frame = df.assign(**{target: values}).sort_values(timestamp_column, kind="stable")
    groups = dict(list(frame.groupby(id_column, sort=False)))
    ids = list(dict.fromkeys(df[id_column]))                      # in order of first appearance
    return ids, [groups[key][target].to_numpy() for key in ids], [list(groups[key][timestamp_column]) for key in ids]


def forecast_frame(pandas, ids: list, forecast, names: tuple[str, str], future: list[list]):
    """The long answer: per id its H rows of (id, timestamp, forecast, q<level>..., source), ``names``
    the (id, timestamp) column names, ``future`` each id's H timestamps."""
    horizon = forecast.point.shape[1]
    table = {names[0]: np.repeat(np.array(ids, dtype=object), horizon),
             names[1]: [d for dates in future for d in dates], "forecast": forecast.point.ravel()}
    for q, values in forecast.quantiles.items():
        table[quantile_column(q)] = values.ravel()
    table["source"] = np.repeat(np.array(forecast.source, dtype=object), horizon)
    return pandas.DataFrame(table)


def in_utc(stamps: list[list], zone) -> list[list]:
    """Time-zone-aware timestamps in UTC (``zone`` None: as they are): forecasting reads one offset per
    series, where summer time gives a zone two; answers go back with `in_zone`."""
    return stamps if zone is None else [[t.tz_convert("UTC") for t in dates] for dates in stamps]


def time_zone(pandas, column):
    """The time zone of a frame's timestamp column, None when naive or not dates."""
    return getattr(column.dtype, "tz", None) if pandas.api.types.is_datetime64_any_dtype(column) else None
