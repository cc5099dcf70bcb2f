"""SFT data construction: the Time-R1 paper's Algorithm 1 with a pluggable teacher.

For each training window (train region only, never test):

1. the teacher writes k candidate answers, each a reasoning and a forecast;
2. the candidate with the lowest MAPE against the true future is kept;
3. the teacher is shown the history, the true values and that reasoning, and writes a revised
   reasoning that leads to the truth;
4. the target is ``<think>revised reasoning</think>\\n<answer>true values</answer>``.

The paper's teacher was DeepSeek-R1. Offline, :class:`ModelTeacher` samples any local Qwen2-architecture
checkpoint (DeepSeek-R1-Distill-Qwen is one); :class:`StatisticalTeacher` needs no model: its candidates
are the naive baselines and its reasoning states the history's level, range, trend and period, and how
the true future differs. A teacher that fails on a window falls back to the statistical one.

The JSONL file ``train_sft.py --data.sft_jsonl`` reads is built by ``python -m timer1.train.sft_jsonl``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Protocol, Sequence

import numpy as np

from timer1.core.baselines import Linear, estimate_period, make_baseline
from timer1.core.codec import (PromptFormat, chat_ids, complete_forecast, forecast_from_completion, prompt_messages,
                               target_completion)
from timer1.core.metrics import correlation, mape
from timer1.core.prompts import compact_scaler, format_values
from timer1.core.window import Window

TREND_SPAN = 10  # trends are stated per this many steps, so integers on the compact scale keep resolution


METHODS = ("seasonal_naive", "drift", "linear", "mean", "last")  # candidate order of the statistical teacher


@dataclass
class Candidate:
    """One teacher answer; `forecast` on the real scale, None if it did not parse."""

    reasoning: str
    forecast: Optional[np.ndarray]
    method: str
    text: str = ""


class Teacher(Protocol):
    """What Algorithm 1 needs from a teacher."""

    name: str

    def candidates(self, window: Window, k: int) -> list[Candidate]:
        """Up to k candidate answers for the window (forecast None = unparsable)."""

    def refine(self, window: Window, best: Candidate) -> str:
        """A revised reasoning for `best` that leads to the window's true target ("" = failed)."""


@dataclass
class SFTSample:
    """One SFT example: the chat prompt and the target completion, with where it came from."""

    prompt: list[dict]
    completion: str
    prompt_style: str
    dataset: str
    channel: str
    start: int
    teacher: str
    method: str
    mape: float

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "completion": self.completion, "prompt_style": self.prompt_style,
                "dataset": self.dataset, "channel": self.channel, "start": int(self.start),
                "teacher": self.teacher, "method": self.method,
                "mape": None if not math.isfinite(self.mape) else round(float(self.mape), 6)}


def candidate_mape(candidate: Candidate, window: Window) -> float:
    """MAPE of a candidate against the true target (inf if it did not parse); a short forecast is
    extended with its last value first, as evaluation does."""
    if candidate.forecast is None or len(candidate.forecast) == 0:
        return math.inf
    forecast, _ = complete_forecast(candidate.forecast, window)
    score = mape(forecast, window.target)
    return score if math.isfinite(score) else math.inf


def select_best(candidates: Sequence[Candidate], window: Window) -> tuple[Optional[Candidate], float]:
    """The lowest-MAPE candidate (first on ties) and its MAPE; (None, inf) if none parsed."""
    best, best_score = None, math.inf
    for candidate in candidates:
        score = candidate_mape(candidate, window)
        if score < best_score:
            best, best_score = candidate, score
    return best, best_score


def make_sample(window: Window, teacher: Teacher, fmt: PromptFormat, k: int) -> Optional[SFTSample]:
    """Algorithm 1 for one window with one teacher; None when no candidate parses or the revision is empty."""
    best, score = select_best(teacher.candidates(window, k), window)
    if best is None:
        return None
    reasoning = teacher.refine(window, best).strip()
    if not reasoning:
        return None
    return SFTSample(prompt=prompt_messages(window, fmt), completion=target_completion(window, reasoning, fmt),
                     prompt_style=fmt.style, dataset=window.dataset, channel=window.channel,
                     start=window.start, teacher=teacher.name, method=best.method, mape=score)


@dataclass
class BuildCounts:
    """How the samples were made: by the teacher, by the fallback teacher, or not at all."""

    teacher: int = 0
    fallback: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return f"{self.teacher} from the teacher, {self.fallback} from the fallback, {self.skipped} skipped"


