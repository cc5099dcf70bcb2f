"""Forecast bands as samples at fixed levels, and a model's calibrated band widths.

A band is carried as ``len(BAND_LEVELS)`` values per step, the value at level l being the band's
l-quantile, so numpy's (linear) quantile q of them is the band's own q-quantile for every q on the
grid (multiples of 1/200) and a close interpolation between. Reflection's band
(timer1.forecast.reflect) is made this way; so is the model's own band once it is calibrated:
slow thinking's band is the spread of its drafts, and ``python -m timer1.forecast.calibrate``
measures, per central coverage c, how much wider the drafts' c-band must be to cover a share c of
held-out outcomes. Those factors are written beside the model and applied here, each level by the
factor of its own coverage.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # slow thinking brings torch; the forecaster imports it where a model runs
    from timer1.core.slow_think import SlowThinkResult

CALIBRATION_FILE = "timer1_calibration.json"
BAND_LEVELS = np.linspace(0.0, 1.0, 201)  # a band's levels, i / 200: 0.05, 0.1, 0.025, ... fall on the grid


@dataclasses.dataclass(frozen=True)
class BandCalibration:
    """Per central coverage ``coverages[i]`` (ascending), the factor ``scales[i]`` by which the drafts'
    band of that coverage is widened around their median. Coverages between are interpolated
    linearly, those outside take the nearest factor; no entries = the drafts' own spread."""

    coverages: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()

    def scale_at(self, coverage: np.ndarray) -> np.ndarray:
        """The factor for each central coverage in ``coverage`` (any shape)."""
        if not self.coverages:
            return np.ones_like(coverage, dtype=np.float64)
        return np.interp(coverage, self.coverages, self.scales)


def read_band_calibration(directory: str | Path) -> BandCalibration:
    """A model's calibration (no entries when it was never calibrated). The file holds
    ``{"band_scales": {"0.8": 6.6, ...}}``, central coverage -> factor; a file from before per-level
    calibration holds one ``"band_scale"`` for the 10-90% band, read as that one entry."""
    file = Path(directory) / CALIBRATION_FILE
    if not file.is_file():
        return BandCalibration()
    try:
        raw = json.loads(file.read_text())
        table = raw["band_scales"] if "band_scales" in raw else {"0.8": raw["band_scale"]}
        pairs = sorted((float(c), float(s)) for c, s in table.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{file}: not a calibration file ({err!r})") from None
    bad = [(c, s) for c, s in pairs if not (0 < c < 1 and s > 0)]
    if bad or not pairs:
        raise ValueError(f"{file}: each band scale must be positive, for a coverage in (0, 1); got {pairs}")
    return BandCalibration(tuple(c for c, _ in pairs), tuple(s for _, s in pairs))


def widen_result(result: SlowThinkResult, calibration: BandCalibration) -> SlowThinkResult:
    """A result whose band is the drafts' band widened per level: at level l the value
    ``median + scale(|2l - 1|) * (q_l - median)``, q_l the drafts' l-quantile, as samples at
    BAND_LEVELS (sorted per step, so widened levels never cross). The point does not move; a result
    with fewer than two samples (no band) or an uncalibrated model is returned as it is."""
    samples = np.asarray(result.samples, dtype=np.float64)  # (K, H)
    if not calibration.coverages or len(samples) < 2:
        return result
    wide = widen_samples(samples, calibration)
    return dataclasses.replace(result, samples=wide,
                               quantiles={q: np.quantile(wide, q, axis=0) for q in result.quantiles})


def widen_samples(samples: np.ndarray, calibration: BandCalibration) -> np.ndarray:
    """A band's samples (K, H) widened per level around their median: (len(BAND_LEVELS), H), the value
    at level l ``median + scale(|2l - 1|) * (q_l - median)``, sorted per step so levels never cross."""
    median = np.median(samples, axis=0)  # (H,)
    raw = np.quantile(samples, BAND_LEVELS, axis=0)  # (L, H)
    scale = calibration.scale_at(np.abs(2 * BAND_LEVELS - 1))[:, None]  # (L, 1)
    return np.sort(median + scale * (raw - median), axis=0)  # (L, H)
