"""One progress line for long work (a long CSV, predict_df, evaluate.py): how much is done, the rate and
the time left. On a terminal the line is redrawn in place; elsewhere (a log file, CI, a notebook's
captured stderr) a line is printed every ``every`` share of the work instead, so logs stay short. Work
that ends within ``after`` seconds says nothing. Under torchrun only rank 0 speaks."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from timer1.util import dist


def format_seconds(seconds: float) -> str:
    """1234.5 -> '20m34s'; NaN -> '?'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressLine:
    """``update(done)`` as work finishes, ``close()`` at the end: ``label: 40/100 series, 2.1/s, 28s left``."""

    def __init__(self, label: str, total: int, unit: str = "series", *, stream: TextIO | None = None,
                 every: float = 0.05, after: float = 3.0):
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.stream = sys.stderr if stream is None else stream
        self.every, self.after = every, after
        self.started = time.perf_counter()
        self.shown_share, self.drawn = -1.0, False
        self.enabled = dist.is_master()

    def text(self, done: int, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", {format_seconds((self.total - done) / rate)} left" if 0 < done < self.total and rate > 0 else ""
        return f"{self.label}: {done}/{self.total} {self.unit}, {rate:.3g}/s{left}"

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        if not self.enabled or elapsed < self.after:
            return
        share = done / self.total
        if self.stream.isatty():
            self.stream.write("\r" + self.text(done, elapsed) + "\x1b[K")   # \x1b[K: clear what a longer line left
            self.drawn = True
        elif share - self.shown_share >= self.every or done == self.total:
            self.stream.write(self.text(done, elapsed) + "\n")
            self.shown_share = share
        self.stream.flush()

    def close(self) -> None:
        """End a redrawn line with a newline (nothing to do when lines were printed whole)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
