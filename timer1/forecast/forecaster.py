"""timer1 from Python: load a model once, forecast arrays of any length in batched calls.

    from timer1 import Forecaster
    forecaster = Forecaster.from_pretrained()                 # timer1-tiny (or $TIMER1_MODEL)
    out = forecaster.predict([3.0, 4.1, 5.2, ...], horizon=24)
    out.point            # (N, H) the default's combination, the drafts' median (slow) or the greedy answer
    out.quantiles[0.1]   # (N, H), one array per requested quantile
    out.source           # per series: what answered ("softmax: theta 0.52 + ets 0.31 + drift 0.17", "model")

The shape follows Chronos (``pipeline.predict(context, prediction_length)``, ``predict_quantiles``): a
context is one 1-D array or a list of them of different lengths, and many series are backtested in one
batch, or go through one batched ``generate`` call per slow-thinking round (timer1.core.slow_think).
This module is the ONE forecasting loop: forecast.py (CSV), evaluate.py (paper protocol) and
timer1.forecast.serve (HTTP) all call `Forecaster.forecast_windows`. How a model name is resolved and
loaded, and what its directory says (horizons, band calibration), is timer1.forecast.resolve.

Each context becomes a window exactly as forecast.py makes one from a CSV column
(timer1.data.csv_io.series_from_values, then timer1.data.repair.forecast_window): the last ``lookback`` values,
NaN / missing steps and isolated outliers interpolated (refused above MAX_REPAIRED_SHARE). A series
whose whole context is non-negative gets its forecast, quantiles and samples clipped at 0. With a
``seed``, each series draws from its own generator, so a series' forecast does not depend on the
other series of the batch (equal to forecasting it alone). Every bad input is a one-line ValueError.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from timer1.core.window import Window
from timer1.data.csv_io import series_from_values
from timer1.data.protocol import protocol_for
from timer1.data.repair import forecast_window
from timer1.forecast.band import widen_result
from timer1.forecast.reflect import ModelAnswers, backtest_windows, conclude, reflect
from timer1.forecast.inputs import MIN_CONTEXT, QUANTILES, as_contexts, as_timestamps, check_mode, check_quantiles
from timer1.forecast.output import has_band
from timer1.forecast.resolve import (DEFAULT_JUDGE, HORIZON_FACTOR, ModelFacts, default_horizon, display_name,
                                     model_facts, open_policy, prompt_horizon, resolve_judge, resolve_model)
from timer1.util import dist

if TYPE_CHECKING:  # timer1.core.slow_think brings torch: imported where a model runs, so input errors come fast
    from timer1.core.slow_think import SlowThinkConfig, SlowThinkResult


DEFAULT_LOOKBACK = protocol_for("").lookback   # 96, the paper's look-back


DEFAULT_BATCH = 64      # windows per generate call: 64 x 8 drafts of timer1-tiny stay well under 1 GB


@dataclass
class Forecast:
    """What `Forecaster.predict` returns for N series of horizon H.

    point: (N, H). quantiles: {q: (N, H)} for each requested q. samples: per series the (K, H) values
    the quantiles are read from: the kept drafts (K = 1 for a single pass or a fallback), or, where a
    band was calibrated or came from reflection's backtest errors, the band's per-step values at
    timer1.forecast.band.BAND_LEVELS (K = 201; quantiles per step, not paths). source: per series what
    answered ("model", a statistical candidate, a blend, or the fallback's name). timestamps: per series the H future dates, when timestamps were given (else None).
    results: per series the full timer1.core.slow_think.SlowThinkResult (drafts, critic findings).
    repairs: per series what was interpolated (timer1.data.repair.Repairs). clipped: per series whether the
    non-negative clip changed anything.
    """

    point: np.ndarray
    quantiles: dict[float, np.ndarray]
    samples: list[np.ndarray]
    source: list[str]
    timestamps: list[list[str]] | None = None
    results: list[SlowThinkResult] = field(default_factory=list)
    repairs: list = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)


@dataclass
class WindowHints:
    """What a caller knows about each window of a `Forecaster.forecast_windows` call beyond its values,
    one entry per window (None = nothing known): ``seeds`` (each window its own generator), seasonal
    ``periods`` (one hint for all, or one each), ``nonnegative`` (clip the forecast at 0) and, for a
    single pass, ``thoughts`` that replace the model's reasoning (timer1.core.slow_think.single_pass)."""

    seeds: Sequence[int] | None = None
    periods: int | None | Sequence[int | None] = None
    nonnegative: Sequence[bool] | None = None
    thoughts: Sequence[str] | None = None
    full: Sequence[Window] | None = None  # modes "auto", "rule": each window with every value before its origin
    steps: Sequence[str] | None = None    # mode "auto": each window's step name ("monthly", ...), the evidence's

    def period_list(self, n: int) -> list[int | None]:
        return list(self.periods) if isinstance(self.periods, (list, tuple)) else [self.periods] * n

    def subset(self, chosen: Sequence[int]) -> "WindowHints":
        """The hints of the ``chosen`` windows (a rank's shard), in that order."""
        def pick(values):
            return None if values is None else [values[i] for i in chosen]

        periods = [self.periods[i] for i in chosen] if isinstance(self.periods, (list, tuple)) else self.periods
        return WindowHints(pick(self.seeds), periods, pick(self.nonnegative), pick(self.thoughts), pick(self.full),
                           pick(self.steps))


@dataclass
class Prepared:
    """Checked input of `Forecaster.predict`: per series its window (repaired look-back, future dates),
    its repairs, whether its whole context is non-negative (NaN not counted), its seasonal period hint
    (from the timestamps' step, None without), and whether timestamps were given."""

    windows: list[Window]
    repairs: list
    nonnegative: list[bool]
    periods: list[int | None]
    dated: bool
    full: list[Window]   # each window with every value of its context (reflection's history)
    steps: list[str]     # each series' step name (the judge's evidence)

    def future_dates(self) -> list[list[str]] | None:
        return [list(w.target_dates) for w in self.windows] if self.dated else None


def clip_at_zero(result: SlowThinkResult, extra: dict[float, np.ndarray]) -> bool:
    """Clip a non-negative series' forecast, quantiles (the result's and ``extra``) and samples at 0,
    in place; whether anything changed."""
    arrays = [result.point, result.samples, *result.quantiles.values(), *extra.values()]
    changed = any(bool((a < 0).any()) for a in arrays)
    for a in arrays:
        np.maximum(a, 0.0, out=a)
    return changed


class Forecaster:
    """A loaded policy and how it forecasts: ``config`` (slow thinking: drafts, rounds, critic),
    ``max_new_tokens`` (None = sized from the prompt style and horizon), ``lookback`` (values of a
    context shown to the model), ``batch`` (windows per generate call) and ``facts`` (what the model's
    directory says: trained horizons, horizon cap, band calibration; timer1.forecast.resolve.ModelFacts)."""

    def __init__(self, policy, *, name: str = "", facts: ModelFacts = ModelFacts(),
                 config: SlowThinkConfig | None = None, max_new_tokens: int | None = None,
                 lookback: int = DEFAULT_LOOKBACK, batch: int = DEFAULT_BATCH, judge=None):
        from timer1.core.slow_think import SlowThinkConfig

        self.policy, self.name, self.facts = policy, name or policy.source, facts
        self.judge = judge   # the judge's policy (timer1.forecast.combination): mode "auto" combines by it
        self.config = config or SlowThinkConfig()
        self.max_new_tokens, self.lookback, self.batch = max_new_tokens, lookback, batch

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, adapter: str | os.PathLike | None = None,
                        device=None, dtype=None, *, threads: int | None = None,
                        judge: str | os.PathLike | None = DEFAULT_JUDGE, **settings) -> "Forecaster":
        """Load ``model`` (a name like "timer1-tiny", a Hugging Face directory or a training run;
        None = $TIMER1_MODEL or timer1-tiny) with an optional LoRA ``adapter``, as `resolve_model`
        says, and the ``judge`` (timer1-judge when installed; None: the learned softmax weighs);
        ``settings`` are the constructor's (config, max_new_tokens, lookback, batch)."""
        model_dir, adapter_dir = resolve_model(model, adapter)
        judge_dir = resolve_judge(judge)
        if dist.under_torchrun() and (device is None or str(device) in ("auto", "cpu", "cuda")):
            asked = None if device in (None, "auto") else str(device)
            device = dist.init_distributed(asked).device   # rank r: GPU LOCAL_RANK; windows sharded by rank
        policy = open_policy(model_dir, adapter_dir, device, dtype, threads)
        name = display_name(model_dir) + (f" + {display_name(adapter_dir)}" if adapter_dir else "")
        judged = None if judge_dir is None else open_policy(judge_dir, None, device, dtype, threads)
        return cls(policy, name=name, facts=model_facts(model_dir, adapter_dir), judge=judged, **settings)

    @property
    def device(self) -> str:
        return str(self.policy.device)

    def predict(self, context, horizon: int | None = None, *, quantiles: Sequence[float] = QUANTILES,
                mode: str = "auto", timestamps=None, seed: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Forecast:
        """Forecast ``horizon`` steps after each series of ``context`` (one 1-D array/list, or a list
        of them, lengths may differ; NaN or None = missing). ``timestamps``: the dates of each
        series' values (one list, or one per series), any layout forecast.py reads; the default
        horizon then follows their step (48 hourly, 14 daily, ...), else it is 96, capped at
        ``horizon_cap``. ``mode``: "slow" (drafts, critic, median) or "single" (one greedy answer).
        ``seed``: reproducible drafts, the same whatever else is in the batch. ``progress(done, total)``:
        called as series finish (timer1.util.progress.ProgressLine draws it)."""
        check_mode(mode)
        levels = check_quantiles(quantiles)
        batch = self.prepare(context, horizon, timestamps)
        hints = WindowHints(None if seed is None else [seed] * len(batch.windows), batch.periods, batch.nonnegative,
                            full=batch.full, steps=batch.steps)
        out = self.forecast_windows(batch.windows, mode=mode, quantiles=levels, hints=hints, progress=progress)
        out.repairs, out.timestamps = batch.repairs, batch.future_dates()
        return out

    def predict_groups(self, contexts: list, horizon: int | None = None, *, timestamps=None,
                       **options) -> list[tuple[list[int], Forecast]]:
        """`predict` for many series whose default horizons may differ (a long file of daily and monthly
        series): with ``horizon`` None each series gets its own step's (14 days, 24 months, ...), and the
        series sharing one go through one call. (indices into ``contexts``, their Forecast) per group,
        groups in order of their first series; ``options`` are predict's."""
        every = list(range(len(contexts)))
        if horizon is not None:
            return [(every, self.predict(contexts, horizon, timestamps=timestamps, **options))]
        dates = as_timestamps(timestamps, len(contexts))
        own = [self._horizon(None, [series_from_values(values, None if dates is None else dates[i])])
               for i, values in enumerate(as_contexts(contexts))]
        groups = {h: [i for i in every if own[i] == h] for h in dict.fromkeys(own)}
        progress, done, out = options.pop("progress", None), 0, []
        for h, members in groups.items():   # progress over all series, group after group
            counted = None if progress is None else (lambda k, _, before=done: progress(before + k, len(every)))
            out.append((members, self.predict([contexts[i] for i in members], h, **options, progress=counted,
                                              timestamps=None if dates is None else [dates[i] for i in members])))
            done += len(members)
        return out

    def predict_quantiles(self, context, prediction_length: int | None = None,
                          quantile_levels: Sequence[float] = QUANTILES, *, seed: int | None = 0,
                          **options) -> tuple[np.ndarray, np.ndarray]:
        """Chronos' shape of `predict`: (quantiles (N, H, Q) in ``quantile_levels`` order, point (N, H)),
        the same numbers as ``predict(..., seed=seed)``; seeded by default, as `predict_df` is, so the
        call is reproducible; ``options`` are predict's (mode, timestamps)."""
        out = self.predict(context, prediction_length, quantiles=quantile_levels, seed=seed, **options)
        return np.stack([out.quantiles[q] for q in check_quantiles(quantile_levels)], axis=-1), out.point

    def predict_df(self, df, horizon: int | None = None, *, id_column: str = "unique_id", timestamp_column: str = "ds",
                   target: str = "y", quantile_levels: Sequence[float] = QUANTILES, mode: str = "auto", seed: int = 0):
        """Forecast every series of a long pandas DataFrame (statsforecast's ``unique_id``, ``ds``,
        ``y``) in one batched `predict` call; a long frame back: id, future timestamp, ``forecast``,
        ``q<level>`` per quantile level, ``source`` (timer1.forecast.frames). pandas is needed only here."""
        from timer1.data.long_csv import continue_index
        from timer1.forecast.frames import forecast_frame, in_utc, require_pandas, split_long, time_zone
        from timer1.util.progress import ProgressLine

        pandas = require_pandas()
        if not isinstance(df, pandas.DataFrame):
            raise ValueError(f"predict_df takes a pandas DataFrame, got {type(df).__name__}")
        ids, contexts, stamps = split_long(df, (id_column, timestamp_column, target))
        indexed = pandas.api.types.is_numeric_dtype(df[timestamp_column])  # a running index, not dates
        zone = time_zone(pandas, df[timestamp_column])   # forecast in UTC, answered in the frame's zone
        stamps = in_utc(stamps, zone)
        short = [key for key, values in zip(ids, contexts) if len(values) < MIN_CONTEXT]
        if short:
            raise ValueError(f"series {short[0]!r} has fewer than {MIN_CONTEXT} values ({len(short)} series do)")
        frames, line = [], ProgressLine("predict_df", len(ids))
        for members, out in self.predict_groups(contexts, horizon, quantiles=quantile_levels, mode=mode, seed=seed,
                                                timestamps=None if indexed else stamps,
                                                progress=lambda done, _: line.update(done)):
            steps = out.point.shape[1]
            future = ([continue_index(stamps[i], steps) for i in members] if indexed
                      else [pandas.to_datetime(d) for d in out.timestamps])
            if zone is not None:
                future = [d.tz_convert(zone) for d in future]
            frames.append(forecast_frame(pandas, [ids[i] for i in members], out, (id_column, timestamp_column), future))
        line.close()
        if len(frames) == 1:
            return frames[0]
        order = {key: k for k, key in enumerate(ids)}   # ids in order of first appearance, whatever their group
        joined = pandas.concat(frames, ignore_index=True)
        return joined.iloc[np.argsort([order[key] for key in joined[id_column]], kind="stable")].reset_index(drop=True)

    def cross_validation(self, df, h: int, *, n_windows: int = 1, step_size: int | None = None,
                         id_column: str = "unique_id", timestamp_column: str = "ds", target: str = "y",
                         quantile_levels: Sequence[float] = QUANTILES, mode: str = "auto", seed: int = 0):
        """Rolling-origin cross-validation of a long pandas DataFrame in statsforecast's shape: the last
        ``n_windows`` windows of ``h`` steps, ``step_size`` apart (default h), each forecast from the values
        up to its cutoff (timer1.forecast.cross_validation); a long frame back: id, timestamp, ``cutoff``,
        ``y``, ``forecast``, ``q<level>`` per level, ``source``."""
        from timer1.forecast.cross_validation import Folds, cross_validate
        from timer1.forecast.frames import in_utc, require_pandas, split_long, time_zone

        pandas = require_pandas()
        if not isinstance(df, pandas.DataFrame):
            raise ValueError(f"cross_validation takes a pandas DataFrame, got {type(df).__name__}")
        ids, contexts, stamps = split_long(df, (id_column, timestamp_column, target))
        dated = not pandas.api.types.is_numeric_dtype(df[timestamp_column])   # else a running index
        zone = time_zone(pandas, df[timestamp_column])                           # forecast in UTC, answered in it
        labels = in_utc(stamps, zone) if dated else stamps
        cv = cross_validate(self, (ids, contexts, labels, dated), Folds(h, n_windows, step_size),
                            (id_column, timestamp_column), quantiles=quantile_levels, mode=mode, seed=seed)
        table = pandas.DataFrame(cv.columns)
        if dated:   # the frame's own timestamps, in its own zone
            for column in (timestamp_column, "cutoff"):
                table[column] = pandas.to_datetime(table[column], utc=zone is not None)
                table[column] = table[column] if zone is None else table[column].dt.tz_convert(zone)
        return table

    def prepare(self, context, horizon: int | None = None, timestamps=None) -> "Prepared":
        """Check and window a context as `predict` does, without running the model (timer1.forecast.serve
        checks a request here, then batches the windows of several requests in one call)."""
        from timer1.core.baselines import period_for_step

        contexts = as_contexts(context)
        dates = as_timestamps(timestamps, len(contexts))
        series = [series_from_values(values, None if dates is None else dates[i], name=f"series {i}")
                  for i, values in enumerate(contexts)]
        horizon = self._horizon(horizon, series)
        windows, repairs = [], []
        for i, s in enumerate(series):
            values = s.column("value")
            if len(values) < MIN_CONTEXT:
                raise ValueError(f"series {i} has {len(values)} values; at least {MIN_CONTEXT} are needed")
            window, repaired = forecast_window(s, "value", min(len(values), self.lookback), horizon)
            windows.append(window)
            repairs.append(repaired)
        return Prepared(windows, repairs, nonnegative=[not (s.column("value") < 0).any() for s in series],
                        periods=[period_for_step(s.step) for s in series], dated=dates is not None,
                        full=[whole_history(s, "value", w) for s, w in zip(series, windows)],
                        steps=[s.step.name for s in series])

    def default_horizon(self, values, timestamps=None) -> int:
        """The horizon `predict` picks for a series without one: two cycles of its step, capped."""
        return self._horizon(None, [series_from_values(as_contexts(values)[0], timestamps)])

    def _horizon(self, horizon, series) -> int:
        if horizon is None:
            return min(max(default_horizon(s) for s in series), self.facts.horizon_cap)
        whole = isinstance(horizon, (int, np.integer)) or (isinstance(horizon, (float, np.floating))
                                                            and float(horizon).is_integer())
        if isinstance(horizon, bool) or not whole or horizon < 1:  # 5.0 is 5 steps (JSON has one number type)
            raise ValueError(f"horizon must be a positive whole number of steps, got {horizon!r}")
        if horizon > self.facts.horizon_cap:
            cap = self.facts.horizon_cap
            raise ValueError(f"horizon {horizon} is more than {cap} steps, {HORIZON_FACTOR} times the "
                             f"{cap // HORIZON_FACTOR} this model was trained for; forecast in shorter pieces")
        return int(horizon)

    def forecast_windows(self, windows: Sequence[Window], *, mode: str = "auto", quantiles: Sequence[float] = QUANTILES,
                         hints: WindowHints = WindowHints(), progress: Callable[[int, int], None] | None = None,
                         log: Callable[[str], None] | None = None) -> Forecast:
        """THE forecasting loop: windows in batches of ``self.batch``, each batch drafted by one generate
        call per round, with what ``hints`` tell of each window (seeds, periods, the non-negative clip,
        thoughts, the full history). ``mode``: "auto" (the statistical candidates backtested on the
        history and combined, by the judge when there is one, with a band from the combination's
        backtest errors), "rule" (slow thinking, then reflection on the history chooses between it and
        the candidate of least backtest error: the default before round 4), "slow" (the model's drafts
        only, widened per level by its band calibration, timer1.forecast.band) or "single" (one greedy answer). ``progress(done, total)`` after each
        batch, ``log`` gets slow thinking's round lines. All windows share one horizon."""
        check_mode(mode)
        if not windows:
            raise ValueError("no series to forecast")
        if len({w.horizon for w in windows}) > 1:
            raise ValueError("every window of one forecast_windows call needs the same horizon")
        levels = check_quantiles(quantiles)
        if dist.world_size() > 1:
            return assemble(self._sharded(windows, mode, hints, progress, log), levels, hints.nonnegative)
        return assemble(self._results(windows, mode, hints, progress, log), levels, hints.nonnegative)

    def _results(self, windows: Sequence[Window], mode: str, hints: WindowHints, progress,
                 log) -> list[SlowThinkResult]:
        if mode in ("auto", "rule"):
            return (self._combined if mode == "auto" else self._reflect)(windows, hints, progress, log)
        return [widen_result(r, self.facts.calibration) for r in self._answers(windows, mode, hints, progress, log)]

    def _sharded(self, windows: Sequence[Window], mode: str, hints: WindowHints, progress,
                 log) -> list[SlowThinkResult]:
        """Under torchrun: rank r answers windows r, r + world, ... (timer1.util.dist.shard_by_stride) and
        every rank gets every answer back in window order. A window's answer depends only on the window
        and its seed, never on what shares its batch, so the result equals one process's."""
        rank, world = dist.rank(), dist.world_size()
        chosen = dist.shard_by_stride(range(len(windows)), rank, world)
        counted = None if progress is None else (lambda done, _: progress(min(done * world, len(windows)), len(windows)))
        mine = self._results([windows[i] for i in chosen], mode, hints.subset(chosen), counted, log) if chosen else []
        results: list = [None] * len(windows)
        for r, answers in enumerate(dist.all_gather_object(mine)):
            for i, answer in zip(dist.shard_by_stride(range(len(windows)), r, world), answers):
                results[i] = answer
        return results

    def _reflect(self, windows: Sequence[Window], hints: WindowHints, progress, log) -> list[SlowThinkResult]:
        """Mode "rule" (and "auto" where a history has no backtest origin): slow thinking (the drafts'
        median; reflection replaces its one-cut backtest) on each window and on its backtest windows,
        then reflection on the history (timer1.forecast.reflect) chooses each answer and its band."""
        from timer1.core.slow_think import BACKTEST_SEED

        fulls = list(hints.full) if hints.full is not None else list(windows)
        horizon, periods = windows[0].horizon, hints.period_list(len(windows))
        tests = [backtest_windows(f, w.lookback, horizon) for f, w in zip(fulls, windows)]
        owners = [i for i, t in enumerate(tests) for _ in t]
        seeds = None if hints.seeds is None else list(hints.seeds) + [hints.seeds[i] + BACKTEST_SEED for i in owners]
        every = list(windows) + [t for ts in tests for t in ts]
        n, out = len(windows), []
        in_windows = None if progress is None else windows_progress(progress, n)
        drafted = self._answers(every, "drafts", WindowHints(seeds, periods + [periods[i] for i in owners]),
                                in_windows, log)
        for i, (full, result) in enumerate(zip(fulls, drafted[:n])):
            then = [drafted[n + j].point for j, owner in enumerate(owners) if owner == i]
            answers = ModelAnswers(result.point, then, fell_back=result.used_fallback)
            reflection = reflect(full.history, horizon, periods[i], answers)
            out.append(conclude(result, reflection, self.facts.calibration))
        return out

    def _combined(self, windows: Sequence[Window], hints: WindowHints, progress, log) -> list[SlowThinkResult]:
        """Mode "auto": the backtested candidates combined, by the judge's weights or the equal mean of
        the best few (timer1.forecast.combination.combined_results); a window whose history has no
        backtest origin is answered as mode "rule" answers it (the model, reflected on its own)."""
        from timer1.forecast.combination import combined_results

        n = len(windows)
        out = combined_results(self.judge, list(hints.full) if hints.full is not None else list(windows),
                               windows[0].horizon, hints.period_list(n), hints.steps, hints.seeds)
        short = [i for i in range(n) if out[i] is None]
        if short:
            for i, result in zip(short, self._reflect([windows[i] for i in short], hints.subset(short), None, log)):
                out[i] = result
        if progress is not None:
            progress(n, n)
        return out

    def _answers(self, windows: Sequence[Window], mode: str, hints: WindowHints, progress,
                 log) -> list[SlowThinkResult]:
        """The model's answer to each window (slow thinking or a single pass), batched: windows with
        different seasonal period hints go in separate calls; the model is asked for
        `prompt_horizon` of the horizon and the answer cut back."""
        horizon = windows[0].horizon
        asked = prompt_horizon(horizon, self.facts.trained_horizons)
        if asked != horizon:  # the dates past the horizon are never shown: a prompt names only the first
            windows = [dataclasses.replace(w, target=np.full(asked, np.nan)) for w in windows]
        periods = hints.period_list(len(windows))
        results: list[SlowThinkResult | None] = [None] * len(windows)
        done = 0
        for period in dict.fromkeys(periods):
            members = [i for i, p in enumerate(periods) if p == period]
            for start in range(0, len(members), self.batch):
                chunk = members[start:start + self.batch]

                def pick(values):  # this chunk's share of a per-window hint
                    return None if values is None else [values[i] for i in chunk]

                chunk_hints = WindowHints(seeds=pick(hints.seeds), thoughts=pick(hints.thoughts))
                batch = self._draft([windows[i] for i in chunk], mode, chunk_hints, period, log)
                for i, result in zip(chunk, batch):
                    results[i] = cut(result, horizon)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(windows))
        return results

    def _draft(self, windows: list[Window], mode: str, hints: WindowHints, period, log) -> list[SlowThinkResult]:
        from timer1.core.slow_think import default_max_new_tokens, single_pass, slow_think

        max_new = self.max_new_tokens or default_max_new_tokens(self.policy.prompt_format, windows[0].horizon)
        if mode == "single":
            return single_pass(self.policy, windows, max_new_tokens=max_new, period=period, thoughts=hints.thoughts)
        # "drafts": slow thinking without its own one-cut backtest (reflection scores the model instead)
        backtest = self.config.backtest and mode == "slow"
        config = dataclasses.replace(self.config, max_new_tokens=max_new, backtest=backtest)
        return slow_think(self.policy, windows, config, period=period, log=log, seeds=hints.seeds)


