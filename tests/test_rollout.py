"""timer1.rollout: the batch layout, old/reference log-probs, micro-batch loss scaling, scoring."""

import copy

import numpy as np
import pytest
import torch

from timer1.grip import Groups, Variant, grip_loss, make_groups
from timer1.lora import apply_lora, lora_modules
from timer1.model import Qwen2, Qwen2Config, token_logprobs
from timer1.rewards import compute_reward
from timer1.rollout import (BatchTotals, Reference, Rollout, adapter_snapshot, batched_logprobs, build_batch,
                            completion_logprobs, digit_share, micro_loss, old_logprob_source, old_logprobs,
                            reference_logprobs, sample_rollout, score_rollout, shared_prompt_hidden,
                            with_logprobs)

VOCAB = 64


class ByteTokenizer:
    """A stand-in tokenizer over ids 0..63 (eos = 63), enough for sampling and decoding."""

    eos_ids = (63,)
    pad_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(48 + (i % 40)) for i in ids)


def tiny_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    config = Qwen2Config.from_dict({"model_type": "qwen2", "vocab_size": VOCAB, "hidden_size": 32,
                                    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                    "num_key_value_heads": 2, "tie_word_embeddings": False})
    model = Qwen2(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.5 if "embed" in name or "lm_head" in name else 0.1)
    return model.to(dtype).eval()


def hand_rollout():
    """Two prompts of different lengths, K=3 completions each with known tokens and log-probs."""
    prompts = [[5, 6, 7], [8, 9]]
    completions = [[10, 11], [12], [13, 14, 63], [15, 16, 17, 18], [19], [20, 63]]
    logprobs = [[-0.1 * (i + 1) - 0.01 * t for t in range(len(c))] for i, c in enumerate(completions)]
    return Rollout(prompts, completions, logprobs, [c[-1] == 63 for c in completions],
                   ["x"] * 6, K=3)


def test_build_batch_layout_and_micro_batches():
    rollout = hand_rollout()
    index = torch.tensor([[0, 2], [1, 0]])  # (B, G): prompt 0 keeps samples 0 and 2, prompt 1 keeps 4 and 3
    groups = Groups(index, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[-1.0, 1.0], [-0.5, 0.5]]),
                    torch.tensor([[0.25, 0.75], [0.4, 0.6]]))
    batch = build_batch(rollout, groups, pad_id=0)
    P, T = 3, 4  # longest prompt, longest selected completion (sample 3 has 4 tokens)
    assert batch.prompt_width == P and batch.input_ids.shape == (4, P + T)
    expected = torch.tensor([
        [5, 6, 7, 10, 11, 0, 0],
        [5, 6, 7, 13, 14, 63, 0],
        [0, 8, 9, 19, 0, 0, 0],
        [0, 8, 9, 15, 16, 17, 18],
    ])
    assert torch.equal(batch.input_ids, expected)
    assert torch.equal(batch.attention_mask, torch.tensor([
        [1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1]]).bool())
    assert torch.equal(batch.completion_mask, batch.attention_mask[:, P:])
    assert batch.num_tokens == 2 + 3 + 1 + 4
    torch.testing.assert_close(batch.sampler_logp[1, :3], torch.tensor(rollout.logprobs[2]))
    torch.testing.assert_close(batch.sampler_logp[3], torch.tensor(rollout.logprobs[3]))
    assert batch.sampler_logp[2, 1:].abs().sum() == 0  # padding holds 0
    torch.testing.assert_close(batch.advantages, torch.tensor([-1.0, 1.0, -0.5, 0.5]))
    torch.testing.assert_close(batch.weights, torch.tensor([0.25, 0.75, 0.4, 0.6]))
    torch.testing.assert_close(batch.rewards, torch.tensor([1.0, 2.0, 3.0, 4.0]))

    # micro-batches cut the columns no row needs: rows 2..3 share a left pad column
    first, second = batch.micro_batches(2)
    assert first.input_ids.shape == (2, 3 + 3) and first.prompt_width == 3  # longest completion there: 3
    assert second.prompt_width == 2 and torch.equal(second.input_ids, expected[2:, 1:])
    assert torch.equal(second.completion_mask, batch.completion_mask[2:])


