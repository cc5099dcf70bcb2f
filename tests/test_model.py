"""timer1.core.model: parity with Hugging Face on stored tiny checkpoints, padding, the KV cache,
token_logprobs, checkpointing, save/load round trips and every bad-checkpoint error.

The fixtures (tests/fixtures/qwen2_*/) were written by tests/fixtures/make_hf_reference.py with
transformers' ``Qwen2ForCausalLM``; they hold HF's logits for a fixed batch."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from timer1.core.model import KVCache, Qwen2, Qwen2Config, token_logprobs
from timer1.core.policy import resolve_device

FIXTURES = Path(__file__).parent / "fixtures"
CASES = ["untied", "tied_mha", "sharded"]


def load_case(name: str):
    path = FIXTURES / f"qwen2_{name}"
    return path, Qwen2.from_pretrained(path), load_file(str(path / "reference.safetensors"))


def tiny_model(seed=0, tied=False, heads=4, kv_heads=2) -> Qwen2:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, rope_theta=1e6,
                         tie_word_embeddings=tied)
    model = Qwen2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


# -- parity with transformers ------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_logits_match_hf(name):
    _, model, ref = load_case(name)
    with torch.no_grad():
        logits = model(ref["input_ids"])
    assert logits.shape == ref["logits"].shape
    torch.testing.assert_close(logits, ref["logits"], atol=1e-4, rtol=0)


def test_fixtures_cover_both_dialects_ties_and_shards():
    raw = {n: json.loads((FIXTURES / f"qwen2_{n}" / "config.json").read_text()) for n in CASES}
    assert "rope_theta" in raw["untied"] and "rope_parameters" not in raw["untied"]
    assert "rope_parameters" in raw["tied_mha"] and "rope_theta" not in raw["tied_mha"]
    assert raw["tied_mha"]["tie_word_embeddings"] and not raw["untied"]["tie_word_embeddings"]
    assert (FIXTURES / "qwen2_sharded" / "model.safetensors.index.json").is_file()
    _, model, _ = load_case("tied_mha")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.rope_theta == 1e4
    _, model, _ = load_case("untied")
    assert model.config.rope_theta == 1e6


def test_config_dialects_agree():
    hub = {"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "rope_theta": 5e5, "torch_dtype": "bfloat16"}
    v5 = {k: v for k, v in hub.items() if k not in ("rope_theta", "torch_dtype")}
    v5.update(rope_parameters={"rope_theta": 5e5, "rope_type": "default"}, dtype="bfloat16")
    assert Qwen2Config.from_dict(hub) == Qwen2Config.from_dict(v5)
    assert Qwen2Config.from_dict(v5).rope_theta == 5e5 and Qwen2Config.from_dict(v5).head_dim == 4


# -- save / load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shard", [("untied", "5GB"), ("tied_mha", "10KB"), ("sharded", 30_000)])
def test_save_pretrained_round_trip(tmp_path, name, shard):
    _, model, ref = load_case(name)
    out = tmp_path / "saved"
    model.save_pretrained(out, max_shard_size=shard)
    sharded = shard != "5GB"
    assert (out / "model.safetensors.index.json").is_file() == sharded
    assert (out / "model.safetensors").is_file() == (not sharded)
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == model.config.rope_theta and config["torch_dtype"] == "float32"
    on_disk = {}
    for f in out.glob("*.safetensors"):
        on_disk.update(load_file(str(f)))
    assert ("lm_head.weight" in on_disk) == (not model.config.tie_word_embeddings)
    back = Qwen2.from_pretrained(out)
    with torch.no_grad():
        torch.testing.assert_close(back(ref["input_ids"]), ref["logits"], atol=1e-4, rtol=0)
    assert not list(tmp_path.glob(".saved.tmp-*"))  # the temporary directory is gone


def test_save_over_existing_dir_removes_stale_shards(tmp_path):
    _, model, ref = load_case("untied")
    out = tmp_path / "ckpt"
    model.save_pretrained(out, max_shard_size="20KB")
    (out / "tokenizer.json").write_text("{}")  # unrelated files stay
    model.save_pretrained(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]
    with torch.no_grad():
        torch.testing.assert_close(Qwen2.from_pretrained(out)(ref["input_ids"]), ref["logits"],
                                   atol=1e-4, rtol=0)


def test_load_in_bfloat16_keeps_rope_in_fp32(tmp_path):
    path, model32, ref = load_case("untied")
    model = Qwen2.from_pretrained(path, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert not any(p.is_meta for p in model.parameters())
    with torch.no_grad():
        logits = model(ref["input_ids"])
    assert logits.dtype == torch.bfloat16
    assert model._rope_inv_freq(torch.device("cpu")).dtype == torch.float32
    # bf16 has ~3 significant digits; the logits must still be close to the fp32 ones
    assert (logits.float() - ref["logits"]).abs().max() < 0.1 * ref["logits"].abs().max()
    assert resolve_device()[1] in (torch.float32, torch.bfloat16, torch.float16)


# -- bad checkpoints -----------------------------------------------------------------------------


def copy_case(tmp_path, name="untied") -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / f"qwen2_{name}", dst)
    return dst


def edit_weights(path: Path, edit):
    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"))


def test_error_missing_directory_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Qwen2.from_pretrained(tmp_path / "nowhere")
    path = copy_case(tmp_path)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Qwen2.from_pretrained(path)


def test_error_missing_weights_and_shard(tmp_path):
    path = copy_case(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors.index.json"):
        Qwen2.from_pretrained(path)
    path = copy_case(tmp_path, "sharded")
    (path / "model-00002-of-00007.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00007.safetensors"):
        Qwen2.from_pretrained(path)


def test_error_missing_tensor(tmp_path):
    path = copy_case(tmp_path)
    edit_weights(path, lambda s: s.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match=r"missing tensor 'model.layers.1.self_attn.k_proj.bias'"):
        Qwen2.from_pretrained(path)


def test_error_unexpected_tensor(tmp_path):
    path = copy_case(tmp_path)
    edit_weights(path, lambda s: s.update({"model.layers.0.mlp.extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"model.safetensors: unexpected tensor 'model.layers.0.mlp.extra.weight'"):
        Qwen2.from_pretrained(path)


def test_error_shape_mismatch(tmp_path):
    path = copy_case(tmp_path)
    edit_weights(path, lambda s: s.update({"model.norm.weight": torch.ones(7)}))
    with pytest.raises(ValueError, match=r"'model.norm.weight' has shape \(7,\), config expects \(48,\)"):
        Qwen2.from_pretrained(path)


def test_error_unsupported_model_type(tmp_path):
    path = copy_case(tmp_path)
    raw = json.loads((path / "config.json").read_text())
    raw["model_type"] = "mistral"
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"config.json: unsupported model_type 'mistral'"):
        Qwen2.from_pretrained(path)


# -- padding, cache, log-probs, checkpointing ----------------------------------------------------


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_left_padding_matches_rows_alone(kv_heads):
    model = tiny_model(kv_heads=kv_heads)
    rows = [[5, 9, 3, 7, 1, 2], [4, 8, 6], [11]]
    T = max(map(len, rows))
    ids = torch.tensor([[0] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)  # (3, T, V)
        assert torch.isfinite(batched).all()
        for i, r in enumerate(rows):
            alone = model(torch.tensor([r]))[0]
            torch.testing.assert_close(batched[i, T - len(r):], alone, atol=1e-5, rtol=0)


def test_left_and_right_padding_together():
    """GRIP's training batch: prompt left-padded, completion right-padded, in the same row."""
    model = tiny_model()
    ids = torch.tensor([[0, 0, 5, 9, 3, 7, 1, 0, 0], [4, 8, 6, 2, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 0, 0], [1] * 9])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)
        torch.testing.assert_close(batched[0, 2:7], model(ids[:1, 2:7])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[1], model(ids[1:])[0], atol=1e-5, rtol=0)
        assert torch.isfinite(batched).all()


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_cached_decoding_matches_full_forward(kv_heads):
    model = tiny_model(tied=True, kv_heads=kv_heads)
    ids = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full = model(ids)  # (2, 12, V)
        cache = KVCache(model.config, 2, 12, "cpu", torch.float32)
        steps = [model(ids[:, :5], cache=cache)]  # prefill 5
        steps.append(model(ids[:, 5:8], cache=cache))  # a chunk of 3 after a cached prefix
        steps += [model(ids[:, t:t + 1], cache=cache) for t in range(8, 12)]  # one at a time
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="KV cache holds 12 positions"):
            model(ids[:, :1], cache=cache)


