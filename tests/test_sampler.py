"""timer1.core.sampler: the pure sampling functions on hand-made logits, and ``generate`` checked against a
slow reference (full uncached forwards) for tokens, stopping, batching and returned log-probs; the
compiled decode step against the eager one; bf16 weights against fp32."""

import math
from pathlib import Path

import pytest
import torch

import timer1.core.sampler as sampler
from timer1.core.model import Qwen2, Qwen2Config, token_logprobs
from timer1.core.sampler import generate, sample_token, sampling_logprobs, top_k_mask, top_p_mask
from timer1.core.tokenizer import Tokenizer

SHIPPED = Path(__file__).resolve().parents[1] / "timer1" / "checkpoints" / "timer1-tiny"

NEG = float("-inf")


def tiny_model(seed=2) -> Qwen2:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
                         tie_word_embeddings=False)
    model = Qwen2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.4)
    return model.eval()


def greedy_reference(model, prompt, n):
    """Greedy decoding with a full forward over the whole sequence at every step (no cache)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt):]


# -- pure functions on hand-made logits -----------------------------------------------------------


def test_top_k_mask_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [5.0, 5.0, 1.0, 5.0]])
    assert top_k_mask(logits, 2).tolist() == [[NEG, 3.0, 2.0, NEG], [5.0, 5.0, NEG, 5.0]]  # ties kept
    assert top_k_mask(logits, 0).tolist() == logits.tolist()
    assert top_k_mask(logits, 4).tolist() == logits.tolist()


def test_top_p_mask_by_hand():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()
    keep = lambda p: torch.isfinite(top_p_mask(logits, p))[0].tolist()  # noqa: E731
    assert keep(0.4) == [False, True, False, False]  # the top token alone reaches 0.4
    assert keep(0.7) == [False, True, False, True]  # 0.5 + 0.3 reaches 0.7
    assert keep(0.79) == [False, True, False, True]
    assert keep(0.81) == [True, True, False, True]  # needs 0.15 too
    assert keep(1.0) == [True, True, True, True]
    kept = top_p_mask(logits, 0.7)
    assert torch.equal(kept[0, [1, 3]], logits[0, [1, 3]])  # kept logits unchanged


def test_sampling_logprobs_temperature_then_masks():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    got = sampling_logprobs(logits, temperature=0.5, top_k=3, top_p=0.97)
    # by hand: tempered logits 4, 2, 0, -2; top-3 drops -2; probs of 4, 2, 0 ~ .867 .117 .016:
    # .867 + .117 = .984 >= .97, so top-p drops the third
    e = [math.exp(4), math.exp(2)]
    want = [math.log(e[0] / sum(e)), math.log(e[1] / sum(e)), NEG, NEG]
    assert got[0, 2:].tolist() == [NEG, NEG]
    torch.testing.assert_close(got[0, :2], torch.tensor(want[:2]), atol=1e-6, rtol=0)


def test_sample_token_frequencies_and_masking():
    logprobs = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).log().expand(20000, 4)
    gen = torch.Generator().manual_seed(0)
    draws = sample_token(logprobs, gen)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[3] == 0  # a masked token is never drawn
    torch.testing.assert_close(freq[:3], torch.tensor([0.5, 0.3, 0.2]), atol=0.015, rtol=0)


# -- generate -------------------------------------------------------------------------------------


def test_greedy_matches_uncached_reference_and_batching():
    model = tiny_model()
    prompts = [[3, 14, 15, 9, 2, 6], [5, 35], [8, 9, 7, 9]]
    out = generate(model, prompts, max_new_tokens=8, temperature=0)
    for prompt, tokens in zip(prompts, out.tokens):
        assert tokens == greedy_reference(model, prompt, 8)
        assert generate(model, [prompt], max_new_tokens=8, temperature=0).tokens == [tokens]
    assert out.logprobs == [[0.0] * 8] * 3


def test_samples_of_prompt_zero_come_first():
    model = tiny_model()
    prompts = [[3, 14, 15], [5, 35]]
    out = generate(model, prompts, max_new_tokens=5, num_samples=3, temperature=0)
    ref = [greedy_reference(model, p, 5) for p in prompts]
    assert out.tokens == [ref[0]] * 3 + [ref[1]] * 3


def test_seed_reproduces_and_differs():
    model = tiny_model()
    kwargs = dict(max_new_tokens=10, num_samples=4, temperature=1.0)
    a = generate(model, [[1, 2, 3], [4, 5]], seed=7, **kwargs)
    b = generate(model, [[1, 2, 3], [4, 5]], seed=7, **kwargs)
    c = generate(model, [[1, 2, 3], [4, 5]], seed=8, **kwargs)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs
    assert a.tokens != c.tokens
    assert len({tuple(t) for t in a.tokens[:4]}) > 1  # the group's samples differ


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8),
                                                     (0.9, 10, 0.9)])
def test_returned_logprobs_match_full_forward(temperature, top_k, top_p):
    model = tiny_model()
    prompts = [[3, 14, 15, 9, 2], [6, 5]]
    out = generate(model, prompts, max_new_tokens=6, num_samples=2, temperature=temperature,
                   top_k=top_k, top_p=top_p, seed=3)
    for i, (tokens, logprobs) in enumerate(zip(out.tokens, out.logprobs)):
        prompt = prompts[i // 2]
        seq = torch.tensor([prompt + tokens])
        with torch.no_grad():
            logits = model(seq)[0, len(prompt) - 1:-1]  # (n, V): the logits each token was drawn from
            want = sampling_logprobs(logits, temperature, top_k, top_p)
            want = want.gather(1, torch.tensor(tokens)[:, None])[:, 0]
            if top_k == 0 and top_p == 1.0:  # then it is also token_logprobs at that temperature
                scored = token_logprobs(model, seq, temperature=temperature)[0, len(prompt) - 1:]
                torch.testing.assert_close(scored, want, atol=1e-5, rtol=0)
        assert torch.isfinite(want).all()  # no sampled token was masked out
        torch.testing.assert_close(torch.tensor(logprobs), want, atol=1e-5, rtol=0)


def test_eos_stops_rows_independently():
    model = tiny_model()
    prompts = [[3, 14, 15, 9, 2, 6], [5, 35], [8, 9, 7, 9]]
    ref = [greedy_reference(model, p, 8) for p in prompts]
    eos = ref[0][3]  # row 0 stops at its fourth token; others stop at their first eos, if any
    out = generate(model, prompts, max_new_tokens=8, temperature=0, eos_ids=[eos, 60])
    for r, tokens, logprobs, finished in zip(ref, out.tokens, out.logprobs, out.finished):
        stop = next((i + 1 for i, t in enumerate(r) if t in (eos, 60)), None)
        assert tokens == r[:stop]
        assert finished == (stop is not None)
        assert len(logprobs) == len(tokens)
    assert out.tokens[0][-1] == eos and len(out.tokens[0]) == 4
    assert len({len(t) for t in out.tokens}) > 1


def test_sampled_rows_stop_at_eos_and_lengths_vary():
    model = tiny_model()
    eos = list(range(0, 61, 4))  # ~1 in 4 tokens ends a row
    out = generate(model, [[1, 2, 3]], max_new_tokens=12, num_samples=8, eos_ids=eos, seed=1)
    lengths = {len(t) for t in out.tokens}
    assert len(lengths) > 1
    for tokens, finished in zip(out.tokens, out.finished):
        assert all(t not in eos for t in tokens[:-1])
        assert finished == (tokens[-1] in eos)
        assert finished or len(tokens) == 12


def test_generate_rejects_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, [], max_new_tokens=3)
    with pytest.raises(ValueError, match="non-empty"):
        generate(model, [[1], []], max_new_tokens=3)
    with pytest.raises(ValueError, match="token id 61 outside"):
        generate(model, [[1, 61]], max_new_tokens=3)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [[1]], max_new_tokens=3, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, [[1]], max_new_tokens=3, top_p=0)
    empty = generate(model, [[1], [2]], max_new_tokens=0, num_samples=2)
    assert empty.tokens == [[]] * 4 and empty.logprobs == [[]] * 4


def test_generate_then_backprop_through_token_logprobs():
    """The GRIP loop: sample under inference mode, then score the samples with gradients."""
    model = tiny_model()
    out = generate(model, [[1, 2, 3]], max_new_tokens=4, num_samples=2, seed=0)
    assert not model._rope_inv_freq(torch.device("cpu")).is_inference()
    seqs = torch.tensor([[1, 2, 3] + t for t in out.tokens])
    model.gradient_checkpointing = True
    logp = token_logprobs(model, seqs)[:, 2:]  # (2, 4): the sampled tokens
    torch.testing.assert_close(logp.detach(), torch.tensor(out.logprobs), atol=1e-5, rtol=0)
    logp.sum().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


# -- compiled decode step, auto-compile rule, bf16 ------------------------------------------------


def test_compiled_decode_matches_eager():
    """Two graphs (~20-40 s of compiling on a 2-core CPU): left-padded prompts (a padding mask),
    greedy and sampled, with eos; and one prompt (no mask)."""
    model = tiny_model()
    prompts = [[3, 14, 15, 9, 2, 6], [5, 35], [8, 9, 7, 9]]
    cases = [dict(temperature=0), dict(temperature=1.0, seed=3), dict(temperature=0.8, top_k=10, top_p=0.9,
                                                                      seed=[1, 2, 3], eos_ids=[0, 7])]
    cases = [(prompts, kwargs) for kwargs in cases] + [([[1, 2, 3]], dict(seed=4))]  # no padding: no mask
    for prompts, kwargs in cases:
        eager = generate(model, prompts, max_new_tokens=12, num_samples=2, compile=False, **kwargs)
        compiled = generate(model, prompts, max_new_tokens=12, num_samples=2, compile=True, **kwargs)
        assert compiled.tokens == eager.tokens and compiled.finished == eager.finished
        for a, b in zip(compiled.logprobs, eager.logprobs):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=0)


def test_auto_compile_after_enough_eager_steps(monkeypatch):
    """compile=None: eager until the model has asked for AUTO_COMPILE_STEPS decode steps, then the
    compiled step (stubbed here by an eager wrapper that counts its calls)."""
    calls = []

    def counting_step(*args):
        calls.append(1)
        return sampler.decode_step(*args)

    monkeypatch.setattr(sampler, "AUTO_COMPILE_STEPS", 10)
    monkeypatch.setattr(sampler, "_compiled_step", lambda: counting_step)
    model, other = tiny_model(), tiny_model()
    first = generate(model, [[1, 2, 3]], max_new_tokens=6, temperature=0)  # 5 eager steps
    generate(model, [[1, 2, 3]], max_new_tokens=6, temperature=0)  # 10: still eager
    assert calls == []
    again = generate(model, [[1, 2, 3]], max_new_tokens=6, temperature=0)
    assert len(calls) == 5 and again.tokens == first.tokens
    generate(other, [[1, 2, 3]], max_new_tokens=6, temperature=0)  # counts are per model
    assert len(calls) == 5
    generate(other, [[1, 2, 3]], max_new_tokens=6, temperature=0, compile=False)
    generate(other, [[1, 2, 3]], max_new_tokens=3, temperature=0, compile=True)
    assert len(calls) == 7


def test_bf16_generate_matches_fp32_greedy_on_shipped_model():
    """bf16 weights, fp32 log-softmax and sampling: on the shipped timer1-tiny the 40 greedy tokens of
    a chat prompt equal fp32's (measured: identical); sampled log-probs come back as finite fp32."""
    tok = Tokenizer.from_pretrained(SHIPPED)
    text = tok.apply_chat_template([{"role": "user", "content": "Forecast the next 4 values: 1.0 2.0 3.0 4.0 5.0"}])
    prompt = tok.encode(text)
    fp32 = Qwen2.from_pretrained(SHIPPED)
    bf16 = Qwen2.from_pretrained(SHIPPED, dtype="bfloat16")
    assert bf16.lm_head.weight.dtype == torch.bfloat16
    want = generate(fp32, [prompt], max_new_tokens=40, temperature=0, compile=False).tokens
    assert generate(bf16, [prompt], max_new_tokens=40, temperature=0, compile=False).tokens == want
    out = generate(bf16, [prompt], max_new_tokens=20, num_samples=4, seed=0, compile=False)
    lp = torch.tensor(out.logprobs)  # (4, 20)
    assert torch.isfinite(lp).all() and (lp <= 0).all() and lp.dtype == torch.float32
