"""timer1.core.prompts: the Time-R1 prompt, the answer layout, compact scaling, and the forecast parser."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from timer1.core.prompts import (OFFICIAL_TEMPLATE, CompactScaler, build_prompt, channel_meaning, compact_scaler,
                                 dataset_description, format_answer, format_compact_answer, format_table, format_values,
                                 parse_forecast)
from timer1.core.window import Window
from timer1.data.csv_io import read_csv
from timer1.data.protocol import paper_windows


def window(history=(1.0, 2.5, -3.25), target=(4.0, 5.0), dataset="ETTh1", channel="OT"):
    n, h = len(history), len(target)
    return Window(dataset, channel, np.array(history, float), np.array(target, float),
                  [f"2020-01-01 {i:02d}:00:00" for i in range(n)],
                  [f"2020-01-01 {n + i:02d}:00:00" for i in range(h)], 0)


@pytest.fixture
def ett_window(shared_data):
    return paper_windows(read_csv(shared_data / "ETTh1.csv"), channels=["OT"])[0]


# ---------------------------------------------------------------------------------------------
# prompts

def test_official_prompt_text(ett_window):
    text = build_prompt(ett_window, style="official", decimals=None)
    assert text.startswith(
        "Here is the Oil Temperature data of the ETTh1 dataset. I will now give you data for the past 96 "
        "recorded dates, and please help me forecast the data for next 96 recorded dates.The data is as follows:\n```\n")
    lines = text.split("```\n")[1].splitlines()
    assert lines[0].split() == ["date", "OT"] and len(lines) == 97  # header + 96 rows
    assert lines[1].split() == ["2017-10-20", "00:00:00", "8.864"]  # row 11424 of ETTh1 OT
    assert lines[-1].split()[:2] == ["2017-10-23", "23:00:00"]
    assert text.endswith("Output format for your answer is :\n<think>\n...\n</think>\n<answer>\n```\n...\n```\n"
                         "</answer>\nPlease obey the format strictly.")
    assert "Please give me the complete data for the next 96 recorded dates" in text
    # the template's fields are all filled
    assert "{" not in text and OFFICIAL_TEMPLATE.count("{horizon}") == 2


def test_official_tables_match_pandas(shared_data):
    """The table is byte-identical to what the official eval code (pandas to_string) embeds;
    fixture made by tests/fixtures/make_official_tables.py from the official slicing rules."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "official_tables.json").read_text())
    for case in fixture["cases"]:
        series = read_csv(shared_data / f"{case['dataset']}.csv")
        w = paper_windows(series, channels=[case["channel"]])[case["index"]]
        text = build_prompt(w, style="official", decimals=None)
        assert "```\n" + case["table"] + "\n```" in text, (case["dataset"], case["channel"])


def test_paper_prompt_has_five_parts(ett_window):
    text = build_prompt(ett_window, style="paper", decimals=3)
    assert "forecast the data for next 96 recorded dates" in text                 # 1 task definition
    assert "electricity transformer" in text                                       # 2 dataset description
    assert "OT is the Oil Temperature" in text                                    # 3 channel information
    assert "2017-10-23 23:00:00" in text and "2017-10-24 00:00:00 onwards" in text  # 4 data with timestamps
    assert "<think>" in text and "<answer>" in text and "date OT" in text        # 5 format instruction
    rows = text.split("```\n")[1].splitlines()[1:97]
    np.testing.assert_allclose([float(r.split()[-1]) for r in rows], np.round(ett_window.history, 3))


def test_prompt_options_and_generic_dataset():
    w = window(history=np.arange(10.0), target=np.zeros(4), dataset="my_sensor", channel="temp_c")
    text = build_prompt(w, style="paper", decimals=1, lookback=5, horizon=3)
    assert "past 5 recorded dates" in text and "next 3 recorded dates" in text
    assert "file my_sensor" in text and "temp_c is the temp_c" in text
    assert "9.0" in text and "\n2020-01-01 04:00:00" not in text  # only the last 5 values shown
    assert channel_meaning("aqwan", "PM2.5") == "Particulate Matter 2.5"
    assert channel_meaning("EXCHANGE", "New_Zealand") == "the daily exchange rates of New Zealand"
    assert "Shunyi" in dataset_description("aqshunyi")
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompt(w, style="fancy")
    with pytest.raises(ValueError, match="lookback 11"):
        build_prompt(w, lookback=11)


