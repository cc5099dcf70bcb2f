"""The Time-R1 reward (paper Sec. 3.3, arXiv 2506.10630): format + length + accuracy terms, summed.

    total = format + length + mse + seasonal + trend + change_point

Two variants (or pass your own ``RewardOptions``):

- ``"paper"`` (default) follows the paper's equations, with the choices it leaves open made explicit
  (normalisation by the TARGET's mean and population std, bounded seasonal/trend terms, extrema
  matched within a tolerance window).
- ``"official"`` mirrors the released code (github.com/lqzxt/Time-R1, ``reward/reward.py`` at commit
  be9d12c): ``0.6 * 2 * (1 - sigmoid(2 * MSE))`` for accuracy, ``0.05`` / ``0.15`` times the same
  shape for seasonal / trend, change points weighted 0.1 and matched at the exact index, a lenient
  format check, and both series normalised by the parsed answer's own mean and max absolute
  deviation. Unlike that code this never crashes (it divides by zero when the target has no
  extremum), scores 0 for an answer shorter than the target, and uses this module's extrema detector.

The forecast is read by ``timer1.core.prompts.parse_forecast``, the same parser the evaluation uses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

REWARD_KEYS = ("format", "length", "mse", "seasonal", "trend", "change_point")


@dataclass(frozen=True)
class RewardOptions:
    """Weights and shapes of the reward terms. ``PAPER`` and ``OFFICIAL`` below are the two presets."""

    strict_format: bool = True  # True: the whole completion is one think block then one answer block
    length_weight: float = 0.1  # paper: 0.1 for a complete answer, pro rata below
    normalize: str = "target"  # "target": (x - mean_y) / std_y; "prediction": official mean/max-abs of the answer
    mse_slope: float = 0.3  # paper: 2 * (1 - sigmoid(0.3 * MSE))
    mse_weight: float = 1.0
    decomp_kernel: int = 25  # moving-average window of the seasonal/trend split (Autoformer/DLinear)
    seasonal_slope: float = 0.3
    seasonal_weight: float = 0.5
    trend_slope: float = 0.3
    trend_weight: float = 0.5
    change_point_weight: float = 0.2  # per kind (maxima, minima): 0.2 + 0.2 at best
    change_point_tolerance: int = 2  # a predicted extremum matches a true one at most this many steps away
    extrema_order: int = 2  # an extremum is the max (min) of the 2*order+1 points centred on it
    extrema_min_height: float = 0.1  # ... and rises this much (in normalised units) above both sides

    def __post_init__(self):
        if self.normalize not in ("target", "prediction"):
            raise ValueError(f"RewardOptions.normalize must be 'target' or 'prediction', got {self.normalize!r}")
        if self.decomp_kernel < 1 or self.decomp_kernel % 2 == 0:
            raise ValueError(f"RewardOptions.decomp_kernel must be a positive odd integer, got {self.decomp_kernel}")
        if self.change_point_tolerance < 0 or self.extrema_order < 1:
            raise ValueError("RewardOptions.change_point_tolerance must be >= 0 and extrema_order >= 1")


PAPER = RewardOptions()
OFFICIAL = replace(
    PAPER,
    strict_format=False,
    normalize="prediction",
    mse_slope=2.0,
    mse_weight=0.6,
    seasonal_slope=2.0,
    seasonal_weight=0.05,
    trend_slope=2.0,
    trend_weight=0.15,
    change_point_weight=0.1,
    change_point_tolerance=0,
    extrema_min_height=0.0,
)
# ---------------------------------------------------------------------------------------------
# format

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# One think block, then one answer block. Tolerated: whitespace before <think>, between </think>
# and <answer>, after </answer>, and one trailing Qwen end-of-turn marker (if the caller decoded
# special tokens). Anything else outside the two blocks (prose, a second block) is a format error.
_STRICT = re.compile(
    r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*(?:<\|im_end\|>|<\|endoftext\|>)?\s*",
    re.DOTALL,
)
_OFFICIAL = re.compile(r"<think>(.*?)</think>\n<answer>(.*?)</answer>", re.DOTALL)


def format_reward(text: str, strict: bool = True) -> float:
    """0.0 if ``text`` is ``<think>...</think>`` then ``<answer>...</answer>``, else -1.0 (paper).
    strict=False is the official check: the pattern anywhere in the text."""
    if not isinstance(text, str):
        return -1.0
    if not strict:
        return 0.0 if _OFFICIAL.search(text) else -1.0
    match = _STRICT.fullmatch(text)
    if match is None:
        return -1.0
    bodies = match.group("think") + match.group("answer")
    return -1.0 if any(tag in bodies for tag in _TAGS) else 0.0


# ---------------------------------------------------------------------------------------------
# length

def length_reward(pred: np.ndarray | None, target: np.ndarray, weight: float = 0.1) -> float:
    """``weight`` if the answer has at least len(target) values, else ``weight * n / len(target)``."""
    n = 0 if pred is None else len(pred)
    return weight * (min(n, len(target)) / len(target))


# ---------------------------------------------------------------------------------------------
# normalisation and decomposition

def normalize_pair(pred: np.ndarray, target: np.ndarray, mode: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """Apply one affine map to both series so the accuracy terms are scale-free.

    mode="target" (paper): z = (x - mean(target)) / std(target), a constant target only centred.
    mode="prediction" (official code's ``reworad_norm``): z = (x - mean(pred)) / max|pred - mean(pred)|
    over the whole parsed answer (the caller truncates afterwards, as the official code does).
    """
    if mode == "target":
        center, scale = float(np.mean(target)), float(np.std(target))
        scale = scale if scale >= 1e-8 else 1.0
    elif mode == "prediction":
        center = float(np.mean(pred))
        scale = max(float(np.max(np.abs(pred - center))), 1e-8)
    else:
        raise ValueError(f"normalize mode must be 'target' or 'prediction', got {mode!r}")
    return (pred - center) / scale, (target - center) / scale


def moving_average(x: np.ndarray, kernel: int = 25) -> np.ndarray:
    """Centred moving average with replicated edges (Autoformer/DLinear ``moving_avg``, stride 1)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"moving-average kernel must be a positive odd integer, got {kernel}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"moving_average expects a non-empty 1-D series, got shape {x.shape}")
    pad = (kernel - 1) // 2
    padded = np.concatenate([np.full(pad, x[0]), x, np.full(pad, x[-1])])  # (T + 2*pad,)
    cumsum = np.concatenate([[0.0], np.cumsum(padded)])
    return (cumsum[kernel:] - cumsum[:-kernel]) / kernel  # (T,)


def decompose(x: np.ndarray, kernel: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Autoformer/DLinear ``series_decomp``: returns (seasonal, trend), trend = moving average, seasonal = x - trend."""
    trend = moving_average(x, kernel)
    return np.asarray(x, dtype=np.float64) - trend, trend


# ---------------------------------------------------------------------------------------------
# accuracy terms: each takes the full parsed answer and the target; 0 if the answer is too short

def bounded_score(mse: float, slope: float) -> float:
    """``2 * (1 - sigmoid(slope * mse))`` = ``2 / (1 + exp(slope * mse))``, exponent capped: range (0, 1]."""
    return 2.0 / (1.0 + math.exp(min(slope * mse, 700.0)))


def _aligned(pred: np.ndarray | None, target: np.ndarray, mode: str):
    """Normalised (pred[:H], target), or None when the answer is missing, short or not finite."""
    if pred is None:
        return None
    pred, target = np.asarray(pred, dtype=np.float64).reshape(-1), np.asarray(target, dtype=np.float64)
    horizon = len(target)
    if len(pred) < horizon or not np.all(np.isfinite(pred[:horizon])):
        return None
    stats_source = pred if np.all(np.isfinite(pred)) else pred[:horizon]
    norm_pred, norm_target = normalize_pair(stats_source, target, mode)
    return norm_pred[:horizon], norm_target


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(np.mean((a - b) ** 2))
    return value if math.isfinite(value) else math.inf


def mse_reward(pred, target, options: RewardOptions = PAPER) -> float:
    """Paper: ``2 * (1 - sigmoid(0.3 * MSE))`` on normalised series, range (0, 1]; official: 0.6 * (same, slope 2)."""
    pair = _aligned(pred, target, options.normalize)
    if pair is None:
        return 0.0
    return options.mse_weight * bounded_score(_mse(*pair), options.mse_slope)


def seasonal_reward(pred, target, options: RewardOptions = PAPER) -> float:
    """Seasonal part (x - moving average, window 25) of the normalised series, scored like ``mse``.

    The paper writes this term as a raw MSE yet adds it to rewards where larger is better; we use the
    MSE term's bounded shape. Weight 0.5 for seasonal and trend alike makes the two parts together
    weigh as much as the whole-series MSE term.
    """
    return _part_reward(pred, target, options, 0, options.seasonal_weight, options.seasonal_slope)


def trend_reward(pred, target, options: RewardOptions = PAPER) -> float:
    """Trend part (the moving average) scored like ``seasonal_reward``."""
    return _part_reward(pred, target, options, 1, options.trend_weight, options.trend_slope)


def _part_reward(pred, target, options: RewardOptions, part: int, weight: float, slope: float) -> float:
    pair = _aligned(pred, target, options.normalize)
    if pair is None:
        return 0.0
    pred_part, true_part = (decompose(x, options.decomp_kernel)[part] for x in pair)  # part 0 seasonal, 1 trend
    return weight * bounded_score(_mse(pred_part, true_part), slope)


def find_extrema(x: np.ndarray, order: int = 2, min_height: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of local maxima and minima of ``x``.

    Index i (never an end point) is a maximum when it is the largest of x[i-order : i+order+1], above
    x[i-1] (a flat top counts once), and rises above BOTH sides of the window by at least
    ``min_height`` (a cheap prominence). Minima are the maxima of -x.
    """
    x = np.asarray(x, dtype=np.float64)

    def maxima(values: np.ndarray) -> np.ndarray:
        found = []
        for i in range(1, len(values) - 1):
            left = values[max(0, i - order):i]
            right = values[i + 1:i + order + 1]
            if values[i] <= values[i - 1] or values[i] < right.max() or values[i] < left.max():
                continue
            height = values[i] - max(left.min(), right.min())
            if height > 0 and height >= min_height:
                found.append(i)
        return np.asarray(found, dtype=np.int64)

    return maxima(x), maxima(-x)


def count_matches(true_idx: np.ndarray, pred_idx: np.ndarray, tolerance: int) -> int:
    """Size of the largest one-to-one matching with |t - p| <= tolerance (greedy over sorted indices
    is optimal for intervals on a line)."""
    pred_sorted = sorted(int(p) for p in pred_idx)
    used, matched = [False] * len(pred_sorted), 0
    for t in sorted(int(t) for t in true_idx):
        for j, p in enumerate(pred_sorted):
            if not used[j] and t - tolerance <= p <= t + tolerance:
                used[j], matched = True, matched + 1
                break
    return matched


def change_point_reward(pred, target, options: RewardOptions = PAPER) -> float:
    """``w * matched maxima / true maxima + w * matched minima / true minima`` (paper: w = 0.2).

    If the target has no extremum of a kind, that half scores w when the prediction has none either.
    Like the paper's formula this is recall only; the mse/seasonal terms penalise a wiggly answer.
    """
    pair = _aligned(pred, target, options.normalize)
    if pair is None:
        return 0.0
    norm_pred, norm_target = pair
    true_max, true_min = find_extrema(norm_target, options.extrema_order, options.extrema_min_height)
    pred_max, pred_min = find_extrema(norm_pred, options.extrema_order, options.extrema_min_height)
    score = 0.0
    for true_idx, pred_idx in ((true_max, pred_max), (true_min, pred_min)):
        if len(true_idx) == 0:
            score += options.change_point_weight * float(len(pred_idx) == 0)
        else:
            matched = count_matches(true_idx, pred_idx, options.change_point_tolerance)
            score += options.change_point_weight * matched / len(true_idx)
    return score


# ---------------------------------------------------------------------------------------------
# total

def _check_target(target) -> np.ndarray:
    try:
        target = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"reward target must be numeric: {err}") from None
    if target.ndim != 1 or target.size == 0:
        raise ValueError(f"reward target must be a non-empty 1-D array, got shape {target.shape}")
    if not np.all(np.isfinite(target)):
        raise ValueError("reward target contains NaN or inf")
    return target


def reward_terms(pred: np.ndarray | None, target, options: RewardOptions = PAPER) -> dict[str, float]:
    """Length and accuracy terms for an already parsed forecast (no format term)."""
    target = _check_target(target)
    if pred is not None:
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    return {
        "length": length_reward(pred, target, options.length_weight),
        "mse": mse_reward(pred, target, options),
        "seasonal": seasonal_reward(pred, target, options),
        "trend": trend_reward(pred, target, options),
        "change_point": change_point_reward(pred, target, options),
    }


def compute_reward(completion: str, target, *, variant: str | RewardOptions = "paper") -> dict[str, float]:
    """Every reward term of one completion and their sum under ``total``. Never raises on the
    completion; raises ValueError if ``target`` is not a finite, non-empty 1-D array."""
    options = variant if isinstance(variant, RewardOptions) else {"paper": PAPER, "official": OFFICIAL}.get(variant)
    if options is None:
        raise ValueError(f"unknown reward variant {variant!r}; choose 'official' or 'paper'")
    target = _check_target(target)
    from timer1.core.prompts import parse_forecast  # at call time: the pure terms (and baselines) need no prompts

    text = completion if isinstance(completion, str) else ""
    pred = parse_forecast(text)
    terms = {"format": format_reward(text, options.strict_format), **reward_terms(pred, target, options)}
    terms["total"] = float(sum(terms[key] for key in REWARD_KEYS))
    return terms
