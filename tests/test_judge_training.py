"""The judge task through the real training scripts: its cases as JSONL, SFT that learns the answer
layout, GRIP whose reward is the combined forecast's, and the regions its cases come from."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train_grip
import train_sft
from timer1.core.judge import JudgeCase, judge_reward, parse_weights
from timer1.data.csv_io import read_csv
from timer1.data.judge_windows import judge_windows, region_rows
from timer1.data.protocol import split_bounds
from timer1.train.config import GRIPConfig, SFTConfig, load_config
from timer1.train.judge_data import (VAL_SEED_OFFSET, build_records, case_from_json, case_to_json, read_cases,
                                     rewritten, synthetic_problems, write_records)
from timer1.util.dist import DistInfo

SINGLE = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_master=True)


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge")
    write_records(build_records(synthetic_problems(6, 0), log=lambda _: None), out / "train.jsonl")
    write_records(build_records(synthetic_problems(2, VAL_SEED_OFFSET), log=lambda _: None), out / "val.jsonl")
    return out


def log_of(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def test_cases_round_trip_through_json(judge_dir):
    records = [json.loads(line) for line in (judge_dir / "train.jsonl").read_text().splitlines()]
    cases = read_cases(judge_dir / "train.jsonl")
    assert len(records) == len(cases) == 6
    for record, (case, scale) in zip(records, cases):
        again = case_to_json(case, scale)
        assert again == record["case"]
        # the stored teacher completion is readable and scores on the stored case
        assert parse_weights(record["completion"], case.evidence.names) is not None
        assert judge_reward(record["completion"], case)["format"] == 0
    assert rewritten(judge_dir / "train.jsonl") == records     # rewriting with the same teacher changes nothing


def test_judge_windows_stay_inside_their_region(shared_data):
    series = read_csv(shared_data / "nasdaq.csv")
    train_end, val_end = split_bounds(series, "nasdaq")
    assert region_rows(series, "nasdaq", "val") == (train_end, val_end)
    for region, (lo, hi) in (("train", (0, train_end)), ("val", (train_end, val_end))):
        found = judge_windows(series, "nasdaq", region, 36, 36)
        assert found
        for w in found:
            origin = w.window.start + w.window.lookback
            assert lo <= origin and origin + 36 <= hi                  # the target inside the region
            column = series.column(w.window.channel)
            assert np.allclose(w.window.history, np.round(column[w.window.start:origin], 3))
            assert w.step_period is None and w.step == series.step.name


def test_sft_learns_the_judge_layout_and_validates_against_the_rule(judge_dir, tmp_path):
    cfg = load_config(SFTConfig, ["--config", "configs/smoke_sft.toml", f"--data.judge_dir={judge_dir}",
                                  f"--out_dir={tmp_path}", "--lora.enabled=false", "--epochs=40", "--batch_size=6", "--grad_accum=1",
                                  "--optim.lr=1e-2", "--optim.warmup_steps=0", "--optim.schedule=constant",
                                  "--eval_every=40", "--eval_windows=2", "--val_max_tokens=8", "--save_every=0",
                                  "--max_seq_len=4096"])
    train_sft.main(cfg, SINGLE)
    log = log_of(tmp_path)
    assert log[0]["step"] == 0 and {"val_mase", "val_rule_mase", "val_unparsed"} <= set(log[0])
    losses = [r["loss"] for r in log if r["step"] > 0]
    assert losses[-1] < 0.6 * losses[0], losses
    assert log[-1]["val_n"] == 2 and log[-1]["val_unparsed"] == 2     # 8 tokens cannot reach an answer: rule


def test_grip_on_judge_cases_rewards_the_combination(judge_dir, tmp_path):
    cfg = load_config(GRIPConfig, ["--config", "configs/smoke_grip.toml", f"--data.judge_dir={judge_dir}",
                                   f"--out_dir={tmp_path}", "--steps=2", "--eval_every=2", "--eval_windows=2",
                                   "--digit_bonus=0"])
    train_grip.main(cfg, SINGLE)
    log = log_of(tmp_path)
    assert [r["step"] for r in log] == [0, 1, 2]
    assert {"reward_mse", "reward_format", "val_rule_mase"} <= set(log[-1])
    assert log[-1]["reward_format"] == -1.0      # a random model writes no <think>/<answer>: the paper's -1


def test_an_answer_naming_the_right_candidate_earns_more_than_one_naming_the_wrong():
    case, _ = read_cases_for_test()
    best = int(np.argmin(np.abs(case.forecasts - case.target).mean(axis=1)))
    worst = int(np.argmax(np.abs(case.forecasts - case.target).mean(axis=1)))
    names = case.evidence.names
    good = judge_reward(f"<think>x</think><answer>{names[best]} 1</answer>", case)["total"]
    bad = judge_reward(f"<think>x</think><answer>{names[worst]} 1</answer>", case)["total"]
    assert good > bad


def read_cases_for_test() -> tuple[JudgeCase, float]:
    record = build_records(synthetic_problems(1, 7), log=lambda _: None)[0]
    return case_from_json(record["case"])


def test_eval_windows_0_validates_nothing_on_judge_cases_as_on_windows(judge_dir, tmp_path):
    cfg = load_config(SFTConfig, ["--config", "configs/smoke_sft.toml", f"--data.judge_dir={judge_dir}",
                                  f"--out_dir={tmp_path}", "--epochs=1", "--batch_size=6", "--grad_accum=1",
                                  "--eval_windows=0", "--save_every=0", "--max_seq_len=4096"])
    train_sft.main(cfg, SINGLE)
    log = log_of(tmp_path)
    assert [r["step"] for r in log] == [1] and not any(k.startswith("val_") for k in log[0])
