"""Series per second of ``timer1.Forecaster.predict`` for 1, 8 and 64 series, batched (one generate
call per round for the whole batch) against one series per call. A script, not a test.

    OMP_NUM_THREADS=1 python benchmarks/forecaster.py                 # timer1-tiny, horizon 24
    python benchmarks/forecaster.py --model DIR --counts 1 8 --horizon 48 --modes single

The series are 96 hourly values of a daily cycle with noise (seeded, each different); every call
is seeded, so batched and one-by-one give the same forecasts (checked) and the timing compares the
same work. Slow mode: 8 drafts and up to 2 rounds (the defaults); single: one greedy answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timer1.forecast.forecaster import Forecaster  # noqa: E402


def contexts(n: int, length: int = 96) -> list[np.ndarray]:
    t = np.arange(length)
    rng = np.random.default_rng(0)
    return [20 + 5 * np.sin(2 * np.pi * t / 24 + k) + rng.normal(0, 0.3, length) for k in range(n)]


def measure(forecaster: Forecaster, series, horizon: int, mode: str, batched: bool) -> tuple[float, np.ndarray]:
    """(seconds, point forecasts) of one run over ``series``."""
    started = time.perf_counter()
    if batched:
        point = forecaster.predict(series, horizon, mode=mode, seed=0).point
    else:
        point = np.concatenate([forecaster.predict(s, horizon, mode=mode, seed=0).point for s in series])
    return time.perf_counter() - started, point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name, directory or run (default timer1-tiny)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--modes", nargs="+", default=["single", "slow"], choices=["single", "slow"])
    args = parser.parse_args()
    forecaster = Forecaster.from_pretrained(args.model)
    print(f"{forecaster.name} on {forecaster.device}, horizon {args.horizon}, 96-value contexts")
    print("| mode | series | batched s | batched series/s | one by one s | one by one series/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        for n in args.counts:
            series = contexts(n)
            batched, together = measure(forecaster, series, args.horizon, mode, batched=True)
            alone, separately = measure(forecaster, series, args.horizon, mode, batched=False)
            assert np.array_equal(together, separately), "batched and one-by-one forecasts differ"
            print(f"| {mode} | {n} | {batched:.1f} | {n / batched:.2f} | {alone:.1f} | {n / alone:.2f} | "
                  f"{alone / batched:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
