"""The Time-R1 prompt, the answer layout, and a forecast parser that never breaks.

Prompt styles (`build_prompt`):
- "official": the released evaluation prompt, word for word (Time-R1 repository, ``eval/prompt.py``;
  its missing space in "dates.The data" is kept), with the history as pandas prints it.
- "paper": the paper's five parts (Sec. 3.1: task definition, dataset description, channel
  information, testing data with timestamps, format instruction), built around the same sentences.
- "compact": for small models: no dates, values affinely rescaled to small integers (`CompactScaler`).

Answer layout (`format_answer`), the official output format filled in:

    <think>
    reasoning
    </think>
    <answer>
    ```
    date OT
    2017-10-24 00:00:00 9.215
    ...
    ```
    </answer>

The header row matters: the official parser (``eval/utils.py`` ``get_result``) drops the first line of
the fenced block.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from timer1.core.window import Window

# ----------------------------------------------------------------------------------------------
# What the datasets and channels are (channel meanings as in the official eval/dataLoader.py)

_ETT_MEANINGS = {
    "HUFL": "High UseFul Load", "HULL": "High UseLess Load", "MUFL": "Middle UseFul Load",
    "MULL": "Middle UseLess Load", "LUFL": "Low UseFul Load", "LULL": "Low UseLess Load",
    "OT": "Oil Temperature",
}
_AQ_MEANINGS = {
    "CO": "Carbon Monoxide", "DEWP": "Dew Point", "NO2": "Nitrogen Dioxide", "O3": "Ozone",
    "PM10": "Particulate Matter 10", "PM2.5": "Particulate Matter 2.5", "PRES": "Pressure",
    "RAIN": "Rainfall", "SO2": "Sulfur Dioxide", "TEMP": "Temperature", "WSPM": "Wind Speed",
}
CHANNEL_MEANINGS: dict[str, dict[str, str]] = {
    "ETTh1": _ETT_MEANINGS, "ETTh2": _ETT_MEANINGS, "ETTm1": _ETT_MEANINGS, "ETTm2": _ETT_MEANINGS,
    "exchange": {c: f"the daily exchange rates of {c.replace('_', ' ')}" for c in (
        "Australia", "British", "Canada", "Switzerland", "China", "Japan", "New_Zealand", "Singapore")},
    "aqwan": _AQ_MEANINGS, "aqshunyi": _AQ_MEANINGS,
    "wind": {
        "pred_humidity": "Predicted Humidity", "pred_pressure": "Predicted Pressure",
        "pred_temp": "Predicted Temperature", "pred_w_dir": "Predicted Wind Direction",
        "pred_w_speed": "Predicted Wind Speed", "target": "Target", "ture_w_speed": "True Wind Speed",
    },
    "nasdaq": {"Close": "closing price", "Open": "opening price", "Volume": "trading volume",
               "Low": "lowest price", "High": "highest price"},
}

_ETT_DESCRIPTION = ("It records an electricity transformer in China every {step}: six power load "
                    "features and the oil temperature, the key indicator of the transformer's condition.")
_AQ_DESCRIPTION = ("It records hourly air pollutants and weather at the {station} monitoring station in "
                   "Beijing (UCI Beijing Multi-Site Air Quality data, March 2013 to February 2017).")
DATASET_DESCRIPTIONS: dict[str, str] = {
    "ETTh1": _ETT_DESCRIPTION.format(step="hour"),
    "ETTh2": _ETT_DESCRIPTION.format(step="hour"),
    "ETTm1": _ETT_DESCRIPTION.format(step="15 minutes"),
    "ETTm2": _ETT_DESCRIPTION.format(step="15 minutes"),
    "exchange": "It records the daily exchange rates of eight countries against the US dollar from 1990 to 2010.",
    "aqwan": _AQ_DESCRIPTION.format(station="Wanliu"),
    "aqshunyi": _AQ_DESCRIPTION.format(station="Shunyi"),
    "wind": ("It records a wind farm every 15 minutes: numerical weather predictions (humidity, pressure, "
             "temperature, wind direction and speed), the measured wind speed, and the generated power (target)."),
    "nasdaq": "It records the daily NASDAQ index (open, high, low, close prices and volume), min-max scaled.",
}


def _lookup(table: dict, dataset: str):
    by_lower = {k.lower(): v for k, v in table.items()}
    return by_lower.get(dataset.lower())


def channel_meaning(dataset: str, channel: str) -> str:
    """What a channel measures (official wording); for an unknown CSV, the column name itself."""
    meanings = _lookup(CHANNEL_MEANINGS, dataset) or {}
    return meanings.get(channel, channel)


def dataset_description(dataset: str) -> str:
    """One sentence about a known dataset; a generic sentence for any other CSV."""
    return _lookup(DATASET_DESCRIPTIONS, dataset) or (
        f"It is a time series from the file {dataset}, one value per recorded date.")


# ----------------------------------------------------------------------------------------------
# Number and table formatting

def format_values(values: Sequence[float], decimals: int | None) -> list[str]:
    """Fixed decimals, or (None) pandas' default: 6 decimals, then trailing zeros common to all cut."""
    values = np.asarray(values, dtype=np.float64)
    if decimals is not None:
        return [f"{v:.{decimals}f}" for v in values]
    cells = [f"{v:.6f}" for v in values]
    while cells and all(c.endswith("0") and not c.endswith(".0") for c in cells):
        cells = [c[:-1] for c in cells]
    return cells