def build_samples(windows: Sequence[Window], teacher: Teacher, fmt: PromptFormat, k: int = 5,
                  fallback: Optional[Teacher] = None) -> tuple[list[SFTSample], BuildCounts]:
    """Algorithm 1 over `windows`. A window the teacher fails on goes to `fallback` (if any)."""
    samples, counts = [], BuildCounts()
    for window in windows:
        sample = make_sample(window, teacher, fmt, k)
        if sample is not None:
            counts.teacher += 1
        elif fallback is not None and (sample := make_sample(window, fallback, fmt, k)) is not None:
            counts.fallback += 1
        else:
            counts.skipped += 1
            continue
        samples.append(sample)
    return samples, counts


def display_values(values: np.ndarray, window: Window, fmt: PromptFormat) -> np.ndarray:
    """Values on the scale the prompt shows: compact integers (unrounded here), else the real values."""
    values = np.asarray(values, dtype=np.float64)
    if fmt.style == "compact":
        scaler = compact_scaler(window, fmt.digits)
        return (values - scaler.offset) / scaler.scale
    return values


@dataclass(frozen=True)
class SeriesStats:
    """What the reasoning states about a stretch of values (on the display scale)."""

    level: float      # mean, min and max of the last `recent` values
    low: float
    high: float
    recent: int
    slope: float      # least-squares slope per step over all values
    period: int       # 1 = no cycle
    acf: float        # autocorrelation at `period`
    mean: float       # of the whole window (what the "mean" candidate repeats)


