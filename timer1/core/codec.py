"""One forecasting example as the model sees it, shared by SFT, GRIP, slow thinking and evaluation.

A :class:`~timer1.core.window.Window` becomes a chat prompt (``prompt_ids``); the model's completion
becomes a forecast on the series' real scale (``forecast_from_completion``); a target becomes the text
the model should have written (``target_completion``). With the compact style the model reads and
writes rescaled integers, and this module is the one place that undoes the scaling. Rewards are
scale-free, so GRIP scores a compact completion against ``reward_target`` on the compact scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timer1.core.prompts import build_prompt, compact_scaler, format_answer, format_compact_answer, parse_forecast
from timer1.core.window import Window

STYLES = ("official", "paper", "compact")


@dataclass(frozen=True)
class PromptFormat:
    """How windows are written; ``decimals=None`` prints like the official code's pandas table,
    ``system=None`` keeps the tokenizer's default system message."""

    style: str = "paper"
    decimals: int | None = 3
    digits: int = 2
    system: str | None = None

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown prompt style {self.style!r}; choose one of {', '.join(STYLES)}")


def prompt_format_from(data) -> PromptFormat:
    """The PromptFormat a run's ``DataConfig`` (timer1.train.config) asks for."""
    return PromptFormat(style=data.prompt_style, decimals=data.decimals, digits=data.digits)


def prompt_messages(window: Window, fmt: PromptFormat) -> list[dict]:
    """The chat messages for one window: an optional system turn and the user's request."""
    user = build_prompt(window, style=fmt.style, decimals=fmt.decimals, digits=fmt.digits)
    system = [] if fmt.system is None else [{"role": "system", "content": fmt.system}]
    return system + [{"role": "user", "content": user}]


def prompt_ids(tokenizer, window: Window, fmt: PromptFormat) -> list[int]:
    """Token ids of the window's chat-templated prompt, ending with the assistant turn's opening."""
    return chat_ids(tokenizer, prompt_messages(window, fmt))


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of chat messages, templated, ending with the assistant turn's opening."""
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def completion_ids(tokenizer, completion: str) -> list[int]:
    """Token ids of an assistant completion, closed by the end-of-turn token the model must learn."""
    return tokenizer.encode(completion) + [tokenizer.eos_ids[0]]


def target_completion(window: Window, reasoning: str, fmt: PromptFormat,
                      values: np.ndarray | None = None) -> str:
    """The completion that reasons ``reasoning`` and answers ``values`` (default: the true target)."""
    values = window.target if values is None else np.asarray(values, dtype=np.float64)
    if fmt.style == "compact":
        return format_compact_answer(values, reasoning, compact_scaler(window, fmt.digits))
    decimals = 3 if fmt.decimals is None else fmt.decimals
    return format_answer(window.target_dates, values, reasoning, decimals=decimals, channel=window.channel)


def answer_opening(window: Window, reasoning: str, fmt: PromptFormat) -> str:
    """The start of a completion that reasoned ``reasoning``, up to the opening ``<answer>`` tag: forced
    as a prefix, it makes the model answer after a reasoning it did not write (think ablations)."""
    text = target_completion(window, reasoning, fmt, values=np.zeros(window.horizon))  # values are cut off
    return text[:text.index("<answer>") + len("<answer>")]


def reward_target(window: Window, fmt: PromptFormat) -> np.ndarray:
    """The target on the scale the completion is written in (compact: the integer scale, unrounded)."""
    if fmt.style == "compact":
        scaler = compact_scaler(window, fmt.digits)
        return (window.target - scaler.offset) / scaler.scale  # (H,)
    return np.asarray(window.target, dtype=np.float64)


def forecast_from_completion(completion: str, window: Window, fmt: PromptFormat) -> np.ndarray | None:
    """The forecast a completion states, on the real scale: at most ``window.horizon`` values, or
    None when nothing parses."""
    numbers = parse_forecast(completion)
    if numbers is None:
        return None
    numbers = numbers[:window.horizon]
    if fmt.style == "compact":
        # the history spans 10**digits//10 .. 10**digits - 1 - that (10..89 for 2 digits); a number beyond
        # about one more range on either side is a merged separator ("4567" for "45,67"), not a forecast
        top = 10 ** fmt.digits
        return compact_scaler(window, fmt.digits).decode(np.clip(numbers, -top, 2 * top))
    return numbers


def complete_forecast(values: np.ndarray | None, window: Window) -> tuple[np.ndarray, bool]:
    """A full-length forecast from a possibly short or missing one, and whether it was complete:
    short answers are extended with their last value, a missing one is the last observed value."""
    H = window.horizon
    if values is None or len(values) == 0:
        return np.full(H, float(window.history[-1])), False
    if len(values) >= H:
        return np.asarray(values[:H], dtype=np.float64), True
    return np.concatenate([values, np.full(H - len(values), float(values[-1]))]), False
