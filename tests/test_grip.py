"""GRIP pure functions (timer1/core/grip.py): hand-computed losses, gradients, advantages, weights, selection."""

import math

import pytest
import torch

from timer1.core.grip import (LossTotals, adaptive_weights, grip_loss, group_advantages, kmeans_1d, make_groups,
                              overlong_penalty, select_candidates, select_groups)


def lengths_mask(lengths, T):
    """(N, T) bool mask with the first lengths[i] tokens of row i live (right padding)."""
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


# ------------------------------------------------------------------ grip_loss: policy term


def test_ratio_one_loss_and_gradient_by_hand():
    # rho = 1 and beta = 0: every token's objective is A_i, so s_i = A_i and
    # loss = -sum w_i A_i / sum w_i = -(1*1 + 0.6*(-0.5) + 0.4*2) / 2 = -(1 - 0.3 + 0.8) / 2 = -0.75
    mask = lengths_mask([4, 2, 3], 4)
    logp = torch.full((3, 4), -1.3, requires_grad=True)
    old = logp.detach().clone()
    adv = torch.tensor([1.0, -0.5, 2.0])
    w = torch.tensor([1.0, 0.6, 0.4])
    loss, metrics = grip_loss(logp, old, None, adv, w, mask, beta=0.0)
    assert loss.item() == pytest.approx(-0.75, abs=1e-6)
    loss.backward()
    # d loss / d logp_it = -w_i A_i / (|o_i| sum w) on live tokens, 0 on padding:
    # row 0: -1*1/(4*2) = -0.125; row 1: -0.6*(-0.5)/(2*2) = 0.075; row 2: -0.4*2/(3*2) = -0.133333
    expected = torch.tensor([
        [-0.125, -0.125, -0.125, -0.125],
        [0.075, 0.075, 0.0, 0.0],
        [-0.4 / 3, -0.4 / 3, -0.4 / 3, 0.0],
    ])
    torch.testing.assert_close(logp.grad, expected, atol=1e-6, rtol=0)
    assert metrics["ratio"] == pytest.approx(1.0)
    assert metrics["clip_frac"] == 0.0
    assert metrics["tokens"] == 9


