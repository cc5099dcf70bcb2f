"""timer1.Forecaster: the same forecasts as forecast.py (one series, and a batch of mixed lengths
against forecast.py run on each), monotone quantiles, non-negative clipping, one-line ValueErrors.

The model is the shipped timer1-tiny (real drafts that pass the critic, so bands and medians are
exercised), with 4 drafts in one round and a short horizon to stay within seconds."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import timer1
from timer1.core.slow_think import SlowThinkConfig
from timer1.forecast.band import BAND_LEVELS
from timer1.forecast.forecaster import Forecaster
from timer1.forecast.resolve import prompt_horizon, trained_horizon, trained_horizons

REPO = Path(__file__).resolve().parents[1]
HORIZON, SAMPLES, SEED = 12, 4, 3
CLI_FAST = ["--horizon", str(HORIZON), "--samples", str(SAMPLES), "--rounds", "1", "--seed", str(SEED), "--threads", "1"]


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return timer1.Forecaster.from_pretrained("timer1-tiny", config=SlowThinkConfig(samples=SAMPLES, rounds=1))



def hourly_dates(n: int) -> list[str]:
    start = np.datetime64("2021-03-01T00:00:00")
    return [str(start + np.timedelta64(k, "h")).replace("T", " ") for k in range(n)]


def daily_cycle(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.round(20 + 5 * np.sin(2 * np.pi * t / 24 + seed) + 0.05 * t + rng.normal(0, 0.3, n), 6)  # as in a CSV


def write_csv(path: Path, values: np.ndarray) -> Path:
    cells = ["" if not np.isfinite(v) else f"{v:.6f}" for v in values]
    path.write_text("date,value\n" + "".join(f"{d},{c}\n" for d, c in zip(hourly_dates(len(values)), cells)))
    return path


def cli_forecast(forecast_cli, capsys, path: Path, *extra) -> list[dict]:
    assert forecast_cli.main([str(path), "--model", "timer1-tiny", *CLI_FAST, *extra]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def assert_same(rows: list[dict], out, k: int) -> None:
    """Row k of the API result equals forecast.py's CSV (written with 10 significant digits)."""
    np.testing.assert_allclose([float(r["forecast"]) for r in rows], out.point[k], rtol=1e-9)
    np.testing.assert_allclose([float(r["q0.5"]) for r in rows], out.quantiles[0.5][k], rtol=1e-9)
    if rows[0]["q0.1"]:  # a band (two or more drafts kept)
        np.testing.assert_allclose([float(r["q0.9"]) for r in rows], out.quantiles[0.9][k], rtol=1e-9)
    assert {r["source"] for r in rows} == {out.source[k]}


def test_one_series_equals_forecast_py(forecaster, forecast_cli, capsys, tmp_path):
    values = daily_cycle(120, seed=0)
    values[50] = np.nan                                   # a missing cell: interpolated by both
    rows = cli_forecast(forecast_cli, capsys, write_csv(tmp_path / "one.csv", values))
    dates = hourly_dates(120)
    out = forecaster.predict(values, HORIZON, timestamps=dates, seed=SEED)   # the default: the learned softmax
    assert out.point.shape == (1, HORIZON) and out.results[0].answer == "softmax"
    assert_same(rows, out, 0)

    rule_rows = cli_forecast(forecast_cli, capsys, tmp_path / "one.csv", "--mode", "rule")
    rule = forecaster.predict(values, HORIZON, timestamps=dates, seed=SEED, mode="rule")   # reflection
    assert rule.results[0].answer.startswith("reflection: ")
    assert_same(rule_rows, rule, 0)
    assert out.timestamps == [[r["date"] for r in rows]]
    assert out.repairs[0].bad_cells == [dates[50]]        # inside the last 96 values: interpolated and reported

    slow_rows = cli_forecast(forecast_cli, capsys, tmp_path / "one.csv", "--mode", "slow")
    slow = forecaster.predict(values, HORIZON, timestamps=dates, seed=SEED, mode="slow")
    # timer1-tiny is calibrated: its band comes back as values at the band's levels, not as the drafts
    assert slow.source == ["model"] and slow.results[0].kept >= 2 and slow.samples[0].shape[0] == len(BAND_LEVELS)
    assert_same(slow_rows, slow, 0)

    single_rows = cli_forecast(forecast_cli, capsys, tmp_path / "one.csv", "--single-pass")
    single = forecaster.predict(values.tolist(), HORIZON, mode="single", timestamps=dates, seed=SEED)
    assert_same(single_rows, single, 0)


