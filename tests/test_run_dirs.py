"""Real smoke runs (configs/smoke_sft.toml with and without LoRA, configs/smoke_grip.toml) used the
way README says: ``forecast.py --model RUN`` for a LoRA run and a full run, ``--adapter RUN``,
``evaluate.py --model RUN``, ``python -m timer1.tools.plot RUN`` and ``evaluate.py --plot``; every SVG is
parsed (valid XML, one path per series, axis labels)."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from timer1.forecast.resolve import resolve_model

REPO = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
FAST = ["--lookback", "24", "--horizon", "4", "--samples", "2", "--rounds", "1", "--max-new-tokens", "8",
        "--threads", "1"]


def run(args: list, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TIMER1_MODEL"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=600)


def train(script: str, preset: str, workdir: Path, name: str, *extra) -> Path:
    """A smoke run started in ``workdir`` with a relative out_dir, as a user would: the adapter then
    records its base model relative to that directory."""
    done = run([REPO / script, "--config", REPO / "configs" / preset, f"--out_dir=runs/{name}",
                f"--data.data_dir={REPO.parent / 'shared' / 'data'}", *extra], cwd=workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    return workdir / "runs" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    workdir = tmp_path_factory.mktemp("work")
    return {"lora": train("train_sft.py", "smoke_sft.toml", workdir, "sft_lora"),
            "full": train("train_sft.py", "smoke_sft.toml", workdir, "sft_full", "--lora.enabled=false"),
            "grip": train("train_grip.py", "smoke_grip.toml", workdir, "grip")}


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "series.csv"
    path.write_text("date,value\n" + "".join(f"2021-03-{1 + h // 24:02d} {h % 24:02d}:00:00,{10 + h % 5}\n"
                                             for h in range(48)))
    return path


def best_step(run_dir: Path) -> Path:
    return run_dir / json.loads((run_dir / "best.json").read_text())["best"][0]


def test_resolution_of_run_directories(runs):
    lora, full = runs["lora"], runs["full"]
    assert resolve_model(lora) == (lora / "base_model", best_step(lora))              # base + best adapter
    assert resolve_model(None, lora) == (lora / "base_model", best_step(lora))        # --adapter RUN alone
    assert resolve_model(lora / "base_model", lora) == (lora / "base_model", best_step(lora))
    assert resolve_model(full) == (best_step(full), None)                              # a full run: its best step
    with pytest.raises(ValueError, match="holds no LoRA adapter"):
        resolve_model(None, full)


def test_readme_forecast_commands_on_run_directories(runs, series_csv):
    lora, full = runs["lora"], runs["full"]
    outputs = {}
    for name, args in {"--model RUN (LoRA)": ["--model", lora],
                       "--adapter RUN": ["--adapter", lora],
                       "--model BASE --adapter RUN": ["--model", lora / "base_model", "--adapter", lora]}.items():
        done = run(["forecast.py", series_csv, *args, *FAST])
        assert done.returncode == 0, (name, done.stderr)
        assert f"loaded {lora / 'base_model'} + {best_step(lora)}" in done.stderr, name
        outputs[name] = done.stdout
    assert len(set(outputs.values())) == 1                                # the same model each way
    done = run(["forecast.py", series_csv, "--model", full, *FAST])
    assert done.returncode == 0 and f"loaded {best_step(full)} " in done.stderr, done.stderr
    report = series_csv.parent / "report.json"
    done = run(["evaluate.py", "--model", lora, "--datasets", "nasdaq", "--limit", "1", "--samples", "2",
                "--max-new-tokens", "8", "--threads", "1", "--out", report, "--data", REPO.parent / "shared" / "data"])
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["config"]["model"] == str(lora / "base_model")


def series_paths(root) -> dict[str, ET.Element]:
    return {p.get("data-series"): p for p in root.iter(f"{SVG}path") if p.get("class") == "series"}


def texts(root, cls: str) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if t.get("class") == cls]


@pytest.mark.parametrize("kind", ["lora", "grip"])
def test_plot_a_run(runs, kind):
    out = runs[kind].parent / f"{kind}.svg"
    done = run(["-m", "timer1.tools.plot", runs[kind], "--out", out])
    assert done.returncode == 0, done.stderr
    root = ET.parse(out).getroot()                                          # valid XML
    records = [json.loads(line) for line in (runs[kind] / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in records for k in r}
    paths = series_paths(root)
    if kind == "lora":   # SFT: loss and validation
        expected = {"loss", "val_loss", "val_mse", "val_mase"}
        assert texts(root, "title") == ["loss", "validation MSE", "validation MASE"]
    else:                # GRIP: reward and every reward term, KL, clip fractions, validation, tokens/s
        expected = {"loss", "reward", "reward_selected", "kl", "clip_frac", "clip_frac_low", "clip_frac_high",
                    "val_mse", "val_mase", "tokens_per_s"} | {k for k in logged if k.startswith("reward_")
                                                              and k not in ("reward_std", "reward_s")}
        assert {"reward and its terms", "KL to the reference", "clip fraction", "throughput"} <= set(texts(root, "title"))
    assert set(paths) == expected                                           # one path per series, no more
    for key, path in paths.items():                                         # one vertex per logged value
        assert path.get("d").count("L") + 1 == sum(isinstance(r.get(key), (int, float)) for r in records), key
    assert set(texts(root, "x-label")) == {"optimizer step"} and "loss" in texts(root, "y-label")


def test_plot_errors_are_one_line(tmp_path):
    done = run(["-m", "timer1.tools.plot", tmp_path, "--out", tmp_path / "x.png"])
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: --out {tmp_path / 'x.png'}: the picture is an SVG; give a path ending in .svg"]
    done = run(["-m", "timer1.tools.plot", tmp_path])
    assert done.returncode == 2 and "no metrics log" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_evaluate_plot_compares_methods_with_the_paper(tmp_path):
    svg = tmp_path / "report.svg"
    done = run(["evaluate.py", "--no-model", "--datasets", "nasdaq", "ETTh1", "--limit", "2", "--plot", svg,
                "--data", REPO.parent / "shared" / "data"])
    assert done.returncode == 0, done.stderr
    root = ET.parse(svg).getroot()
    assert texts(root, "title") == ["all 2 datasets: geometric-mean MASE", "nasdaq: MASE", "nasdaq: MSE",
                                     "ETTh1: MASE", "ETTh1: MSE"]
    bars = [p.get("data-series") for p in root.iter(f"{SVG}path") if p.get("class") == "bar"]
    methods = ["last", "mean", "seasonal_naive", "drift", "linear", "ets", "arima", "stl_ar"]   # the default, in its order
    assert bars == methods + (methods + methods + ["Time-R1 (paper)"]) * 2  # one bar per method, paper MSE beside
    assert texts(root, "x-label") == ["MASE (lower is better)"] * 2 + ["MSE (lower is better)", "MASE (lower is better)"] + ["MSE (lower is better)"]
