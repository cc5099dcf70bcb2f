"""GRIP, the RL objective of Time-R1 (arXiv 2506.10630, the paper's GRIP section).

GRIP is GRPO with two changes, both implemented here as pure tensor functions:

1. Non-uniform sampling. Per prompt the old policy samples ``K = k * G`` completions (paper: k=3,
   G=16) and G of them are *selected* by reward (``select_candidates``): "local random sampling"
   keeps the best of k random draws, "cluster-based random sampling" (the paper's best variant)
   spreads the G picks over reward clusters so informative low-reward samples stay in the group.
2. Adaptive weighting. Instead of GRPO's uniform ``1/G`` average over trajectories, each selected
   trajectory gets a weight ``w_i`` (``adaptive_weights``; paper v1: ``softmax`` of the rewards).

Everything else is GRPO: the group-normalised advantage ``A_i = (r_i - mean r) / (std r + 1e-4)``
(``group_advantages``), the PPO clipped ratio and the k3 KL estimator to the reference policy
(``grip_loss``). The paper's objective (its Eq. for J_GRIP) is

    J = sum_i w_i * (1/|o_i|) * sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta KL_it ]
    rho_it = exp(logp_it - old_logp_it),   KL_it = exp(ref_it - logp_it) - (ref_it - logp_it) - 1

and the loss is ``-J`` (normalised by ``sum_i w_i``, see ``grip_loss``). Uniform selection plus
uniform weights is exactly GRPO; a group of two (G=2) is pairwise ranking RL.

Shapes: K candidates per prompt, B prompts, G selected per prompt, N = B * G trajectories,
T completion tokens (right-padded, ``mask`` marks real tokens).
"""

from dataclasses import dataclass

import torch

ADV_EPS = 1e-4  # the paper's (and TRL's) 1e-4 in A = (r - mean) / (std + 1e-4)
STRATEGIES = ("cluster", "local", "uniform")
WEIGHT_MODES = ("softmax", "positive", "uniform")
AGGREGATIONS = ("seq-mean", "token-mean")


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

    ``rewards`` is ``(K,)`` with ``K >= G`` (the paper samples ``K = k * G``). Strategies:

    - ``"local"`` (local random sampling): shuffle the K candidates and cut the first ``G * k``
      (``k = K // G``) into G disjoint tournaments of k; keep the best of each (first index on
      ties). Tournaments are drawn *without* replacement, so the G picks are distinct and each is
      the best of its own k, which biases the group towards high rewards while keeping randomness.
    - ``"cluster"`` (cluster-based random sampling, the paper's best variant): cluster the rewards
      with exact 1-D k-means (``n_clusters`` clusters, fewer when there are fewer distinct values;
      see ``kmeans_1d``), shuffle each cluster, then take members round-robin across clusters
      (highest-reward cluster first in each round) until G are taken. Round-robin (rather than
      proportional) allocation keeps a rare low-reward level represented, which is what gives the
      group contrast; a cluster that runs out is skipped.
    - ``"uniform"`` (GRPO): all candidates when ``K == G``, else G drawn uniformly without replacement.

    Randomness comes only from ``generator`` (a CPU ``torch.Generator``), so a seeded generator
    reproduces the picks. The result lives on ``rewards.device``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"select_candidates: strategy must be one of {STRATEGIES}, got {strategy!r}")
    if rewards.dim() != 1:
        raise ValueError(f"select_candidates: rewards must be 1-D (K,), got shape {tuple(rewards.shape)}")
    K = rewards.shape[0]
    if not 1 <= G <= K:
        raise ValueError(f"select_candidates: need 1 <= G <= K, got G={G}, K={K}")
    values = rewards.detach().to("cpu", torch.float64)  # (K,) selection is cheap host-side work
    if not torch.isfinite(values).all():
        raise ValueError("select_candidates: rewards contain NaN or inf")
    if strategy == "uniform":
        picks = torch.arange(K) if K == G else torch.randperm(K, generator=generator)[:G]  # (G,)
    elif strategy == "local":
        picks = _local_tournaments(values, G, generator)
    else:
        picks = _cluster_round_robin(values, G, n_clusters, generator)
    return picks.sort().values.to(rewards.device)  # (G,)


def _local_tournaments(values: torch.Tensor, G: int, generator: torch.Generator | None) -> torch.Tensor:
    """Best of k random candidates, G times, over disjoint tournaments (see ``select_candidates``)."""
    k = values.shape[0] // G
    order = torch.randperm(values.shape[0], generator=generator)[: G * k].view(G, k)  # (G, k)
    best = values[order].argmax(dim=1, keepdim=True)  # (G, 1) position of each tournament's winner
    return order.gather(1, best).squeeze(1)  # (G,)


