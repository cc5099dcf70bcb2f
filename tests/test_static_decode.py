"""The fixed-shape decode path of ``timer1.core.sampler.generate`` (static KV cache, slot and positions as
tensors, stop flags read every few tokens) against a reference that shares nothing with it but the pure
sampling functions: a full forward over each row's whole sequence at every step, no KV cache at all.
Also the arithmetic of sizing rollouts to memory (``timer1.core.rollout``), by hand."""

import pytest
import torch

import timer1.core.sampler as sampler
from timer1.core.model import Qwen2, Qwen2Config
import timer1.core.rollout as rollout
from timer1.core.rollout import fitting_prompts, kv_budget, kv_bytes_per_row, sample_rollout
from timer1.core.sampler import generate, sample_token, sampling_logprobs


def tiny_model(seed=3) -> Qwen2:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6)
    model = Qwen2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.4)
    return model.eval()


def full_recompute(model, prompts, new_tokens, num_samples, eos_ids=(), seed=None, **sampling):
    """Every row re-encoded from scratch at every step (``model(ids)`` over prompt + tokens so far); all
    rows' next tokens drawn together from the same generator(s) as ``generate`` draws them, then each row
    cut after its first eos. Returns (tokens, logprobs, finished) per row."""
    rows = [list(p) for p in prompts for _ in range(num_samples)]
    n_prompt = [len(r) for r in rows]
    temperature = sampling.get("temperature", 1.0)
    if isinstance(seed, list):
        generator = [torch.Generator().manual_seed(s) for s in seed]
    else:
        generator = None if seed is None else torch.Generator().manual_seed(seed)
    drawn = [[] for _ in rows]
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = torch.stack([model(torch.tensor([r]))[0, -1] for r in rows])  # (N, V)
            if temperature == 0:
                token, logprob = logits.argmax(-1), torch.zeros(len(rows))
            else:
                logprobs = sampling_logprobs(logits, temperature, sampling.get("top_k", 0),
                                             sampling.get("top_p", 1.0))  # (N, V)
                token = sample_token(logprobs, generator)
                logprob = logprobs.gather(1, token[:, None])[:, 0]
            for i, r in enumerate(rows):
                r.append(int(token[i]))
                drawn[i].append(float(logprob[i]))
    out = []
    for r, n, lp in zip(rows, n_prompt, drawn):
        tokens = r[n:]
        stop = next((i + 1 for i, t in enumerate(tokens) if t in eos_ids), None)
        out.append((tokens[:stop], lp[:stop], stop is not None))
    return out


CASES = [  # left-padded prompts (a validity mask), greedy and sampled, per-prompt seeds, eos, > 16 steps
    ([[3, 14, 15, 9, 2, 6], [5, 35], [8, 9, 7, 9]], 20, 2, dict(temperature=0)),
    ([[3, 14, 15, 9, 2, 6], [5, 35]], 21, 3, dict(temperature=1.0, seed=5)),
    ([[1, 2, 3], [4], [8, 9, 7, 9]], 18, 2, dict(temperature=0.8, top_k=10, top_p=0.9, seed=[1, 2, 3],
                                                   eos_ids=[28, 41])),
    ([[1, 2, 3]], 19, 4, dict(temperature=1.2, seed=9, eos_ids=list(range(0, 61, 5)))),  # one prompt: no pads
]


@pytest.mark.parametrize("block", [256, 5])  # one attention window; a new window every 5 slots
@pytest.mark.parametrize("prompts,new_tokens,num_samples,kwargs", CASES)
def test_generate_equals_full_recompute(prompts, new_tokens, num_samples, kwargs, block, monkeypatch):
    monkeypatch.setattr(sampler, "ATTEND_BLOCK", {"cpu": block})
    model = tiny_model()
    want = full_recompute(model, prompts, new_tokens, num_samples, **kwargs)
    got = generate(model, prompts, max_new_tokens=new_tokens, num_samples=num_samples, compile=False, **kwargs)
    assert got.tokens == [w[0] for w in want]
    assert got.finished == [w[2] for w in want]
    for logprobs, (_, ref, _) in zip(got.logprobs, want):
        torch.testing.assert_close(torch.tensor(logprobs), torch.tensor(ref), atol=1e-5, rtol=0)
    if "eos_ids" in kwargs:
        assert any(got.finished) and len({len(t) for t in got.tokens}) > 1


def test_compiled_step_across_attention_windows_equals_full_recompute(monkeypatch):
    """``torch.compile(fullgraph=True)`` of the step (no graph break), one window shape after another
    (~10-30 s of compiling on a 2-core CPU)."""
    monkeypatch.setattr(sampler, "ATTEND_BLOCK", {"cpu": 5})
    model = tiny_model()
    prompts, new_tokens, num_samples, kwargs = CASES[2]
    want = full_recompute(model, prompts, new_tokens, num_samples, **kwargs)
    got = generate(model, prompts, max_new_tokens=new_tokens, num_samples=num_samples, compile=True, **kwargs)
    assert got.tokens == [w[0] for w in want]
    for logprobs, (_, ref, _) in zip(got.logprobs, want):
        torch.testing.assert_close(torch.tensor(logprobs), torch.tensor(ref), atol=1e-5, rtol=0)