def test_format_values_like_pandas():
    # pandas prints 6 decimals and then cuts the trailing zeros that every value shares
    assert format_values([8.864000320434570, 10.48200035095215], None) == ["8.864", "10.482"]
    assert format_values([0.5, 0.25], None) == ["0.50", "0.25"]
    assert format_values([1.0, 2.0], None) == ["1.0", "2.0"]
    assert format_values([1.000004, 2.0], None) == ["1.000004", "2.000000"]
    assert format_values([1.23456, -2.0], 2) == ["1.23", "-2.00"]
    assert format_table(["a", "bb"], [1.5, -10.25], "v", 2).splitlines() == ["date      v", "   a   1.50", "  bb -10.25"]


# ---------------------------------------------------------------------------------------------
# compact scaling

def test_compact_scaler_round_trip():
    rng = np.random.default_rng(0)
    history = 1000.0 + 50.0 * rng.standard_normal(96)
    scaler = CompactScaler.fit(history, digits=2)
    scaled = scaler.to_scaled(history)
    assert scaled.min() == 10 and scaled.max() == 89 and np.all(scaled == np.round(scaled))
    text = scaler.encode(history)
    assert all(len(cell) == 2 for cell in text.split(","))   # fixed width: one value = 2 digit tokens
    assert scaler.encode([scaler.decode([3])[0], scaler.decode([-4])[0], scaler.decode([123])[0]]) == "03,-4,123"
    assert np.max(np.abs(scaler.decode(scaled) - history)) <= scaler.scale / 2 + 1e-9
    # the encoded text parses back to the same integers
    np.testing.assert_array_equal(parse_forecast(scaler.encode(history)), scaled)
    flat = CompactScaler.fit([5.0] * 10)
    assert flat.scale > 0 and np.allclose(flat.decode(flat.to_scaled([5.0, 5.0])), 5.0)
    with pytest.raises(ValueError, match="no finite value"):
        CompactScaler.fit([np.nan])


def test_compact_prompt_states_its_scaling_and_stays_short(ett_window):
    text = build_prompt(ett_window, style="compact")
    scaler = compact_scaler(ett_window)
    assert f"real = v*{scaler.scale:.6g}+{scaler.offset:.6g}" in text
    assert len(text) < 600 and "2017" not in text  # no dates, ~3 characters per value
    # decoding with the numbers PRINTED in the prompt reproduces the history within half a step
    series_line = text.splitlines()[1]
    decoded = scaler.decode(parse_forecast(series_line))
    assert np.max(np.abs(decoded - ett_window.history)) <= scaler.scale / 2 + 1e-9
    # a compact answer -> parse -> decode gives the real-scale forecast back
    answer = format_compact_answer(ett_window.target, "flat then rising", scaler)
    assert answer.startswith("<think>flat then rising</think>\n<answer>")
    recovered = scaler.decode(parse_forecast(answer))
    assert recovered.shape == (96,) and np.max(np.abs(recovered - ett_window.target)) <= scaler.scale / 2 + 1e-9


# ---------------------------------------------------------------------------------------------
# answers and parsing

def test_format_answer_layout_and_round_trip(ett_window):
    text = format_answer(ett_window.target_dates, ett_window.target, "The level holds.", decimals=3, channel="OT")
    assert text.startswith("<think>\nThe level holds.\n</think>\n<answer>\n```\ndate OT\n2017-10-24 00:00:00 ")
    assert text.endswith("\n```\n</answer>")
    np.testing.assert_allclose(parse_forecast(text), np.round(ett_window.target, 3))
    negative = format_answer(["1.0", "2.0", "3.0"], [-0.5, 1e-4, -12345.678], "x", decimals=4)
    np.testing.assert_allclose(parse_forecast(negative), [-0.5, 0.0001, -12345.678])
    with pytest.raises(ValueError, match="2 dates for 3 values"):
        format_answer(["a", "b"], [1, 2, 3], "x")


