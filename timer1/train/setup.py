"""What a training run is built from: the policy of a config (a checkpoint or a random-init model, with
LoRA or full fine-tuning), AdamW over the trainable weights, the learning-rate schedule, and the
autocast that gives one precision rule on every device."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, TypeVar

import torch

from timer1.core.codec import PromptFormat, prompt_format_from
from timer1.core.lora import apply_lora, load_adapter
from timer1.core.policy import Policy, load_policy, resolve_device
from timer1.core.tokenizer import Tokenizer
from timer1.train.checkpoint import resolve_checkpoint
from timer1.train.random_init import random_policy
from timer1.util.precision import warn_if_emulated

T = TypeVar("T")


def build_policy(cfg: Any, device: torch.device | str, *, seed: int = 0, adapter: str = "") -> Policy:
    """The policy of an SFTConfig/GRIPConfig, with LoRA applied (or `adapter` loaded), on `device`. A
    random-init model is built from `seed` alike on every rank; LoRA's A matrices draw from torch's
    global RNG, so seed it first. A missing or broken model/adapter path is one-line error.

    Precision (the same on CPU and CUDA): a LoRA run stores its frozen base in ``model.dtype`` and
    its adapter in fp32; full fine-tuning keeps every weight as an fp32 master copy, as mixed-precision
    training does. So AdamW's state is fp32, and the forward computes in ``model.dtype`` under
    :func:`autocast`."""
    warn_if_emulated(*resolve_device(device, cfg.model.dtype))   # bf16 asked on a CPU without it: said once
    what = "model" if cfg.model.random_init else f"model.path {cfg.model.path}"
    policy = loaded(what, lambda: policy_from_config(cfg.model, prompt_format_from(cfg.data), seed=seed, device=device))
    if adapter:
        loaded(f"adapter {adapter}", lambda: load_adapter(policy.model, adapter))
    elif cfg.lora.enabled:
        lora = cfg.lora
        apply_lora(policy.model, tuple(lora.targets), lora.r, lora.alpha, lora.dropout, lora.use_rslora)
    else:
        policy.model.float()                      # full fine-tuning: fp32 master weights
    policy.model.to(device)                       # LoRA A/B are created on the CPU
    policy.model.train()
    return policy


def policy_from_config(model_cfg, prompt_format: PromptFormat = PromptFormat(), *, seed: int = 0,
                       device=None) -> Policy:
    """The policy a run's ``ModelConfig`` describes: with ``random_init`` a random Qwen2 of its dims
    (tokenizer from ``model_cfg.tokenizer`` or trained on task-like text), else the checkpoint at
    ``model_cfg.path``, which may be a run directory (its best, else latest, checkpoint)."""
    if model_cfg.random_init:
        tokenizer = Tokenizer.from_pretrained(model_cfg.tokenizer) if model_cfg.tokenizer else None
        policy = random_policy(model_cfg.config_dict(), seed=seed, tokenizer=tokenizer,
                               prompt_format=prompt_format, device=device, dtype=model_cfg.dtype)
    else:
        policy = load_policy(resolve_checkpoint(model_cfg.path), tokenizer_path=model_cfg.tokenizer or None,
                             device=device, dtype=model_cfg.dtype)
        policy.prompt_format = prompt_format
    policy.model.gradient_checkpointing = model_cfg.gradient_checkpointing
    return policy


def loaded(what: str, load: Callable[[], T]) -> T:
    """``load()``, with any failure inside a weights or tokenizer file (a truncated safetensors header,
    a cut zip: SafetensorError, RuntimeError, EOFError...) as one ValueError naming `what`."""
    try:
        return load()
    except (ValueError, FileNotFoundError):                # ours: already one line naming the path
        raise
    except Exception as err:
        raise ValueError(f"cannot load {what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with requires_grad (apply_lora freezes all but the LoRA A/B matrices)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: torch.nn.Module, optim_cfg: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: matrices are decayed, biases and norm gains are not."""
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters (LoRA targets matched nothing?)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": optim_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim_cfg.lr,
                             betas=tuple(optim_cfg.betas))


def lr_at(step: int, total: int, optim_cfg: Any) -> float:
    """Learning rate of optimizer step `step` (0-based) of `total`: warm-up ``lr * (step + 1) /
    (warmup + 1)`` (nanoGPT), then from ``lr`` to ``min = min_lr_ratio * lr`` with p = (step - warmup) /
    (total - warmup): cosine ``min + (lr - min) * (1 + cos(pi p)) / 2``, linear, or constant."""
    peak, warmup = optim_cfg.lr, optim_cfg.warmup_steps
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if optim_cfg.schedule == "constant":
        return peak
    floor = peak * optim_cfg.min_lr_ratio
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if optim_cfg.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if optim_cfg.schedule == "linear":
        return peak - (peak - floor) * progress
    raise ValueError(f"unknown schedule {optim_cfg.schedule!r}; choose cosine, linear or constant")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast(device: torch.device | str, dtype: str | torch.dtype) -> contextlib.AbstractContextManager:
    """The precision of a training forward, one rule on every device: compute in the run's
    ``model.dtype`` (auto: bf16 on CUDA, fp32 on CPU). A half dtype runs under ``torch.autocast``:
    matmuls and attention in that dtype, the fp32 LoRA factors' included, while RMSNorm and the
    log-softmax of the log-probs stay fp32 because the model casts them itself (CPU autocast, unlike
    CUDA's, would not). fp32 runs plain."""
    device, dtype = resolve_device(device, dtype)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
