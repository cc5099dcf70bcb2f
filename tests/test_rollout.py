"""timer1.core.rollout and timer1.core.reference: the batch layout, one log-prob path (each prompt encoded once), the reference, scoring,
sampling seeds."""

import copy

import numpy as np
import pytest
import torch

from timer1.core.grip import Groups, LossTotals, grip_loss, make_groups
from timer1.core.lora import apply_lora, lora_modules
from timer1.core.model import Qwen2, Qwen2Config, token_logprobs
from timer1.core.reference import Reference, adapter_snapshot
from timer1.core.rewards import compute_reward
from timer1.core.rollout import Rollout, build_batch, completion_logprobs, digit_share, sample_rollout, score_rollout
from timer1.core.sampler import generate
from timer1.util.seeding import derive_seed

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
    """Two prompts of different lengths, K=3 completions each with known tokens."""
    prompts = [[5, 6, 7], [8, 9]]
    completions = [[10, 11], [12], [13, 14, 63], [15, 16, 17, 18], [19], [20, 63]]
    return Rollout(prompts, completions, [c[-1] == 63 for c in completions], ["x"] * 6, K=3)


def all_groups(B=2, K=3):
    """Every sample kept, in order, uniform weights."""
    return make_groups(torch.arange(float(B * K)).view(B, K), K, selection="uniform", weighting="uniform")