def test_completion_logprobs_align_with_unpadded_rows():
    model = tiny_model()
    rollout = hand_rollout()
    groups = make_groups(torch.arange(6.0).view(2, 3), Variant("uniform", "uniform", 3, 1))
    batch = build_batch(rollout, groups)
    got = completion_logprobs(model, batch)  # (N, T)
    for row in range(batch.num_rows):
        sample = row  # uniform selection with K == G keeps every sample in order
        prompt, completion = rollout.prompts[sample // 3], rollout.completions[sample]
        ids = torch.tensor([prompt + completion])
        ref = token_logprobs(model, ids)[0, len(prompt) - 1:]  # (len(completion),) no padding at all
        torch.testing.assert_close(got[row, :len(completion)], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recomputed_old_logprobs_equal_the_samplers(temperature):
    model = tiny_model(1)
    rollout = sample_rollout(model, ByteTokenizer(), [[1, 2, 3, 4], [5, 6]], K=4, max_new_tokens=10,
                             temperature=temperature, seed=3)
    assert any(len(c) > 5 for c in rollout.completions)
    groups = make_groups(torch.zeros(2, 4), Variant("uniform", "uniform", 4, 1))
    batch = build_batch(rollout, groups)
    recomputed = old_logprobs(model, batch, source="recompute", temperature=temperature, micro_batch=3)
    mask = batch.completion_mask
    torch.testing.assert_close(recomputed[mask], batch.sampler_logp[mask], rtol=0, atol=2e-5)
    assert old_logprobs(model, batch, source="sampler", temperature=temperature, micro_batch=3) is batch.sampler_logp
    # at a different temperature they would not agree: the check above can fail
    other = batched_logprobs(model, batch, 1.5 * temperature, 8)
    assert (other[mask] - batch.sampler_logp[mask]).abs().max() > 1e-2


def test_old_logprob_source_rules():
    model = tiny_model()
    assert old_logprob_source(model, top_p=1.0) == "sampler"
    assert old_logprob_source(model, top_p=0.9) == "recompute"  # the sampler's are of the truncated distribution
    assert old_logprob_source(tiny_model(dtype=torch.bfloat16), top_p=1.0) == "recompute"
    assert old_logprob_source(model, top_p=1.0, requested="recompute") == "recompute"
    with pytest.raises(ValueError, match="top_p=1"):
        old_logprob_source(model, top_p=0.9, requested="sampler")
    # with top_p < 1 the sampler's numbers really differ from the full softmax's
    rollout = sample_rollout(model, ByteTokenizer(), [[1, 2, 3]], K=4, max_new_tokens=6, top_p=0.5, seed=0)
    batch = build_batch(rollout, make_groups(torch.zeros(1, 4), Variant("uniform", "uniform", 4, 1)))
    full = batched_logprobs(model, batch, 1.0, 8)
    assert (full[batch.completion_mask] < batch.sampler_logp[batch.completion_mask] - 1e-3).any()


def lora_model_and_base():
    base = tiny_model(2)
    model = copy.deepcopy(base)
    apply_lora(model, ("q_proj", "v_proj", "down_proj"), r=4, alpha=8)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.weight.normal_(0, 0.3)  # a trained-looking adapter, so LoRA on != LoRA off
    return model, base


def test_reference_with_lora_disabled_equals_the_base_model():
    model, base = lora_model_and_base()
    rollout = hand_rollout()
    batch = build_batch(rollout, make_groups(torch.zeros(2, 3), Variant("uniform", "uniform", 3, 1)))
    ref = reference_logprobs(model, Reference("base"), batch, temperature=1.0, micro_batch=4)
    expected = batched_logprobs(base, batch, 1.0, 4)
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-6)
    policy = batched_logprobs(model, batch, 1.0, 4)
    assert (policy - expected)[batch.completion_mask].abs().max() > 1e-3  # LoRA is on again afterwards


def test_reference_adapter_snapshot_and_frozen_copy():
    model, _ = lora_model_and_base()
    rollout = hand_rollout()
    batch = build_batch(rollout, make_groups(torch.zeros(2, 3), Variant("uniform", "uniform", 3, 1)))
    start = batched_logprobs(model, batch, 1.0, 4)
    snapshot = adapter_snapshot(model)
    frozen = copy.deepcopy(model)
    with torch.no_grad():  # "training" moves the adapter away from the snapshot
        for m in lora_modules(model).values():
            m.lora_B.weight.add_(0.2)
    moved = batched_logprobs(model, batch, 1.0, 4)
    assert (moved - start)[batch.completion_mask].abs().max() > 1e-3
    ref = reference_logprobs(model, Reference("adapter", snapshot=snapshot), batch, temperature=1.0, micro_batch=4)
    torch.testing.assert_close(ref, start, rtol=0, atol=1e-6)
    torch.testing.assert_close(batched_logprobs(model, batch, 1.0, 4), moved, rtol=0, atol=0)  # restored
    ref_copy = reference_logprobs(model, Reference("model", model=frozen), batch, temperature=1.0, micro_batch=4)
    torch.testing.assert_close(ref_copy, start, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="LoRA"):  # no LoRA, no "base" reference: refused, not silently KL=0
        reference_logprobs(tiny_model(), Reference("base"), batch, temperature=1.0, micro_batch=4)
    with pytest.raises(ValueError, match="exactly"):
        Reference("model")


@pytest.mark.parametrize("agg", ["seq-mean", "token-mean"])
def test_micro_batch_losses_add_up_to_the_batch_loss(agg):
    model = tiny_model(3)
    model.requires_grad_(True)
    rollout = sample_rollout(model, ByteTokenizer(), [[1, 2, 3], [4, 5, 6, 7]], K=4, max_new_tokens=8, seed=1)
    rewards = torch.tensor([[0.1, 0.5, 0.3, 0.9], [1.0, 0.2, 0.2, 0.4]])
    groups = make_groups(rewards, Variant("local", "softmax", 2, 2), torch.Generator().manual_seed(0))
    batch = build_batch(rollout, groups)
    old = batch.sampler_logp - 0.05 * batch.completion_mask  # a ratio != 1 so the clip is active somewhere
    ref = batched_logprobs(model, batch, 1.0, 8) + 0.1
    batch = with_logprobs(batch, old, ref)

    full_loss, _ = grip_loss(completion_logprobs(model, batch), batch.old_logp, batch.ref_logp, batch.advantages,
                             batch.weights, batch.completion_mask, eps=0.2, beta=0.04, agg=agg)
    full_grads = torch.autograd.grad(full_loss, list(model.parameters()))
    totals = BatchTotals(batch.num_rows, float(batch.weights.sum()), batch.num_tokens, world=1)
    parts = [micro_loss(model, mb, totals, eps=0.2, beta=0.04, agg=agg, temperature=1.0)[0]
             for mb in batch.micro_batches(3)]  # 3 does not divide N = 4: uneven micro-batches
    summed = sum(parts)
    torch.testing.assert_close(summed, full_loss, rtol=1e-5, atol=1e-7)
    for g_full, g_sum in zip(full_grads, torch.autograd.grad(summed, list(model.parameters()))):
        torch.testing.assert_close(g_sum, g_full, rtol=1e-4, atol=1e-7)


def test_score_rollout_uses_compute_reward_and_the_digit_bonus():
    target = np.array([1.0, 2.0, 3.0, 2.0])
    good = "<think>up then down</think><answer>1, 2, 3, 2</answer>"
    texts = [good, "no answer", "<think>x</think><answer>1, 2</answer>", "12ab"]
    rollout = Rollout([[1], [2]], [[1]] * 4, [[0.0]] * 4, [True] * 4, texts, K=2)
    rewards, terms = score_rollout(rollout, [target, target])
    assert rewards.shape == (2, 2) and terms["format"].shape == (2, 2)
    for i, text in enumerate(texts):
        assert rewards.view(-1)[i].item() == pytest.approx(compute_reward(text, target)["total"], abs=1e-6)
    assert "digits" not in terms
    bonus, terms_b = score_rollout(rollout, [target, target], digit_bonus=2.0)
    assert terms_b["digits"][1, 1] == pytest.approx(2.0 * 0.5)  # "12ab": half digits
    torch.testing.assert_close(bonus, rewards + torch.tensor(terms_b["digits"], dtype=torch.float32))
    assert digit_share("") == 0.0 and digit_share("a1") == 0.5
    with pytest.raises(ValueError, match="targets"):
        score_rollout(rollout, [target])


def test_shared_prompt_forward_equals_one_forward_per_row():
    """Rows of a group run their prompt once (KV cache copied to the rows): same log-probs and same
    gradients as the plain padded forward, with prompts of different lengths, ragged completions and
    rows of one prompt not adjacent."""
    model = tiny_model(4)
    model.requires_grad_(True)
    rollout = hand_rollout()
    index = torch.tensor([[0, 2, 1], [1, 0, 2]])  # every sample, prompt 1's in a shuffled order
    groups = Groups(index, torch.zeros(2, 3), torch.zeros(2, 3), torch.full((2, 3), 1 / 3))
    batch = build_batch(rollout, groups)
    batch = batch.rows(1, 5)  # a micro-batch mixing the two prompts
    mask = batch.completion_mask
    plain = completion_logprobs(model, batch, 0.8, share_prompts=False)
    shared = completion_logprobs(model, batch, 0.8, share_prompts=True)
    torch.testing.assert_close(shared[mask], plain[mask], rtol=1e-5, atol=1e-5)
    params = list(model.parameters())
    g_plain = torch.autograd.grad((plain * mask).sum(), params)
    g_shared = torch.autograd.grad((shared * mask).sum(), params)
    for a, b in zip(g_plain, g_shared):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # all prompts distinct: nothing to share, the plain path runs
    single = build_batch(rollout, Groups(torch.tensor([[0], [1]]), torch.zeros(2, 1), torch.zeros(2, 1),
                                         torch.ones(2, 1)))
    assert shared_prompt_hidden(model, single) is None


def test_sample_rollout_in_several_calls_keeps_the_prompt_major_order():
    model = tiny_model(5)
    prompts = [[1, 2, 3], [4, 5], [6]]
    first = sample_rollout(model, ByteTokenizer(), prompts[:2], K=2, max_new_tokens=5, seed=7)
    split = sample_rollout(model, ByteTokenizer(), prompts, K=2, max_new_tokens=5, seed=7, prompts_per_call=2)
    assert len(split.completions) == 6 and split.prompts == prompts
    assert split.completions[:4] == first.completions  # first call: the first two prompts, the seed
    third = sample_rollout(model, ByteTokenizer(), [[6]], K=2, max_new_tokens=5, seed=8)  # second call: seed + 1
    assert split.completions[4:] == third.completions and split.logprobs[4:] == third.logprobs
    assert all(len(t) == len(c) for t, c in zip(split.logprobs, split.completions))
