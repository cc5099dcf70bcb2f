"""Slow-thinking inference: draft -> reflect -> refine (Time-R1, arXiv 2506.10630).

The model is trained (SFT, then GRIP, which samples and weighs many reasoning paths per prompt) to
think in ``<think>`` before it answers in ``<answer>``; at inference the same idea, exploring several
reasoning paths before settling on an answer (paper Sec. 1 and 3), is a test-time procedure:

1. Draft. Sample ``samples`` reasoning paths for the window with ONE batched ``generate`` call
   (``num_samples=N``: the prompt is prefilled once and its KV cache copied to the N rows).
2. Reflect. A critic reads each draft and says, in words, what is wrong with it (``critique``):
   no forecast could be parsed; fewer values than the horizon; a first value that jumps away from
   the last observed value (more than ``continuity`` times the history's mean absolute step change);
   values outside the history's range widened by ``range_margin`` of its span; a forecast that
   ignores a clear seasonal cycle of the history (rank correlation with the last season repeated below
   ``min_seasonal_corr``, or a flat forecast for a seasonal history).
3. Refine. Drafts with findings are dropped; while fewer than ``min_kept`` drafts survive and the
   ``rounds`` budget lasts, the model is asked again: ``refine="resample"`` draws fresh drafts,
   ``refine="critique"`` (instruct models) appends the draft as the assistant turn and the critic's
   findings as a new user turn asking for a corrected answer. The surviving drafts are aggregated:
   the per-step median is the point forecast, sample quantiles 0.1/0.5/0.9 give the interval
   (self-consistency over reasoning paths, Wang et al. 2023, applied to numbers). When no draft
   survives, a clear fallback (seasonal naive from :mod:`timer1.core.baselines`) is returned and flagged.
4. Reflect on the method (``backtest``). The same drafting runs on the history's own last part
   (``backtest_window``: its last ``min(H, L/2)`` values forecast from what precedes them), beside
   a greedy draft of both; the window is answered the way that did better there, the drafts' median
   or the greedy draft (``choose_answer``). Drafts at a temperature below 1 each stay close to the
   model's best guess while their median still averages out its slips; which of the two wins
   differs from series to series, and the history says which.

``single_pass`` is the plain model for comparison: one greedy draft (temperature 0), no dropping.
Everything works on the real scale of the series (``timer1.core.codec`` undoes the compact scaling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from timer1.core.baselines import SeasonalNaive, estimate_period
from timer1.core.codec import (PromptFormat, answer_opening, chat_ids, complete_forecast, forecast_from_completion,
                               prompt_ids, prompt_messages)
from timer1.core.metrics import correlation, mae
from timer1.core.sampler import generate
from timer1.core.window import Window

QUANTILES = (0.1, 0.5, 0.9)
REFINE_MODES = ("resample", "critique")


@dataclass(frozen=True)
class SlowThinkConfig:
    """Budget and thresholds of draft -> reflect -> refine.

    samples: drafts per round (one batched generate call). rounds: draft rounds at most (1 = no
    refinement). min_kept: stop refining once this many drafts passed the critic (0 = half of
    ``samples``, rounded up). refine: "resample" or "critique" (see the module docstring).
    continuity: max |first forecast - last value| in units of the history's mean |step change|.
    range_margin: values must lie in [min - m*span, max + m*span] of the history.
    min_seasonal_corr: rank correlation a forecast must reach with the last season repeated, checked only
    when the history shows a cycle at correlation ``seasonal_acf`` or more (see ``seasonal_period``).
    backtest: also reason on the history's own last part (``backtest_window``) and answer the way
    that forecast it better: the drafts' median or the greedy draft (see the module docstring).
    """

    samples: int = 8
    rounds: int = 2
    min_kept: int = 0
    refine: str = "resample"
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    continuity: float = 6.0
    range_margin: float = 0.5
    min_seasonal_corr: float = 0.1
    seasonal_acf: float = 0.3
    backtest: bool = True
    seed: int | None = None

    def __post_init__(self):
        if self.samples < 1 or self.rounds < 1 or self.min_kept < 0 or self.max_new_tokens < 1:
            raise ValueError(f"need samples >= 1, rounds >= 1, min_kept >= 0, max_new_tokens >= 1; got "
                             f"{self.samples}, {self.rounds}, {self.min_kept}, {self.max_new_tokens}")
        if self.refine not in REFINE_MODES:
            raise ValueError(f"unknown refine mode {self.refine!r}; choose {' or '.join(REFINE_MODES)}")

    @property
    def wanted(self) -> int:
        """How many passing drafts end the refinement."""
        return self.min_kept or math.ceil(self.samples / 2)


@dataclass
class Draft:
    """One reasoning path: its text, the forecast it states (real scale, <= horizon values, None if
    nothing parsed), the critic's findings (empty = passed) and the round it was drawn in."""

    text: str
    values: np.ndarray | None
    findings: list[str]
    round: int = 1

    @property
    def passed(self) -> bool:
        return not self.findings