def test_chunk_after_cached_prefix_runs_under_lower_right_causal_bias():
    """With no pads, a chunk after a cached prefix (a GRIP row on its prompt's cache) gets PyTorch's
    lower-right causal bias (flash runs it on CUDA) instead of an explicit mask: query i of 3 after 5
    cached slots sees slots 0..5+i, written out by hand."""
    model = tiny_model()
    cache = KVCache(model.config, 2, 8, "cpu", torch.float32)
    model(torch.randint(0, 97, (2, 5)), cache=cache)
    _, _, mask, is_causal = model.prepare(torch.randint(0, 97, (2, 3)), cache=cache)
    by_hand = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0], [1] * 8], dtype=torch.bool)
    assert type(mask).__name__ == "CausalBias" and not is_causal
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)  # (B, H, T|S, d)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=by_hand), atol=1e-6, rtol=0)


def test_cached_decoding_with_left_padding_matches_rows_alone():
    model = tiny_model()
    rows = [[5, 9, 3, 7], [4, 8]]
    ids = torch.tensor([[5, 9, 3, 7], [0, 0, 4, 8]])
    mask = ids != 0
    nxt = torch.tensor([[13, 14], [15, 16]])
    with torch.no_grad():
        cache = KVCache(model.config, 2, 6, "cpu", torch.float32)
        model(ids, attention_mask=mask, cache=cache)
        cache = cache.select_rows(torch.tensor([0, 0, 1, 1]), 6)
        out = [model(nxt[:, t].repeat_interleave(2)[:, None], cache=cache)[:, 0] for t in range(2)]
        for i, r in enumerate(rows):
            alone = model(torch.tensor([r + nxt[i].tolist()]))[0, -2:]  # logits after each new token
            for t in range(2):
                torch.testing.assert_close(out[t][2 * i], alone[t], atol=1e-5, rtol=0)
                torch.testing.assert_close(out[t][2 * i + 1], alone[t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_convention_and_gradient(temperature):
    model = tiny_model()
    ids = torch.randint(0, 97, (3, 9))
    # reference: full fp32 log-softmax of all logits, out[b, t] scores ids[b, t + 1]
    logits = model(ids)
    ref = torch.log_softmax(logits / temperature, dim=-1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    (ref * torch.arange(8.0)).sum().backward()
    ref_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    out = token_logprobs(model, ids, temperature=temperature, chunk_rows=5)  # chunks cross rows
    assert out.shape == (3, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    (out * torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(model.model.layers[0].self_attn.q_proj.weight.grad, ref_grad,
                               atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(model, ids, temperature=temperature), ref.detach(),
                                   atol=1e-5, rtol=0)


def test_token_logprobs_with_left_padding():
    model = tiny_model()
    ids = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        padded = token_logprobs(model, ids, attention_mask=mask)
        alone = token_logprobs(model, torch.tensor([[3, 4, 5]]))
    torch.testing.assert_close(padded[0, 2:], alone[0], atol=1e-5, rtol=0)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny_model()
    ids = torch.randint(0, 97, (2, 7))
    model(ids).float().square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    model.train()
    model(ids).float().square().mean().backward()
    for g, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's ``[x1, x2] -> [-x2, x1]`` over the last dimension split in two halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def test_apply_rope_equals_hf_rotate_half_formula():
    from timer1.core.model import apply_rope, rope_cos_sin

    d = 8
    positions = torch.tensor([[0, 3, 7]])
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, d, 2).float() / d))
    cos, sin_signed = rope_cos_sin(positions, inv_freq, torch.float32)  # (1, 1, 3, d)
    angles = positions[0, :, None].float() * inv_freq  # (3, d/2)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)  # HF's table
    torch.testing.assert_close(cos[0, 0], torch.cat((angles.cos(), angles.cos()), dim=-1))
    x = torch.randn(2, 4, 3, d)
    torch.testing.assert_close(apply_rope(x, cos, sin_signed), x * cos + rotate_half(x) * sin[None, None],
                               atol=0, rtol=0)
    assert rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [-3.0, -4.0, 1.0, 2.0]


# -- Llama (model_type "llama") in the same decoder ------------------------------------------------
# Fixtures tests/fixtures/llama_{biased,plain}/ were written by tests/fixtures/make_llama_reference.py
# with transformers' LlamaForCausalLM: "biased" has attention_bias (q, k, v, o) and mlp_bias, untied,
# transformers-5 dialect; "plain" has no bias and tied embeddings (SmolLM2's layout), hub dialect.


@pytest.mark.parametrize("name", ["biased", "plain"])
def test_llama_logits_match_hf(name):
    path = FIXTURES / f"llama_{name}"
    model = Qwen2.from_pretrained(path)
    ref = load_file(str(path / "reference.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model(ref["input_ids"]), ref["logits"], atol=1e-5, rtol=0)
    biased = name == "biased"
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    assert [m.bias is not None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.up_proj)] == [biased] * 5
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == (not biased)


@pytest.mark.parametrize("name", ["biased", "plain"])
def test_llama_save_pretrained_round_trip(tmp_path, name):
    path = FIXTURES / f"llama_{name}"
    model = Qwen2.from_pretrained(path)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    original = json.loads((path / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"] and saved["model_type"] == "llama"
    for key in ("attention_bias", "mlp_bias", "head_dim", "tie_word_embeddings", "rms_norm_eps"):
        assert saved[key] == original[key]
    assert "use_sliding_window" not in saved  # a Qwen2 field
    assert Qwen2Config.from_dict(saved) == model.config
    ref = load_file(str(path / "reference.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(Qwen2.from_pretrained(tmp_path / "saved")(ref["input_ids"]), ref["logits"],
                                   atol=1e-5, rtol=0)


def test_qwen2_keeps_its_fixed_biases():
    config = Qwen2Config(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=16)
    attn = Qwen2(config).model.layers[0].self_attn
    assert [m.bias is not None for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)] == [True] * 3 + [False]


LLAMA = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1}


@pytest.mark.parametrize("extra, message", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "unsupported rope_type 'llama3'"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "unsupported rope_type 'linear'"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "unsupported rope_type 'yarn'"),
    ({"hidden_act": "gelu"}, "unsupported hidden_act 'gelu'"),
    ({"attention_dropout": 0.1}, "attention_dropout=0.1 is not supported"),
    ({"use_sliding_window": True}, "use_sliding_window=true is not supported"),
    ({"layer_types": ["sliding_attention"]}, "layer_types other than full_attention"),
    ({"model_type": "qwen2", "attention_bias": True}, "attention_bias/mlp_bias are llama fields"),
    ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads"),
])
def test_config_the_decoder_cannot_honour_is_one_line(tmp_path, extra, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **extra}))
    with pytest.raises(ValueError, match=message) as error:
        Qwen2Config.from_json(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
