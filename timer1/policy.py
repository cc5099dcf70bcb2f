"""The policy every script runs: a Qwen2 model, its tokenizer and (optionally) a LoRA adapter.

``load_policy(path)`` opens any Hugging Face Qwen2/Qwen2.5 directory (``config.json``,
``model.safetensors`` or shards, ``tokenizer.json``) and checks that the pieces fit together, so a
wrong directory fails with one clear line instead of a shape error deep in a forward.
``random_policy(...)`` builds a tiny randomly initialised model with a tokenizer trained on the
task's own text: the smoke presets and the tests use it, since no Qwen weights exist offline.
``save_policy`` writes the HF layout (weights, config, tokenizer, generation config) that
``load_policy`` and ``transformers`` both read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from timer1.atomic import write_json_atomic
from timer1.calibrate import read_band_scale
from timer1.checkpoint import LATEST, resolve_checkpoint
from timer1.data import synthetic_frame, train_windows
from timer1.hf_io import as_dtype
from timer1.model import Qwen2, Qwen2Config
from timer1.prompts import build_prompt
from timer1.task import PromptFormat
from timer1.tokenizer import Tokenizer, train_tokenizer

PROMPT_FILE = "timer1_prompt.json"  # the prompt format a checkpoint was trained with (ours only)


@dataclass
class Policy:
    """A model and the tokenizer it was trained with; ``source`` says where they came from and
    ``prompt_format`` how it expects windows to be written (the paper's prompt unless the checkpoint
    carries a ``timer1_prompt.json``, as timer1-trained checkpoints do)."""

    model: Qwen2
    tokenizer: Tokenizer
    source: str
    prompt_format: PromptFormat = PromptFormat()
    band_scale: float = 1.0  # slow thinking spreads its kept drafts by this around their median (timer1.calibrate)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device


def resolve_device(device: str | torch.device | None = None,
                   dtype: str | torch.dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """``device``/``dtype`` as asked, with ``None``/``"auto"`` meaning cuda when present (in bf16, or
    fp16 on a GPU without bf16), else cpu+fp32."""
    if device in (None, "auto"):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if dtype in (None, "auto"):
        dtype = torch.float32 if device.type != "cuda" else (
            torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    else:
        dtype = as_dtype(dtype)
    return device, dtype


def load_policy(path: str | os.PathLike, *, adapter: str | os.PathLike | None = None,
                tokenizer_path: str | os.PathLike | None = None, device=None, dtype=None) -> Policy:
    """Load a Qwen2 checkpoint directory (and an optional PEFT/timer1 LoRA adapter) for inference or training.

    `path` may also be a training run directory (``runs/tiny_sft``): its best-scored checkpoint is
    loaded (``timer1.checkpoint.resolve_checkpoint``).

    Raises FileNotFoundError / ValueError with one line naming what is wrong: the directory is
    missing, it is not a Qwen2 checkpoint, it has no tokenizer, the tokenizer has ids the model
    has no rows for, or the adapter was made for another base model.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    if not (path / "config.json").is_file() and (path / LATEST).is_file():
        path = resolve_checkpoint(path)            # a training run directory: its best checkpoint
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Qwen2 checkpoint: it has no config.json")
    device, dtype = resolve_device(device, dtype)
    model = Qwen2.from_pretrained(path, dtype=dtype, device=device)
    tokenizer = Tokenizer.from_pretrained(tokenizer_path or path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size} embedding rows: they do not belong together")
    if adapter:
        from timer1.lora import load_adapter  # only adapter users pay for the import

        load_adapter(model, adapter)
    model.eval()
    return Policy(model, tokenizer, str(path), read_prompt_format(path), read_band_scale(Path(adapter or path)))


def read_prompt_format(path: Path) -> PromptFormat:
    """The checkpoint's ``timer1_prompt.json`` as a PromptFormat; the paper's prompt when absent."""
    file = path / PROMPT_FILE
    if not file.is_file():
        return PromptFormat()
    try:
        return PromptFormat(**json.loads(file.read_text()))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{file}: not a valid prompt format ({err})") from None


def tokenizer_corpus(seed: int = 0, n_series: int = 6) -> list[str]:
    """Text that looks like the task, for training a tiny tokenizer: prompts in every style and SFT
    completions written by the statistical teacher (short and long), on seeded synthetic series."""
    from timer1.sft_data import StatisticalTeacher, make_sample  # sft_data builds on policy's neighbours

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
    """A randomly initialised Qwen2 of the given dims, with a tokenizer trained on task-like text.

    ``config`` may be a :class:`Qwen2Config` or a dict of HF ``config.json`` fields; its
    ``vocab_size`` is the requested tokenizer size too (the model gets at least the tokenizer's ids).
    Initialisation follows HF's ``initializer_range`` (normal, std 0.02), seeded.
    """
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


def policy_from_config(model_cfg, prompt_format: PromptFormat = PromptFormat(), *, seed: int = 0,
                       device=None) -> Policy:
    """The policy a training run's ``ModelConfig`` (timer1.config) describes.

    ``random_init``: a random Qwen2 of the config's dims (tokenizer from ``model_cfg.tokenizer`` or
    trained on task-like text); otherwise the checkpoint at ``model_cfg.path``, which may be a run
    directory (its best, else latest, checkpoint is used). ``prompt_format`` is what the run writes.
    """
    from timer1.checkpoint import resolve_checkpoint

    if model_cfg.random_init:
        tokenizer = Tokenizer.from_pretrained(model_cfg.tokenizer) if model_cfg.tokenizer else None
        policy = random_policy(model_cfg.random_config_dict(), seed=seed, tokenizer=tokenizer,
                               prompt_format=prompt_format, device=device, dtype=model_cfg.dtype)
    else:
        policy = load_policy(resolve_checkpoint(model_cfg.path), tokenizer_path=model_cfg.tokenizer or None,
                             device=device, dtype=model_cfg.dtype)
        policy.prompt_format = prompt_format
    policy.model.gradient_checkpointing = model_cfg.gradient_checkpointing
    return policy


def save_policy(policy: Policy, path: str | os.PathLike) -> Path:
    """Write the HF layout: weights + config.json (``save_pretrained``) and ``save_policy_files``."""
    path = Path(path)
    policy.model.save_pretrained(path)
    save_policy_files(policy.tokenizer, policy.prompt_format, path)
    return path


def save_policy_files(tokenizer: Tokenizer, prompt_format: PromptFormat, path: str | os.PathLike) -> None:
    """Everything beside the weights that ``load_policy`` reads: tokenizer files,
    ``generation_config.json`` (eos/pad ids) and the prompt format; each file written atomically."""
    path = Path(path)
    tokenizer.save_pretrained(path)
    eos = list(tokenizer.eos_ids)
    generation = {"eos_token_id": eos if len(eos) != 1 else eos[0], "pad_token_id": tokenizer.pad_id,
                  "do_sample": True, "temperature": 1.0, "top_p": 1.0}
    write_json_atomic(path / "generation_config.json", generation)
    write_json_atomic(path / PROMPT_FILE, dataclasses.asdict(prompt_format))