def test_clipping_both_sides_values_and_gradients():
    # one token per trajectory, uniform weights, eps = 0.2, beta = 0
    # row  rho  A   min(rho A, clip(rho) A)           clip active?  d obj / d logp
    #  0   1.5  +1  min(1.5, 1.2)  = 1.2               yes           0
    #  1   1.5  -1  min(-1.5, -1.2) = -1.5             no            rho A = -1.5
    #  2   0.5  +1  min(0.5, 0.8)  = 0.5               no            rho A = 0.5
    #  3   0.5  -1  min(-0.5, -0.8) = -0.8             yes           0
    # loss = -(1.2 - 1.5 + 0.5 - 0.8) / 4 = 0.15; d loss / d logp = -(d obj) / 4
    old = torch.zeros(4, 1)
    logp = torch.log(torch.tensor([[1.5], [1.5], [0.5], [0.5]])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    mask = torch.ones(4, 1, dtype=torch.bool)
    loss, metrics = grip_loss(logp, old, None, adv, None, mask, eps=0.2, beta=0.0)
    assert loss.item() == pytest.approx(0.15, abs=1e-6)
    loss.backward()
    grad = logp.grad[:, 0]
    assert grad[0].item() == 0.0 and grad[3].item() == 0.0  # clipped: no gradient
    assert grad[1].item() == pytest.approx(1.5 / 4, abs=1e-6)  # 0.375
    assert grad[2].item() == pytest.approx(-0.5 / 4, abs=1e-6)  # -0.125
    assert metrics["clip_frac"] == pytest.approx(0.5)  # rows 0 and 3 of 4 tokens
    assert metrics["ratio"] == pytest.approx(1.0)  # (1.5 + 1.5 + 0.5 + 0.5) / 4


def test_padding_is_ignored_even_when_garbage():
    torch.manual_seed(1)
    N, T = 4, 6
    mask = lengths_mask([6, 3, 1, 4], T)
    logp = -torch.rand(N, T) * 3
    old = logp + 0.3 * torch.randn(N, T)
    ref = logp + 0.3 * torch.randn(N, T)
    adv, w = torch.randn(N), torch.rand(N) + 0.1

    def run(lp, o, r):
        lp = lp.clone().requires_grad_()
        loss, _ = grip_loss(lp, o, r, adv, w, mask, beta=0.04)
        loss.backward()
        return loss.detach(), lp.grad

    loss_a, grad_a = run(logp, old, ref)
    garbage = ~mask
    loss_b, grad_b = run(logp.masked_fill(garbage, 50.0), old.masked_fill(garbage, -float("inf")),
                         ref.masked_fill(garbage, float("nan")))
    assert torch.equal(loss_a, loss_b)
    torch.testing.assert_close(grad_a, grad_b, atol=0, rtol=0)
    assert torch.all(grad_b[garbage] == 0)
    for agg in ("seq-mean", "token-mean"):
        l1, _ = grip_loss(logp, old, ref, adv, w, mask, loss_agg=agg)
        l2, _ = grip_loss(logp.masked_fill(garbage, 9.0), old, ref, adv, w, mask, loss_agg=agg)
        assert l1.item() == l2.item()


def test_empty_rows_are_nan_free():
    # row 1 has no tokens: s_1 = 0 but w_1 stays in sum w; loss = -(1 * A_0) / (1 + 1) with rho = 1
    mask = lengths_mask([2, 0], 3)
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, metrics = grip_loss(logp, torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([3.0, -1.0]),
                              torch.ones(2), mask)
    assert loss.item() == pytest.approx(-1.5)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and torch.all(logp.grad[1] == 0)
    all_empty, m = grip_loss(logp, torch.zeros(2, 3), None, torch.ones(2), None,
                             torch.zeros(2, 3, dtype=torch.bool), beta=0.0, loss_agg="token-mean")
    assert all_empty.item() == 0.0 and m["tokens"] == 0 and all(math.isfinite(v) for v in m.values())


# ------------------------------------------------------------------ grip_loss: KL term


def test_kl_term_value_and_gradient_by_hand():
    # rho = 1 and A = 0 leave only the KL term; ref - logp = ln 2 everywhere:
    # KL = e^{ln 2} - ln 2 - 1 = 2 - 0.693147 - 1 = 0.306853; loss = -(-beta KL) = 0.04 * 0.306853
    mask = lengths_mask([3, 1], 3)
    logp = torch.full((2, 3), -2.0, requires_grad=True)
    ref = logp.detach() + math.log(2.0)
    loss, metrics = grip_loss(logp, logp.detach(), ref, torch.zeros(2), None, mask, beta=0.04)
    kl = 2 - math.log(2.0) - 1
    assert kl == pytest.approx(0.306853, abs=1e-6)
    assert loss.item() == pytest.approx(0.04 * kl, abs=1e-7)
    assert metrics["kl"] == pytest.approx(kl, abs=1e-6)
    loss.backward()
    # d KL / d logp = 1 - e^{ref - logp} = 1 - 2 = -1; d loss / d logp = beta * (-1) / (|o_i| N)
    expected = torch.tensor([[-0.04 / 6] * 3, [-0.04 / 2, 0.0, 0.0]])
    torch.testing.assert_close(logp.grad, expected, atol=1e-7, rtol=0)


def test_beta_zero_removes_kl():
    torch.manual_seed(2)
    logp, old, ref = -torch.rand(3, 5), -torch.rand(3, 5), -torch.rand(3, 5)
    adv, mask = torch.randn(3), lengths_mask([5, 2, 4], 5)
    with_ref, _ = grip_loss(logp, old, ref, adv, None, mask, beta=0.0)
    without_ref, _ = grip_loss(logp, old, None, adv, None, mask, beta=0.0)
    with_kl, _ = grip_loss(logp, old, ref, adv, None, mask, beta=0.04)
    assert with_ref.item() == without_ref.item()
    assert with_kl.item() > with_ref.item()  # the k3 KL is >= 0 and here > 0, so it raises the loss


# ------------------------------------------------------------------ grip_loss: aggregation


def grpo_reference(logp, old, ref, adv, mask, eps, beta):
    """GRPO (DeepSeekMath Eq. 3) written token by token with python loops: mean over trajectories."""
    total = 0.0
    for i in range(logp.shape[0]):
        n = int(mask[i].sum())
        s = 0.0
        for t in range(n):
            rho = math.exp(logp[i, t] - old[i, t])
            clipped = min(max(rho, 1 - eps), 1 + eps)
            d = float(ref[i, t] - logp[i, t])
            s += min(rho * adv[i], clipped * adv[i]) - beta * (math.exp(d) - d - 1)
        total += s / n
    return -total / logp.shape[0]


def test_uniform_weights_reduce_to_grpo_sequence_mean():
    torch.manual_seed(3)
    B, G, T = 2, 4, 5
    logp = -torch.rand(B * G, T) * 2
    old = logp + 0.4 * torch.randn(B * G, T)  # some ratios outside [0.8, 1.2]
    ref = logp + 0.2 * torch.randn(B * G, T)
    mask = lengths_mask([5, 1, 3, 4, 2, 5, 5, 3], T)
    rewards = torch.randn(B, G)
    adv = group_advantages(rewards).reshape(-1)  # (N,)
    expected = grpo_reference(logp.double(), old.double(), ref.double(), adv.tolist(), mask, 0.2, 0.04)
    per_group = adaptive_weights(rewards, "uniform").reshape(-1)  # 1/G each, groups sum to 1
    for w in (None, per_group, torch.full((B * G,), 7.0)):
        loss, metrics = grip_loss(logp, old, ref, adv, w, mask)
        assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_token_mean_by_hand():
    # rho = 1, beta = 0, so each token's objective is A_i; lengths 3 and 1, A = (1, -2)
    # weights (0.75, 0.25) -> u = N w / sum w = (1.5, 0.5)
    # token-mean: -(3 * 1.5 * 1 + 1 * 0.5 * (-2)) / 4 = -(4.5 - 1) / 4 = -0.875
    # uniform weights: -(3 * 1 + 1 * (-2)) / 4 = -0.25 (DAPO token mean); seq-mean: -(1 - 2) / 2 = 0.5
    mask = lengths_mask([3, 1], 3)
    logp = torch.zeros(2, 3)
    adv = torch.tensor([1.0, -2.0])
    w = torch.tensor([0.75, 0.25])
    tok, _ = grip_loss(logp, logp, None, adv, w, mask, beta=0.0, loss_agg="token-mean")
    tok_uniform, _ = grip_loss(logp, logp, None, adv, None, mask, beta=0.0, loss_agg="token-mean")
    seq_uniform, _ = grip_loss(logp, logp, None, adv, None, mask, beta=0.0, loss_agg="seq-mean")
    assert tok.item() == pytest.approx(-0.875)
    assert tok_uniform.item() == pytest.approx(-0.25)
    assert seq_uniform.item() == pytest.approx(0.5)


def test_weights_and_advantages_are_constants():
    logp = torch.zeros(2, 2, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    w = torch.tensor([0.7, 0.3], requires_grad=True)
    loss, _ = grip_loss(logp, logp.detach(), None, adv, w, torch.ones(2, 2), beta=0.0)
    loss.backward()
    assert adv.grad is None and w.grad is None and logp.grad is not None


def test_inner_updates_raise_the_rewarded_token_and_the_clip_bites():
    # a one-step policy over 5 tokens; reward 1 for token 3; one rollout of G = 8, then
    # several inner updates on it (as train_grip does): the probability of token 3 rises and,
    # once the ratio leaves [0.8, 1.2] for the positive-advantage samples, the clip engages
    torch.manual_seed(5)
    logits = torch.zeros(5, requires_grad=True)
    tokens = torch.tensor([3, 0, 1, 3, 2, 4, 0, 1])  # (G,) a fixed rollout: two hits of 8
    rewards = (tokens == 3).float()  # (G,)
    adv, w = group_advantages(rewards), adaptive_weights(rewards, "softmax")
    old = torch.log_softmax(logits.detach(), -1)[tokens][:, None]  # (G, 1)
    ref = old.clone()
    mask = torch.ones(8, 1)
    opt = torch.optim.SGD([logits], lr=0.5)
    clip_fracs = []
    for _ in range(15):
        logp = torch.log_softmax(logits, -1)[tokens][:, None]  # (G, 1)
        loss, metrics = grip_loss(logp, old, ref, adv, w, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_fracs.append(metrics["clip_frac"])
    prob = torch.softmax(logits.detach(), -1)
    assert prob[3] > 0.3 and prob.argmax() == 3  # from 0.2
    assert clip_fracs[0] == 0.0 and clip_fracs[-1] > 0.0


def test_grip_loss_bad_inputs_are_caught():
    x, m, a = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2)
    cases = [dict(logp=torch.zeros(2, 3, 1)), dict(old_logp=torch.zeros(2, 4)), dict(mask=torch.ones(3, 3)),
             dict(advantages=torch.zeros(3)), dict(ref_logp=None), dict(loss_agg="sum"), dict(ratio_level="word"),
             dict(loss_agg="constant", max_completion=0)]
    for override in cases:
        kwargs = dict(logp=x, old_logp=x, ref_logp=x, advantages=a, weights=None, mask=m)
        kwargs.update(override)
        with pytest.raises(AssertionError):
            grip_loss(**kwargs)


# ------------------------------------------------------------------ the RL menu (DAPO, Dr. GRPO, GSPO, ScaleRL)


def test_defaults_are_the_papers_formula_bit_for_bit():
    torch.manual_seed(7)
    logp, old, ref = -torch.rand(4, 6), -torch.rand(4, 6), -torch.rand(4, 6)
    adv, w, mask = torch.randn(4), torch.tensor([0.1, 0.4, 0.3, 0.2]), lengths_mask([6, 2, 4, 1], 6)
    loss, _ = grip_loss(logp, old, ref, adv, w, mask)
    rho = torch.where(mask, logp - old, 0.0).exp()
    d = torch.where(mask, ref - logp, 0.0)
    obj = torch.minimum(rho * adv[:, None], rho.clamp(0.8, 1.2) * adv[:, None]) - 0.04 * (d.exp() - d - 1)
    per_seq = (obj * mask.float()).sum(1)
    expected = -((w * (per_seq / mask.float().sum(1))).sum() / float(w.sum()))
    assert loss.item() == expected.item()


def test_clip_higher_lets_a_positive_ratio_rise_further():
    # one token, A = 1, rho = 1.25: eps 0.2 clips it (1.2, no gradient); eps_high 0.28 does not
    logp = torch.tensor([[math.log(1.25)]], requires_grad=True)
    old, adv, mask = torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1)
    clipped, m_clip = grip_loss(logp, old, None, adv, None, mask, beta=0.0)
    assert clipped.item() == pytest.approx(-1.2) and m_clip["clip_frac_high"] == 1.0 and m_clip["clip_frac"] == 1.0
    assert torch.autograd.grad(clipped, logp)[0].item() == 0.0
    free, m_free = grip_loss(logp, old, None, adv, None, mask, beta=0.0, eps_high=0.28)
    assert free.item() == pytest.approx(-1.25) and m_free["clip_frac_high"] == 0.0
    assert torch.autograd.grad(free, logp)[0].item() == pytest.approx(-1.25)  # d(-rho)/dlogp = -rho
    # the lower side keeps eps: A = -1, rho = 0.75 < 0.8 is clipped whatever eps_high is
    low, m_low = grip_loss(torch.tensor([[math.log(0.75)]]), old, None, -adv, None, mask, beta=0.0, eps_high=0.28)
    assert low.item() == pytest.approx(0.8) and m_low["clip_frac_low"] == 1.0 and m_low["clip_frac_high"] == 0.0


def test_sequence_ratio_by_hand():
    # GSPO: token log-ratios 0.1 and 0.3 -> s = exp(0.2) for both tokens; A = 1, seq-mean -> -s
    logp = torch.tensor([[0.1, 0.3, 5.0]], requires_grad=True)  # the third token is padding
    old, adv, mask = torch.zeros(1, 3), torch.ones(1), lengths_mask([2], 3)
    loss, metrics = grip_loss(logp, old, None, adv, None, mask, beta=0.0, eps=0.5, ratio_level="sequence")
    s = math.exp(0.2)
    assert loss.item() == pytest.approx(-s) and metrics["ratio"] == pytest.approx(s)
    grad = torch.autograd.grad(loss, logp)[0]
    torch.testing.assert_close(grad, torch.tensor([[-s / 2, -s / 2, 0.0]]))  # ds/dlogp_t = s / |o|
    token, _ = grip_loss(logp, old, None, adv, None, mask, beta=0.0, eps=0.5)
    assert token.item() == pytest.approx(-(math.exp(0.1) + math.exp(0.3)) / 2)


def test_aggregations_by_hand_and_with_step_totals():
    # rho = 1, beta = 0: obj_it = A_i. Rows of lengths 3 and 1, A = (1, -2), weights (0.75, 0.25)
    mask = lengths_mask([3, 1], 3)
    logp, adv, w = torch.zeros(2, 3), torch.tensor([1.0, -2.0]), torch.tensor([0.75, 0.25])
    S = torch.tensor([3.0, -2.0])  # per-trajectory sums of obj
    by_agg = {"seq-mean": -(0.75 * 1.0 + 0.25 * -2.0) / 1.0,            # w_i S_i / |o_i| / W
              "token-mean": -(0.75 * 3.0 + 0.25 * -2.0) * 2 / (1.0 * 4),  # w_i S_i n / (W t)
              "batch-token-mean": -(0.75 * 3.0 + 0.25 * -2.0) * 2 / (1.0 * 4),
              "constant": -(0.75 * 3.0 + 0.25 * -2.0) / (1.0 * 10)}       # w_i S_i / (W C), C = 10
    for agg, expected in by_agg.items():
        loss, _ = grip_loss(logp, logp, None, adv, w, mask, beta=0.0, loss_agg=agg, max_completion=10)
        assert loss.item() == pytest.approx(expected), agg
    # the same rows as two micro-batches of one step: with the step's totals the parts add up
    totals = LossTotals(weight=1.0, rows=2, tokens=4)
    for agg in ("seq-mean", "batch-token-mean", "constant"):
        parts = [grip_loss(logp[i:i + 1], logp[i:i + 1], None, adv[i:i + 1], w[i:i + 1], mask[i:i + 1], beta=0.0,
                           loss_agg=agg, totals=totals, max_completion=10)[0].item() for i in range(2)]
        assert sum(parts) == pytest.approx(by_agg[agg]), agg
    # token-mean is per micro-batch: each part is its own token mean, weighted by its share of W
    parts = [grip_loss(logp[i:i + 1], logp[i:i + 1], None, adv[i:i + 1], w[i:i + 1], mask[i:i + 1], beta=0.0,
                       loss_agg="token-mean", totals=totals)[0].item() for i in range(2)]
    assert parts == pytest.approx([-0.75 * 1.0, -0.25 * -2.0])
    assert S.tolist() == [3.0, -2.0]


def test_advantage_scales_by_hand():
    rewards = torch.tensor([[1.0, 3.0], [0.0, 0.2]])  # group stds sqrt(2) and sqrt(0.02); batch std
    batch_std = rewards.std().item()
    torch.testing.assert_close(group_advantages(rewards, "none"), torch.tensor([[-1.0, 1.0], [-0.1, 0.1]]))
    torch.testing.assert_close(group_advantages(rewards, "batch-std"),
                               torch.tensor([[-1.0, 1.0], [-0.1, 0.1]]) / (batch_std + 1e-4))
    by_group = group_advantages(rewards, "group-std")
    torch.testing.assert_close(by_group[1], torch.tensor([-0.1, 0.1]) / (math.sqrt(0.02) + 1e-4))
    # the near-tie group is blown up to the same size as the real contrast only by group-std
    assert by_group[1, 1].item() == pytest.approx(by_group[0, 1].item(), rel=1e-3)
    assert group_advantages(rewards, "batch-std")[1, 1] < 0.15 * group_advantages(rewards, "batch-std")[0, 1]


def test_overlong_penalty_and_zero_variance_groups():
    lengths = torch.tensor([50, 80, 90, 100])  # budget 100, cache 20: ramp from 80 to 100
    torch.testing.assert_close(overlong_penalty(lengths, 100), torch.tensor([0.0, 0.0, -0.5, -1.0]))
    groups = make_groups(torch.tensor([[1.0, 1.0], [1.0, 2.0]]), 2, selection="uniform")
    assert groups.zero_variance.tolist() == [True, False]


# ------------------------------------------------------------------ advantages and weights


def test_group_advantages_known_vector():
    # [1, 2, 3, 4]: mean 2.5, unbiased std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3) = sqrt(5/3) = 1.2909944
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    std = 1.2909944
    torch.testing.assert_close(adv, torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (std + 1e-4), atol=1e-6, rtol=0)
    assert adv[0].item() == pytest.approx(-1.161805, abs=1e-5)  # -1.5 / 1.2910944
    # per group over the last dim, batched
    batch = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]))
    torch.testing.assert_close(batch[0], adv)
    assert torch.all(batch[1] == 0)  # constant group: no signal
    # G = 1 defined as 0 (torch's unbiased std would be NaN); G = 2 gives +-0.5 / (sqrt(0.5) + 1e-4)
    assert torch.equal(group_advantages(torch.tensor([[3.0], [-1.0]])), torch.zeros(2, 1))
    pair = group_advantages(torch.tensor([0.0, 1.0]))
    assert pair[1].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4), abs=1e-6)