FENCE = "```"
MODEL_OUTPUTS = [
    # the official layout
    (f"<think>\nIt rises.\n</think>\n<answer>\n{FENCE}\ndate OT\n2017-10-24 00:00:00 12.3\n"
     f"2017-10-24 01:00:00 -4.5\n{FENCE}\n</answer>", [12.3, -4.5]),
    # markdown table with header and rule
    ("<think>ok</think>\n<answer>\n| date | value |\n|------|-------|\n| 2017-10-24 00:00:00 | 1.5 |\n"
     "| 2017-10-24 01:00:00 | 2.5 |\n</answer>", [1.5, 2.5]),
    # no header, tab separated, no fences
    ("<think>t</think><answer>\n2020/1/1 0:00\t3\n2020/1/1 0:15\t4\n</answer>", [3, 4]),
    # prose around, closing tags missing
    (f"<think>The series dips at night.</think>\n<answer>Here is my forecast:\n{FENCE}\ndate PM2.5\n"
     f"2016-05-12 20:00:00 35.0\n2016-05-12 21:00:00 41.25\n", [35.0, 41.25]),
    # no tags at all: the first fenced block (official behaviour)
    (f"Sure! {FENCE}text\ndate value\n2021-01-01 5e-3\n2021-01-02 1.5E+2\n{FENCE} Hope it helps 99.", [0.005, 150.0]),
    # numbers in the reasoning are ignored when there is an answer
    ("<think>peak 99.9 at 2017-10-24 05:00:00, trough 1.0</think>\n<answer>\n"
     "2017-10-24 00:00:00 7\n2017-10-24 01:00:00 8\n</answer>", [7.0, 8.0]),
    # thousands separators in their own token, unicode minus, bold numbers, a CSV row
    ("<answer>\n2017-10-24 1,234.5\n2017-10-25 \u22122.5\n2017-10-26 **3.25**\n2017-10-27,4\n</answer>",
     [1234.5, -2.5, 3.25, 4.0]),
    # nasdaq-like running index rows: the value is the last number
    ("<think>x</think>\n<answer>\n```\ndate Close\n997.0 0.61\n998.0 0.62\n```\n</answer>", [0.61, 0.62]),
    # a compact answer: one comma-separated list
    ("<think>up</think>\n<answer>12,40,-3,99</answer>", [12, 40, -3, 99]),
    # a list wrapped over lines
    ("<answer>1.5, 2.5, 3.5,\n4.5, 5.5, 6.5</answer>", [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]),
    # after </think> without answer tags
    ("<think>1 2 3</think>\n2017-10-24 00:00:00 9.5\n2017-10-24 01:00:00 9.75", [9.5, 9.75]),
    # a date-only row and a value-less header are not values
    ("<answer>\ndate SO2\n2017-10-24\n2017-10-25 00:00 6.0\n</answer>", [6.0]),
]


@pytest.mark.parametrize("text, expected", MODEL_OUTPUTS)
def test_parse_model_outputs(text, expected):
    got = parse_forecast(text)
    assert got is not None and got.dtype == np.float64
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize("text", [
    "", "no numbers here", "<think>1 2 3</think>\n<answer></answer>", "<answer>nan inf -inf 1e999</answer>",
    "<answer>date value\n2017-10-24\n2017-10-25</answer>", "\x00\x00\x00", "```\n```",
])
def test_parse_returns_none_without_values(text):
    assert parse_forecast(text) is None


def test_parse_odd_inputs():
    assert parse_forecast(None) is None and parse_forecast(12) is None
    np.testing.assert_allclose(parse_forecast(b"<answer>1.5\n2.5</answer>"), [1.5, 2.5])
    np.testing.assert_allclose(parse_forecast(b"\xff\xfe<answer>7</answer>"), [7.0])
    huge = "<answer>\n" + "2017-10-24 00:00:00 1.5\n" * 200_000  # 4.8 MB, cut at MAX_PARSE_CHARS
    got = parse_forecast(huge)
    assert got is not None and np.all(got == 1.5) and 50_000 < got.size < 200_000
    assert parse_forecast("9" * 5000) is None  # a number too long to be a value


def _random_text(rng: random.Random) -> str:
    kind = rng.randrange(4)
    n = rng.randrange(0, 300)
    if kind == 0:  # random bytes, decoded leniently
        return bytes(rng.randrange(256) for _ in range(n)).decode("utf-8", errors="replace")
    if kind == 1:  # random unicode code points, lone surrogates included
        return "".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0xD7FF),
                                       rng.randrange(0xD800, 0xE000), rng.randrange(0xE000, 0x10FFFF)]))
                       for _ in range(n))
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "```", "|", "\n", " ", ",", "-", ".", "e", "E",
              "+", "1e999", "-1e-999", "inf", "nan", "NaN", "\u2212", "**", "2017-10-24", "00:00:00", "1,234",
              "999999999999999999999999", "0", "7", "3.25", ".5", "5.", "date", "value", "\t", ";", ":", "\x00"]
    if kind == 2:  # number soup built from the parser's own vocabulary
        return "".join(rng.choice(pieces) for _ in range(n))
    digits = "0123456789.-+eE,| \n"  # dense digit noise
    return "<answer>" * rng.randrange(2) + "".join(rng.choice(digits) for _ in range(n))


def test_parse_never_raises_and_stays_finite():
    rng = random.Random(1234)
    parsed = 0
    for _ in range(3000):
        text = _random_text(rng)
        got = parse_forecast(text)
        if got is not None:
            parsed += 1
            assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.ndim == 1
            assert got.size > 0 and np.all(np.isfinite(got))
    assert parsed > 300  # the soups do yield values, so the finite check above was exercised
