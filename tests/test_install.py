"""A new user's first commands work from any working directory and after a plain (non-editable)
install: the default model ships inside the package (timer1/checkpoints), so nothing depends on
the repository root being the working directory (issue 38, item 1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

API_SCRIPT = """
import timer1, numpy as np
f = timer1.Forecaster.from_pretrained()
g = timer1.Forecaster.from_pretrained("timer1-tiny")
out = f.predict(np.sin(np.arange(48) / 3.0) + 5.0, 4, mode="single")
print(timer1.__file__)
print(f.name, g.name, out.point.shape)
"""


def run(args, cwd, env=None):
    return subprocess.run(args, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_the_api_finds_the_default_model_from_another_directory(tmp_path):
    done = run([sys.executable, "-c", API_SCRIPT], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    module, summary = done.stdout.strip().splitlines()[-2:]
    assert Path(module).resolve().parent == REPO / "timer1"
    assert summary == "timer1-tiny timer1-tiny (1, 4)"


def test_forecast_py_runs_from_another_directory(tmp_path):
    (tmp_path / "x.csv").write_text("date,y\n" + "".join(f"2020-01-{d:02d},{d % 7 + 1}\n" for d in range(1, 31)))
    done = run([sys.executable, str(REPO / "forecast.py"), "x.csv", "--single-pass", "--horizon", "3"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("date,forecast") and [row[:10] for row in lines[1:]] == \
        ["2020-01-31", "2020-02-01", "2020-02-02"]
    assert "loaded timer1-tiny" in done.stderr


def test_a_plain_pip_install_carries_the_default_model(tmp_path):
    """`pip install .` (a wheel, not editable) into a fresh target: the model is inside it, and the API
    run from an empty directory imports timer1 from the target, not from this repository."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    built = run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(wheels)], cwd=tmp_path)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("timer1-*.whl"))
    installed = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert (target / "timer1" / "checkpoints" / "timer1-tiny" / "model.safetensors").is_file()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    done = run([sys.executable, "-c", API_SCRIPT], cwd=empty, env={"PYTHONPATH": str(target)})
    assert done.returncode == 0, done.stderr
    module, summary = done.stdout.strip().splitlines()[-2:]
    assert Path(module).resolve().parent == (target / "timer1").resolve()
    assert summary == "timer1-tiny timer1-tiny (1, 4)"