@dataclass
class SlowThinkResult:
    """What slow thinking (or a single pass) concluded for one window.

    point: (H,) forecast (median of kept drafts, or the fallback). quantiles: {0.1, 0.5, 0.9: (H,)}.
    samples: (K, H) the kept drafts' forecasts (K >= 1; the fallback alone when nothing was kept).
    reasoning: the kept drafts' texts. drafts: every draft with the critic's findings.
    fallback: None, or a sentence saying what was used instead of the model and why.
    source: "model", or the name of the fallback that made the forecast (e.g. "seasonal naive (period 24)").
    answer: how the point was concluded: "median" of the kept drafts or the "greedy" draft.
    backtest_mae: with the backtest, each way's MAE on the history's last part, e.g.
    {"median": 0.8, "greedy": 1.1}; None without it.
    band: what the band is made of: "drafts" (the kept drafts' spread; reflection may replace it by
    its "backtest errors", timer1.forecast.reflect).
    """

    point: np.ndarray
    quantiles: dict[float, np.ndarray]
    samples: np.ndarray
    reasoning: list[str]
    drafts: list[Draft]
    kept: int
    dropped: int
    rounds: int
    fallback: str | None = None
    source: str = "model"
    answer: str = "median"
    backtest_mae: dict[str, float] | None = None
    band: str = "drafts"

    @property
    def used_fallback(self) -> bool:
        return self.fallback is not None

    @property
    def findings(self) -> list[list[str]]:
        """The critic's findings, one list per draft in drawing order."""
        return [d.findings for d in self.drafts]


# ----------------------------------------------------------------------------------------------
# Reflect: the critic


def seasonal_period(history: np.ndarray, hint: int | None = None, min_correlation: float = 0.3) -> int:
    """The cycle the critic and the fallback use: ``hint`` (e.g. 24 for hourly data) when it fits in
    half the history and the history's step changes repeat at that lag (``lag_correlation`` of the
    first differences >= ``min_correlation``; differencing keeps a trend from passing for a cycle),
    else the history's own autocorrelation peak (``timer1.core.baselines.estimate_period``; 1 = no cycle)."""
    history = np.asarray(history, dtype=np.float64)
    if hint is not None and 1 < hint <= len(history) // 2 \
            and lag_correlation(np.diff(history), hint) >= min_correlation:
        return int(hint)
    return estimate_period(history, min_correlation=min_correlation)


