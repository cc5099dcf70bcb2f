"""A model's calibrated band width, applied by the forecaster (the method's own band is the spread of
slow thinking's kept drafts; ``python -m timer1.forecast.calibrate`` measures how much wider it must be
to cover what it claims on held-out windows and writes that factor beside the model)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # slow thinking brings torch; the forecaster imports it where a model runs
    from timer1.core.slow_think import SlowThinkResult

CALIBRATION_FILE = "timer1_calibration.json"


def read_band_scale(directory: str | Path) -> float:
    """A model's calibrated band scale (1.0 when it was never calibrated)."""
    file = Path(directory) / CALIBRATION_FILE
    if not file.is_file():
        return 1.0
    try:
        scale = float(json.loads(file.read_text())["band_scale"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{file}: not a calibration file ({err})") from None
    if not scale > 0:
        raise ValueError(f"{file}: band_scale must be positive, got {scale}")
    return scale


def widen(median: np.ndarray, values: np.ndarray, scale: float) -> np.ndarray:
    """``values`` (a quantile (H,) or samples (K, H)) moved away from ``median`` (H,) by ``scale``
    (1 = unchanged): ``median + scale * (values - median)``."""
    return median + scale * (values - median)


def widen_result(result: SlowThinkResult, scale: float) -> SlowThinkResult:
    """A result whose kept drafts are spread by ``scale`` around their per-step median, quantiles
    recomputed from them; the point forecast does not move. Quantiles commute with this affine map,
    so every quantile level ends ``scale`` times as far from the median."""
    if scale == 1.0:
        return result
    samples = np.asarray(result.samples, dtype=np.float64)  # (K, H)
    median = np.median(samples, axis=0)  # (H,)
    wide = widen(median, samples, scale)  # (K, H)
    return dataclasses.replace(result, samples=wide,
                               quantiles={q: np.quantile(wide, q, axis=0) for q in result.quantiles})