def test_adaptive_weights_values():
    # softmax of (0, ln 2, ln 3) = (1, 2, 3) / 6
    soft = adaptive_weights(torch.tensor([0.0, math.log(2), math.log(3)]), "softmax")
    torch.testing.assert_close(soft, torch.tensor([1 / 6, 1 / 3, 1 / 2]), atol=1e-6, rtol=0)
    # positive: R = (1, 2, 3, 6), mean 3, [R - mean]_+ = (0, 0, 0, 3), + 0.05 -> (.05, .05, .05, 3.05) / 3.2
    pos = adaptive_weights(torch.tensor([1.0, 2.0, 3.0, 6.0]), "positive", lam=0.05)
    torch.testing.assert_close(pos, torch.tensor([0.015625, 0.015625, 0.015625, 0.953125]), atol=1e-6, rtol=0)
    # lam = 0 on a constant group would be 0/0: falls back to uniform
    flat = adaptive_weights(torch.full((2, 4), 0.3), "positive", lam=0.0)
    torch.testing.assert_close(flat, torch.full((2, 4), 0.25))
    uni = adaptive_weights(torch.randn(3, 5), "uniform")
    torch.testing.assert_close(uni, torch.full((3, 5), 0.2))
    # every mode sums to 1 per group and large rewards do not overflow
    big = torch.tensor([[1000.0, 999.0, -5.0], [0.1, 0.2, 0.3]])
    for mode in ("softmax", "positive", "uniform"):
        w = adaptive_weights(big, mode)
        assert torch.isfinite(w).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(2))
    with pytest.raises(AssertionError):
        adaptive_weights(big, "rank")