def lag_correlation(x: np.ndarray, lag: int) -> float:
    """Pearson correlation of ``x[lag:]`` with ``x[:-lag]``; 0.0 when undefined (too short, constant)."""
    x = np.asarray(x, dtype=np.float64)
    if not 0 < lag < len(x) - 1:
        return 0.0
    return correlation(x[lag:], x[:-lag])


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson on ranks, ties broken by position): one wild value,
    which the range check already reports, cannot flip the verdict on the cycle."""
    return correlation(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))


def critique(values: np.ndarray | None, history: np.ndarray, horizon: int,
             config: SlowThinkConfig = SlowThinkConfig(), period: int | None = None) -> list[str]:
    """What is wrong with one drafted forecast, in words; an empty list means it passed.

    ``values`` is the draft's forecast on the real scale (None when nothing parsed), ``history``
    the (L,) look-back it continues, ``period`` a hint for the seasonal cycle.
    """
    if values is None or len(values) == 0:
        return ["no forecast could be parsed from the answer"]
    values = np.asarray(values, dtype=np.float64)
    history = np.asarray(history, dtype=np.float64)
    findings = []
    if len(values) < horizon:
        findings.append(f"the answer has {len(values)} values but the horizon is {horizon}")
    low, high = float(history.min()), float(history.max())
    span = high - low
    floor = 1e-6 * max(1.0, abs(float(history[-1])))  # a flat history still has a tolerance
    typical_step = max(float(np.mean(np.abs(np.diff(history)))) if len(history) > 1 else 0.0, floor)
    jump = abs(float(values[0]) - float(history[-1]))
    if jump > config.continuity * typical_step:
        findings.append(f"the first value {values[0]:.6g} jumps {jump:.4g} from the last observed value "
                        f"{history[-1]:.6g}, {jump / typical_step:.1f} times the typical step change "
                        f"{typical_step:.4g} (allowed {config.continuity:g})")
    margin = config.range_margin * max(span, floor)
    outside = np.flatnonzero((values < low - margin) | (values > high + margin))
    if outside.size:
        i = int(outside[0])
        findings.append(f"{outside.size} of {len(values)} values leave the history's range "
                        f"[{low:.6g}, {high:.6g}] widened by {config.range_margin:.0%} "
                        f"(first: {values[i]:.6g} at step {i + 1})")
    findings += _seasonal_findings(values, history, config, period)
    return findings


def _seasonal_findings(values: np.ndarray, history: np.ndarray, config: SlowThinkConfig,
                       period: int | None) -> list[str]:
    """A seasonal history should be continued by a forecast that follows its cycle."""
    m = seasonal_period(history, period, config.seasonal_acf)
    if m < 2 or len(values) < m:
        return []  # no clear cycle, or too short a forecast to show one
    last_season = history[len(history) - m:][np.arange(len(values)) % m]  # (n,) seasonal naive
    if np.ptp(values) == 0:
        return [f"the forecast is flat but the history repeats every {m} steps"]
    corr = rank_correlation(values, last_season)
    if corr < config.min_seasonal_corr:
        return [f"the forecast does not follow the history's {m}-step cycle (rank correlation {corr:.2f} "
                f"with the last cycle repeated, wanted >= {config.min_seasonal_corr:g})"]
    return []


# ----------------------------------------------------------------------------------------------
# Refine: aggregation and fallback


def aggregate(samples: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> tuple[np.ndarray, dict]:
    """(K, H) kept forecasts -> the per-step median (H,) and {q: (H,)} sample quantiles
    (numpy's default linear interpolation between order statistics)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"aggregate needs (K, H) samples with K >= 1, got shape {samples.shape}")
    return np.median(samples, axis=0), {q: np.quantile(samples, q, axis=0) for q in quantiles}


def fallback_forecast(window: Window, period: int | None = None) -> tuple[np.ndarray, str]:
    """Seasonal naive (the last cycle repeated; a period of 1 is the last value) and its description."""
    m = seasonal_period(window.history, period)
    values = SeasonalNaive(m).forecast(window.history, window.horizon)
    name = "last value repeated" if m == 1 else f"seasonal naive (period {m})"
    return values, name


def conclude(window: Window, drafts: list[Draft], rounds: int, period: int | None = None) -> SlowThinkResult:
    """Refine's last step: aggregate the drafts that passed the critic (median, quantiles), or fall
    back to seasonal naive when none did. The band is the kept drafts' own spread (a product may widen
    it to a calibrated coverage: timer1.forecast.band)."""
    kept = [d for d in drafts if d.passed]
    if kept:
        drafted = np.stack([np.asarray(d.values[:window.horizon]) for d in kept])  # (K, H)
        point, quantiles = aggregate(drafted)
        return SlowThinkResult(point, quantiles, drafted, [d.text for d in kept], drafts, len(kept),
                               len(drafts) - len(kept), rounds)
    values, name = fallback_forecast(window, period)
    reason = f"no draft passed the critic in {rounds} round(s) of {len(drafts)} draft(s); used {name}"
    samples = values[None, :]  # (1, H)
    return SlowThinkResult(values, {q: values.copy() for q in QUANTILES}, samples, [], drafts, 0,
                           len(drafts), rounds, reason, name)


# ----------------------------------------------------------------------------------------------
# Reflect on the method: the backtest

BACKTEST_SEED = 104_729  # offsets a window's seed for its backtest, so the two draw different numbers
MIN_BACKTEST = 4  # values the backtest needs on each side of its cut


def backtest_window(window: Window) -> Window | None:
    """The history's own forecasting problem: its last ``min(H, L // 2)`` values as the target, what
    precedes them as the look-back (dates and series unchanged). None when the history is too short."""
    cut = len(window.history) - min(window.horizon, len(window.history) // 2)
    if cut < MIN_BACKTEST or len(window.history) - cut < MIN_BACKTEST:
        return None
    return replace(window, history=window.history[:cut], target=window.history[cut:],
                   history_dates=window.history_dates[:cut], target_dates=window.history_dates[cut:])


def choose_answer(drafted: SlowThinkResult, greedy: SlowThinkResult, test: Window,
                  test_drafted: SlowThinkResult, test_greedy: SlowThinkResult) -> SlowThinkResult:
    """Answer the window the way that forecast its backtest better: the drafts' median (``drafted``)
    or the greedy draft (``greedy``), by MAE on the backtest's target (ties keep the median).

    Forecasting the known last part of a series from what precedes it, and trusting the method that
    did it best, is model selection on a holdout (Tashman 2000, "Out-of-sample tests of forecasting
    accuracy"); here the two methods are two ways to read the same model: self-consistency over
    sampled reasoning paths (its median), or its single most likely path. With the greedy answer
    the drafts' band moves with it: the spread around the median becomes a spread around the point."""
    errors = {"median": mae(test_drafted.point, test.target), "greedy": mae(test_greedy.point, test.target)}
    if errors["greedy"] >= errors["median"] or greedy.used_fallback:
        return replace(drafted, backtest_mae=errors)
    # drafted.samples already hold the calibrated spread around the median: move it, do not rescale it
    samples = greedy.samples if drafted.used_fallback else greedy.point + (drafted.samples - drafted.point)  # (K, H)
    _, quantiles = aggregate(samples)
    return replace(drafted, point=greedy.point.copy(), quantiles=quantiles, samples=samples, fallback=None,
                   source="model", answer="greedy", backtest_mae=errors)


# ----------------------------------------------------------------------------------------------
# Draft: one batched generate call per round


def _decode(tokenizer, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)


def _critique_messages(window: Window, fmt: PromptFormat, draft: Draft) -> list[dict]:
    """The chat so far plus a user turn with the critic's findings, asking for a corrected answer."""
    problems = "; ".join(draft.findings)
    ask = (f"Your answer has problems: {problems}. Check your reasoning against the data and give the "
           f"complete corrected forecast of the next {window.horizon} values, in exactly the same format.")
    return prompt_messages(window, fmt) + [{"role": "assistant", "content": draft.text},
                                           {"role": "user", "content": ask}]


def _round_seed(seed: int | None, round_index: int) -> int | None:
    return None if seed is None else seed + 7919 * round_index


def _sample(policy, prompts: list[list[int]], num_samples: int, config: SlowThinkConfig,
            temperature: float, seed: int | list[int] | None) -> list[str]:
    out = generate(policy.model, prompts, max_new_tokens=config.max_new_tokens, num_samples=num_samples,
                   temperature=temperature, top_k=config.top_k, top_p=config.top_p,
                   eos_ids=policy.tokenizer.eos_ids, seed=seed)
    return [_decode(policy.tokenizer, t) for t in out.tokens]


def review(text: str, window: Window, fmt: PromptFormat, config: SlowThinkConfig = SlowThinkConfig(),
           period: int | None = None, round_index: int = 1) -> Draft:
    """Reflect on one completion: parse its forecast (real scale) and let the critic judge it."""
    values = forecast_from_completion(text, window, fmt)
    return Draft(text, values, critique(values, window.history, window.horizon, config, period), round_index)


def slow_think(policy, windows: Window | Sequence[Window], config: SlowThinkConfig = SlowThinkConfig(),
               *, period: int | None = None, log: Callable[[str], None] | None = None,
               seeds: Sequence[int] | None = None):
    """Draft -> reflect -> refine for one window (returns a SlowThinkResult) or a list of windows
    (returns a list; every round is one generate call over all windows still short of drafts).

    ``policy`` has ``.model``, ``.tokenizer`` and ``.prompt_format`` (timer1.core.policy.Policy);
    ``period`` is a seasonal hint for the critic and the fallback; ``log`` receives progress lines.
    ``seeds`` (one per window) replace ``config.seed``: each window then draws from its own
    generator, so its drafts do not depend on the other windows of the batch (timer1.core.sampler.generate).
    With ``config.backtest`` the backtest windows ride in the same generate calls as the real ones.
    """
    single = isinstance(windows, Window)
    windows = [windows] if single else list(windows)
    tests = [(i, t) for i, t in enumerate(map(backtest_window, windows)) if t is not None] if config.backtest else []
    every = windows + [t for _, t in tests]
    if seeds is not None:
        seeds = list(seeds) + [seeds[i] + BACKTEST_SEED for i, _ in tests]
    drafts = _draft_rounds(policy, every, config, period, log, seeds)
    results = [conclude(w, ds, max(d.round for d in ds), period) for w, ds in zip(every, drafts)]
    if tests:   # greedy drafts only where a backtest can choose: each window with one, and its backtest
        greedy = single_pass(policy, [windows[i] for i, _ in tests] + [t for _, t in tests],
                             max_new_tokens=config.max_new_tokens, period=period)
        n = len(tests)
        for k, (i, test) in enumerate(tests):
            results[i] = choose_answer(results[i], greedy[k], test, results[len(windows) + k], greedy[n + k])
    results = results[:len(windows)]
    return results[0] if single else results


def _draft_rounds(policy, windows: list[Window], config: SlowThinkConfig, period: int | None,
                  log: Callable[[str], None] | None, seeds: Sequence[int] | None) -> list[list[Draft]]:
    """Draft and reflect, round after round, until every window has ``config.wanted`` passing drafts
    or the rounds run out; returns every draft of every window."""
    fmt = policy.prompt_format
    drafts: list[list[Draft]] = [[] for _ in windows]
    for round_index in range(1, config.rounds + 1):
        todo = [i for i, ds in enumerate(drafts) if sum(d.passed for d in ds) < config.wanted]
        if not todo:
            break
        if round_index > 1 and config.refine == "critique":
            new = _critique_round(policy, windows, drafts, todo, config, round_index, seeds)
        else:
            prompts = [_prompt(policy, windows[i]) for i in todo]
            seed = _round_seed(config.seed, round_index) if seeds is None else \
                [_round_seed(seeds[i], round_index) for i in todo]
            texts = _sample(policy, prompts, config.samples, config, config.temperature, seed)
            new = {i: texts[k * config.samples:(k + 1) * config.samples] for k, i in enumerate(todo)}
        for i, texts in new.items():
            drafts[i] += [review(t, windows[i], fmt, config, period, round_index) for t in texts]
        if log is not None:  # counts over every window, so the last round's line agrees with the result
            passed = sum(d.passed for ds in drafts for d in ds)
            total = sum(len(ds) for ds in drafts)
            short = sum(sum(d.passed for d in ds) < config.wanted for ds in drafts)
            log(f"round {round_index}/{config.rounds}: {len(todo)} window(s) drafted; {passed} of {total} drafts "
                f"passed the critic so far; {short} of {len(windows)} window(s) short of {config.wanted}")
    return drafts


def _prompt(policy, window: Window) -> list[int]:
    return prompt_ids(policy.tokenizer, window, policy.prompt_format)


def _critique_round(policy, windows, drafts, todo, config, round_index, seeds=None) -> dict[int, list[str]]:
    """Re-prompt each failed draft of the previous round with its critique, one answer each (with
    per-window ``seeds``, the k-th re-prompt of window i draws from seed ``seeds[i] + k``)."""
    owners, prompts = [], []
    for i in todo:
        for draft in drafts[i]:
            if draft.round == round_index - 1 and not draft.passed:
                owners.append(i)
                prompts.append(chat_ids(policy.tokenizer, _critique_messages(windows[i], policy.prompt_format, draft)))
    new: dict[int, list[str]] = {i: [] for i in todo}
    if prompts:
        seed = _round_seed(config.seed, round_index) if seeds is None else \
            [_round_seed(seeds[i], round_index) + owners[:k].count(i) for k, i in enumerate(owners)]
        texts = _sample(policy, prompts, 1, config, config.temperature, seed)
        for i, text in zip(owners, texts):
            new[i].append(text)
    return new


def single_pass(policy, windows: Window | Sequence[Window], *, max_new_tokens: int = 1024,
                period: int | None = None, thoughts: Sequence[str] | None = None):
    """The plain model: one greedy draft per window (temperature 0), reviewed but never dropped.

    A parsed answer is the forecast (a short one extended with its last value, flagged by the
    finding); an answer with no number falls back to seasonal naive, flagged in ``fallback``.
    ``thoughts`` (one per window) replace the model's own reasoning: the completion is forced to
    start with ``<think>thought</think>`` and the opening answer tag (``task.answer_opening``), and
    the model writes only the answer (the think ablations of evaluate.py: empty, or another window's).
    """
    single = isinstance(windows, Window)
    windows = [windows] if single else list(windows)
    config = SlowThinkConfig(samples=1, rounds=1, max_new_tokens=max_new_tokens)
    forced = [""] * len(windows) if thoughts is None else \
        [answer_opening(w, t, policy.prompt_format) for w, t in zip(windows, thoughts)]
    prompts = [_prompt(policy, w) + policy.tokenizer.encode(f) for w, f in zip(windows, forced)]
    texts = [f + text for f, text in zip(forced, _sample(policy, prompts, 1, config, 0.0, None))]
    results = []
    for window, text in zip(windows, texts):
        draft = review(text, window, policy.prompt_format, config, period, 1)
        if draft.values is None:
            results.append(conclude(window, [draft], 1, period))
            continue
        values, _ = complete_forecast(draft.values, window)
        results.append(SlowThinkResult(values, {q: values.copy() for q in QUANTILES}, values[None, :],
                                       [text], [draft], 1, 0, 1))
    return results[0] if single else results


def default_max_new_tokens(fmt: PromptFormat, horizon: int) -> int:
    """A token budget that fits the reasoning and the answer: compact answers take ~4 tokens a value
    (digits and a comma), ``date value`` rows ~16 with a Qwen tokenizer; 256 tokens for the thinking."""
    per_value = 4 if fmt.style == "compact" else 16
    return 256 + per_value * horizon
