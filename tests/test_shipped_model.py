"""The shipped default model, timer1/checkpoints/timer1-tiny: complete, small, loads, and forecasts a fixed
ETTh1 test window in the right shape through the library and through forecast.py with no --model."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timer1.core.codec import forecast_from_completion, prompt_ids
from timer1.core.policy import load_policy
from timer1.core.prompts import compact_scaler
from timer1.core.sampler import generate
from timer1.data.csv_io import read_csv
from timer1.data.protocol import paper_windows
from timer1.tools.export import INFERENCE_FILES

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "timer1" / "checkpoints" / "timer1-tiny"


@pytest.fixture(scope="module")
def policy():
    return load_policy(SHIPPED, device="cpu", dtype="float32")


def test_layout_size_and_card():
    names = {p.name for p in SHIPPED.iterdir()}
    assert set(INFERENCE_FILES) | {"README.md", "metrics.json", "training"} <= names
    assert {"sft.toml", "grip.toml"} <= {p.name for p in (SHIPPED / "training").iterdir()}
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 50e6
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert {"sft", "grip"} <= set(metrics["evaluations"])
    card = (SHIPPED / "README.md").read_text()
    # the card quotes the measured single-pass MSE on ETTh1 of the shipped (GRIP) model
    mse = metrics["evaluations"]["grip"]["results"]["ETTh1"]["timer1"]["mse"]
    assert f"{mse:.2f}" in card


def test_greedy_forecast_of_a_fixed_window_parses_with_the_right_length(policy, shared_data):
    window = paper_windows(read_csv(shared_data / "ETTh1.csv"), "ETTh1")[69]     # OT, the 10th window
    fmt = policy.prompt_format
    assert fmt.style == "compact"
    ids = prompt_ids(policy.tokenizer, window, fmt)
    out = generate(policy.model, [ids], max_new_tokens=420, temperature=0.0,
                   eos_ids=policy.tokenizer.eos_ids, seed=0)
    text = policy.tokenizer.decode(out.tokens[0])
    assert text.startswith("<think>") and "</think>" in text and "<answer>" in text
    forecast = forecast_from_completion(text, window, fmt)
    assert forecast is not None and forecast.shape == (96,) and np.isfinite(forecast).all()
    # on the real scale, inside a generous band around the history (not the compact integers)
    lo, hi, span = window.history.min(), window.history.max(), np.ptp(window.history)
    assert lo - span <= forecast.min() and forecast.max() <= hi + span
    assert not np.allclose(forecast, compact_scaler(window, fmt.digits).to_scaled(forecast))


def _forecast_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "TIMER1_MODEL"}
    done = subprocess.run([sys.executable, "forecast.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(done.stdout.splitlines()))


def test_forecast_cli_uses_the_shipped_model_by_default(shared_data):
    rows = _forecast_cli(shared_data / "ETTh1.csv", "--samples", "4")
    assert len(rows) == 96 and list(rows[0]) == ["date", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert rows[0]["date"] == "2018-06-26 20:00:00"        # one hour after ETTh1's last row
    assert np.isfinite([float(r[k]) for r in rows for k in ("forecast", "q0.5")]).all()
    if rows[0]["q0.1"]:  # a band only when two or more drafts were kept
        values = np.array([[float(r[k]) for k in ("q0.1", "q0.5", "q0.9")] for r in rows])
        assert np.isfinite(values).all() and np.all(values[:, 0] <= values[:, 2])
    else:
        assert {r["q0.1"] for r in rows} == {r["q0.9"] for r in rows} == {""}


def test_forecast_cli_on_a_monthly_csv_with_gaps(tmp_path):
    months = [f"{1990 + m // 12}-{m % 12 + 1:02d}-01" for m in range(120)]
    t = np.arange(120)
    values = 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12)
    path = tmp_path / "monthly.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["month", "sales"])
        for i, (m, v) in enumerate(zip(months, values)):
            writer.writerow([m, "" if i in (30, 31, 100) else f"{v:.2f}"])   # three empty cells
    rows = _forecast_cli(path, "--horizon", "12", "--samples", "4")
    assert [r["date"] for r in rows] == [f"2000-{m:02d}-01" for m in range(1, 13)]
    assert all(np.isfinite(float(r["forecast"])) for r in rows)
