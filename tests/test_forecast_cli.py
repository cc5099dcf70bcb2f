"""forecast.py end to end: every date step continued, gaps, the CSV/SVG outputs, one-line errors.

The checkpoint is a tiny random Qwen2 (it writes garbage, so every draft fails the critic and the
fallback path runs; the success path of the critic/aggregator is tested in test_slow_think.py).
Most runs are subprocesses (``sys.executable forecast.py``, cwd = the repo); the seven date-step
cases call ``forecast.main(argv)`` in-process, the same code path without seven interpreter starts.
"""

import calendar
import csv
import datetime as dt
import io
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CONFIG as TINY

from timer1.core.lora import apply_lora, save_adapter
from timer1.train.random_init import random_policy

REPO = Path(__file__).resolve().parents[1]
ROWS, LOOKBACK, HORIZON = 40, 24, 8
# quick runs of the model's own path (--mode slow; the default adds reflection: its own tests below)
FAST = ["--lookback", str(LOOKBACK), "--horizon", str(HORIZON), "--samples", "2", "--max-new-tokens", "4", "--mode", "slow"]


@pytest.fixture(scope="module")
def checkpoint(compact_checkpoint) -> Path:
    return compact_checkpoint



def run(*args, env=None, stdin: str | None = None):
    environ = {k: v for k, v in os.environ.items() if k != "TIMER1_MODEL"}
    environ.update(env or {})
    threads = [] if "--help" in args else ["--threads", "1"]  # a busy 2-core box: one thread is fastest
    return subprocess.run([sys.executable, "forecast.py", *map(str, args), *threads], cwd=REPO, capture_output=True,
                          text=True, env=environ, timeout=120, input=stdin)


def add_months(day: dt.date, months: int) -> dt.date:
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def dates_for(step: str, n: int) -> list[str]:
    """n dates of a step, written independently of timer1.data."""
    if step == "hourly":
        t0 = dt.datetime(2021, 3, 1)
        return [(t0 + dt.timedelta(hours=k)).strftime("%Y-%m-%d %H:%M:%S") for k in range(n)]
    if step in ("daily", "weekly"):
        days = 1 if step == "daily" else 7
        return [(dt.date(2021, 1, 4) + dt.timedelta(days=days * k)).isoformat() for k in range(n)]
    if step in ("monthly", "quarterly", "yearly"):
        months = {"monthly": 1, "quarterly": 3, "yearly": 12}[step]
        return [add_months(dt.date(1980, 1, 15), months * k).isoformat() for k in range(n)]
    assert step == "index"
    return [str(k + 1) for k in range(n)]