def test_a_batch_of_mixed_lengths_equals_forecast_py_on_each(forecaster, forecast_cli, capsys, tmp_path):
    contexts = [daily_cycle(40, seed=1), daily_cycle(75, seed=2), daily_cycle(130, seed=3)]
    contexts[1][-10] = 1e6                                # an isolated outlier in the look-back: repaired
    out = forecaster.predict(contexts, HORIZON, seed=SEED)  # no timestamps: a running index
    assert out.point.shape == (3, HORIZON) and out.timestamps is None
    assert [r.count for r in out.repairs] == [0, 1, 0]
    for k, values in enumerate(contexts):
        path = write_csv(tmp_path / f"s{k}.csv", values)
        rows = cli_forecast(forecast_cli, capsys, path, "--lookback", str(min(len(values), 96)))
        assert_same(rows, out, k)
    assert len({tuple(p) for p in out.point}) == 3       # three different series, three forecasts


def test_quantiles_are_monotone_and_the_median_is_the_point(forecaster):
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    out = forecaster.predict([daily_cycle(96, seed=s) for s in range(4)], HORIZON, quantiles=levels, seed=0)
    stacked = np.stack([out.quantiles[q] for q in levels])          # (Q, N, H)
    assert np.all(np.diff(stacked, axis=0) >= 0)
    assert any(np.ptp(s, axis=0).max() > 0 for s in out.samples)     # real spread, not a degenerate band
    kept = [k for k, s in enumerate(out.source) if s == "model"]
    np.testing.assert_allclose(out.quantiles[0.5][kept], out.point[kept], rtol=1e-12)


def test_non_negative_contexts_give_non_negative_forecasts(forecaster):
    counts = np.abs(np.arange(60) % 7 - 3.0)                           # 0..3: a count that touches 0
    out = forecaster.predict([counts, counts - 2.0], HORIZON, quantiles=(0.1, 0.9), seed=0)
    assert min(out.point[0].min(), out.quantiles[0.1][0].min(), out.samples[0].min()) >= 0
    assert out.clipped[1] is False                                   # a history below 0 is left alone


def test_series_forecasts_do_not_depend_on_the_batch(forecaster):
    series = [daily_cycle(96, seed=s) for s in range(3)]
    together = forecaster.predict(series, HORIZON, seed=5)
    alone = forecaster.predict(series[2], HORIZON, seed=5)
    np.testing.assert_array_equal(together.point[2], alone.point[0])


@pytest.mark.parametrize("wanted, trained, asked", [
    (52, (8, 12, 24, 36, 48, 96, 128), 96),   # between two trained horizons: the longer one, cut back
    (96, (8, 12, 24, 36, 48, 96, 128), 96),   # a trained horizon as it is
    (5, (8, 12), 8),
    (200, (24, 96), 200),                     # longer than any: asked as it is
    (52, (), 52),                             # a model timer1 did not train
])
def test_prompt_horizon_is_the_shortest_trained_one_that_covers_the_wish(wanted, trained, asked):
    assert prompt_horizon(wanted, trained) == asked


def test_the_shipped_model_knows_every_horizon_of_its_recipes():
    # grip.toml trains 96 -> 96 only; sft.toml adds its window shapes 36x36, 96x24, 96x48, 48x12, ...
    assert trained_horizons(REPO / "timer1" / "checkpoints" / "timer1-tiny") == (8, 12, 24, 36, 48, 96, 128)


def test_an_untrained_horizon_is_the_trained_answer_cut_back(forecaster):
    # asked for 10 steps, the model is prompted for 12 (trained) with the same seeds: the same drafts
    series = daily_cycle(96, seed=7)
    short = forecaster.predict(series, 10, seed=2, mode="slow")
    trained = forecaster.predict(series, 12, seed=2, mode="slow")
    assert short.point.shape == (1, 10) and short.samples[0].shape[1] == 10 and len(short.timestamps or [[]] * 1) == 1
    np.testing.assert_array_equal(short.point[0], trained.point[0][:10])
    np.testing.assert_array_equal(short.quantiles[0.9][0], trained.quantiles[0.9][0][:10])
    assert all(d.values is None or len(d.values) <= 10 for d in short.results[0].drafts)


