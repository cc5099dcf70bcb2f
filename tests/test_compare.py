"""timer1.tools.compare: per-window MASE rebuilt from a report, and the paired bootstrap interval."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timer1.tools.compare import geometric_mean_mase, main, paired_bootstrap, per_window_mase

REPO = Path(__file__).resolve().parents[1]


def test_a_uniform_ten_percent_gain_has_a_point_interval_and_noise_straddles_zero():
    rng = np.random.default_rng(0)
    a = {"x": rng.uniform(1, 3, 40), "y": rng.uniform(5, 9, 30)}
    better = {d: 0.9 * s for d, s in a.items()}  # every window 10% better: every resample says so
    change, low, high = paired_bootstrap(a, better, resamples=200)
    assert change == pytest.approx(-0.1) and low == pytest.approx(-0.1) and high == pytest.approx(-0.1)
    noisy = {d: s * rng.choice([0.8, 1.25], len(s)) for d, s in a.items()}  # as often better as worse
    change, low, high = paired_bootstrap(a, noisy, resamples=500)
    assert low < 0 < high
    assert geometric_mean_mase({"x": np.array([1.0, 3.0]), "y": np.array([8.0, np.nan])}) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="same windows"):
        paired_bootstrap(a, {"x": a["x"]})


def test_scores_rebuilt_from_an_evaluate_report(tmp_path, shared_data, capsys):
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "evaluate.py", "--no-model", "--datasets", "nasdaq", "ETTh1", "--limit", "3",
                           "--data", str(shared_data), "--out", str(out), "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    for method in ("last", "mean"):
        scores = per_window_mase(report, method)
        assert set(scores) == {"nasdaq", "ETTh1"} and all(len(s) == 3 for s in scores.values())
        for dataset, s in scores.items():  # the report's own per-dataset mean MASE, window by window
            assert np.nanmean(s) == pytest.approx(report["results"][dataset][method]["mase"])
    assert main([f"{out}:last", f"{out}:mean", "--resamples", "100"]) == 0
    assert "paired bootstrap 95% interval" in capsys.readouterr().out
    assert main([f"{out}:last", f"{out}:nope"]) == 2
    assert main([str(out), f"{out}:last"]) == 2