# ------------------------------------------------------------------ candidate selection


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_selection_shapes_range_and_distinct_indices():
    rewards = torch.randn(48)
    for strategy in ("cluster", "local", "uniform"):
        for G in (1, 2, 16, 48):
            picks = select_candidates(rewards, G, strategy, seeded(0))
            assert picks.shape == (G,) and picks.dtype == torch.long
            assert picks.min() >= 0 and picks.max() < 48
            assert picks.unique().numel() == G  # no candidate picked twice


def test_uniform_with_k_equal_g_returns_all():
    rewards = torch.randn(8)
    assert torch.equal(select_candidates(rewards, 8, "uniform", seeded(0)), torch.arange(8))
    # local with k = 1 and cluster with G = K must also keep every candidate
    assert torch.equal(select_candidates(rewards, 8, "local", seeded(0)), torch.arange(8))
    assert torch.equal(select_candidates(rewards, 8, "cluster", seeded(0)), torch.arange(8))


def test_seeds_reproduce_picks():
    rewards = torch.randn(48)
    for strategy in ("cluster", "local", "uniform"):
        a = select_candidates(rewards, 16, strategy, seeded(7))
        b = select_candidates(rewards, 16, strategy, seeded(7))
        assert torch.equal(a, b)
    draws = {tuple(select_candidates(rewards, 16, "uniform", seeded(s)).tolist()) for s in range(5)}
    assert len(draws) > 1  # different seeds give different groups


