"""GRIP, the RL objective of Time-R1 (arXiv 2506.10630, Sec. 3.3), and its GRPO-family relatives.

GRIP is GRPO with two changes, both pure tensor functions here:

1. Non-uniform sampling. Per prompt the old policy samples ``K = k * G`` completions (paper: k=3,
   G=16) and G of them are *selected* by reward (``select_candidates``): "local random sampling"
   keeps the best of k random draws, "cluster-based random sampling" (the paper's best choice)
   spreads the G picks over reward clusters so informative low-reward samples stay in the group.
2. Adaptive weighting. Instead of GRPO's uniform ``1/G`` average over trajectories, each selected
   trajectory gets a weight ``w_i`` (``adaptive_weights``; paper v1: ``softmax`` of the rewards).

Everything else is GRPO: the group-normalised advantage ``A_i = (r_i - mean r) / (std r + 1e-4)``
(``group_advantages``), the PPO clipped ratio and the k3 KL estimator to the reference policy
(``grip_loss``). The paper's objective (J_GRIP, Sec. 3.3) is

    J = sum_i w_i * (1/|o_i|) * sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta KL_it ]
    rho_it = exp(logp_it - old_logp_it),   KL_it = exp(ref_it - logp_it) - (ref_it - logp_it) - 1

and the loss is ``-J`` (normalised by ``sum_i w_i``). Uniform selection plus uniform weights is
exactly GRPO. Later variants (DAPO, Dr. GRPO, GSPO, ScaleRL) are arguments of the same functions;
the paper's choice is always the default.

Shapes: K candidates per prompt, B prompts, G selected per prompt, N = B * G trajectories,
T completion tokens (right-padded, ``mask`` marks real tokens).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

ADV_EPS = 1e-4  # the paper's (and TRL's) 1e-4 in A = (r - mean) / (std + 1e-4)
STRATEGIES = ("cluster", "local", "uniform")
WEIGHT_MODES = ("softmax", "positive", "uniform")
ADV_SCALES = ("group-std", "batch-std", "none")
AGGREGATIONS = ("seq-mean", "token-mean", "batch-token-mean", "constant")
RATIO_LEVELS = ("token", "sequence")
OVERLONG_CACHE = 0.2  # DAPO's soft overlong punishment ramps over the last 20% of the budget (its 4k of 20k)


# ----------------------------------------------------------------------------------------------
# 1. candidate selection (the paper's non-uniform sampling)


def select_candidates(
    rewards: torch.Tensor,
    G: int,
    strategy: str = "cluster",
    generator: torch.Generator | None = None,
    n_clusters: int = 4,
) -> torch.Tensor:
    """Pick G of the K candidate completions of ONE prompt by their rewards; returns sorted indices (G,).

    - ``"local"`` (local random sampling): G disjoint random tournaments of ``k = K // G``
      candidates; keep the best of each (disjoint, so the G picks are distinct).
    - ``"cluster"`` (cluster-based random sampling, the paper's best): cluster the rewards with
      ``kmeans_1d``, shuffle each cluster, then take members round-robin across clusters (highest
      first). Round-robin rather than proportional keeps a rare low-reward level represented, which
      is what gives the group contrast.
    - ``"uniform"`` (GRPO): G drawn uniformly without replacement.
    """
    K = rewards.shape[0]
    assert strategy in STRATEGIES, f"selection must be one of {STRATEGIES}, got {strategy!r}"
    assert rewards.dim() == 1 and 1 <= G <= K, f"need rewards (K,) with 1 <= G <= K, got {tuple(rewards.shape)}, G={G}"
    values = rewards.detach().to("cpu", torch.float64)  # (K,) selection is cheap host-side work
    assert torch.isfinite(values).all(), "rewards contain NaN or inf"
    if strategy == "uniform":
        picks = torch.arange(K) if K == G else torch.randperm(K, generator=generator)[:G]  # (G,)
    elif strategy == "local":
        k = K // G
        order = torch.randperm(K, generator=generator)[: G * k].view(G, k)  # (G, k) disjoint tournaments
        best = values[order].argmax(dim=1, keepdim=True)  # (G, 1) position of each tournament's winner
        picks = order.gather(1, best).squeeze(1)  # (G,)
    else:
        picks = _cluster_round_robin(values, G, n_clusters, generator)
    return picks.sort().values.to(rewards.device)  # (G,)


def kmeans_1d(values: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Exact 1-D k-means; returns labels (K,) with 0 = the highest-mean cluster.

    In one dimension the optimal clusters are contiguous runs of the sorted values, so dynamic
    programming finds the global optimum (Wang & Song 2011, "Ckmeans.1d.dp"): deterministic, no
    initialisation to get wrong (quantile starts miss a rare reward level).
    """
    assert n_clusters >= 1
    K = values.shape[0]
    C = min(n_clusters, torch.unique(values).numel())
    x, order = values.double().sort()  # (K,) ascending
    s1 = torch.cat([x.new_zeros(1), x.cumsum(0)])  # (K+1,) prefix sums
    s2 = torch.cat([x.new_zeros(1), (x * x).cumsum(0)])  # (K+1,)

    def sse(i: torch.Tensor, j: int) -> torch.Tensor:
        """Sum of squared deviations of x[i:j] for a vector of starts i (< j)."""
        n = (j - i).double()
        return (s2[j] - s2[i]) - (s1[j] - s1[i]) ** 2 / n

    cost = torch.full((C + 1, K + 1), float("inf"), dtype=torch.float64)  # cost[c, j]: x[:j] in c clusters
    start = torch.zeros((C + 1, K + 1), dtype=torch.long)  # start of the last cluster in that optimum
    cost[0, 0] = 0.0
    for c in range(1, C + 1):
        for j in range(c, K + 1):
            i = torch.arange(c - 1, j)  # candidate starts of the last cluster
            total = cost[c - 1, i] + sse(i, j)  # (j - c + 1,)
            best = int(total.argmin())
            cost[c, j], start[c, j] = total[best], i[best]
    labels_sorted = torch.empty(K, dtype=torch.long)  # cluster id in sorted order, C-1 = lowest values
    j = K
    for c in range(C, 0, -1):
        i = int(start[c, j])
        labels_sorted[i:j] = C - c  # the last (highest) run gets 0
        j = i
    labels = torch.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels  # (K,) 0 = highest-reward cluster


def _cluster_round_robin(
    values: torch.Tensor, G: int, n_clusters: int, generator: torch.Generator | None
) -> torch.Tensor:
    labels = kmeans_1d(values, n_clusters)  # (K,)
    n_used = int(labels.max()) + 1
    shuffled = torch.randperm(values.shape[0], generator=generator)  # (K,) random order inside clusters
    turn = torch.empty_like(labels)  # (K,) the round in which each candidate would be taken
    for c in range(n_used):
        members = shuffled[labels[shuffled] == c]  # (K_c,) in random order
        turn[members] = torch.arange(members.numel())
    priority = turn * n_used + labels  # (K,) round first, then the better cluster first
    return priority.argsort()[:G]  # (G,)


def select_groups(
    rewards: torch.Tensor,
    G: int,
    strategy: str = "cluster",
    generator: torch.Generator | None = None,
    n_clusters: int = 4,
) -> torch.Tensor:
    """``select_candidates`` for each of B prompts: rewards (B, K) -> indices (B, G) into the K axis."""
    assert rewards.dim() == 2, f"rewards must be (B, K), got {tuple(rewards.shape)}"
    rows = [select_candidates(r, G, strategy, generator, n_clusters) for r in rewards]  # B x (G,)
    return torch.stack(rows)  # (B, G)


# ----------------------------------------------------------------------------------------------
# 2. advantages and adaptive weights (per group, over the last dim)


def group_advantages(rewards: torch.Tensor, scale: str = "group-std") -> torch.Tensor:
    """Advantages over the last dim (..., G): ``A_i = (r_i - mean_group r) / (s + 1e-4)``.

    ``s``: the group's std (``"group-std"``, paper), one std over every reward (``"batch-std"``,
    ScaleRL: noise-only groups are not blown up to unit scale), or 1 (``"none"``, Dr. GRPO).
    """
    assert scale in ADV_SCALES, f"adv_scale must be one of {ADV_SCALES}, got {scale!r}"
    assert rewards.dim() > 0, "rewards need a group dim (..., G)"
    if rewards.shape[-1] == 1:
        return torch.zeros_like(rewards)  # (..., 1) no relative signal (torch's unbiased std would be NaN)
    centred = rewards - rewards.mean(dim=-1, keepdim=True)  # (..., G)
    if scale == "none":
        return centred
    std = rewards.std(dim=-1, keepdim=True) if scale == "group-std" else rewards.std()  # (..., 1) or ()
    return centred / (std + ADV_EPS)  # (..., G)


def adaptive_weights(rewards: torch.Tensor, mode: str = "softmax", lam: float = 0.05) -> torch.Tensor:
    """Per-group trajectory weights over the last dim (..., G), each group summing to 1.

    - ``"softmax"`` (paper v1): ``w_i = exp(R_i) / sum_j exp(R_j)`` on the raw rewards.
    - ``"positive"`` (the paper's later revision): ``w_i ∝ max(R_i - mean R, 0) + lam``.
    - ``"uniform"`` (GRPO): ``1/G``.
    """
    assert mode in WEIGHT_MODES, f"weights must be one of {WEIGHT_MODES}, got {mode!r}"
    assert rewards.dim() > 0 and lam >= 0
    rewards = rewards.detach().float()  # (..., G) weights are constants of the loss
    uniform = torch.full_like(rewards, 1.0 / rewards.shape[-1])  # (..., G)
    if mode == "uniform":
        return uniform
    if mode == "softmax":
        return torch.softmax(rewards, dim=-1)  # (..., G) max-shifted inside, no overflow
    above = (rewards - rewards.mean(dim=-1, keepdim=True)).clamp_min(0) + lam  # (..., G)
    total = above.sum(dim=-1, keepdim=True)  # (..., 1)
    return torch.where(total > 0, above / total.clamp_min(1e-30), uniform)  # (..., G)


def overlong_penalty(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, Eq. 13) added to the reward of each completion.

    ``0`` up to ``max_len - L_cache`` tokens, then a linear ramp down to ``-1`` at ``max_len``
    (``L_cache = OVERLONG_CACHE * max_len``). The sampler stops at ``max_len``, so DAPO's ``-1``
    beyond the budget is the ramp's end."""
    cache = max(1.0, OVERLONG_CACHE * max_len)
    return ((max_len - cache - lengths.float()) / cache).clamp(-1.0, 0.0)  # (...,)


@dataclass
class Groups:
    """The selected groups of a batch of B prompts, all ``(B, G)``."""

    index: torch.Tensor  # (B, G) long, into the K candidates of each prompt
    rewards: torch.Tensor  # (B, G)
    advantages: torch.Tensor  # (B, G)
    weights: torch.Tensor  # (B, G), each row sums to 1

    @property
    def zero_variance(self) -> torch.Tensor:
        """(B,) bool: groups whose rewards are all equal (every advantage 0: no learning signal)."""
        return (self.rewards == self.rewards[:, :1]).all(dim=1)


def make_groups(rewards: torch.Tensor, G: int, *, selection: str = "cluster", weighting: str = "softmax",
                adv_scale: str = "group-std", generator: torch.Generator | None = None) -> Groups:
    """Rewards of all candidates (B, K) -> the G selected per prompt, with advantages and weights."""
    index = select_groups(rewards, G, selection, generator)  # (B, G)
    chosen = rewards.gather(1, index)  # (B, G)
    return Groups(index, chosen, group_advantages(chosen, adv_scale), adaptive_weights(chosen, weighting))


# ----------------------------------------------------------------------------------------------
# 3. the GRIP loss


@dataclass(frozen=True)
class LossTotals:
    """Sums over everything one optimizer step trains on (every micro-batch, every rank), so the
    losses of the micro-batches add up to the loss of the step."""

    weight: float  # W = sum_i w_i (= the number of groups when each group's weights sum to 1)
    rows: int  # N trajectories
    tokens: int  # sum_i |o_i| completion tokens


def loss_totals(weights: torch.Tensor, mask: torch.Tensor) -> LossTotals:
    """The totals of one batch (rows of weight 0 train nothing: not counted)."""
    return LossTotals(float(weights.sum()), int((weights > 0).sum()), int(mask.sum()))


def knob(default, help: str):
    """A field of a method group with the help ``--help`` shows (timer1.train.config reads it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class LossConfig:
    """The GRIP objective's knobs, the paper's values by default; `grip_loss` takes the group whole
    (timer1.train.config.GRIPConfig inherits it, so each is a flat ``--key=value`` of train_grip.py)."""

    eps: float = knob(0.2, "PPO clip range (the lower side when eps_high is set)")
    eps_high: Optional[float] = knob(None, "upper clip range (DAPO clip-higher: 0.28); unset = eps")
    beta: float = knob(0.04, "KL penalty coefficient (official code: 0.001; TRL's default: 0)")
    loss_agg: Literal["seq-mean", "token-mean", "batch-token-mean", "constant"] = knob(
        "seq-mean", "seq-mean = 1/|o_i| per trajectory (paper); token-mean per micro-batch (official code); "
                    "batch-token-mean over the whole step (DAPO); constant = divide by max_completion (Dr. GRPO)")
    ratio_level: Literal["token", "sequence"] = knob(
        "token", "importance ratio per token (paper) or GSPO's length-normalised sequence ratio")
    max_completion: int = knob(3000, "max new tokens per completion (and loss_agg=constant's divisor)")


def grip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    weights: torch.Tensor | None,
    mask: torch.Tensor,
    loss: LossConfig | None = None,
    totals: LossTotals | None = None,
    **knobs,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRIP loss ``-J`` (Time-R1 Sec. 3.3, written out in the module docstring) and metrics.

    Per token ``obj_it = min(rho A_i, clip(rho, 1-eps, 1+eps_high) A_i) - beta KL_it``;
    ``S_i = sum_t mask_it obj_it``; ``loss = -sum_i c_i S_i`` with ``c_i`` by ``loss_agg``. Masked
    positions are zeroed before any ``exp``, so garbage there (even inf) cannot leak in.
    ``weights=None`` is uniform; ``eps_high`` (DAPO's clip-higher) defaults to ``eps``. ``loss`` is
    the objective's group (the paper's when None); ``knobs`` replace single fields of it, so
    ``grip_loss(..., beta=0.0)`` reads as the paper writes it. ``totals`` are the whole step's
    normalisers (this batch's when None).
    """
    cfg = dataclasses.replace(loss or LossConfig(), **knobs)
    eps, beta, agg = cfg.eps, cfg.beta, cfg.loss_agg
    eps_high = eps if cfg.eps_high is None else cfg.eps_high
    assert agg in AGGREGATIONS, f"bad loss_agg {agg!r}"
    assert cfg.ratio_level in RATIO_LEVELS, f"bad ratio_level {cfg.ratio_level!r}"
    assert logp.dim() == 2 and old_logp.shape == logp.shape == mask.shape, "logp, old_logp, mask must be (N, T)"
    assert advantages.shape == (logp.shape[0],), "advantages must be (N,)"
    assert ref_logp is not None or beta == 0, "ref_logp is required when beta != 0"
    assert agg != "constant" or cfg.max_completion > 0, "loss_agg='constant' needs max_completion > 0"
    live = mask.bool()  # (N, T)
    logp = logp.float()  # (N, T) fp32 math whatever the model dtype
    adv = advantages.detach().float().to(logp.device)[:, None]  # (N, 1) constants
    w = torch.ones(logp.shape[0]) if weights is None else weights.detach().float()  # (N,) constants
    w = w.to(logp.device)  # (N,)

    ratio = importance_ratio(logp, old_logp.float(), live, cfg.ratio_level)  # (N, T)
    per_token = clipped_surrogate(ratio, adv, eps, eps_high)  # (N, T)
    kl = k3_kl(logp, ref_logp, live)  # (N, T)
    if beta != 0:
        per_token = per_token - beta * kl  # (N, T)
    per_seq = (per_token * live.float()).sum(dim=1)  # (N,) S_i
    objective = -aggregate(per_seq, w, live, agg, totals or loss_totals(w, live), cfg.max_completion)  # ()
    return objective, loss_metrics(objective, ratio, kl, logp, adv, live, eps, eps_high)


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor, live: torch.Tensor,
                     level: str = "token") -> torch.Tensor:
    """``rho_it = exp(logp_it - old_logp_it)`` (PPO, GRPO: DeepSeekMath Eq. 3), or with ``level="sequence"``
    GSPO's length-normalised sequence ratio ``rho_i = exp(mean_t (logp_it - old_logp_it))`` for every
    token of trajectory i. ``(N, T)`` in and out; 1 on padding."""
    log_ratio = torch.where(live, logp - old_logp, 0.0)  # (N, T) 0 on padding -> rho 1
    if level == "sequence":
        lengths = live.float().sum(dim=1)  # (N,) |o_i|
        seq_log_ratio = log_ratio.sum(dim=1, keepdim=True) / lengths.clamp_min(1)[:, None]  # (N, 1)
        log_ratio = torch.where(live, seq_log_ratio.expand_as(log_ratio), 0.0)  # (N, T)
    return log_ratio.exp()  # (N, T)


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps: float, eps_high: float) -> torch.Tensor:
    """PPO's pessimistic bound ``min(rho A, clip(rho, 1-eps, 1+eps_high) A)``: ``(N, T)``, ``(N, 1)`` -> ``(N, T)``."""
    return torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps_high) * adv)  # (N, T)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor | None, live: torch.Tensor) -> torch.Tensor:
    """Per-token KL to the reference by the k3 estimator (Schulman 2020; DeepSeekMath Eq. 4):
    ``exp(ref - logp) - (ref - logp) - 1 >= 0``, unbiased for KL(pi || ref) under samples of pi.
    ``(N, T)``, 0 on padding, all 0 without a reference."""
    if ref_logp is None:
        return torch.zeros_like(logp)  # (N, T)
    ref_minus_logp = torch.where(live, ref_logp.float() - logp, 0.0)  # (N, T)
    return ref_minus_logp.exp() - ref_minus_logp - 1  # (N, T)