def ramp_csv(path: Path, dates: list[str], gaps=(3, 17, 30)) -> Path:
    """value = 2 * row + 1 with empty cells at ``gaps`` (interpolation restores the ramp exactly)."""
    lines = ["date,value"] + [f"{d},{'' if k in gaps else 2 * k + 1}" for k, d in enumerate(dates)]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_output(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("step", ["hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "index"])
def test_dates_continue_each_step(step, tmp_path, checkpoint, forecast_cli, capsys):
    dates = dates_for(step, ROWS + HORIZON)
    source = ramp_csv(tmp_path / f"{step}.csv", dates[:ROWS])
    assert forecast_cli.main([str(source), "--model", str(checkpoint), *FAST]) == 0
    rows = read_output(capsys.readouterr().out)
    assert list(rows[0]) == ["date", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert [r["date"] for r in rows] == dates[ROWS:]
    # garbage drafts -> fallback; a ramp has no cycle, so seasonal naive is the last value (79);
    # a fallback has no band: q0.1 and q0.9 are empty, never a zero-width "10-90%"
    for r in rows:
        assert [float(r[k]) for k in ("forecast", "q0.5")] == [2 * (ROWS - 1) + 1] * 2
        assert (r["q0.1"], r["q0.9"], r["source"]) == ("", "", "last value repeated")


def test_the_default_weighs_the_backtested_candidates_by_the_learned_softmax(tmp_path, checkpoint, forecast_cli,
                                                                             capsys):
    """Without --mode the forecast is the product's: on a ramp drift, ETS and ARIMA continue it exactly and
    backtest best, so the learned softmax gives them nearly all the weight; the forecast is the ramp
    continued, and stderr and the source column name the weights."""
    from timer1.core.backtest import Problem
    from timer1.core.combine import softmax_weights
    from timer1.core.judge import build_cases

    dates = dates_for("daily", ROWS + HORIZON)
    source = ramp_csv(tmp_path / "ramp.csv", dates[:ROWS])
    assert forecast_cli.main([str(source), "--model", str(checkpoint), *FAST[:-2]]) == 0
    captured = capsys.readouterr()
    assert (f"value: {HORIZON} steps; the candidates backtested on its {ROWS} values, weighed by the learned "
            "softmax of their errors") in captured.err
    rows = read_output(captured.out)
    case, = build_cases([Problem(2 * np.arange(ROWS) + 1.0, HORIZON, 7)], ["daily"])
    weights = softmax_weights(case.evidence.errors)
    shown = [f"{case.evidence.names[k]} {weights[k]:.2f}" for k in np.argsort(-weights, kind="stable")
             if round(float(weights[k]), 2) > 0]
    assert {r["source"] for r in rows} == {"softmax: " + " + ".join(shown)}
    assert {name.rsplit(" ", 1)[0] for name in shown} <= {"drift", "ets", "arima", "linear"}   # the exact continuations
    assert "band from its backtest errors" in captured.err
    np.testing.assert_allclose([float(r["forecast"]) for r in rows], weights @ case.forecasts, rtol=1e-9)
    np.testing.assert_allclose(weights @ case.forecasts, 2 * np.arange(ROWS, ROWS + HORIZON) + 1, rtol=1e-6)


def test_mode_rule_reflects_on_the_history_and_says_what_it_chose(tmp_path, checkpoint, forecast_cli, capsys):
    """--mode rule (the default before round 4): the random model's garbage loses to drift on the
    ramp's own history, the source column and one stderr line say so, and the band is drift's backtest
    errors (none: a zero-width band around the exact continuation)."""
    dates = dates_for("daily", ROWS + HORIZON)
    source = ramp_csv(tmp_path / "ramp.csv", dates[:ROWS])
    assert forecast_cli.main([str(source), "--model", str(checkpoint), *FAST[:-2], "--mode", "rule"]) == 0
    captured = capsys.readouterr()
    # every draft of the random model fails the critic: its fallback is not blended in or credited
    assert "kept 0 of" in captured.err and "reflection chose drift (backtest MAE: drift 0)" in captured.err
    rows = read_output(captured.out)
    assert [r["date"] for r in rows] == dates[ROWS:] and {r["source"] for r in rows} == {"drift"}
    expected = [2 * (ROWS + k) + 1 for k in range(HORIZON)]
    for key in ("forecast", "q0.1", "q0.5", "q0.9"):
        np.testing.assert_allclose([float(r[key]) for r in rows], expected, rtol=1e-9)


def test_quantile_levels_name_their_columns_and_nest(tmp_path, checkpoint, forecast_cli, capsys):
    """--quantiles writes one column per level, named by it; levels shared with the default run give the
    same numbers (one band), and a wider level lies outside a narrower one."""
    rng = np.random.default_rng(0)
    dates = dates_for("daily", 120)
    values = 50 + 10 * np.sin(np.arange(120) * 2 * np.pi / 7) + rng.normal(size=120)
    source = tmp_path / "noisy.csv"
    source.write_text("date,value\n" + "".join(f"{d},{v:.3f}\n" for d, v in zip(dates, values)))
    base = ["--model", str(checkpoint), *FAST[:-2]]
    assert forecast_cli.main([str(source), *base]) == 0
    default = read_output(capsys.readouterr().out)
    assert forecast_cli.main([str(source), *base, "--quantiles", "0.95,0.05,0.9,0.1"]) == 0
    wide = read_output(capsys.readouterr().out)
    assert list(wide[0]) == ["date", "forecast", "q0.05", "q0.1", "q0.9", "q0.95", "source"]
    column = {key: np.array([float(r[key]) for r in wide]) for key in ("forecast", "q0.05", "q0.1", "q0.9", "q0.95")}
    for key in ("forecast", "q0.1", "q0.9"):
        np.testing.assert_array_equal(column[key], [float(r[key]) for r in default])
    assert (column["q0.05"] <= column["q0.1"]).all() and (column["q0.05"] < column["q0.1"]).any()
    assert (column["q0.95"] >= column["q0.9"]).all() and (column["q0.95"] > column["q0.9"]).any()
    for bad in ("0.5,1.2", "0.1;0.9", ""):
        assert forecast_cli.main([str(source), *base, "--quantiles", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "quantiles" in err[0]


def test_unparseable_dates_warn_and_use_a_running_index(tmp_path, checkpoint, forecast_cli, capsys):
    source = ramp_csv(tmp_path / "odd.csv", [f"day {k}" for k in range(ROWS)])
    assert forecast_cli.main([str(source), "--model", str(checkpoint), *FAST]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "running row index" in captured.err
    rows = read_output(captured.out)
    assert [r["date"] for r in rows] == [str(ROWS + k) for k in range(HORIZON)]
    assert all(np.isfinite(float(r["forecast"])) for r in rows)


def test_single_pass_and_show_reasoning(tmp_path, checkpoint, forecast_cli, capsys):
    source = ramp_csv(tmp_path / "s.csv", dates_for("hourly", ROWS))
    argv = [str(source), "--model", str(checkpoint), *FAST, "--single-pass", "--show-reasoning"]
    assert forecast_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "--- value draft 1 (round 1, dropped: no forecast could be parsed" in captured.err
    assert "FALLBACK" in captured.err and "kept 0 of 1 drafts" in captured.err
    assert len(read_output(captured.out)) == HORIZON


def hourly_two_channels(path: Path) -> Path:
    """Channel a: a daily cycle; channel b: a ramp with gaps."""
    dates = dates_for("hourly", 60)
    lines = ["date,a,b"] + [f"{d},{10 + 3 * np.sin(2 * np.pi * k / 24):.4f},{'' if k % 7 == 3 else k}"
                            for k, d in enumerate(dates)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_out_plot_and_all_columns(tmp_path, checkpoint):
    source = hourly_two_channels(tmp_path / "two.csv")
    out, svg = tmp_path / "fc.csv", tmp_path / "fc.svg"
    done = run(source, "--model", checkpoint, "--column", "all", "--out", out, "--plot", svg, *FAST,
               "--lookback", "48")  # two days: enough to see the daily cycle
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "[2/2] b" in done.stderr and "round 2/2" in done.stderr
    rows = read_output(out.read_text())
    assert list(rows[0]) == ["channel", "date", "forecast", "q0.1", "q0.5", "q0.9", "source"]
    assert [r["channel"] for r in rows] == ["a"] * HORIZON + ["b"] * HORIZON
    assert [r["date"] for r in rows[:HORIZON]] == dates_for("hourly", 60 + HORIZON)[60:]
    # a: garbage drafts fall back to seasonal naive: the values of one day earlier
    expected_a = [10 + 3 * np.sin(2 * np.pi * k / 24) for k in range(60 - 24, 60 - 24 + HORIZON)]
    np.testing.assert_allclose([float(r["forecast"]) for r in rows[:HORIZON]], expected_a, atol=1e-4)
    assert "seasonal naive (period 24)" in done.stderr
    # b: a ramp with gaps, the last row (59) among them: filled from its neighbour (58), then repeated
    np.testing.assert_allclose([float(r["forecast"]) for r in rows[HORIZON:]], 58.0)
    root = ET.parse(svg).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline[@class='forecast']")
    assert len(lines) == 2 and all(len(p.get("points").split()) == HORIZON for p in lines)
    assert not list(tmp_path.glob(".*.tmp"))


def test_help():
    done = run("--help")
    assert done.returncode == 0 and "--show-reasoning" in done.stdout
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert "date,forecast,q0.1,q0.5,q0.9,source" in text and "clipped at 0" in text


def not_qwen2(tmp_path: Path) -> Path:
    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 10, "hidden_size": 8, '
                                       '"num_hidden_layers": 1}')
    return model


def foreign_adapter(tmp_path: Path) -> Path:
    other = random_policy({**TINY, "hidden_size": 48, "intermediate_size": 96}, seed=1)
    apply_lora(other.model, r=2)
    return save_adapter(other.model, tmp_path / "adapter")


BAD_INPUTS = {
    # name: (CSV content or None for a missing file, extra args, what the one line must say)
    "missing file": (None, [], "no such CSV file"),
    "empty file": ("", [], "empty file"),
    "header only": ("date,value\n", [], "header only"),
    "no numeric column": ("date,name\n2020-01-01,x\n2020-01-02,y\n", [], "no numeric column"),
    "unknown column": ("hourly", ["--column", "OT"], "no column 'OT'; the columns are date, value"),
    "too few rows": ("hourly", ["--lookback", "96"], "has 40 rows but --lookback 96 needs at least 96"),
    "under 8 rows": ("date,value\n" + "".join(f"2021-03-01 0{k}:00,{k}\n" for k in range(5)), [],
                     "has 5 rows; at least 8 are needed"),
    "no default model": ("hourly", ["--no-model-flag"], "no model at"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_no_output(case, tmp_path, checkpoint):
    content, extra, message = BAD_INPUTS[case]
    source = tmp_path / "in.csv"
    if content == "hourly":
        ramp_csv(source, dates_for("hourly", ROWS))
    elif content is not None:
        source.write_text(content)
    args = [source, "--out", tmp_path / "out.csv", "--horizon", "4", "--max-new-tokens", "4"]
    env = {}
    if extra == ["--no-model-flag"]:
        env = {"TIMER1_MODEL": str(tmp_path / "nothing-here")}
    else:
        args += [e(tmp_path) if callable(e) else e for e in extra]
        if "--model" not in args:
            args += ["--model", checkpoint]
    if "--lookback" not in args:
        args += ["--lookback", "24"]
    done = run(*args, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "out.csv").exists() and done.stdout == ""
    if case == "no default model":
        assert lines[0] == (f"error: no model at {tmp_path / 'nothing-here'} ($TIMER1_MODEL); give a Hugging "
                            "Face Qwen2 directory, a training run or a shipped model (timer1-smol, timer1-tiny)")


def test_a_csv_shorter_than_the_default_lookback_uses_every_row(tmp_path, checkpoint, forecast_cli, capsys):
    """As the Python API does: without --lookback, a 40-row CSV is read whole (the default is 96),
    and the note says so; an explicit --lookback over the row count stays an error (BAD_INPUTS)."""
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    out = tmp_path / "fc.csv"
    argv = [str(source), "--model", str(checkpoint), "--horizon", str(HORIZON), "--samples", "2",
            "--max-new-tokens", "4", "--out", str(out)]
    assert forecast_cli.main(argv) == 0
    assert f"look-back {ROWS} rows: all the CSV has (the default is 96" in capsys.readouterr().err
    assert len(list(csv.DictReader(out.open()))) == HORIZON


@pytest.mark.parametrize("make, message", [(not_qwen2, "unsupported model_type 'gpt2'"),
                                           (foreign_adapter, "adapter was made for another base model")])
def test_bad_checkpoints_are_one_line(make, message, tmp_path, checkpoint, forecast_cli, capsys):
    """In-process (the model loads take seconds): main() returns 2 with one line, nothing written."""
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    option = "--model" if make is not_qwen2 else "--adapter"
    argv = [str(source), "--model", str(checkpoint), option, str(make(tmp_path)), "--out", str(tmp_path / "o.csv"),
            *FAST]
    assert forecast_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "o.csv").exists()


def test_a_toml_preset_supplies_options(tmp_path, checkpoint, forecast_cli, capsys):
    source = ramp_csv(tmp_path / "in.csv", dates_for("daily", ROWS))
    preset = tmp_path / "preset.toml"
    preset.write_text(f'model = "{checkpoint}"\nhorizon = 5\nlookback = 24\nsamples = 2\nmax-new-tokens = 4\n'
                      'mode = "slow"\n')
    assert forecast_cli.main([str(source), "--config", str(preset), "--horizon", "3"]) == 0
    captured = capsys.readouterr()
    assert len(read_output(captured.out)) == 3  # the command line wins over the preset
    assert "2 drafts" in captured.err  # the preset's samples
    preset.write_text("sample = 2\n")
    with pytest.raises(SystemExit) as exit_info:
        forecast_cli.main([str(source), "--config", str(preset)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: {preset}: unknown key 'sample' (known: adapter, backtest, "
                                               "column, cross_validation, csv, device, dtype, horizon, id_column, judge, lookback, "
                                               "max_new_tokens, mode, model, out, plot, quantiles, refine, rounds, samples, "
                                               "seed, show_reasoning, single_pass, skip_short, step_size, target, "
                                               "temperature, threads, timestamp_column, top_p)")


def test_small_models_decode_on_one_thread_unless_told(checkpoint, forecast_cli, monkeypatch):
    import torch

    from timer1.forecast.resolve import open_policy

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)   # record, leave the suite's threads alone
    open_policy(checkpoint, None, "cpu", "float32")
    assert calls == [1]                                          # a tiny model on CPU: one thread
    calls.clear()
    open_policy(checkpoint, None, "cpu", "float32", threads=2)
    assert calls == [2]                                          # an explicit --threads wins
    calls.clear()
    monkeypatch.setattr("timer1.forecast.resolve.SMALL_MODEL_PARAMS", 10)
    open_policy(checkpoint, None, "cpu", "float32")
    assert calls == []                                           # a large model keeps torch's choice


# ---------------------------------------------------------------------------------------------
# outputs never destroy anything, and are checked before the model loads

@pytest.fixture
def no_model_load(forecast_cli, monkeypatch):
    """Output checks must come first: loading the model here fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output paths were checked")
    from timer1.forecast.forecaster import Forecaster   # forecast.py imports it only once the input is good

    monkeypatch.setattr(Forecaster, "from_pretrained", refuse)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and captured.out == "", captured.err
    return lines[0]


def test_outputs_that_alias_an_input_or_each_other_are_refused(tmp_path, checkpoint, forecast_cli, capsys,
                                                                no_model_load):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    original = source.read_bytes()
    (tmp_path / "alias.svg").symlink_to(source)
    os.link(source, tmp_path / "hard.csv")
    cases = [(["--out", source], f"--out {source} is the input {source}"),
             (["--plot", tmp_path / "alias.svg"], f"--plot {tmp_path / 'alias.svg'} is the input {source}"),
             (["--out", tmp_path / "hard.csv"], "is the input"),
             (["--out", tmp_path / "same.svg", "--plot", tmp_path / "same.svg"],
              f"--plot {tmp_path / 'same.svg'} is --out {tmp_path / 'same.svg'}")]
    for extra, message in cases:
        assert forecast_cli.main([str(source), "--model", str(checkpoint), *map(str, extra), *FAST]) == 2
        assert message in one_error_line(capsys)
    assert source.read_bytes() == original and not (tmp_path / "same.svg").exists()


def test_plot_must_be_svg(tmp_path, checkpoint, forecast_cli, capsys, no_model_load):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    assert forecast_cli.main([str(source), "--model", str(checkpoint), "--plot", str(tmp_path / "x.png")]) == 2
    assert one_error_line(capsys) == f"error: --plot {tmp_path / 'x.png'}: the plot is an SVG; give a path ending in .svg"
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "/proc", "no directory"])
def test_unwritable_outputs_fail_before_the_model_and_name_the_path(kind, tmp_path, checkpoint, forecast_cli,
                                                                    capsys, no_model_load):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    out = {"directory": tmp_path, "fifo": tmp_path / "pipe.csv", "/proc": Path("/proc/timer1-fc.csv"),
           "no directory": tmp_path / "absent" / "fc.csv"}[kind]
    if kind == "fifo":
        os.mkfifo(out)
    assert forecast_cli.main([str(source), "--model", str(checkpoint), "--out", str(out), *FAST]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.csv"] + (["pipe.csv"] if kind == "fifo" else []))


# ---------------------------------------------------------------------------------------------
# horizon and model limits

@pytest.mark.parametrize("option, value", [("--horizon", "0"), ("--horizon", "-3"), ("--lookback", "0"),
                                           ("--lookback", "1"), ("--lookback", "7")])
def test_zero_or_negative_sizes_and_a_too_short_lookback_are_errors(option, value, tmp_path, checkpoint,
                                                                    forecast_cli, capsys):
    """--help and README say a look-back of at least 8: fewer is refused, not run without a backtest."""
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    argv = [str(source), "--model", str(checkpoint), "--samples", "2", "--max-new-tokens", "4", option, value]
    assert forecast_cli.main(argv) == 2
    expected = (f"error: --horizon must be a positive number of steps, got {value}" if option == "--horizon" else
                f"error: --lookback must be at least 8 rows (fewer show no level, step or cycle to check a "
                f"forecast against), got {value}")
    assert one_error_line(capsys) == expected


def test_a_look_back_of_8_runs(tmp_path, checkpoint, forecast_cli, capsys):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    argv = [str(source), "--model", str(checkpoint), "--samples", "2", "--max-new-tokens", "4", "--lookback", "8",
            "--horizon", "4", "--out", str(tmp_path / "fc.csv")]
    assert forecast_cli.main(argv) == 0 and len(read_output((tmp_path / "fc.csv").read_text())) == 4


def test_standard_input_is_read_as_a_csv_named_stdin(tmp_path, checkpoint):
    """``-`` reads the CSV from standard input: the same forecast as from the file; its errors name <stdin>."""
    source = ramp_csv(tmp_path / "in.csv", dates_for("daily", ROWS))
    from_file = run(source, "--model", checkpoint, *FAST)
    from_stdin = run("-", "--model", checkpoint, *FAST, stdin=source.read_text())
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout and len(read_output(from_stdin.stdout)) == HORIZON
    short = run("-", "--model", checkpoint, *FAST, stdin="date,value\n2021-01-01,1\n2021-01-02,2\n")
    assert short.returncode == 2 and short.stderr == "error: <stdin> has 2 rows; at least 8 are needed\n"
    empty = run("-", "--model", checkpoint, *FAST, stdin="")
    assert empty.returncode == 2 and empty.stderr == "error: <stdin>: empty file (no header, no rows)\n"


def test_out_dev_null_discards_the_forecast(tmp_path, checkpoint, forecast_cli, capsys):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    assert forecast_cli.main([str(source), "--model", str(checkpoint), "--out", "/dev/null", *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {HORIZON} rows to /dev/null" in captured.err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("script, with_csv", [("forecast.py", True), ("evaluate.py", False)])
def test_an_option_prefix_is_not_taken_for_an_option(script, with_csv, tmp_path):
    """argparse's default would read ``--mod single`` as ``--model single`` and then fail on a model
    named "single"; the scripts refuse the unknown option by name instead."""
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    done = subprocess.run([sys.executable, script, *([str(source)] if with_csv else []), "--mod", "single"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unrecognized arguments: --mod single" in done.stderr and "Traceback" not in done.stderr


def test_horizon_is_capped_per_model(tmp_path, checkpoint, forecast_cli, capsys, no_model_load):
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    argv = [str(source), "--model", str(checkpoint), "--lookback", "24", "--horizon", "100000"]
    assert forecast_cli.main(argv) == 2  # no training record: 4 x the paper's 96
    assert one_error_line(capsys) == ("error: --horizon 100000 is more than 384 steps, 4 times the 96 this model was "
                                      "trained for; forecast in shorter pieces")
    from timer1.forecast.resolve import trained_horizon

    shipped = REPO / "timer1" / "checkpoints" / "timer1-tiny"  # trained for 96 (training/grip.toml)
    assert trained_horizon(shipped) == 96
    assert forecast_cli.main([str(source), "--model", str(shipped), "--lookback", "24", "--horizon", "385"]) == 2
    assert "more than 384 steps" in one_error_line(capsys)


@pytest.mark.parametrize("step, horizon", [("hourly", 48), ("daily", 14), ("weekly", 104), ("monthly", 24),
                                           ("quarterly", 8), ("yearly", 10), ("index", 96)])
def test_default_horizon_follows_the_step(step, horizon, tmp_path, checkpoint, forecast_cli, capsys):
    dates = dates_for(step, ROWS + horizon)
    source = ramp_csv(tmp_path / "series.csv", dates[:ROWS])
    argv = [str(source), "--model", str(checkpoint), "--lookback", "24", "--samples", "2", "--max-new-tokens", "4"]
    assert forecast_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert [r["date"] for r in read_output(captured.out)] == dates[ROWS:]
    assert f"horizon {horizon} steps (default for {step} data" in captured.err


def test_paper_datasets_keep_the_paper_horizon(tmp_path, forecast_cli):
    from timer1.data.csv_io import read_csv

    for name, horizon in (("nasdaq", 36), ("exchange", 96)):
        path = ramp_csv(tmp_path / f"{name}.csv", dates_for("daily", ROWS))
        assert forecast_cli.default_horizon(read_csv(path)) == horizon


def test_the_prompt_and_the_token_budget_follow_the_horizon(tmp_path, checkpoint, forecast_cli, capsys,
                                                            monkeypatch):
    import timer1.core.slow_think as slow_think_module
    from timer1.core.tokenizer import Tokenizer

    seen = []

    def recording_generate(model, prompts, **kwargs):
        seen.append((prompts[0], kwargs["max_new_tokens"]))
        return generate(model, prompts, **kwargs)

    generate = slow_think_module.generate
    monkeypatch.setattr(slow_think_module, "generate", recording_generate)
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    budgets = {}
    for horizon in (5, 40):
        seen.clear()
        argv = [str(source), "--model", str(checkpoint), "--lookback", "24", "--horizon", str(horizon),
                "--samples", "2", "--rounds", "1", "--mode", "slow"]
        assert forecast_cli.main(argv) == 0
        assert len(read_output(capsys.readouterr().out)) == horizon
        prompt = Tokenizer.from_pretrained(checkpoint).decode(seen[0][0])
        assert f"Continue it with the next {horizon} values" in prompt
        budgets[horizon] = seen[0][1]
    assert budgets == {5: 256 + 4 * 5, 40: 256 + 4 * 40}


# ---------------------------------------------------------------------------------------------
# what the output says about where a forecast came from

def fake_result(kept: int, point, fallback: str | None = None):
    from timer1.core.slow_think import SlowThinkResult

    point = np.asarray(point, dtype=np.float64)
    quantiles = {0.1: point - 1, 0.5: point, 0.9: point + 1} if kept >= 2 else {q: point.copy() for q in (0.1, 0.5, 0.9)}
    return SlowThinkResult(point, quantiles, point[None, :], [], [], kept, 4 - kept, 1, fallback,
                           "model" if fallback is None else "seasonal naive (period 24)")


def test_source_column_and_no_zero_width_band():
    from timer1.forecast.forecaster import assemble
    from timer1.forecast.output import forecast_rows, header

    dates = ["d1", "d2"]
    results = [fake_result(3, [1.0, 2.0]), fake_result(1, [1.0, 2.0]), fake_result(0, [1.0, 2.0], "no draft passed")]
    for r in results[:2]:   # drafts point - 1, point, point + 1: quantiles 0.25 and 0.75 are point -/+ 0.5
        r.samples = np.stack([r.point - 1, r.point, r.point + 1])
    forecast = assemble(results, (0.25, 0.5, 0.75), None)
    assert header(["date"], (0.25, 0.5, 0.75)) == ["date", "forecast", "q0.25", "q0.5", "q0.75", "source"]
    assert forecast_rows([], dates, forecast, 0) == [["d1", "1", "0.5", "1", "1.5", "model"],
                                                     ["d2", "2", "1.5", "2", "2.5", "model"]]
    assert forecast_rows([], dates, forecast, 1) == [["d1", "1", "", "1", "", "model"], ["d2", "2", "", "2", "", "model"]]
    assert forecast_rows(["v"], dates, forecast, 2)[0] == ["v", "d1", "1", "", "1", "", "seasonal naive (period 24)"]


@pytest.mark.parametrize("history_min, clipped", [(0.0, True), (-1.0, False)])
def test_non_negative_histories_give_non_negative_forecasts(history_min, clipped, tmp_path, checkpoint,
                                                           forecast_cli, capsys, monkeypatch):
    import timer1.core.slow_think as slow_think_module

    monkeypatch.setattr(slow_think_module, "slow_think", lambda policy, windows, config, **kw:
                        [fake_result(3, np.linspace(-2, 2, w.horizon)) for w in windows])
    dates = dates_for("hourly", ROWS)
    source = tmp_path / "counts.csv"
    source.write_text("date,count\n" + "".join(f"{d},{history_min if k == 5 else k % 7}\n" for k, d in enumerate(dates)))
    assert forecast_cli.main([str(source), "--model", str(checkpoint), *FAST]) == 0
    captured = capsys.readouterr()
    values = np.array([[float(r[k]) for k in ("forecast", "q0.1", "q0.5", "q0.9")] for r in read_output(captured.out)])
    assert (values.min() >= 0) == clipped and ("clipped at 0" in captured.err) == clipped
    if clipped:
        np.testing.assert_allclose(values[:, 0], np.maximum(np.linspace(-2, 2, HORIZON), 0))


def test_a_checkpoint_with_non_finite_logits_is_an_error(tmp_path, forecast_cli, capsys):
    import torch

    from timer1.core.codec import PromptFormat
    from timer1.core.policy import save_policy

    policy = random_policy(TINY, seed=0, prompt_format=PromptFormat("compact"))
    with torch.no_grad():
        policy.model.model.norm.weight.fill_(float("nan"))
    broken = save_policy(policy, tmp_path / "nan-model")
    source = ramp_csv(tmp_path / "in.csv", dates_for("hourly", ROWS))
    assert forecast_cli.main([str(source), "--model", str(broken), "--out", str(tmp_path / "fc.csv"), *FAST]) == 2
    assert one_error_line(capsys) == f"error: {broken}: the checkpoint's logits are not finite (NaN or inf weights?)"
    assert not (tmp_path / "fc.csv").exists()
