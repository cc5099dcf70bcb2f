"""timer1: a pure-PyTorch reference implementation of Time-R1 (arXiv 2506.10630).

An LLM reads a time series as text, reasons inside ``<think>``, answers inside ``<answer>``;
it is trained by an SFT warm-up and then by GRIP, a GRPO-family RL method with
multi-objective rewards, and forecasts by slow thinking (draft, reflect, refine).
"""

__version__ = "0.1.0"
