"""Forecasting under torchrun (issue 41, build 1): forecast.py, evaluate.py and predict_df shard their
windows across ranks (timer1.forecast.forecaster.Forecaster._sharded) and rank 0 writes one output, equal
to one process's with the same seed. Two local processes over gloo, one thread each."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(command, cwd):
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory) -> Path:
    """Five monthly series (an odd count: the ranks' shards differ in size)."""
    rng, rows = np.random.default_rng(1), []
    for k in range(5):
        t = np.arange(60)
        y = 50 + 10 * np.sin(2 * np.pi * t / 12 + k) + 0.3 * k * t + rng.normal(0, 1, 60)
        rows += [f"s{k},{2015 + i // 12}-{i % 12 + 1:02d}-01,{y[i]:.3f}" for i in range(60)]
    path = tmp_path_factory.mktemp("long") / "five.csv"
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    return path


def test_forecast_py_under_torchrun_writes_what_one_process_writes(long_csv, tmp_path):
    options = [str(long_csv), "--id-column", "unique_id", "--seed", "0", "--samples", "2", "--horizon", "6"]
    run([sys.executable, str(REPO / "forecast.py"), *options, "--out", str(tmp_path / "one.csv")], tmp_path)
    two = run([*TORCHRUN, str(REPO / "forecast.py"), *options, "--out", str(tmp_path / "two.csv")], tmp_path)
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert two.stderr.count("wrote 30 rows") == 1          # rank 0 alone speaks and writes
    assert "sharded over 2 processes" in two.stderr         # the windows were split, not answered twice


def test_evaluate_py_under_torchrun_reports_what_one_process_reports(tmp_path):
    options = ["--datasets", "nasdaq", "--limit", "5", "--methods", "timer1", "timer1-default", "seasonal_naive",
               "--data", str(SHARED_DATA), "--samples", "2"]
    run([sys.executable, str(REPO / "evaluate.py"), *options, "--out", str(tmp_path / "one.json")], REPO)
    two = run([*TORCHRUN, str(REPO / "evaluate.py"), *options, "--out", str(tmp_path / "two.json")], REPO)
    assert "sharded over 2 processes" in two.stderr
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["forecasts"] == two["forecasts"]
    for method, scores in one["results"]["nasdaq"].items():   # the timing differs, every score is equal
        assert {k: v for k, v in scores.items() if k != "seconds_per_window"} == \
            {k: v for k, v in two["results"]["nasdaq"][method].items() if k != "seconds_per_window"}


PREDICT_DF = """
import sys, pandas
from timer1 import Forecaster
from timer1.util import dist
out = Forecaster.from_pretrained("timer1-tiny").predict_df(pandas.read_csv(sys.argv[1]), 6, mode="slow")
if dist.rank() == 0:
    out.to_csv(sys.argv[2], index=False)
print("world", dist.world_size())
"""


def test_predict_df_under_torchrun_equals_one_process(long_csv, tmp_path):
    pytest.importorskip("pandas")
    script = tmp_path / "script.py"
    script.write_text(PREDICT_DF)
    run([sys.executable, str(script), str(long_csv), str(tmp_path / "one.csv")], tmp_path)
    two = run([*TORCHRUN, str(script), str(long_csv), str(tmp_path / "two.csv")], tmp_path)
    assert "world 2" in two.stdout
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
