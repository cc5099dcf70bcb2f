"""Many series from one long CSV against one file at a time: seconds per series of ``forecast.py``.

    python benchmarks/long_csv.py [--series 100] [--alone 5] [--mode auto] [--threads 2]
    python benchmarks/long_csv.py --processes 2      # instead: 1 process of 1 thread vs torchrun, N of 1 thread

Writes ``--series`` synthetic monthly series (cycles, trends and noise of different sizes, 60-120 months;
made here, no dataset's) as one long CSV (``unique_id,ds,y``) and forecasts them with one
``forecast.py --id-column unique_id`` command (batched model calls); then forecasts the first
``--alone`` of them one wide file each, as a person without the long layout would, and prints the
seconds per series of both ways and their ratio. Both ways run cold (a new process: loading included).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic(count: int, seed: int = 0) -> dict[str, tuple[list[str], np.ndarray]]:
    """``count`` monthly series: level, trend, a yearly cycle and noise, each drawn at random."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(count):
        n = int(rng.integers(60, 121))
        t = np.arange(n)
        values = (rng.uniform(50, 500) + rng.normal(0, 0.5) * t
                  + rng.uniform(0, 30) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6.3)) + rng.normal(0, rng.uniform(1, 8), n))
        start = int(rng.integers(0, 36))
        out[f"series_{k:03d}"] = ([f"{2010 + (start + m) // 12}-{(start + m) % 12 + 1:02d}-01" for m in range(n)],
                                  np.round(values, 2))
    return out


def timed(args: list[str], launcher: tuple[str, ...] = (sys.executable,)) -> float:
    started = time.perf_counter()
    done = subprocess.run([*launcher, str(REPO / "forecast.py"), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"} if len(launcher) > 1 else None)
    if done.returncode != 0:
        raise SystemExit(f"forecast.py failed: {done.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - started


def write_long(series: dict, path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unique_id", "ds", "y"])
        for name, (dates, values) in series.items():
            writer.writerows([name, d, f"{v:g}"] for d, v in zip(dates, values))
    return path


def scaling(series: dict, processes: int, mode: str) -> None:
    """One process of one thread against ``processes`` torchrun ranks of one thread each (the series
    sharded by rank, timer1.forecast.forecaster.Forecaster._sharded), cold, side by side; the two
    outputs must be equal byte for byte."""
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}")
    with tempfile.TemporaryDirectory() as tmp:
        long_path = write_long(series, Path(tmp) / "long.csv")
        common = [str(long_path), "--id-column", "unique_id", "--mode", mode, "--threads", "1", "--seed", "0"]
        one = timed([*common, "--out", str(Path(tmp) / "one.csv")])
        many = timed([*common, "--out", str(Path(tmp) / "many.csv")], torchrun)
        equal = (Path(tmp) / "one.csv").read_bytes() == (Path(tmp) / "many.csv").read_bytes()
    print(f"| way | series | seconds | seconds per series |\n|---|---:|---:|---:|\n"
          f"| 1 process, 1 thread | {len(series)} | {one:.1f} | {one / len(series):.2f} |\n"
          f"| torchrun, {processes} processes of 1 thread | {len(series)} | {many:.1f} | {many / len(series):.2f} |\n"
          f"\n{processes} processes are {one / many:.2f}x faster (mode {mode}, cold); outputs byte-equal: "
          f"{'yes' if equal else 'NO'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--alone", type=int, default=5)
    parser.add_argument("--mode", default="auto", choices=["auto", "slow", "single"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=None,
                        help="compare one process of one thread with this many torchrun ranks of one thread")
    args = parser.parse_args(argv)
    series = synthetic(args.series)
    if args.processes:
        scaling(series, args.processes, args.mode)
        return 0
    common = ["--mode", args.mode, "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        long_path = write_long(series, Path(tmp) / "long.csv")
        together = timed([str(long_path), "--id-column", "unique_id", "--out", str(Path(tmp) / "out.csv"), *common])
        alone = []
        for name, (dates, values) in list(series.items())[:args.alone]:
            wide = Path(tmp) / f"{name}.csv"
            wide.write_text("date,value\n" + "".join(f"{d},{v:g}\n" for d, v in zip(dates, values)))
            alone.append(timed([str(wide), "--horizon", "24", "--out", str(Path(tmp) / f"{name}.out.csv"), *common]))
    per_long, per_alone = together / args.series, float(np.mean(alone))
    print(f"| way | series | seconds | seconds per series |\n|---|---:|---:|---:|\n"
          f"| one long CSV, one command (--id-column) | {args.series} | {together:.1f} | {per_long:.2f} |\n"
          f"| one wide file per series, one command each | {args.alone} | {sum(alone):.1f} | {per_alone:.2f} |\n"
          f"\nper series, the long CSV is {per_alone / per_long:.1f}x faster (mode {args.mode}, "
          f"{args.threads} threads, cold processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
