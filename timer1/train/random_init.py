"""A randomly initialised Qwen2 and a tokenizer trained on the task's own text: what smoke runs and tests use offline.

The tokenizer is a byte-level BPE trained on prompts in every style and on the statistical teacher's
SFT completions.
"""

from __future__ import annotations

import torch

from timer1.core.codec import PromptFormat
from timer1.core.model import Qwen2, Qwen2Config
from timer1.core.policy import Policy, resolve_device
from timer1.core.prompts import build_prompt
from timer1.core.sft_data import StatisticalTeacher, make_sample
from timer1.core.tokenizer import Tokenizer, train_tokenizer
from timer1.data.protocol import train_windows
from timer1.data.synthetic import synthetic_frame


def tokenizer_corpus(seed: int = 0, n_series: int = 6) -> list[str]:
    """Text that looks like the task: prompts in every style and the statistical teacher's SFT
    completions (short and long), on seeded synthetic series."""
    texts = []
    for i in range(n_series):
        series = synthetic_frame(400, seed + i, periods=((24.0, 2.0),), trend=0.01 * i, level=10.0 + 5 * i)
        for window in train_windows(series, 48, 24, 96, dataset=series.name):
            for style in ("official", "paper", "compact"):
                fmt = PromptFormat(style)
                texts.append(build_prompt(window, style=style, decimals=3))
                for verbosity in ("short", "long"):
                    sample = make_sample(window, StatisticalTeacher(fmt, verbosity), fmt, k=5)
                    texts.append(sample.completion if sample else "")
    return texts


def random_policy(config: Qwen2Config | dict, *, seed: int = 0, tokenizer: Tokenizer | None = None,
                  prompt_format: PromptFormat = PromptFormat(), device=None, dtype=None) -> Policy:
    """A randomly initialised Qwen2 of the given dims (HF's ``initializer_range``: normal, std 0.02),
    with a tokenizer trained on task-like text; ``config.vocab_size`` is the tokenizer's size too."""
    config = config if isinstance(config, Qwen2Config) else Qwen2Config.from_dict({"model_type": "qwen2", **config})
    if tokenizer is None:
        tokenizer = train_tokenizer(tokenizer_corpus(seed), vocab_size=config.vocab_size)
    if tokenizer.vocab_size > config.vocab_size:
        config = Qwen2Config.from_dict({**config.to_dict(), "vocab_size": tokenizer.vocab_size})
    device, dtype = resolve_device(device, dtype)
    generator = torch.Generator().manual_seed(seed)
    model = Qwen2(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    model.to(device=device, dtype=dtype).eval()
    return Policy(model, tokenizer, "random", prompt_format)