def aggregate(per_seq: torch.Tensor, w: torch.Tensor, live: torch.Tensor, agg: str, totals: LossTotals,
              const_len: int) -> torch.Tensor:
    """The objective ``J = sum_i c_i S_i`` from the trajectory sums ``S_i`` ``(N,)``, with the step's
    totals ``W, N_all, T_all`` (``totals``) and ``c_i`` by ``agg``:

    ==================  =================================  ===========================================
    ``seq-mean``        ``w_i / (W |o_i|)``                 paper: each trajectory's token mean
    ``token-mean``      ``w_i n / (W t)``                   official code: this micro-batch's token
                                                           mean (its n rows, t tokens), by its share
    ``batch-token-mean`` ``w_i N_all / (W T_all)``          DAPO (its Sec. 3.3): one token mean over the step
    ``constant``        ``w_i / (W const_len)``             Dr. GRPO: a fixed divisor (max completion)
    ==================  =================================  ===========================================

    Given the step's totals, the micro-batch losses sum to the step's loss (times the rank count,
    which DDP's gradient average divides back out).
    """
    lengths = live.float().sum(dim=1)  # (N,) |o_i|
    W = max(totals.weight, 1e-30)  # 0 only when every row was dropped: then every w_i is 0 too
    if agg == "seq-mean":
        return (w * (per_seq / lengths.clamp_min(1))).sum() / W  # ()
    if agg == "token-mean":
        return (w * per_seq).sum() * per_seq.shape[0] / (W * lengths.sum().clamp_min(1))  # ()
    if agg == "batch-token-mean":
        return (w * per_seq).sum() * totals.rows / (W * max(totals.tokens, 1))  # ()
    return (w * per_seq).sum() / (W * const_len)  # ()


@torch.no_grad()
def loss_metrics(loss, ratio, kl, logp, adv, live, eps: float, eps_high: float) -> dict[str, float]:
    """Means over the live tokens; ``entropy`` is the mean ``-logp`` of the sampled tokens (a
    Monte-Carlo estimate), ``clip_frac_low/high`` count tokens where the clipped branch is the minimum.
    The numbers reach the host in one copy: each ``.item()`` would wait for the device on its own."""
    live_f = live.float()  # (N, T)
    tokens = live_f.sum()  # ()
    n_tok = tokens.clamp_min(1)  # ()
    low = ((adv < 0) & (ratio < 1 - eps) & live).sum() / n_tok  # ()
    high = ((adv > 0) & (ratio > 1 + eps_high) & live).sum() / n_tok  # ()
    values = {
        "loss": loss.detach(),
        "ratio": (ratio * live_f).sum() / n_tok,
        "kl": (kl * live_f).sum() / n_tok,
        "entropy": -(logp * live_f).sum() / n_tok,
        "clip_frac_low": low,
        "clip_frac_high": high,
        "clip_frac": low + high,
        "tokens": tokens,
    }
    host = torch.stack([v.float() for v in values.values()]).tolist()  # one device -> host copy
    return dict(zip(values, host))
