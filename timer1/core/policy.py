"""Loading and saving a policy (a Qwen2 model, its tokenizer, optionally a LoRA adapter) by path: the one place.

``load_policy`` checks that the pieces of a directory fit together, so a wrong directory fails with
one clear line instead of a shape error deep in a forward. ``save_policy`` writes the HF layout that
``load_policy`` and ``transformers`` both read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from timer1.core.codec import PromptFormat
from timer1.core.hf_io import as_dtype
from timer1.core.model import Qwen2
from timer1.core.tokenizer import Tokenizer
from timer1.util.atomic import write_json_atomic

PROMPT_FILE = "timer1_prompt.json"  # the prompt format a checkpoint was trained with (ours only)


@dataclass
class Policy:
    """A model, the tokenizer it was trained with, and how it expects windows to be written."""

    model: Qwen2
    tokenizer: Tokenizer
    source: str
    prompt_format: PromptFormat = PromptFormat()

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
    """Load a Qwen2 checkpoint directory (and an optional LoRA adapter) for inference or training.
    A training run directory is not a checkpoint: ``timer1.train.checkpoint.resolve_checkpoint`` picks
    one of its checkpoints first."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Qwen2 checkpoint: it has no config.json (a training run? pass one of its "
                         f"checkpoints, timer1.train.checkpoint.resolve_checkpoint)")
    device, dtype = resolve_device(device, dtype)
    model = Qwen2.from_pretrained(path, dtype=dtype, device=device)
    tokenizer = Tokenizer.from_pretrained(tokenizer_path or path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size} embedding rows: they do not belong together")
    if adapter:
        from timer1.core.lora import load_adapter  # only adapter users pay for the import

        load_adapter(model, adapter)
    model.eval()
    return Policy(model, tokenizer, str(path), read_prompt_format(path))


def read_prompt_format(path: Path) -> PromptFormat:
    """The checkpoint's ``timer1_prompt.json`` as a PromptFormat; the paper's prompt when absent."""
    file = path / PROMPT_FILE
    if not file.is_file():
        return PromptFormat()
    try:
        return PromptFormat(**json.loads(file.read_text()))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{file}: not a valid prompt format ({err})") from None


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