def format_table(dates: Sequence[str], values: Sequence[float], channel: str,
                 decimals: int | None = None) -> str:
    """A ``date <channel>`` table laid out as pandas ``DataFrame.to_string(index=False)`` prints it
    (the official prompt's table)."""
    cells = format_values(values, decimals)
    date_width = max([len("date"), *map(len, dates)])
    value_width = max([len(channel) + 1, *map(len, cells)])  # pandas keeps a space before a float header
    lines = [f"{'date':>{date_width}} {channel:>{value_width}}"]
    lines += [f"{d:>{date_width}} {c:>{value_width}}" for d, c in zip(dates, cells)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Prompts

OFFICIAL_TEMPLATE = (
    "Here is the {meaning} data of the {dataset} dataset. I will now give you data for the past "
    "{lookback} recorded dates, and please help me forecast the data for next {horizon} recorded "
    "dates.The data is as follows:\n```\n{table}\n```\n"
    "Please give me the complete data for the next {horizon} recorded dates, remember to give me "
    "the complete data.\n"
    "You must first conduct reasoning inside <think> ...</think>.\n"
    "When you have the final answer, you can output the answer inside <answer>...</answer>.\n"
    "Output format for your answer is :\n<think>\n...\n</think>\n<answer>\n```\n...\n```\n</answer>\n"
    "Please obey the format strictly."
)

PAPER_TEMPLATE = (
    "Task: you are an expert in time series forecasting. Here is the {meaning} data of the {dataset} "
    "dataset. I will now give you data for the past {lookback} recorded dates, and please help me "
    "forecast the data for next {horizon} recorded dates.\n"
    "Dataset: {description}\n"
    "Channel: {channel} is the {meaning}.\n"
    "The data is as follows:\n```\n{table}\n```\n"
    "Please give me the complete data for the next {horizon} recorded dates ({first_date} onwards), "
    "remember to give me the complete data.\n"
    "You must first conduct reasoning inside <think> ...</think>, analysing the trend, the "
    "seasonality and any change points. When you have the final answer, output it inside "
    "<answer>...</answer> as {horizon} rows of `date value` in a fenced block:\n"
    "<think>\n...\n</think>\n<answer>\n```\ndate {channel}\n...\n```\n</answer>\n"
    "Please obey the format strictly."
)

COMPACT_TEMPLATE = (
    "Series of {lookback} values (real = v*{scale}+{offset}):\n{values}\n"
    "Continue it with the next {horizon} values in the same scale. "
    "Reply as <think>short reasoning</think><answer>{horizon} comma-separated values</answer>."
)


def build_prompt(window: Window, *, style: str = "paper", decimals: int | None = 3,
                 dataset: str | None = None, lookback: int | None = None, horizon: int | None = None,
                 digits: int = 2) -> str:
    """The user message for one window. decimals=None prints like pandas (the official code);
    lookback shows only the last values; horizon asks for this many (default: the window's)."""
    dataset = dataset or window.dataset
    history, dates = np.asarray(window.history), list(window.history_dates)
    if lookback is not None:
        if not 0 < lookback <= len(history):
            raise ValueError(f"lookback {lookback} outside 1..{len(history)} for this window")
        history, dates = history[-lookback:], dates[-lookback:]
    horizon = horizon or window.horizon
    if style == "compact":
        scaler = CompactScaler.fit(history, digits)
        return COMPACT_TEMPLATE.format(lookback=len(history), horizon=horizon, values=scaler.encode(history),
                                       scale=_short(scaler.scale), offset=_short(scaler.offset))
    meaning = channel_meaning(dataset, window.channel)
    table = format_table(dates, history, window.channel, decimals)
    fields = dict(meaning=meaning, dataset=dataset, lookback=len(history), horizon=horizon, table=table)
    if style == "official":
        return OFFICIAL_TEMPLATE.format(**fields)
    if style == "paper":
        first_date = window.target_dates[0] if window.target_dates else "the next date"
        return PAPER_TEMPLATE.format(**fields, description=dataset_description(dataset),
                                     channel=window.channel, first_date=first_date)
    raise ValueError(f"unknown prompt style {style!r}; choose official, paper or compact")


# ----------------------------------------------------------------------------------------------
# Compact scaling

def _short(x: float) -> str:
    """A number in at most 6 significant digits, as written in the compact prompt."""
    return f"{x:.6g}"


@dataclass(frozen=True)
class CompactScaler:
    """Affine map real = v * scale + offset, so the history becomes fixed-width integers.

    With ``digits`` = d the history's minimum maps to m = 10**d // 10 and its maximum to
    10**d - 1 - m (d=2: 10 .. 89), leaving headroom for a future that strays outside the range.
    A fixed width puts the value k steps back a fixed number of tokens back, which a small
    attention model can learn to look up (LLMTime, Gruver et al. 2023, writes fixed precision for
    the same reason). scale and offset are rounded to the 6 significant digits the prompt states,
    so decoding with the printed numbers is exact.
    """

    offset: float
    scale: float
    digits: int = 2

    @classmethod
    def fit(cls, history: Sequence[float], digits: int = 2) -> "CompactScaler":
        x = np.asarray(history, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise ValueError("CompactScaler.fit: history has no finite value")
        if digits < 1:
            raise ValueError(f"CompactScaler.fit: digits must be >= 1, got {digits}")
        low, high = float(x.min()), float(x.max())
        margin = 10 ** digits // 10                     # the minimum's integer: headroom below and above
        span = high - low
        levels = 10 ** digits - 1 - 2 * margin
        scale = float(_short(span / levels if span > 0 else max(abs(low), 1.0) * 10.0 ** -digits))
        return cls(offset=float(_short(low - margin * scale)), scale=scale, digits=digits)

    def to_scaled(self, values: Sequence[float]) -> np.ndarray:
        """(n,) real values -> (n,) integers on the compact scale."""
        return np.rint((np.asarray(values, dtype=np.float64) - self.offset) / self.scale)

    def encode(self, values: Sequence[float]) -> str:
        """Real values -> ``"12,40,07"`` (comma-separated, zero-padded to `digits`, no spaces)."""
        return ",".join(f"{int(v):0{self.digits}d}" for v in self.to_scaled(values))

    def decode(self, numbers: Sequence[float]) -> np.ndarray:
        """Compact-scale numbers (as parsed from an answer) -> (n,) real values."""
        return np.asarray(numbers, dtype=np.float64) * self.scale + self.offset


def compact_scaler(window: Window, digits: int = 2, lookback: int | None = None) -> CompactScaler:
    """The scaler `build_prompt(window, style="compact", digits=digits, lookback=lookback)` used."""
    history = np.asarray(window.history)
    return CompactScaler.fit(history[-lookback:] if lookback else history, digits)


# ----------------------------------------------------------------------------------------------
# Answers

def format_answer(dates: Sequence[str], values: Sequence[float], reasoning: str, decimals: int = 3,
                  channel: str = "value") -> str:
    """The target completion: reasoning in <think>, a fenced ``date value`` table in <answer>."""
    if len(dates) != len(values):
        raise ValueError(f"format_answer: {len(dates)} dates for {len(values)} values")
    cells = format_values(values, decimals)
    rows = "\n".join(f"{d} {c}" for d, c in zip(dates, cells))
    return (f"<think>\n{reasoning.strip()}\n</think>\n"
            f"<answer>\n```\ndate {channel}\n{rows}\n```\n</answer>")


def format_compact_answer(values: Sequence[float], reasoning: str, scaler: CompactScaler) -> str:
    """The compact counterpart: real values written on the scaler's integer scale, one line."""
    return f"<think>{reasoning.strip()}</think>\n<answer>{scaler.encode(values)}</answer>"


# ----------------------------------------------------------------------------------------------
# Parsing

MAX_PARSE_CHARS = 2_000_000  # longer completions are cut here: parsing stays linear and bounded

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ROW_SPLIT = re.compile(r"[\s|;]+")
_LIST_SPLIT = re.compile(r"[\s|;,]+")
_FENCE_RE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
_WRAPPERS = "*_`~'\"()[]{}"  # markdown emphasis, quotes, brackets around a number
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2013": "-", "\uff0d": "-"})


def _as_number(token: str) -> float | None:
    """A token that is wholly one finite number (thousands commas allowed), else None."""
    token = token.strip(_WRAPPERS).rstrip(",;:")
    if token.endswith(".") and token.count(".") > 1:
        token = token[:-1]  # a sentence's full stop after a decimal number: "12.5."
    if not token or len(token) > 64:
        return None
    if _THOUSANDS_RE.fullmatch(token):
        token = token.replace(",", "")
    if not _NUMBER_RE.fullmatch(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def _list_numbers(line: str) -> list[float] | None:
    """The numbers of a line made of nothing but numbers (``12,40,99`` or ``1.5 2.5``), else None."""
    tokens = [t for t in _LIST_SPLIT.split(line) if t.strip(_WRAPPERS)]
    numbers = [_as_number(t) for t in tokens]
    if not tokens or any(n is None for n in numbers):
        return None
    return numbers


def _row_value(line: str) -> float | None:
    """The value of a table row: its last token, if that is wholly a number (``date PM2.5`` -> None)."""
    tokens = [t for t in _ROW_SPLIT.split(line) if t.strip(_WRAPPERS + "-")]
    if not tokens:
        return None
    last = tokens[-1]
    value = _as_number(last)
    if value is None and "," in last.rstrip(","):
        value = _as_number(last.rstrip(",").rsplit(",", 1)[-1])  # a CSV-style row: date,value
    return value


def _numbers_in(region: str) -> list[float]:
    """Numbers of a text region: one value per table row, or a list of values (compact answers).
    Rows of exactly two numbers (nasdaq's ``996.0 0.603`` index-value rows) stay rows.
    """
    lines = [ln.translate(_MINUS_SIGNS) for ln in region.splitlines()]
    lines = [ln for ln in lines if ln.strip() and not set(ln.strip()) <= set("|-:+= ")]  # table rules
    row_values = [_row_value(ln) for ln in lines]
    valued = [ln for ln, v in zip(lines, row_values) if v is not None]
    lists = [_list_numbers(ln) for ln in valued]
    if valued and all(nums is not None for nums in lists) and (
            len(valued) == 1 or any(len(nums) >= 3 for nums in lists)):
        return [x for nums in lists for x in nums]
    return [v for v in row_values if v is not None]


def _answer_region(text: str) -> str:
    """Where the forecast is: inside the last <answer> (closing tag optional), else after </think>,
    else the whole text; within it, the first fenced block if there is one."""
    lower = text.lower()
    start = lower.rfind("<answer>")
    if start >= 0:
        end = lower.find("</answer>", start)
        region = text[start + len("<answer>"): end if end >= 0 else len(text)]
    else:
        think_end = lower.rfind("</think>")
        region = text[think_end + len("</think>"):] if think_end >= 0 else text
    fence = _FENCE_RE.search(region)
    if fence is not None and fence.group(1).strip():
        return fence.group(1)
    return region


def parse_forecast(completion) -> np.ndarray | None:
    """The forecast values of a completion as a finite float64 array, or None if there are none.

    Reads the `format_answer` layout and its near-misses (markdown tables, missing tags or fences,
    prose around the block, compact lists). A row's value is its LAST token, so the numbers inside
    dates are never taken for values. Never raises, whatever the input.
    """
    try:
        if isinstance(completion, (bytes, bytearray)):
            completion = bytes(completion).decode("utf-8", errors="replace")
        if not isinstance(completion, str):
            return None
        text = completion[:MAX_PARSE_CHARS].replace("\x00", "")
        values = np.asarray(_numbers_in(_answer_region(text)), dtype=np.float64)
        values = values[np.isfinite(values)]
        return values if values.size else None
    except Exception:  # a parser for model outputs must not take the caller down; nothing to return
        return None