def kmeans_1d(values: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Exact 1-D k-means; returns labels (K,) with 0 = the highest-mean cluster.

    In one dimension the optimal clusters are contiguous runs of the sorted values, so the
    global optimum of the within-cluster sum of squares is found by dynamic programming
    (Wang & Song 2011, "Ckmeans.1d.dp") instead of Lloyd iterations: deterministic, no
    initialisation to get wrong (quantile starts miss a rare reward level). Uses
    ``min(n_clusters, distinct values)`` clusters, each non-empty. Cost O(C K^2), tiny for K = k*G.
    """
    if n_clusters < 1:
        raise ValueError(f"kmeans_1d: n_clusters must be >= 1, got {n_clusters}")
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
    """Round-robin draw across reward clusters (see ``select_candidates``)."""
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
    if rewards.dim() != 2:
        raise ValueError(f"select_groups: rewards must be (B, K), got shape {tuple(rewards.shape)}")
    rows = [select_candidates(r, G, strategy, generator, n_clusters) for r in rewards]  # B x (G,)
    return torch.stack(rows)  # (B, G)


# ----------------------------------------------------------------------------------------------
# 2. advantages and adaptive weights (per group, over the last dim)


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO/GRIP advantage ``A_i = (r_i - mean r) / (std r + 1e-4)`` over the last dim (..., G).

    ``std`` is the unbiased (n-1) estimate, as TRL and verl use. A single-member group (G=1)
    has no relative signal (and torch's unbiased std would be NaN): its advantage is defined as 0.
    A constant group also gets 0 (std 0, numerator 0).
    """
    if rewards.dim() == 0:
        raise ValueError("group_advantages: rewards must have a group dim (..., G), got a scalar")
    if rewards.shape[-1] == 1:
        return torch.zeros_like(rewards)  # (..., 1)
    mean = rewards.mean(dim=-1, keepdim=True)  # (..., 1)
    std = rewards.std(dim=-1, keepdim=True)  # (..., 1) unbiased
    return (rewards - mean) / (std + ADV_EPS)  # (..., G)


def adaptive_weights(rewards: torch.Tensor, mode: str = "softmax", lam: float = 0.05) -> torch.Tensor:
    """Per-group trajectory weights over the last dim (..., G), each group summing to 1.

    - ``"softmax"`` (paper v1): ``w_i = exp(R_i) / sum_j exp(R_j)`` on the raw rewards.
    - ``"positive"`` (the paper's later revision): ``w_i ∝ max(R_i - mean R, 0) + lam``; ``lam > 0``
      (default 0.05) keeps below-average trajectories in the update with a small weight; with
      ``lam = 0`` a constant group (all zeros) falls back to uniform.
    - ``"uniform"`` (GRPO): ``1/G``.
    """
    if mode not in WEIGHT_MODES:
        raise ValueError(f"adaptive_weights: mode must be one of {WEIGHT_MODES}, got {mode!r}")
    if rewards.dim() == 0:
        raise ValueError("adaptive_weights: rewards must have a group dim (..., G), got a scalar")
    if lam < 0:
        raise ValueError(f"adaptive_weights: lam must be >= 0, got {lam}")
    rewards = rewards.detach().float()  # (..., G) weights are constants of the loss
    uniform = torch.full_like(rewards, 1.0 / rewards.shape[-1])  # (..., G)
    if mode == "uniform":
        return uniform
    if mode == "softmax":
        return torch.softmax(rewards, dim=-1)  # (..., G) max-shifted inside, no overflow
    above = (rewards - rewards.mean(dim=-1, keepdim=True)).clamp_min(0) + lam  # (..., G)
    total = above.sum(dim=-1, keepdim=True)  # (..., 1)
    return torch.where(total > 0, above / total.clamp_min(1e-30), uniform)  # (..., G)


# ----------------------------------------------------------------------------------------------
# 3. the GRIP loss


def grip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    weights: torch.Tensor | None,
    mask: torch.Tensor,
    eps: float = 0.2,
    beta: float = 0.04,
    agg: str = "seq-mean",
    group_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRIP loss ``-J`` (the paper's J_GRIP, see the module docstring) and detached metrics.

    Inputs: per-token ``logp`` (current policy, carries the gradient), ``old_logp`` (the sampling
    policy), ``ref_logp`` (the frozen reference; may be None only when ``beta == 0``) and ``mask``
    (1/True on completion tokens), all ``(N, T)``; per-trajectory ``advantages`` and ``weights``
    ``(N,)`` (``weights=None`` means uniform). Advantages and weights are constants (detached).

    Per token: ``obj_it = min(rho A_i, clip(rho, 1-eps, 1+eps) A_i) - beta * KL_it`` with
    ``rho = exp(logp - old_logp)`` and ``KL_it = exp(ref - logp) - (ref - logp) - 1`` (k3).

    - ``agg="seq-mean"`` (paper): ``s_i = (1/|o_i|) sum_t mask_it obj_it`` and
      ``loss = -sum_i w_i s_i / sum_i w_i``. Callers pass weights normalised per group (each of
      the B groups sums to 1), so dividing by ``sum w = B`` averages the groups; uniform weights
      give GRPO's mean over trajectories. A row with no tokens has ``s_i = 0`` and keeps its
      weight in the denominator.
    - ``agg="token-mean"`` (official code, DAPO style): weights are rescaled to mean 1 over the N
      trajectories, ``u_i = N w_i / sum_j w_j``, and
      ``loss = -sum_{i,t} mask_it u_i obj_it / sum_{i,t} mask_it``; uniform weights give exactly
      DAPO's token mean.

    Padding never leaks in: masked positions are replaced by 0 before any ``exp``, so garbage
    (even inf) there changes neither the loss nor the gradient, and empty rows give no NaN.

    Metrics (python floats over masked tokens): ``clip_frac`` (tokens where the clipped branch is
    the minimum: ``A > 0`` and ``rho > 1+eps`` or ``A < 0`` and ``rho < 1-eps``), ``ratio_mean``,
    ``kl_mean`` (0 without ``ref_logp``), ``adv_mean`` and ``adv_std`` (over trajectories),
    ``weight_entropy`` (entropy in nats of the weights renormalised inside each group of
    ``group_size`` consecutive rows, averaged over groups; the whole batch is one group when
    ``group_size`` is None), ``tokens`` and ``loss``.
    """
    _check_loss_inputs(logp, old_logp, ref_logp, advantages, weights, mask, eps, beta, agg, group_size)
    N = logp.shape[0]
    live = mask.bool()  # (N, T)
    live_f = live.float()  # (N, T)
    logp = logp.float()  # (N, T) fp32 math whatever the model dtype
    adv = advantages.detach().float().to(logp.device)  # (N,)
    w = torch.ones(N) if weights is None else weights.detach().float()  # (N,) constants
    w = w.to(logp.device)  # (N,)

    log_ratio = torch.where(live, logp - old_logp.float(), 0.0)  # (N, T) 0 on padding -> rho 1
    ratio = log_ratio.exp()  # (N, T)
    unclipped = ratio * adv[:, None]  # (N, T)
    clipped = ratio.clamp(1 - eps, 1 + eps) * adv[:, None]  # (N, T)
    per_token = torch.minimum(unclipped, clipped)  # (N, T) pessimistic PPO bound
    if ref_logp is not None:
        ref_minus_logp = torch.where(live, ref_logp.float() - logp, 0.0)  # (N, T)
        kl = ref_minus_logp.exp() - ref_minus_logp - 1  # (N, T) k3 estimator, >= 0, 0 on padding
    else:
        kl = torch.zeros_like(logp)  # (N, T)
    if beta != 0:
        per_token = per_token - beta * kl  # (N, T)
    per_token = per_token * live_f  # (N, T)

    lengths = live_f.sum(dim=1)  # (N,) |o_i|
    w_sum = w.sum().clamp_min(1e-30)  # ()
    if agg == "seq-mean":
        seq_obj = per_token.sum(dim=1) / lengths.clamp_min(1)  # (N,) s_i, 0 for empty rows
        objective = (w * seq_obj).sum() / w_sum  # ()
    else:
        u = w * (N / w_sum)  # (N,) weights with mean 1
        objective = (u[:, None] * per_token).sum() / lengths.sum().clamp_min(1)  # ()
    loss = -objective  # ()

    with torch.no_grad():
        n_tok = lengths.sum().clamp_min(1)  # ()
        hit_high = (adv[:, None] > 0) & (ratio > 1 + eps)  # (N, T)
        hit_low = (adv[:, None] < 0) & (ratio < 1 - eps)  # (N, T)
        metrics = {
            "loss": loss.item(),
            "clip_frac": (((hit_high | hit_low) & live).sum() / n_tok).item(),
            "ratio_mean": ((ratio * live_f).sum() / n_tok).item(),
            "kl_mean": ((kl * live_f).sum() / n_tok).item(),
            "adv_mean": adv.mean().item(),
            "adv_std": adv.std().item() if N > 1 else 0.0,
            "weight_entropy": _weight_entropy(w, group_size),
            "tokens": lengths.sum().item(),
        }
    return loss, metrics


def _weight_entropy(w: torch.Tensor, group_size: int | None) -> float:
    """Mean over groups of the entropy (nats) of the per-group renormalised weights; log(G) when uniform."""
    groups = w.view(1, -1) if group_size is None else w.view(-1, group_size)  # (B, G)
    p = groups / groups.sum(dim=1, keepdim=True).clamp_min(1e-30)  # (B, G)
    ent = -(p * p.clamp_min(1e-30).log()).sum(dim=1)  # (B,) 0 log 0 = 0
    return ent.mean().item()


def _check_loss_inputs(logp, old_logp, ref_logp, advantages, weights, mask, eps, beta, agg, group_size):
    """One clear ValueError per bad argument of ``grip_loss``."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"grip_loss: agg must be one of {AGGREGATIONS}, got {agg!r}")
    if logp.dim() != 2:
        raise ValueError(f"grip_loss: logp must be (N, T), got shape {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"grip_loss: {name} shape {tuple(t.shape)} != logp shape {tuple(logp.shape)}")
    N = logp.shape[0]
    for name, t in (("advantages", advantages), ("weights", weights)):
        if t is not None and t.shape != (N,):
            raise ValueError(f"grip_loss: {name} must be (N,) = ({N},), got shape {tuple(t.shape)}")
    if weights is not None and (weights < 0).any():
        raise ValueError("grip_loss: weights must be non-negative")
    if ref_logp is None and beta != 0:
        raise ValueError("grip_loss: ref_logp is required when beta != 0")
    if eps < 0 or beta < 0:
        raise ValueError(f"grip_loss: eps and beta must be >= 0, got eps={eps}, beta={beta}")
    if group_size is not None and (group_size < 1 or N % group_size):
        raise ValueError(f"grip_loss: group_size={group_size} does not divide N={N}")


# ----------------------------------------------------------------------------------------------
# 4. presets: the variants the paper compares, and the step that turns rewards into groups


@dataclass(frozen=True)
class Variant:
    """How a rollout becomes a training group: sample ``oversample * group_size`` candidates per
    prompt, keep ``group_size`` by ``selection``, weight them by ``weighting``."""

    selection: str = "cluster"  # select_candidates strategy
    weighting: str = "softmax"  # adaptive_weights mode
    group_size: int = 16  # G
    oversample: int = 3  # k; the rollout samples K = k * G per prompt

    def __post_init__(self):
        if self.selection not in STRATEGIES:
            raise ValueError(f"Variant.selection must be one of {STRATEGIES}, got {self.selection!r}")
        if self.weighting not in WEIGHT_MODES:
            raise ValueError(f"Variant.weighting must be one of {WEIGHT_MODES}, got {self.weighting!r}")
        if self.group_size < 1 or self.oversample < 1:
            raise ValueError(f"Variant: group_size and oversample must be >= 1, got {self.group_size}, "
                             f"{self.oversample}")


GRIP = Variant("cluster", "softmax", 16, 3)  # the paper's method and defaults
GRPO = Variant("uniform", "uniform", 16, 1)  # no selection, uniform weights
PAIRWISE = Variant("uniform", "uniform", 2, 1)  # pairwise ranking RL: GRPO with groups of two


@dataclass
class Groups:
    """The selected groups of a batch of B prompts, all ``(B, G)``."""

    index: torch.Tensor  # (B, G) long, into the K candidates of each prompt
    rewards: torch.Tensor  # (B, G)
    advantages: torch.Tensor  # (B, G)
    weights: torch.Tensor  # (B, G), each row sums to 1


def make_groups(
    rewards: torch.Tensor,
    variant: Variant = GRIP,
    generator: torch.Generator | None = None,
    lam: float = 0.05,
) -> Groups:
    """Rewards of all candidates (B, K) -> the selected groups with advantages and weights.

    Flatten the ``(B, G)`` results row-major to get the ``(N,)`` per-trajectory inputs of
    ``grip_loss`` (pass ``group_size=variant.group_size`` for per-group metrics).
    """
    if rewards.dim() != 2:
        raise ValueError(f"make_groups: rewards must be (B, K), got shape {tuple(rewards.shape)}")
    K = rewards.shape[1]
    if K != variant.oversample * variant.group_size:
        raise ValueError(f"make_groups: expected K = oversample * group_size = "
                         f"{variant.oversample * variant.group_size} candidates per prompt, got {K}")
    index = select_groups(rewards, variant.group_size, variant.selection, generator)  # (B, G)
    chosen = rewards.gather(1, index)  # (B, G)
    return Groups(index, chosen, group_advantages(chosen), adaptive_weights(chosen, variant.weighting, lam))
