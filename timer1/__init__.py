"""timer1: a pure-PyTorch reference implementation of Time-R1 (arXiv 2506.10630).

An LLM reads a time series as text, reasons inside ``<think>``, answers inside ``<answer>``;
it is trained by an SFT warm-up and then by GRIP, a GRPO-family RL method with
multi-objective rewards, and forecasts by slow thinking (draft, reflect, refine).

One house, two wings. ``timer1.core`` is the method, importing nothing outside ``core`` and ``util``
(its docstring gives the reading order). The product stands around it: ``timer1.data`` (CSV files,
dates, the paper's protocol and windows), ``timer1.train`` (what train_sft.py and train_grip.py are
built from), ``timer1.forecast`` (the Forecaster API, model resolution, calibration, the service),
``timer1.tools`` (GGUF import, export, plots, paired comparisons) and ``timer1.util`` (atomic writes,
torchrun/DDP, seeding).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``timer1.Forecaster`` (timer1.forecast.forecaster), imported on first use: ``import timer1.data`` and
    the CLIs' input checks stay free of torch's import time."""
    if name == "Forecaster":
        from timer1.forecast.forecaster import Forecaster

        return Forecaster
    raise AttributeError(f"module 'timer1' has no attribute {name!r}")
