"""What every picture timer1 draws shares: the SVG document, text that stays inside its box, and axis
ticks at round values.

No font is measured (the picture is drawn before any viewer opens it), so text widths are estimated
generously: CHAR_EM of the font size per character, more than the average advance of sans-serif
letters and digits (digits: 0.556 em in Helvetica, 0.636 em in DejaVu Sans). Labels are then placed so their
estimated box lies inside the canvas.
"""

from __future__ import annotations

import math
import re
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np

CHAR_EM = 0.66        # estimated advance of one character, in ems
PAD = 2.0             # px kept between a label and the canvas edge
TICKS = (4, 6)        # how many ticks an axis gets, at least and at most
MANTISSAS = (1.0, 2.0, 2.5, 5.0)


def text_width(label: str, size: float) -> float:
    """The estimated width in px of ``label`` at font ``size`` px."""
    return CHAR_EM * size * len(label)


def text(x: float, y: float, label: str, *, size: float = 10, anchor: str = "middle", css: str = "",
         extra: str = "") -> str:
    """One ``<text>`` element, its content escaped; ``css`` becomes its class."""
    klass = f' class="{css}"' if css else ""
    return (f'<text{klass} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size:g}"{extra}>'
            f'{escape(label)}</text>')


def inside(x: float, label: str, size: float, lo: float, hi: float) -> float:
    """The centre nearest ``x`` at which ``label`` (centred) fits between ``lo`` and ``hi``."""
    half = text_width(label, size) / 2 + PAD
    return min(max(x, lo + half), hi - half)


def fit(label: str, size: float, room: float) -> str:
    """``label`` cut (with an ellipsis) to fit ``room`` px at ``size``."""
    if text_width(label, size) <= room:
        return label
    keep = max(1, int(room / (CHAR_EM * size)) - 1)
    return label[:keep] + "\u2026"


def nice_ticks(low: float, high: float) -> np.ndarray:
    """4 to 6 round values covering [low, high]: the step is 1, 2, 2.5 or 5 times a power of ten
    (Heckbert, "Nice numbers for graph labels", Graphics Gems 1990), the first tick at or below ``low``,
    the last at or above ``high``. Steps are tried from small to large and the first that needs at most
    TICKS[1] ticks is taken: the step before needed 7 or more, so this one needs at least 4."""
    if not np.isfinite([low, high]).all():
        raise ValueError(f"ticks need a finite range, got {low}..{high}")
    if high <= low:
        low, high = low - 1.0, high + 1.0
    exponent = math.floor(math.log10((high - low) / 10))
    while True:
        for mantissa in MANTISSAS:
            step = mantissa * 10.0 ** exponent
            first, last = math.floor(low / step + 1e-12), math.ceil(high / step - 1e-12)  # float slack only
            if last - first + 1 <= TICKS[1]:
                return np.arange(first, last + 1) * step
        exponent += 1


def tick_labels(ticks: np.ndarray) -> list[str]:
    """Tick values written with as many decimals as their step needs (and no more)."""
    step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    largest = float(np.max(np.abs(ticks)))
    if largest >= 1e6 or 0 < largest < 1e-3:
        return [f"{t:.3g}" for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step / 10.0 ** -decimals, 6) % 1:   # 2.5, 0.25: one more decimal
        decimals += 1
    return [f"{t:.{decimals}f}" for t in ticks]


SECONDS = re.compile(r"\d\d:\d\d(:00)$")        # a time's zero seconds
MIDNIGHT = re.compile(r"\d([ T]00:00)$")          # a date's midnight


def short_dates(labels: Sequence[str]) -> list[str]:
    """Dates without what every one of them ends in to no purpose: zero seconds, then midnight
    (``2016-05-01 00:00:00`` -> ``2016-05-01``; ``2016-05-01 13:00:00`` -> ``2016-05-01 13:00``)."""
    out = [str(label) for label in labels]
    for pattern in (SECONDS, MIDNIGHT):
        found = [pattern.search(label) for label in out]
        if out and all(found):
            out = [label[:m.start(1)] for label, m in zip(out, found)]
    return out


def document(width: float, height: float, body: list[str]) -> str:
    """A standalone SVG document of ``body`` on a white background."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
            f'viewBox="0 0 {width:g} {height:g}" font-family="sans-serif">\n'
            f'<rect width="{width:g}" height="{height:g}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
