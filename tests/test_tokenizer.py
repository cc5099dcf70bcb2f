"""timer1.core.tokenizer: Qwen2.5 and SmolLM2 chat template parity with the real jinja templates, the tiny
trainer, round trips, agreement with transformers on a saved tokenizer, and error messages.

References come from tests/fixtures/chat_template_reference.json, made by
tests/fixtures/make_chat_template_reference.py (jinja2 + transformers, not run here), and
tests/fixtures/smollm2_reference.json, made by tests/fixtures/make_smollm2_reference.py
(transformers' apply_chat_template with the template stored in SmolLM2-135M-Instruct's GGUF).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from timer1.core.tokenizer import (DEFAULT_SYSTEM_PROMPT, QWEN25_CHAT_TEMPLATE, SMOLLM2_CHAT_TEMPLATE,
                                   SMOLLM2_SYSTEM_PROMPT, Tokenizer, train_tokenizer)

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "chat_template_reference.json").read_text("utf-8"))
SMOLLM2 = json.loads((Path(__file__).parent / "fixtures" / "smollm2_reference.json").read_text("utf-8"))

# A few hundred lines of dates, numbers and words, like the prompts the tiny model will read.
CORPUS = [
    f"2016-07-{1 + i % 28:02d} {i % 24:02d}:00:00 {(i * 7919) % 10000 / 100:.2f} oil temperature load"
    for i in range(300)
] + [
    "Here is the data of the ETTh1 dataset. Please forecast the next values.",
    "<think>The series rises then falls with a daily period.</think>\n<answer>\n12.5\n13.0\n</answer>",
] * 20

# Fixed ids of the reserved tokens in every tokenizer made by train_tokenizer.
RESERVED_IDS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2,
                "<think>": 3, "</think>": 4, "<answer>": 5, "</answer>": 6}


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=400)


def write_tokenizer_json(directory: Path, layout: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(layout), encoding="utf-8")
    return directory


# ---------------------------------------------------------------- chat template vs Qwen2.5's jinja
def test_template_string_is_qwen25_instruct():
    assert QWEN25_CHAT_TEMPLATE == REFERENCE["chat_template"]


@pytest.mark.parametrize("case", REFERENCE["chats"], ids=lambda case: f"{len(case['messages'])}msg-gen{case['add_generation_prompt']}")
def test_chat_template_matches_jinja_render(tiny, case):
    text = tiny.apply_chat_template(case["messages"], add_generation_prompt=case["add_generation_prompt"])
    assert text == case["text"]


def test_chat_template_layout_by_hand(tiny):
    text = tiny.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == (f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("messages", [
    [],
    [{"role": "tool", "content": "42"}],
    [{"role": "user"}],
    [{"role": "user", "content": 3}],
    ["hello"],
    [{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]}],
])
def test_chat_template_rejects_bad_messages(tiny, messages):
    with pytest.raises(ValueError, match="messages"):
        tiny.apply_chat_template(messages)


# ---------------------------------------------------------------- SmolLM2's template, and unknown ones
def with_template(tokenizer: Tokenizer, template) -> Tokenizer:
    return Tokenizer(tokenizer.backend, {**tokenizer.config, "chat_template": template})


def test_template_string_is_smollm2_instruct():
    assert SMOLLM2_CHAT_TEMPLATE == SMOLLM2["chat_template"]


@pytest.mark.parametrize("case", SMOLLM2["chats"], ids=lambda case: f"{len(case['messages'])}msg-gen{case['add_generation_prompt']}")
def test_smollm2_chat_template_matches_jinja_render(tiny, case):
    smol = with_template(tiny, SMOLLM2_CHAT_TEMPLATE)
    assert smol.apply_chat_template(case["messages"], add_generation_prompt=case["add_generation_prompt"]) == case["text"]


def test_smollm2_layout_by_hand(tiny):
    text = with_template(tiny, SMOLLM2_CHAT_TEMPLATE).apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == (f"<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_template_survives_save_and_load(tiny, tmp_path):
    with_template(tiny, SMOLLM2_CHAT_TEMPLATE).save_pretrained(tmp_path)
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert loaded.config["chat_template"] == SMOLLM2_CHAT_TEMPLATE
    assert SMOLLM2_SYSTEM_PROMPT in loaded.apply_chat_template([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", "chat_template is not one timer1 reproduces"),
    (QWEN25_CHAT_TEMPLATE.replace("Alibaba Cloud", "someone"), "chat_template is not one timer1 reproduces"),
    ([{"name": "default", "template": QWEN25_CHAT_TEMPLATE}], "chat_template is not one timer1 reproduces"),
    (None, "has no chat_template"),
])
def test_unknown_template_is_a_clear_error(tiny, template, message):
    with pytest.raises(ValueError, match=message):
        with_template(tiny, template).apply_chat_template([{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- the trained tiny tokenizer
def test_pipeline_is_qwen2s(tiny):
    layout = json.loads(tiny.backend.to_str())
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        assert layout[key] == REFERENCE["qwen2_pipeline"][key], key


def test_reserved_tokens_have_fixed_ids_and_flags(tiny):
    added = tiny.backend.get_added_tokens_decoder()
    assert {token.content: token_id for token_id, token in added.items()} == RESERVED_IDS
    assert [added[i].special for i in range(7)] == [True] * 3 + [False] * 4
    assert tiny.eos_ids == (2,) and tiny.pad_id == 0
    assert 263 < tiny.vocab_size <= 400  # 7 reserved + 256 bytes + merges


def test_training_is_deterministic(tiny):
    again = train_tokenizer(CORPUS, vocab_size=400)
    assert again.backend.to_str() == tiny.backend.to_str()


def test_vocab_size_too_small_is_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(CORPUS, vocab_size=100)


@pytest.mark.parametrize("number", ["31415926", "2016-07-01", "-0.0075", "1e10"])
def test_digits_are_one_token_each(tiny, number):
    ids = tiny.encode(number)
    pieces = [tiny.decode([token_id]) for token_id in ids]
    assert "".join(pieces) == number
    digit_pieces = [piece for piece in pieces if any(ch.isdigit() for ch in piece)]
    assert all(len(piece) == 1 for piece in digit_pieces)
    assert len(digit_pieces) == sum(ch.isdigit() for ch in number)


def test_merges_were_learned(tiny):
    assert len(tiny.encode("temperature")) < len("temperature")  # frequent word: fewer tokens than bytes


@pytest.mark.parametrize("token", list(RESERVED_IDS))
def test_special_and_tag_tokens_map_to_single_ids(tiny, token):
    assert tiny.encode(token) == [RESERVED_IDS[token]]
    ids = tiny.encode(f"a{token}b")
    assert RESERVED_IDS[token] in ids and len(ids) == 3


def test_decode_skip_special_keeps_reasoning_tags(tiny):
    ids = tiny.encode("<|im_start|>assistant\n<think>up</think><answer>1.5</answer><|im_end|><|endoftext|>")
    assert tiny.decode(ids, skip_special_tokens=True) == "assistant\n<think>up</think><answer>1.5</answer>"


@pytest.mark.parametrize("text", [
    "2016-07-01 00:00:00 30.531\n2016-07-01 01:00:00 27.787",
    "never seen: zebra Ωμέγα 温度 ✓ \t tabs  and  double  spaces\n\n\n",
    "",
])
def test_encode_decode_round_trip(tiny, text):
    assert tiny.decode(tiny.encode(text)) == text


def test_no_bos_is_added(tiny):
    assert tiny.encode("a")[0] != RESERVED_IDS["<|endoftext|>"]
    assert len(tiny.encode("a")) == 1


def test_chat_round_trip(tiny):
    messages = [{"role": "user", "content": "Forecast 3 values after 1.5 2.0 2.5"},
                {"role": "assistant", "content": "<think>steps of 0.5</think>\n<answer>\n3.0\n3.5\n4.0\n</answer>"}]
    text = tiny.apply_chat_template(messages, add_generation_prompt=False)
    ids = tiny.encode(text)
    assert tiny.decode(ids) == text
    assert ids.count(RESERVED_IDS["<|im_start|>"]) == 3 and ids.count(RESERVED_IDS["<|im_end|>"]) == 3
    assert ids[-2:] == [RESERVED_IDS["<|im_end|>"], tiny.encode("\n")[0]]


def test_decode_accepts_tensors_and_numpy_ints(tiny):
    ids = tiny.encode("12.5 load")
    assert tiny.decode(torch.tensor(ids)) == "12.5 load"
    assert tiny.decode([np.int64(i) for i in ids]) == "12.5 load"


def test_decode_ids_past_the_vocab_give_nothing(tiny):
    ids = tiny.encode("12.5")
    assert tiny.decode(ids + [tiny.vocab_size, tiny.vocab_size + 100]) == "12.5"  # padded embedding rows


@pytest.mark.parametrize("ids", [[-1], [1.5], ["3"]])
def test_decode_rejects_bad_ids(tiny, ids):
    with pytest.raises(ValueError, match="non-negative integer"):
        tiny.decode(ids)


def test_encode_rejects_non_strings(tiny):
    with pytest.raises(ValueError, match="str"):
        tiny.encode(["a"])


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    text = tiny.apply_chat_template([{"role": "user", "content": "x = 2024.75"}])
    assert loaded.encode(text) == tiny.encode(text)
    assert loaded.backend.to_str() == tiny.backend.to_str()
    assert (loaded.vocab_size, loaded.eos_ids, loaded.pad_id) == (tiny.vocab_size, (2,), 0)
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["chat_template"] == REFERENCE["chat_template"]
    assert (config["eos_token"], config["pad_token"], config["bos_token"]) == ("<|im_end|>", "<|endoftext|>", None)
    assert config["added_tokens_decoder"]["3"] == {"content": "<think>", "lstrip": False, "normalized": False,
                                                   "rstrip": False, "single_word": False, "special": False}


def test_save_keeps_loaded_config_keys(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "a")
    config_file = tmp_path / "a" / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.update(model_max_length=131072, custom_key="kept", eos_token="<|endoftext|>")
    config_file.write_text(json.dumps(config))
    loaded = Tokenizer.from_pretrained(tmp_path / "a")
    assert loaded.eos_ids == (0,)
    loaded.save_pretrained(tmp_path / "b")
    saved = json.loads((tmp_path / "b" / "tokenizer_config.json").read_text())
    assert (saved["model_max_length"], saved["custom_key"], saved["eos_token"]) == (131072, "kept", "<|endoftext|>")


def test_save_overwrites_atomically(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    tiny.save_pretrained(tmp_path)  # second save replaces the files, leaves no temp files behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("eos_token_id, expected", [([2, 0], (2, 0)), (0, (0,))])
def test_eos_ids_from_generation_config(tiny, tmp_path, eos_token_id, expected):
    tiny.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_token_id}))
    assert Tokenizer.from_pretrained(tmp_path).eos_ids == expected


def test_save_keeps_eos_token_when_generation_config_lists_others(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
    Tokenizer.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"


def test_tokenizer_json_alone_uses_qwen_defaults(tiny, tmp_path):
    write_tokenizer_json(tmp_path, json.loads(tiny.backend.to_str()))
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert loaded.eos_ids == (2,) and loaded.pad_id == 0


# ---------------------------------------------------------------- agreement with transformers
def test_agrees_with_transformers_on_saved_tiny_tokenizer(tmp_path):
    hf = REFERENCE["hf_tiny"]
    loaded = Tokenizer.from_pretrained(write_tokenizer_json(tmp_path, hf["tokenizer_json"]))
    for sample in hf["samples"]:
        assert loaded.encode(sample["text"]) == sample["ids"], sample["text"]
        assert loaded.decode(sample["ids"]) == sample["decoded"]
        assert loaded.decode(sample["ids"], skip_special_tokens=True) == sample["decoded_skip_special"]
    assert (loaded.eos_ids, loaded.pad_id) == ((hf["eos_token_id"],), hf["pad_token_id"])


# ---------------------------------------------------------------- errors
def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        Tokenizer.from_pretrained(tmp_path / "nope")


def test_missing_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("content", ['{"model": ', '{"version": "1.0", "model": {"type": "NoSuchModel"}}', "\x00\x01"])
def test_corrupt_tokenizer_json(tmp_path, content):
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(ValueError, match="not a valid tokenizer.json") as info:
        Tokenizer.from_pretrained(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, content, match", [
    ("tokenizer_config.json", "{broken", "tokenizer_config.json is not valid JSON"),
    ("tokenizer_config.json", "[1, 2]", "must hold a JSON object"),
    ("tokenizer_config.json", '{"eos_token": "<|nope|>"}', "eos_token '<|nope|>' is not in the vocabulary"),
    ("generation_config.json", '{"eos_token_id": "2"}', "eos_token_id must be an int or a list"),
])
def test_bad_side_files(tiny, tmp_path, name, content, match):
    write_tokenizer_json(tmp_path, json.loads(tiny.backend.to_str()))
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        Tokenizer.from_pretrained(tmp_path)
