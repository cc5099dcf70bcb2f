"""Fine-tuning the default model on your own CSV (configs/finetune_tiny.toml, --data.files): a
sawtooth of period 7, which timer1-tiny forecasts badly, gets a held-out MASE at least 20% lower
after ~25 s of SFT on CPU (measured: 1.37 -> 0.94); the run then serves forecast.py --model RUN and
Forecaster.from_pretrained(RUN). Also: data.files splits by time and leaves the datasets path alone."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timer1.core.metrics import mase
from timer1.data.csv_io import read_csv
from timer1.data.protocol import train_windows
from timer1.data.window_sets import FILE_VALIDATION_SHARE, WindowSpec, file_windows, load_windows
from timer1.forecast.forecaster import Forecaster

REPO = Path(__file__).resolve().parents[1]
ROWS = 600


def sawtooth_csv(path: Path, rows: int = ROWS) -> Path:
    """Daily sales climbing 10, 12, ..., 22 over a week, then dropping back: period 7, small noise."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    values = 10 + 2 * (t % 7) + rng.normal(0, 0.2, rows)
    dates = np.datetime64("2020-01-01") + t
    path.write_text("date,sales\n" + "".join(f"{d},{v:.3f}\n" for d, v in zip(dates, values)))
    return path


def held_out_mase(forecaster: Forecaster, windows) -> float:
    out = forecaster.forecast_windows(windows, mode="single")
    assert out.source.count("model") == len(windows)    # the model's own answers, no fallback
    return float(np.mean([mase(p, w.target, w.history) for p, w in zip(out.point, windows)]))


def test_files_are_split_by_time_and_the_datasets_path_is_unchanged(tmp_path, shared_data):
    csv = sawtooth_csv(tmp_path / "saw.csv")
    spec = WindowSpec("", (), 96, 24, 4, files=(str(csv),))
    train, val = file_windows(spec, "train"), file_windows(spec, "val")
    split = ROWS - int(ROWS * FILE_VALIDATION_SHARE)
    assert max(w.start + 96 + 24 for w in train) <= split                 # training never sees the held-out part
    assert min(w.start + 96 for w in val) == split and max(w.start + 120 for w in val) <= ROWS
    assert train[0].dataset == "saw" and len(train) == (split - 120) // 4 + 1
    paper = WindowSpec(str(shared_data), ("nasdaq",), 36, 36, 36)
    alone = load_windows(paper, "train")
    assert len(alone) == len(train_windows(read_csv(shared_data / "nasdaq.csv"), 36, 36, 36))   # as before files
    both = load_windows(dataclasses.replace(paper, files=(str(csv),)), "train")
    assert [(w.channel, w.start) for w in both[:len(alone)]] == [(w.channel, w.start) for w in alone]
    assert len(both) == len(alone) + len(file_windows(dataclasses.replace(paper, files=(str(csv),)), "train"))
    short = WindowSpec("", (), 96, 24, 4, files=(str(sawtooth_csv(tmp_path / "short.csv", 100)),))
    with pytest.raises(ValueError, match="100 rows are too few"):
        file_windows(short, "train")


def test_finetune_on_a_sawtooth_lowers_its_held_out_mase(tmp_path):
    csv = sawtooth_csv(tmp_path / "saw.csv")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "train_sft.py", "--config", "configs/finetune_tiny.toml",
                           f"--data.files={csv}", f"--out_dir={run}", "--batch_size=4", "--data.max_windows=48",
                           "--save_every=0", "--eval_every=0", "--eval_windows=4"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    windows = file_windows(WindowSpec("", (), 96, 24, 4, files=(str(csv),)), "val")
    assert len(windows) == 25
    before = held_out_mase(Forecaster.from_pretrained("timer1-tiny"), windows)
    after = held_out_mase(Forecaster.from_pretrained(run), windows)
    assert after < 0.8 * before, (before, after)
    cli = subprocess.run([sys.executable, "forecast.py", str(csv), "--model", str(run), "--horizon", "7",
                          "--samples", "2", "--rounds", "1", "--threads", "1"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0 and f"loaded {run}/step_" in cli.stderr, cli.stderr
    assert len(cli.stdout.strip().splitlines()) == 1 + 7