def series_stats(x: np.ndarray) -> SeriesStats:
    """The statistics of `x` (L,) that the statistical teacher writes down."""
    x = np.asarray(x, dtype=np.float64)
    period = estimate_period(x) if len(x) >= 8 else 1
    recent = period if period > 1 else max(1, min(len(x), max(4, len(x) // 4)))
    tail = x[-recent:]
    return SeriesStats(level=float(tail.mean()), low=float(tail.min()), high=float(tail.max()), recent=recent,
                       slope=least_squares_slope(x), period=period, acf=autocorrelation(x, period),
                       mean=float(x.mean()))


def least_squares_slope(x: np.ndarray) -> float:
    """Slope per step of the least-squares line through x (0 for fewer than 2 points)."""
    if len(x) < 2:
        return 0.0
    t = np.arange(len(x), dtype=np.float64)
    t -= t.mean()
    return float(np.dot(t, x - x.mean()) / np.dot(t, t))


def autocorrelation(x: np.ndarray, lag: int) -> float:
    """Sample autocorrelation of x at `lag` (0 when undefined)."""
    centred = np.asarray(x, dtype=np.float64) - np.mean(x)
    denom = float(np.dot(centred, centred))
    if lag < 1 or lag >= len(x) or denom == 0.0:
        return 0.0
    return float(np.dot(centred[lag:], centred[:-lag]) / denom)


class StatisticalTeacher:
    """A teacher with no model: baseline forecasts as candidates, a written analysis as reasoning.

    The "linear" candidate is the DLinear-style baseline fitted on `train_values` (dataset, channel)
    when given, else the least-squares line through the history. Numbers are stated on the scale
    the prompt shows, rounded as the prompt rounds them.
    """

    name = "statistical"

    def __init__(self, fmt: PromptFormat, verbosity: str = "short",
                 train_values: Optional[Mapping[tuple[str, str], np.ndarray]] = None):
        if verbosity not in ("short", "long"):
            raise ValueError(f"verbosity must be short or long, got {verbosity!r}")
        self.fmt, self.verbosity = fmt, verbosity
        self.train_values = dict(train_values or {})
        self._linear: dict[tuple[str, str, int, int], Optional[Linear]] = {}

    # -- numbers as the reasoning writes them
    def num(self, value: float) -> str:
        """A level-like number: integers on the compact scale, the prompt's decimals otherwise."""
        if self.fmt.style == "compact":
            return str(int(round(value)))
        decimals = 3 if self.fmt.decimals is None else self.fmt.decimals
        return format_values([value], decimals)[0]

    def rate(self, value: float) -> str:
        """A signed change written as the prompt writes values. Never more digits than the values
        carry: a model trained on "-0.0012/step" learns to emit zeros until the token budget runs out."""
        if not math.isfinite(value):
            value = 0.0
        text = self.num(abs(value))
        return ("-" if value < 0 and float(text) != 0 else "+") + text

    def trend(self, slope: float) -> str:
        """A least-squares slope per step as the reasoning states it: the change over `TREND_SPAN` steps."""
        return f"{self.rate(slope * TREND_SPAN)} per {TREND_SPAN} steps"

    # -- candidates
    def forecast(self, method: str, window: Window) -> np.ndarray:
        """The (H,) real-scale forecast of one baseline method for the window."""
        history, horizon = window.history, window.horizon
        if method == "seasonal_naive":
            return make_baseline("seasonal_naive", period=series_stats(history).period).forecast(history, horizon)
        if method == "linear":
            model = self._linear_model(window)
            if model is not None:
                return model.forecast(history, horizon)
            slope, t = least_squares_slope(history), np.arange(len(history), dtype=np.float64)
            intercept = history.mean() - slope * t.mean()
            return intercept + slope * np.arange(len(history), len(history) + horizon)
        return make_baseline(method).forecast(history, horizon)

    def _linear_model(self, window: Window) -> Optional[Linear]:
        key = (window.dataset, window.channel, window.lookback, window.horizon)
        if key not in self._linear:
            values = self.train_values.get(key[:2])
            model = None
            if values is not None and len(values) >= window.lookback + window.horizon:
                try:
                    model = Linear().fit(values, window.lookback, window.horizon)
                except ValueError:                       # a train region with gaps everywhere
                    model = None
            self._linear[key] = model
        return self._linear[key]

    def candidates(self, window: Window, k: int) -> list[Candidate]:
        stats = series_stats(display_values(window.history, window, self.fmt))
        return [Candidate(self.analysis(stats) + " " + self.justify(method, stats, window),
                          self.forecast(method, window), method)
                for method in METHODS[:max(1, k)]]

    # -- reasoning text
    def analysis(self, s: SeriesStats) -> str:
        """What the history shows: recent level and range, trend, cycle."""
        if self.verbosity == "short":
            cycle = f"period {s.period}" if s.period > 1 else "no cycle"
            return (f"Last {s.recent}: mean {self.num(s.level)}, range {self.num(s.low)}-{self.num(s.high)}; "
                    f"trend {self.trend(s.slope)}; {cycle}.")
        cycle = (f"Its autocorrelation peaks at a lag of {s.period} steps ({s.acf:.2f}), so it repeats a "
                 f"cycle of {s.period} steps." if s.period > 1 else
                 "Its autocorrelation shows no clear peak, so there is no regular cycle to copy.")
        return (f"The last {s.recent} values average {self.num(s.level)} and move between {self.num(s.low)} "
                f"and {self.num(s.high)}. Over the whole window the least-squares trend is "
                f"{self.trend(s.slope)}. {cycle}")

    def justify(self, method: str, s: SeriesStats, window: Window) -> str:
        """Why `method` follows from the statistics (one clause short, one sentence long)."""
        fitted = self._linear_model(window) is not None
        short = {"seasonal_naive": f"Repeat the last {s.period} steps." if s.period > 1 else "Repeat the last value.",
                 "drift": f"Extend the trend {self.trend(s.slope)}.",
                 "linear": "Project a linear model of past windows." if fitted else "Extend the fitted line.",
                 "mean": f"Revert to the window mean {self.num(s.mean)}.",
                 "last": "Hold the last value."}
        if self.verbosity == "short":
            return short[method]
        long = {"seasonal_naive": (f"Because the cycle is regular, the best guess copies the last {s.period} steps "
                                   "forward." if s.period > 1 else "Without a cycle, copying the last value is safest."),
                "drift": f"Because the trend is steady, the forecast extends it at {self.trend(s.slope)}.",
                "linear": ("A linear model fitted on past windows of this series maps the history to what follows, "
                           "capturing its level and slow trend, so I project it." if fitted else
                           "A straight line fitted through the history captures its level and slow trend, so I extend it."),
                "mean": (f"The series fluctuates around a stable level, so the forecast returns to the window's mean, "
                         f"{self.num(s.mean)}."),
                "last": "The series wanders without a stable pattern, so holding the last value is the safest forecast."}
        return long[method]

    def refine(self, window: Window, best: Candidate) -> str:
        """`best`'s reasoning plus how the true future differs from the history (level, trend, cycle)."""
        past = series_stats(display_values(window.history, window, self.fmt))
        future = display_values(window.target, window, self.fmt)                  # (H,)
        level, slope = float(future.mean()), least_squares_slope(future)
        shift = level - past.level
        cycle = ""
        if past.period > 1 and len(future) >= 4:
            continued = display_values(self.forecast("seasonal_naive", window), window, self.fmt)
            holds = correlation(continued, future) >= 0.5
            if self.verbosity == "short":
                cycle = " Cycle holds." if holds else " Cycle fades."
            else:
                cycle = (f" The {past.period}-step cycle {'keeps' if holds else 'loses'} its shape "
                         f"(correlation {correlation(continued, future):.2f}).")
        if self.verbosity == "short":
            return (f"{best.reasoning} Next {len(future)}: mean {self.num(level)} ({self.rate(shift)}), "
                    f"trend {self.trend(slope)}.{cycle}")
        return (f"{best.reasoning} Looking at how such a series continues, the next {len(future)} values should "
                f"average about {self.num(level)}, a change of {self.rate(shift)} from the recent level, with a "
                f"trend of {self.trend(slope)}.{cycle} So I keep the shape of this forecast and adjust "
                "its level and trend accordingly, which gives the values below.")


CANDIDATE_PROMPT = (
    "{task}\n\n"
    "Before answering, analyse the history inside <think></think>: its level, trend, cycles and any recent "
    "change. Then give every forecast value inside <answer></answer>."
)


REFINE_PROMPT = (
    "You are improving the reasoning behind a time-series forecast.\n"
    "History ({lookback} values of {channel}, {dataset}):\n{history}\n\n"
    "A forecaster reasoned as follows, and its forecast had a mean absolute percentage error of {mape:.1%}:\n"
    "<reasoning>\n{reasoning}\n</reasoning>\n\n"
    "The true next {horizon} values were:\n{truth}\n\n"
    "Rewrite the reasoning so that it leads to the true values: keep what was right, correct what was wrong "
    "(level, trend, seasonality, change points), and write it as an analysis of the history, without "
    "mentioning that you saw the true values. Reply with the revised reasoning only, inside <think></think>."
)


_THINK = re.compile(r"<think>(.*?)(?:</think>|<answer>|$)", re.DOTALL | re.IGNORECASE)


def extract_reasoning(text: str, max_chars: int = 8000) -> str:
    """The reasoning of a completion: inside <think> (closing tag optional), else everything before
    <answer>; tags removed, whitespace collapsed at the ends, cut at `max_chars`."""
    match = _THINK.search(text)
    body = match.group(1) if match else text.split("<answer>")[0]
    body = re.sub(r"</?(think|answer)>", "", body, flags=re.IGNORECASE).strip()
    return body[:max_chars].strip()


class ModelTeacher:
    """A local Qwen2-architecture checkpoint as the teacher: `k` samples of ``CANDIDATE_PROMPT`` as
    candidates, one greedy completion of ``REFINE_PROMPT`` as the revision."""

    name = "model"

    def __init__(self, policy, fmt: PromptFormat, *, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 2048, seed: int = 0):
        self.policy, self.fmt = policy, fmt
        self.temperature, self.top_p, self.max_new_tokens, self.seed = temperature, top_p, max_new_tokens, seed
        self.name = f"model:{Path(str(policy.source)).name}"

    @classmethod
    def from_path(cls, path: str | os.PathLike, fmt: PromptFormat, *, device=None, **kwargs) -> "ModelTeacher":
        from timer1.core.policy import load_policy  # lazy: the statistical path needs no model
        return cls(load_policy(path, device=device), fmt, **kwargs)

    def sample(self, messages: list[dict], num_samples: int, temperature: float) -> list[str]:
        """`num_samples` completions of one chat prompt, decoded to text."""
        from timer1.core.sampler import generate
        tokenizer = self.policy.tokenizer
        prompt = chat_ids(tokenizer, messages)
        self.seed += 1                                   # fresh, reproducible draws per call
        out = generate(self.policy.model, [prompt], max_new_tokens=self.max_new_tokens, num_samples=num_samples,
                       temperature=temperature, top_p=self.top_p if temperature > 0 else 1.0,
                       eos_ids=tokenizer.eos_ids, seed=self.seed)
        return [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in out.tokens]

    def candidates(self, window: Window, k: int) -> list[Candidate]:
        messages = prompt_messages(window, self.fmt)
        messages[-1] = {"role": "user", "content": CANDIDATE_PROMPT.format(task=messages[-1]["content"])}
        return [Candidate(extract_reasoning(text), forecast_from_completion(text, window, self.fmt), "model", text)
                for text in self.sample(messages, k, self.temperature)]

    def shown(self, values: np.ndarray, window: Window) -> str:
        """Values as the student's prompt writes them (compact integers or the prompt's decimals)."""
        if self.fmt.style == "compact":
            return ",".join(str(int(v)) for v in np.rint(display_values(values, window, self.fmt)))
        return " ".join(format_values(values, 3 if self.fmt.decimals is None else self.fmt.decimals))

    def refine(self, window: Window, best: Candidate) -> str:
        prompt = REFINE_PROMPT.format(lookback=window.lookback, channel=window.channel, dataset=window.dataset,
                                      history=self.shown(window.history, window),
                                      mape=candidate_mape(best, window), reasoning=best.reasoning or "(none)",
                                      horizon=window.horizon, truth=self.shown(window.target, window))
        return extract_reasoning(self.sample([{"role": "user", "content": prompt}], 1, 0.0)[0])