def windows_progress(progress: Callable[[int, int], None], windows: int) -> Callable[[int, int], None]:
    """``progress`` counted in the caller's ``windows``, for a loop over more problems (reflection also
    drafts each window's backtest problems: part of a window's cost, not windows); called when a
    whole window's worth more is done."""
    shown = [0]

    def report(done: int, total: int) -> None:
        whole = done * windows // total
        if whole > shown[0]:
            shown[0] = whole
            progress(whole, windows)

    return report


def whole_history(series, channel: str, window: Window) -> Window:
    """``window`` with every value of the series before its origin as history (repaired as a look-back
    is), for reflection; the window itself when the whole series needs too many repairs."""
    if len(series) <= window.lookback:
        return window
    try:
        return forecast_window(series, channel, len(series), window.horizon)[0]
    except ValueError:
        return window


def cut(result: SlowThinkResult, horizon: int) -> SlowThinkResult:
    """A result for a longer horizon, cut to its first ``horizon`` steps (drafts' values included)."""
    if len(result.point) == horizon:
        return result
    drafts = [dataclasses.replace(d, values=None if d.values is None else d.values[:horizon]) for d in result.drafts]
    return dataclasses.replace(result, point=result.point[:horizon], samples=result.samples[:, :horizon],
                               quantiles={q: v[:horizon] for q, v in result.quantiles.items()}, drafts=drafts)


def assemble(results: list[SlowThinkResult], levels: tuple[float, ...],
             nonnegative: Sequence[bool] | None) -> Forecast:
    """Stack per-window results into a Forecast: quantiles of each window's kept drafts (numpy's
    linear interpolation, as timer1.core.slow_think.aggregate), then the non-negative clip. A window
    without a band (timer1.forecast.output.has_band: a single pass, one draft kept, a fallback) has
    NaN at every level but the median: a zero-width band would read as certainty. The CLI writes
    those cells empty and the service null, the same rule everywhere."""
    wanted, clipped = [], []
    for k, result in enumerate(results):
        levels_k = {q: np.quantile(result.samples, q, axis=0) for q in levels}  # (H,) each, before the clip
        clipped.append(clip_at_zero(result, levels_k) if nonnegative is not None and nonnegative[k] else False)
        if not has_band(result):
            levels_k = {q: v if q == 0.5 else np.full_like(v, np.nan) for q, v in levels_k.items()}
        wanted.append(levels_k)
    return Forecast(point=np.stack([r.point for r in results]),
                    quantiles={q: np.stack([w[q] for w in wanted]) for q in levels},
                    samples=[r.samples for r in results], source=[r.source for r in results],
                    results=list(results), clipped=clipped)