def test_local_picks_beat_the_pool_mean():
    # each pick is the best of its own k = 3 tournament, so the picked mean exceeds the pool mean
    # (a winner is >= its tournament's mean, and the 16 tournaments of 3 tile the pool of 48)
    torch.manual_seed(4)
    local_means, uniform_means = [], []
    for seed in range(8):
        rewards = torch.randn(48)
        picks = select_candidates(rewards, 16, "local", seeded(seed))
        assert rewards[picks].mean() > rewards.mean()
        uniform = select_candidates(rewards, 16, "uniform", seeded(seed))
        local_means.append(rewards[picks].mean().item())
        uniform_means.append(rewards[uniform].mean().item())
    # best of 3 standard normals has expectation 3 / (2 sqrt(pi)) = 0.846; a uniform pick has 0
    assert sum(local_means) / 8 > 0.5 > sum(uniform_means) / 8


def test_cluster_covers_every_reward_level():
    # three clear levels, the low one rare (4 of 48): a uniform draw of 6 often misses it,
    # the round-robin over clusters always takes two of each level
    levels = torch.tensor([-1.0] * 4 + [0.5] * 14 + [2.0] * 30)
    noisy = levels + 0.01 * torch.randn(48)
    assert torch.equal(kmeans_1d(noisy.double(), 3), torch.tensor([2] * 4 + [1] * 14 + [0] * 30))
    for seed in range(6):
        picks = select_candidates(noisy, 6, "cluster", seeded(seed), n_clusters=3)
        assert sorted(levels[picks].tolist()) == [-1.0, -1.0, 0.5, 0.5, 2.0, 2.0]
        # with the default 4 clusters a level may split in two, but all three levels stay present
        picks4 = select_candidates(noisy, 6, "cluster", seeded(seed))
        assert set(levels[picks4].tolist()) == {-1.0, 0.5, 2.0}
    # G larger than a cluster: the rare cluster is exhausted and the rest is filled round-robin
    picks = select_candidates(noisy, 20, "cluster", seeded(0), n_clusters=3)
    counts = [(levels[picks] == v).sum().item() for v in (-1.0, 0.5, 2.0)]
    assert counts == [4, 8, 8]


