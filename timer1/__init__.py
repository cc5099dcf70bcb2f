"""timer1: a pure-PyTorch reference implementation of Time-R1 (arXiv 2506.10630).

An LLM reads a time series as text, reasons inside ``<think>``, answers inside ``<answer>``;
it is trained by an SFT warm-up and then by GRIP, a GRPO-family RL method with
multi-objective rewards, and forecasts by slow thinking (draft, reflect, refine).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``timer1.Forecaster`` (timer1.forecaster), imported on first use: ``import timer1.data`` and
    the CLIs' input checks stay free of torch's import time."""
    if name == "Forecaster":
        from timer1.forecast.forecaster import Forecaster

        return Forecaster
    raise AttributeError(f"module 'timer1' has no attribute {name!r}")