def test_decode_steps_keep_their_shapes_within_a_window_and_the_cache_never_moves(monkeypatch):
    """What lets a CUDA graph replay the step: the same input shapes at every step of an attention
    window, the cache's tensors at the same addresses (allocated once for the call, windows are views
    of it), the slot and positions in tensors."""
    seen = []
    monkeypatch.setattr(sampler, "ATTEND_BLOCK", {"cpu": 256})

    def recording_step(model, tokens, cache, slot):
        seen.append((tuple(tokens.shape), slot.shape, cache.valid.shape, cache.next_pos.shape,
                     [t.data_ptr() for t in (*cache.k, *cache.v, cache.valid, cache.next_pos, slot)]))
        return original(model, tokens, cache, slot)

    original = sampler.decode_step
    monkeypatch.setattr(sampler, "decode_step", recording_step)
    model = tiny_model()
    generate(model, [[3, 14, 15, 9], [5, 35]], max_new_tokens=9, num_samples=3, seed=0, compile=False)
    assert len(seen) == 8 and all(s == seen[0] for s in seen)
    assert seen[0][:4] == ((6, 1), (1,), (6, 4 + 9), (6,))  # one window: the whole cache
    seen.clear()
    monkeypatch.setattr(sampler, "ATTEND_BLOCK", {"cpu": 3})
    generate(model, [[3, 14, 15, 9], [5, 35]], max_new_tokens=9, num_samples=3, seed=0, compile=False)
    # slots 4-11 written; windows end at multiples of 3 past the slot written, the last at the cache's 13
    assert [s[2][1] for s in seen] == [6, 6, 9, 9, 9, 12, 12, 12]
    assert all(s[4] == seen[0][4] for s in seen)  # every window a view of the same tensors


def test_stop_flags_are_read_every_few_steps_only(monkeypatch):
    """Every row stops at its first token: the host sees it at the next check, so the steps run in
    between are the check interval's, and the output is still cut at the eos; on a CPU (no queue to
    wait for) every step is checked."""
    model = tiny_model()
    first = generate(model, [[1, 2, 3]], max_new_tokens=1, temperature=0).tokens[0][0]
    calls = []

    def counting_step(*args):
        calls.append(1)
        return original(*args)

    original = sampler.decode_step
    monkeypatch.setattr(sampler, "decode_step", counting_step)
    monkeypatch.setattr(sampler, "STOP_CHECK_EVERY", {"cpu": 4})  # 16 on a GPU, every step on a CPU
    out = generate(model, [[1, 2, 3]], max_new_tokens=12, num_samples=2, temperature=0, eos_ids=[first],
                   compile=False)
    assert out.tokens == [[first], [first]] and out.finished == [True, True]
    assert len(calls) == 3  # steps 0-2 fed their token on; step 3's check stopped the loop
    monkeypatch.setattr(sampler, "STOP_CHECK_EVERY", {})
    generate(model, [[1, 2, 3]], max_new_tokens=12, temperature=0, eos_ids=[first], compile=False)
    assert len(calls) == 3  # stopped at step 0's check, before any decode step


# -- rollouts sized to memory ----------------------------------------------------------------------


def test_kv_bytes_and_prompts_per_call_by_hand():
    config = Qwen2Config(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # head_dim 8
    # keys and values x 2 layers x 2 kv heads x 8 numbers x 10 slots x 4 bytes
    assert kv_bytes_per_row(config, 10, torch.float32) == 2 * 2 * 2 * 8 * 10 * 4 == 2560
    assert kv_bytes_per_row(config, 10, torch.bfloat16) == 1280
    assert fitting_prompts(config, 3, 10, torch.float32, 16_000) == 2  # 3 rows a prompt: 7680 bytes
    assert fitting_prompts(config, 3, 10, torch.float32, 23_040) == 3
    assert fitting_prompts(config, 3, 10, torch.float32, 100) == 1  # a group is never split
    # the 7B preset (Qwen2.5-7B: 28 layers, 4 kv heads, head_dim 128), 48 rows of 5,000 bf16 slots: ~13.8 GB
    qwen7b = Qwen2Config(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4)
    assert kv_bytes_per_row(qwen7b, 5000, torch.bfloat16) == 2 * 28 * 4 * 128 * 5000 * 2 == 286_720_000
    assert fitting_prompts(qwen7b, 48, 5000, torch.bfloat16, 60 * 10**9) == 4
    assert kv_budget(torch.device("cpu")) == rollout.CPU_KV_BUDGET


class Bytes:
    eos_ids = (60,)

    def decode(self, tokens):
        return " ".join(map(str, tokens))


def test_rollout_calls_follow_the_memory_budget(monkeypatch):
    """0 prompts per call: as many as the KV budget holds, the same rollout as that many given by hand."""
    model = tiny_model()
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8]]
    row = kv_bytes_per_row(model.config, 3 + 5, torch.float32)
    monkeypatch.setattr(rollout, "CPU_KV_BUDGET", 2 * 2 * row + 1)  # two prompts of K = 2 rows
    calls = []
    original = rollout.generate
    monkeypatch.setattr(rollout, "generate", lambda m, p, **kw: calls.append(len(p)) or original(m, p, **kw))
    sized = sample_rollout(model, Bytes(), prompts, K=2, max_new_tokens=5, seed=4)
    assert calls == [2, 2]
    assert sized.completions == sample_rollout(model, Bytes(), prompts, K=2, max_new_tokens=5, seed=4,
                                               prompts_per_call=2).completions
    sample_rollout(model, Bytes(), prompts, K=2, max_new_tokens=5, seed=4, prompts_per_call=3)
    assert calls[-2:] == [3, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_decode_equals_full_recompute():
    """On CUDA the step is replayed as a captured graph: greedy tokens as the uncached reference's."""
    model = tiny_model().cuda()
    prompts = [[3, 14, 15, 9, 2, 6], [5, 35], [8, 9, 7, 9]]
    want = full_recompute(model, prompts, 20, 2, temperature=0)
    for compile in (False, True):
        got = generate(model, prompts, max_new_tokens=20, num_samples=2, temperature=0, compile=compile)
        assert got.tokens == [w[0] for w in want]