@pytest.mark.parametrize("call, message", [
    (lambda f: f.predict([], 4), "non-empty"),
    (lambda f: f.predict("1,2,3", 4), "non-empty list or array"),
    (lambda f: f.predict([1.0, "x", 3.0], 4), "series 0 must be a non-empty list of numbers"),
    (lambda f: f.predict(np.zeros((2, 2, 2)), 4), "got shape (2, 2, 2)"),
    (lambda f: f.predict([[1.0] * 20, [1.0, 2.0]], 4), "series 1 has 2 values; at least 8"),
    (lambda f: f.predict([1.0] * 20, 0), "horizon must be a positive whole number of steps, got 0"),
    (lambda f: f.predict([1.0] * 20, 2.5), "got 2.5"),
    (lambda f: f.predict([1.0] * 20, 10_000), "horizon 10000 is more than 384 steps"),
    (lambda f: f.predict([1.0] * 9 + [np.inf] + [1.0] * 10, 4), "series 0 holds inf at position 9: not a finite"),
    (lambda f: f.predict([[1.0] * 20, [-np.inf] + [1.0] * 19], 4), "series 1 holds -inf at position 0"),
    (lambda f: f.predict([1.0] * 20, 4, mode="fast"), "mode must be one of auto, rule, slow, single, got 'fast'"),
    (lambda f: f.predict([1.0] * 20, 4, quantiles=(0.1, 1.5)), "strictly between 0 and 1"),
    (lambda f: f.predict([1.0] * 20, 4, timestamps=["2020-01-01"] * 3), "3 timestamps for 20 values"),
    (lambda f: f.predict([1.0] * 20, 4, timestamps=[f"day {k}" for k in range(20)]), "do not parse"),
    (lambda f: f.predict([1.0] * 3, 4, timestamps=["2020-01-03", "2020-01-02", "2020-01-04"]), "must increase"),
    (lambda f: f.predict([[1.0] * 20, [2.0] * 20], 4, timestamps=[hourly_dates(20), None]), "one list per series"),
    (lambda f: f.predict([np.nan] * 20, 4), "more than 25%"),
    (lambda f: f.predict([1.0] * 10 + [np.nan] * 10, 4), "more than 25%"),
])
def test_bad_input_is_a_one_line_value_error(forecaster, call, message):
    with pytest.raises(ValueError) as caught:
        call(forecaster)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_whole_number_horizon_given_as_a_float_is_that_horizon(forecaster):
    """JSON and pandas hand over 5.0 for 5: the same forecast as the int (2.5 is refused above)."""
    values = np.sin(np.arange(40) / 3.0) + 5.0
    as_float = forecaster.predict(values, 5.0, mode="single")
    np.testing.assert_array_equal(as_float.point, forecaster.predict(values, np.int64(5), mode="single").point)
    assert as_float.point.shape == (1, 5)


def test_model_names_and_missing_models(forecaster, monkeypatch, tmp_path):
    assert forecaster.name == "timer1-tiny" and forecaster.facts.horizon_cap == 4 * 96
    assert trained_horizon(REPO / "timer1" / "checkpoints" / "timer1-tiny") == 96
    monkeypatch.setenv("TIMER1_MODEL", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=f"no model at {tmp_path / 'absent'}"):
        Forecaster.from_pretrained()
    with pytest.raises(FileNotFoundError, match="model directory not found: no-such-model"):
        Forecaster.from_pretrained("no-such-model")
    with pytest.raises(FileNotFoundError, match="holds neither model weights nor checkpoints"):
        Forecaster.from_pretrained(tmp_path)                      # an empty directory


def test_an_adapter_on_the_smollm2_hub_name_gets_the_cached_conversion(monkeypatch, tmp_path):
    """timer1/checkpoints/timer1-smol names its base as PEFT does (the hub id); with no such directory the
    base is SmolLM2 converted once from the installed GGUF package (timer1.forecast.resolve.smollm2_base_dir)."""
    import json

    import timer1.forecast.resolve
    from timer1.forecast.resolve import SMOLLM2_HUB_NAME, resolve_model

    adapter = tmp_path / "timer1-smol"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": SMOLLM2_HUB_NAME}))
    converted = tmp_path / "cache" / "SmolLM2-135M-Instruct"
    monkeypatch.setattr(timer1.forecast.resolve, "smollm2_base_dir", lambda: converted)
    assert resolve_model(adapter) == (converted, adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "someone/OtherLM"}))
    with pytest.raises(FileNotFoundError, match="trained on someone/OtherLM, which is not found"):
        resolve_model(adapter)


def test_auto_dtype_is_the_checkpoints_own_on_cuda_and_fp32_on_cpu(tmp_path):
    """A forecast never runs a model in a precision it was not saved in unless asked: "auto" reads the
    checkpoint's torch_dtype for cuda (no GPU needed to decide it) and is fp32 on cpu."""
    import json
    import shutil

    from timer1.forecast.resolve import forecast_dtype

    shipped = Path(__file__).resolve().parents[1] / "timer1" / "checkpoints" / "timer1-tiny"
    halved = tmp_path / "bf16"
    shutil.copytree(shipped, halved)
    config = json.loads((halved / "config.json").read_text())
    (halved / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    assert forecast_dtype(shipped, "cuda", "auto") == torch.float32      # timer1-tiny was trained in fp32
    assert forecast_dtype(halved, "cuda", None) == torch.bfloat16
    assert forecast_dtype(halved, "cpu", "auto") == torch.float32
    assert forecast_dtype(shipped, "cuda", "bfloat16") == torch.bfloat16  # asked for: as asked
    forecaster = Forecaster.from_pretrained(shipped, dtype="bfloat16", threads=1)
    assert forecaster.policy.model.lm_head.weight.dtype == torch.bfloat16   # --dtype bfloat16 on cpu runs bf16
