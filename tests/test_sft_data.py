"""timer1.core.sft_data and timer1.train.sft_jsonl: Algorithm 1 (min-MAPE candidate, revision, true-value target), the statistical
teacher's stated numbers, the model teacher end to end, JSONL and the CLI."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timer1.core.baselines import make_baseline
from timer1.core.codec import PromptFormat, forecast_from_completion
from timer1.core.metrics import mape
from timer1.core.policy import save_policy
from timer1.core.prompts import compact_scaler, parse_forecast
from timer1.core.sft_data import (METHODS, Candidate, ModelTeacher, StatisticalTeacher, build_samples,
                                  extract_reasoning, make_sample, select_best)
from timer1.core.window import Window
from timer1.data.window_sets import WindowSpec, load_windows
from timer1.train.random_init import random_policy
from timer1.train.sft_jsonl import read_jsonl, train_values, write_jsonl

REPO = Path(__file__).resolve().parents[1]
COMPACT = PromptFormat(style="compact", digits=2)
PAPER = PromptFormat(style="paper", decimals=3)


def make_window(history, target, start=0, dataset="synthetic"):
    n, h = len(history), len(target)
    dates = [f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00:00" for i in range(n + h)]
    return Window(dataset, "value", np.asarray(history, float), np.asarray(target, float),
                  dates[:n], dates[n:], start)


def seasonal_window(level=50.0, slope=0.5, amp=10.0, period=12, n=48, h=16, shift=0.0):
    t = np.arange(n + h)
    x = level + slope * t + amp * np.sin(2 * np.pi * t / period)
    x[n:] += shift
    return make_window(x[:n], x[n:])


def line_forecast(history, horizon):
    slope, intercept = np.polyfit(np.arange(len(history)), history, 1)
    return intercept + slope * np.arange(len(history), len(history) + horizon)


# ---------------------------------------------------------------------------------------- Algorithm 1

def test_select_best_is_the_min_mape_candidate():
    window = make_window([1.0, 2.0, 3.0], [10.0, 20.0])
    cands = [Candidate("a", np.array([11.0, 22.0]), "a"),          # MAPE 0.1
             Candidate("b", None, "b"),                             # unparsable
             Candidate("c", np.array([10.5, 19.0]), "c"),           # MAPE (0.05 + 0.05) / 2 = 0.05
             Candidate("d", np.array([10.0]), "d")]                 # short: [10, 10] -> 0.25
    best, score = select_best(cands, window)
    assert best.method == "c" and score == pytest.approx(0.05)
    assert select_best([cands[1]], window) == (None, math.inf)


@pytest.mark.parametrize("shift", [0.0, 15.0, -30.0])
def test_statistical_sample_keeps_min_mape_method_and_answers_the_truth(shift):
    window = seasonal_window(shift=shift)
    sample = make_sample(window, StatisticalTeacher(COMPACT), COMPACT, k=5)
    H = window.horizon
    reference = {"seasonal_naive": make_baseline("seasonal_naive", period=12).forecast(window.history, H),
                 "drift": make_baseline("drift").forecast(window.history, H),
                 "linear": line_forecast(window.history, H),
                 "mean": np.full(H, window.history.mean()), "last": np.full(H, window.history[-1])}
    scores = {m: mape(f, window.target) for m, f in reference.items()}
    assert sample.method == min(scores, key=scores.get)
    assert sample.mape == pytest.approx(min(scores.values()), rel=1e-5)
    # the target answers the TRUE values, whatever the chosen candidate forecast
    scale = compact_scaler(window).scale
    np.testing.assert_allclose(forecast_from_completion(sample.completion, window, COMPACT), window.target,
                               atol=scale / 2 + 1e-9)
    assert re.fullmatch(r"<think>[^<]+</think>\n<answer>[-\d,]+</answer>", sample.completion)


def test_paper_style_target_parses_back_to_true_values(shared_data):
    cfg_windows = load_windows(WindowSpec(str(shared_data), ("ETTh1",), 96, 96, 96, ("OT",), 3), "train")
    teacher = StatisticalTeacher(PAPER, "long")
    for window in cfg_windows:
        sample = make_sample(window, teacher, PAPER, k=5)
        np.testing.assert_allclose(parse_forecast(sample.completion), np.round(window.target, 3), atol=1e-9)
        assert sample.completion.startswith("<think>\n") and "```\ndate OT\n" in sample.completion
        assert sample.prompt[-1]["role"] == "user" and "ETTh1" in sample.prompt[-1]["content"]


def test_linear_candidate_uses_train_values_when_given(shared_data):
    spec = WindowSpec(str(shared_data), ("ETTh1",), 48, 16, 48, ("OT",), 2)
    window = load_windows(spec, "train")[0]
    values = train_values(spec)
    assert len(values[("ETTh1", "OT")]) == 12 * 30 * 24                  # the ETT train region, no more
    fitted = StatisticalTeacher(COMPACT, train_values=values).forecast("linear", window)
    plain = StatisticalTeacher(COMPACT).forecast("linear", window)
    np.testing.assert_allclose(plain, line_forecast(window.history, 16))
    assert not np.allclose(fitted, plain)


# ---------------------------------------------------------------------------------------- stated numbers

SHORT = re.compile(r"Last (\d+): mean (-?\d+), range (-?\d+)-(-?\d+); trend ([-+]\d+) per 10 steps; "
                   r"(?:period (\d+)|no cycle)\.")


def test_short_reasoning_states_true_numbers_of_the_history():
    window = seasonal_window(level=50, slope=0.5, amp=10, period=12)
    best, _ = select_best(StatisticalTeacher(COMPACT).candidates(window, 5), window)
    text = StatisticalTeacher(COMPACT).refine(window, best)
    n, level, low, high, slope, period = SHORT.match(text).groups()
    scaler = compact_scaler(window)
    shown = (window.history - scaler.offset) / scaler.scale            # the scale the prompt shows
    n = int(n)
    assert int(period) == 12 and n == 12                                # the cycle built into the series
    assert int(level) == round(shown[-n:].mean())
    assert (int(low), int(high)) == (round(shown[-n:].min()), round(shown[-n:].max()))
    assert int(slope) == round(10 * np.polyfit(np.arange(48), shown, 1)[0])   # per 10 steps, an integer
    # the revision states the truth: mean of the future, change vs the recent level, the cycle holds
    future = (window.target - scaler.offset) / scaler.scale
    m = re.search(r"Next 16: mean (-?\d+) \(([-+]\d+)\), trend ([-+]\d+) per 10 steps\. Cycle holds\.", text)
    assert m is not None, text
    assert int(m.group(1)) == round(future.mean())
    assert int(m.group(2)) == round(future.mean() - shown[-n:].mean())
    assert int(m.group(3)) == round(10 * np.polyfit(np.arange(16), future, 1)[0])
    assert len(text.split()) < 45                                        # short: tens of tokens
    said = {c.method: c.reasoning for c in StatisticalTeacher(COMPACT).candidates(window, 5)}
    assert said["mean"].endswith(f"Revert to the window mean {round(shown.mean())}.")   # what Mean forecasts
    assert said["seasonal_naive"].endswith("Repeat the last 12 steps.")


def test_signed_numbers_carry_the_prompts_digits_only():
    compact = StatisticalTeacher(COMPACT)
    assert [compact.rate(v) for v in (1.139, -0.01234, 15.5, -123.4, 0.0, -2e-5, float("nan"))] == \
        ["+1", "+0", "+16", "-123", "+0", "+0", "+0"]                  # never "-0", never a run of zeros
    assert compact.trend(-0.26) == "-3 per 10 steps"
    paper = StatisticalTeacher(PAPER)                                 # the prompt's 3 decimals
    assert [paper.rate(v) for v in (1.139, -0.01234, -2e-5)] == ["+1.139", "-0.012", "+0.000"]


def test_broken_cycle_and_long_reasoning_in_real_units():
    rng = np.random.default_rng(0)
    t = np.arange(64)
    x = 100 + 5 * np.sin(2 * np.pi * t / 8)
    x[48:] = 80 + rng.normal(0, 1, 16)                                   # the cycle stops, level drops
    window = make_window(x[:48], x[48:])
    teacher = StatisticalTeacher(PAPER, "long")
    best, _ = select_best(teacher.candidates(window, 5), window)
    text = teacher.refine(window, best)
    m = re.search(r"The last (\d+) values average (-?[\d.]+) and move between (-?[\d.]+) and (-?[\d.]+)\.", text)
    n = int(m.group(1))
    assert n == 8 and float(m.group(2)) == pytest.approx(window.history[-8:].mean(), abs=1e-3)
    assert float(m.group(3)) == pytest.approx(window.history[-8:].min(), abs=1e-3)
    assert "cycle of 8 steps" in text and "8-step cycle loses its shape" in text
    assert f"average about {window.target.mean():.3f}" in text


# ---------------------------------------------------------------------------------------- model teacher

class ScriptedTeacher(ModelTeacher):
    """The model teacher with its sampler replaced by fixed completions (records the prompts)."""

    def __init__(self, fmt, replies):
        self.fmt, self.replies, self.prompts, self.name = fmt, list(replies), [], "model:scripted"
        self.temperature = 0.7

    def sample(self, messages, num_samples, temperature):
        self.prompts.append(messages[-1]["content"])
        out, self.replies = self.replies[:num_samples], self.replies[num_samples:]
        return out


def test_model_teacher_parses_candidates_selects_min_mape_and_uses_the_revision():
    window = make_window(np.linspace(10, 20, 24), np.full(4, 20.0))
    scaler = compact_scaler(window)
    to_compact = lambda v: ",".join(str(int(round((x - scaler.offset) / scaler.scale))) for x in v)
    replies = [f"<think>far</think><answer>{to_compact([30, 30, 30, 30])}</answer>",
               "no answer at all",
               f"<think>close guess</think><answer>{to_compact([20.5, 20.5, 20.5, 20.5])}</answer>",
               "<think>The level settles at 20 and stays flat.</think> trailing text"]
    teacher = ScriptedTeacher(COMPACT, replies)
    sample = make_sample(window, teacher, COMPACT, k=3)
    assert sample.method == "model" and sample.teacher == "model:scripted"
    assert sample.mape == pytest.approx(mape(np.full(4, scaler.decode([round((20.5 - scaler.offset) / scaler.scale)])[0]),
                                             window.target))
    refine_prompt = teacher.prompts[1]
    assert "close guess" in refine_prompt and to_compact(window.target) in refine_prompt
    assert "The true next 4 values were" in refine_prompt
    assert sample.completion.startswith("<think>The level settles at 20 and stays flat.</think>\n<answer>")
    np.testing.assert_allclose(forecast_from_completion(sample.completion, window, COMPACT), 20.0,
                               atol=scaler.scale / 2)


def test_extract_reasoning():
    assert extract_reasoning("<think> a b </think><answer>1</answer>") == "a b"
    assert extract_reasoning("<think>open ended <answer>1</answer>") == "open ended"
    assert extract_reasoning("plain words <answer>1") == "plain words"
    assert extract_reasoning("") == ""


def test_model_teacher_end_to_end_with_a_tiny_random_checkpoint(shared_data, tmp_path):
    policy = random_policy({"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                            "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True},
                           seed=0, device="cpu")
    save_policy(policy, tmp_path / "teacher")
    teacher = ModelTeacher.from_path(tmp_path / "teacher", COMPACT, device="cpu", max_new_tokens=12, seed=3)
    windows = load_windows(WindowSpec(str(shared_data), ("ETTh1",), 24, 8, 24, ("OT",), 3), "train")
    seen = {"candidates": [], "refined": []}                          # what the model really produced
    candidates, refine = teacher.candidates, teacher.refine
    teacher.candidates = lambda w, k: seen["candidates"].append(candidates(w, k)) or seen["candidates"][-1]
    teacher.refine = lambda w, best: seen["refined"].append(refine(w, best)) or seen["refined"][-1]
    samples, counts = build_samples(windows, teacher, COMPACT, k=2, fallback=StatisticalTeacher(COMPACT))
    assert counts.teacher + counts.fallback == 3 and counts.skipped == 0 and len(samples) == 3
    assert [len(c) for c in seen["candidates"]] == [2, 2, 2]
    assert all(c.text and c.method == "model" for cands in seen["candidates"] for c in cands)
    usable = [any(c.forecast is not None for c in cands) for cands in seen["candidates"]]
    assert counts.fallback >= usable.count(False)                     # no parsable candidate -> fallback
    for sample, window, ok in zip(samples, windows, usable):
        if not ok:                                                     # fell back: said so in the sample
            assert sample.teacher == "statistical" and sample.method in METHODS
        else:
            assert sample.teacher in (teacher.name, "statistical")
        np.testing.assert_allclose(forecast_from_completion(sample.completion, window, COMPACT), window.target,
                                   atol=compact_scaler(window).scale / 2 + 1e-9)
    no_fallback, counts = build_samples(windows, teacher, COMPACT, k=2)
    assert counts.skipped == 3 - len(no_fallback) and counts.fallback == 0


# ---------------------------------------------------------------------------------------- JSONL and CLI

def test_jsonl_round_trip_and_bad_files(tmp_path):
    window = seasonal_window()
    samples, _ = build_samples([window, seasonal_window(shift=5)], StatisticalTeacher(COMPACT), COMPACT)
    path = write_jsonl(samples, tmp_path / "d" / "sft.jsonl")
    with open(path, "a") as fh:
        fh.write("not json\n" + json.dumps({"prompt": [], "completion": "x"}) + "\n")
    records = read_jsonl(path, prompt_style="compact")
    assert [r["completion"] for r in records] == [s.completion for s in samples]
    assert set(records[0]) >= {"prompt", "completion", "dataset", "channel", "start", "teacher", "method", "mape"}
    with pytest.raises(ValueError, match="prompt style compact"):
        read_jsonl(path, prompt_style="paper")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"prompt": "p"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="holds no valid SFT samples"):
        read_jsonl(junk)
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "timer1.train.sft_jsonl", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_samples_from_the_train_region(shared_data, tmp_path):
    out = tmp_path / "sft.jsonl"
    done = run_cli("--config", "configs/smoke_sft.toml", f"--data.data_dir={shared_data}", "--out", out)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 16 and "wrote 16 samples" in done.stdout
    assert all(r["start"] + 24 + 8 <= 12 * 30 * 24 for r in records)    # history and target in train rows
    bad = run_cli("--config", "configs/smoke_sft.toml", f"--data.data_dir={shared_data}")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: missing --out PATH.jsonl"