def test_build_batch_layout_and_micro_batches():
    rollout = hand_rollout()
    index = torch.tensor([[0, 2], [1, 0]])  # (B, G): prompt 0 keeps samples 0 and 2, prompt 1 keeps 4 and 3
    groups = Groups(index, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[-1.0, 1.0], [-0.5, 0.5]]),
                    torch.tensor([[0.25, 0.75], [0.4, 0.6]]))
    batch = build_batch(rollout, groups, pad_id=0)
    # each prompt once, left-padded so that it ends in the last column; completions right-padded
    assert batch.prompt_ids.tolist() == [[5, 6, 7], [0, 8, 9]]
    assert batch.prompt_mask.tolist() == [[True, True, True], [False, True, True]]
    assert batch.prompt_index.tolist() == [0, 0, 1, 1]
    assert batch.completion_ids.tolist() == [[10, 11, 0, 0], [13, 14, 63, 0], [19, 0, 0, 0], [15, 16, 17, 18]]
    assert torch.equal(batch.completion_mask, torch.tensor([
        [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]).bool())
    assert batch.num_tokens == 2 + 3 + 1 + 4
    torch.testing.assert_close(batch.advantages, torch.tensor([-1.0, 1.0, -0.5, 0.5]))
    torch.testing.assert_close(batch.weights, torch.tensor([0.25, 0.75, 0.4, 0.6]))
    torch.testing.assert_close(batch.rewards, torch.tensor([1.0, 2.0, 3.0, 4.0]))

    # a micro-batch keeps only the prompts its rows continue and cuts the padding none of them needs
    first, second = batch.micro_batches(2)
    assert first.prompt_ids.tolist() == [[5, 6, 7]] and first.prompt_index.tolist() == [0, 0]
    assert first.completion_ids.tolist() == [[10, 11, 0], [13, 14, 63]] and first.completion_mask.shape == (2, 3)
    assert second.prompt_ids.tolist() == [[8, 9]] and second.prompt_mask.all() and second.prompt_index.tolist() == [0, 0]
    assert torch.equal(second.completion_ids, batch.completion_ids[2:])
    middle = batch.rows(1, 3)  # rows of both prompts
    assert middle.prompt_ids.tolist() == [[5, 6, 7], [0, 8, 9]] and middle.prompt_index.tolist() == [0, 1]


def test_build_batch_drops_rows_and_keeps_a_placeholder_when_none_is_left():
    rollout, groups = hand_rollout(), all_groups()
    keep = torch.tensor([[True, False, True], [False, False, True]])
    batch = build_batch(rollout, groups, 0, keep=keep)
    assert batch.num_rows == 3 and batch.completion_ids[:, :2].tolist() == [[10, 11], [13, 14], [20, 63]]
    assert batch.prompt_index.tolist() == [0, 0, 1]
    torch.testing.assert_close(batch.rewards, torch.tensor([0.0, 2.0, 5.0]))
    first_dropped = build_batch(rollout, groups, 0, keep=torch.tensor([[False, True, True], [True, True, True]]))
    assert first_dropped.num_rows == 5 and first_dropped.completion_ids[0, :1].tolist() == [12]
    only_second = build_batch(rollout, groups, 0, keep=torch.tensor([[False] * 3, [True] * 3]))
    assert only_second.prompt_ids.tolist() == [[8, 9]]  # a prompt with no row left is not stored
    none = build_batch(rollout, groups, 0, keep=torch.zeros(2, 3, dtype=torch.bool))
    assert none.num_rows == 1 and none.num_tokens == 0 and none.weights.sum() == 0  # trains nothing


def test_completion_logprobs_align_with_unpadded_rows():
    model = tiny_model()
    rollout = hand_rollout()
    batch = build_batch(rollout, all_groups(), 0)
    got = completion_logprobs(model, batch, 0.7)  # (N, T)
    for row in range(batch.num_rows):  # uniform selection with K == G keeps every sample in order
        prompt, completion = rollout.prompts[row // 3], rollout.completions[row]
        ref = token_logprobs(model, torch.tensor([prompt + completion]), temperature=0.7)[0, len(prompt) - 1:]
        torch.testing.assert_close(got[row, :len(completion)], ref, rtol=1e-5, atol=1e-5)
        assert (got[row, len(completion):] == 0).all()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_prompt_encoded_once_gives_the_gradients_of_whole_rows(checkpointing):
    """The prompt's pass runs once for its rows, and the rows attend to copies of its keys and values:
    the gradient of every weight equals the one of each row's own full forward (token_logprobs),
    with and without gradient checkpointing (whose recomputation rewrites the cache)."""
    rollout = hand_rollout()
    batch = build_batch(rollout, all_groups(), 0)
    scale = torch.linspace(0.5, 2.0, batch.completion_mask.numel()).view_as(batch.completion_mask)

    def grads(loss_of):
        model = tiny_model(4).requires_grad_(True)
        model.gradient_checkpointing = checkpointing
        loss_of(model).backward()
        return {name: p.grad for name, p in model.named_parameters()}

    def per_row(model):
        total = 0.0
        for row in range(batch.num_rows):
            prompt, completion = rollout.prompts[row // 3], rollout.completions[row]
            logp = token_logprobs(model, torch.tensor([prompt + completion]))[0, len(prompt) - 1:]  # (T_row,)
            total = total + (logp * scale[row, :len(completion)]).sum()
        return total

    shared = grads(lambda model: (completion_logprobs(model, batch) * scale).sum())
    reference = grads(per_row)
    for name, grad in reference.items():
        torch.testing.assert_close(shared[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_prompt_pass_runs_once_per_prompt(monkeypatch):
    """Four rows of two prompts: the model sees each prompt's tokens once (2 rows of context), then
    the 4 completions; a row-by-row forward would have run 4 prompts."""
    shapes = []
    real_core = Qwen2.core

    def spy(self, input_ids, *args, **kwargs):
        shapes.append(tuple(input_ids.shape))
        return real_core(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(Qwen2, "core", spy)
    batch = build_batch(hand_rollout(), make_groups(torch.zeros(2, 3), 2, selection="uniform"), 0)
    completion_logprobs(tiny_model(), batch)
    assert shapes == [(2, 2), (4, batch.completion_ids.shape[1])]  # prompts minus their last token; rows


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_training_logprobs_equal_the_samplers_in_fp32(temperature):
    """The sampler draws from softmax(logits / temperature); the loss scores the same distribution."""
    model = tiny_model(1)
    out = generate(model, [[1, 2, 3, 4], [5, 6]], max_new_tokens=10, num_samples=4, temperature=temperature,
                   eos_ids=(63,), seed=3)
    rollout = Rollout([[1, 2, 3, 4], [5, 6]], out.tokens, out.finished, [""] * 8, K=4)
    assert any(len(c) > 5 for c in rollout.completions)
    batch = build_batch(rollout, make_groups(torch.zeros(2, 4), 4, selection="uniform"), 0)
    mask = batch.completion_mask
    sampler = torch.zeros(mask.shape)
    for row, logprobs in enumerate(out.logprobs):
        sampler[row, :len(logprobs)] = torch.tensor(logprobs)
    torch.testing.assert_close(completion_logprobs(model, batch, temperature)[mask], sampler[mask], rtol=0, atol=2e-5)
    other = completion_logprobs(model, batch, 1.5 * temperature)  # the check above can fail
    assert (other[mask] - sampler[mask]).abs().max() > 1e-2


def lora_model_and_base():
    base = tiny_model(2)
    model = copy.deepcopy(base)
    apply_lora(model, ("q_proj", "v_proj", "down_proj"), r=4, alpha=8)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.weight.normal_(0, 0.3)  # a trained-looking adapter, so LoRA on != LoRA off
    return model.eval(), base


def test_reference_with_lora_disabled_equals_the_base_model():
    model, base = lora_model_and_base()
    batch = build_batch(hand_rollout(), all_groups(), 0)
    with Reference("base").active(model) as ref_model:
        ref = completion_logprobs(ref_model, batch)
    expected = completion_logprobs(base, batch)
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-6)
    policy = completion_logprobs(model, batch)
    assert (policy - expected)[batch.completion_mask].abs().max() > 1e-3  # LoRA is on again afterwards
    with pytest.raises(ValueError, match="LoRA"):  # no LoRA, no "base" reference: refused, not silently KL=0
        with Reference("base").active(tiny_model()):
            pass


def test_reference_adapter_snapshot_and_frozen_copy():
    model, _ = lora_model_and_base()
    batch = build_batch(hand_rollout(), all_groups(), 0)
    start = completion_logprobs(model, batch)
    snapshot = adapter_snapshot(model)
    frozen = copy.deepcopy(model)
    with torch.no_grad():  # "training" moves the adapter away from the snapshot
        for m in lora_modules(model).values():
            m.lora_B.weight.add_(0.2)
    moved = completion_logprobs(model, batch)
    assert (moved - start)[batch.completion_mask].abs().max() > 1e-3
    with Reference("adapter", snapshot=snapshot).active(model) as ref_model:
        torch.testing.assert_close(completion_logprobs(ref_model, batch), start, rtol=0, atol=0)
    torch.testing.assert_close(completion_logprobs(model, batch), moved, rtol=0, atol=0)  # restored
    with Reference("model", model=frozen).active(model) as ref_model:
        torch.testing.assert_close(completion_logprobs(ref_model, batch), start, rtol=0, atol=0)


@pytest.mark.parametrize("agg", ["seq-mean", "token-mean", "batch-token-mean", "constant"])
def test_micro_batch_losses_add_up_to_the_step_loss(agg):
    """With the step's totals, the micro-batch losses (and gradients) add up to the loss of the whole
    batch; token-mean is per micro-batch by definition, so its parts are checked against its formula."""
    model = tiny_model(3)
    model.requires_grad_(True)
    rollout = sample_rollout(model, ByteTokenizer(), [[1, 2, 3], [4, 5, 6, 7]], K=4, max_new_tokens=8, seed=1)
    rewards = torch.tensor([[0.1, 0.5, 0.3, 0.9], [1.0, 0.2, 0.2, 0.4]])
    groups = make_groups(rewards, 2, selection="local", generator=torch.Generator().manual_seed(0))
    batch = build_batch(rollout, groups, 0)
    with torch.no_grad():
        old = completion_logprobs(model, batch) - 0.05 * batch.completion_mask  # a ratio != 1: the clip acts
        ref = completion_logprobs(model, batch) + 0.1
    totals = LossTotals(float(batch.weights.sum()), batch.num_rows, batch.num_tokens)
    params = list(model.parameters())

    def loss_of(rows, with_totals):
        mb = batch.rows(*rows)
        T = mb.completion_mask.shape[1]
        return grip_loss(completion_logprobs(model, mb), old[rows[0]:rows[1], :T], ref[rows[0]:rows[1], :T],
                         mb.advantages, mb.weights, mb.completion_mask, loss_agg=agg, max_completion=8,
                         totals=totals if with_totals else None)[0]

    full = loss_of((0, 4), False)
    parts = [loss_of((0, 3), True), loss_of((3, 4), True)]  # 3 does not divide N = 4: uneven micro-batches
    if agg == "token-mean":
        first = loss_of((0, 3), False) * float(batch.weights[:3].sum()) / totals.weight
        torch.testing.assert_close(parts[0], first, rtol=1e-5, atol=1e-7)
        return
    summed = sum(parts)
    torch.testing.assert_close(summed, full, rtol=1e-5, atol=1e-7)
    for g_full, g_sum in zip(torch.autograd.grad(full, params), torch.autograd.grad(summed, params)):
        torch.testing.assert_close(g_sum, g_full, rtol=1e-4, atol=1e-7)


def test_score_rollout_uses_compute_reward_and_the_digit_bonus():
    target = np.array([1.0, 2.0, 3.0, 2.0])
    good = "<think>up then down</think><answer>1, 2, 3, 2</answer>"
    texts = [good, "no answer", "<think>x</think><answer>1, 2</answer>", "12ab"]
    rollout = Rollout([[1], [2]], [[1]] * 4, [True] * 4, texts, K=2)
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


def test_sample_rollout_in_several_calls_keeps_the_prompt_major_order():
    model = tiny_model(5)
    prompts = [[1, 2, 3], [4, 5], [6]]
    first = sample_rollout(model, ByteTokenizer(), prompts[:2], K=2, max_new_tokens=5, seed=7)
    split = sample_rollout(model, ByteTokenizer(), prompts, K=2, max_new_tokens=5, seed=7, prompts_per_call=2)
    assert len(split.completions) == 6 and split.prompts == prompts
    assert split.completions[:4] == first.completions  # call 0: the first two prompts, derive_seed(7, 0)
    third = generate(model, [[6]], max_new_tokens=5, num_samples=2, eos_ids=(63,), seed=derive_seed(7, 1))
    assert split.completions[4:] == third.tokens


def test_seeds_never_collide_across_ranks_steps_and_calls():
    """The old scheme base * 1024 + rank (+ call) made rank r's call c+1 equal rank r+1's call c."""
    seeds = {derive_seed(derive_seed(0, step, rank, 0), call)
             for step in range(20) for rank in range(8) for call in range(8)}
    assert len(seeds) == 20 * 8 * 8
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) and derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