def test_select_groups_and_make_groups():
    rewards = torch.randn(3, 48)
    idx = select_groups(rewards, 16, "cluster", seeded(0))
    assert idx.shape == (3, 16)
    one_generator = seeded(0)  # the rows draw from one generator in turn
    for b in range(3):
        assert torch.equal(idx[b], select_candidates(rewards[b], 16, "cluster", one_generator))
    groups = make_groups(rewards, 16, generator=seeded(0))  # the paper's defaults: cluster, softmax
    assert groups.index.shape == groups.advantages.shape == groups.weights.shape == (3, 16)
    assert torch.equal(groups.index, select_groups(rewards, 16, "cluster", seeded(0)))
    torch.testing.assert_close(groups.rewards, rewards.gather(1, groups.index))
    torch.testing.assert_close(groups.weights, torch.softmax(groups.rewards, 1))
    torch.testing.assert_close(groups.advantages, group_advantages(groups.rewards))
    grpo = make_groups(rewards[:, :16], 16, selection="uniform", weighting="uniform")
    assert torch.equal(grpo.index, torch.arange(16).expand(3, 16))
    torch.testing.assert_close(grpo.weights, torch.full((3, 16), 1 / 16))
    pair = make_groups(torch.tensor([[0.0, 1.0]]), 2, selection="uniform", weighting="uniform")
    assert pair.advantages[0, 1].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4), abs=1e-6)


def test_selection_bad_inputs():
    for rewards, G, strategy in ((torch.randn(4), 5, "cluster"), (torch.randn(4), 2, "best"),
                                 (torch.randn(2, 4), 2, "cluster"), (torch.tensor([0.0, float("nan"), 1.0]), 2, "local")):
        with pytest.raises(AssertionError):
            select_candidates(rewards, G, strategy)
    with pytest.raises(AssertionError):
        select_groups(torch.randn(4), 2)
