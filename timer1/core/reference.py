"""The reference policy of GRIP's KL term, without a second model where LoRA allows: the base with the
adapter switched off, the starting adapter swapped in from a snapshot, or (full fine-tuning) a frozen
copy. ``Reference.active`` yields the module whose log-probs are the reference's."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from timer1.core.lora import lora_disabled, lora_modules
from timer1.util.dist import unwrap
from timer1.util.fsdp import gathered


@contextlib.contextmanager
def swapped_adapter(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Run with the LoRA weights temporarily replaced by ``snapshot``, restored after: the reference
    policy when RL continues an SFT adapter, at the cost of one adapter-sized copy."""
    params = dict(unwrap(model).named_parameters())
    missing = [name for name in snapshot if name not in params]
    if missing:
        raise ValueError(f"adapter snapshot names a parameter the model does not have: {missing[0]}")
    saved = {name: params[name].detach().clone() for name in snapshot}
    with torch.no_grad():
        for name, value in snapshot.items():
            params[name].copy_(value)
    try:
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def adapter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every LoRA weight (for ``swapped_adapter``)."""
    core = unwrap(model)
    return {f"{name}.{part}.weight": getattr(m, part).weight.detach().clone()
            for name, m in lora_modules(core).items() for part in ("lora_A", "lora_B")}


@dataclass
class Reference:
    """Where the reference policy of the KL term comes from: ``"base"`` (LoRA switched off),
    ``"adapter"`` (LoRA weights swapped for ``snapshot``) or ``"model"`` (a separate frozen copy)."""

    kind: str
    model: nn.Module | None = None
    snapshot: dict[str, torch.Tensor] | None = None

    @contextlib.contextmanager
    def active(self, policy: nn.Module) -> Iterator[nn.Module]:
        """The module whose log-probs are the reference's, its weights whole when FSDP shards them
        (the adapter is swapped into the gathered weights, never into the shards being trained)."""
        core = unwrap(policy)
        if self.kind == "model":
            with gathered(self.model):
                yield self.model
        elif self.kind == "adapter":
            with gathered(core), swapped_adapter(core, self.snapshot):
                yield core
        else:
            with gathered(core), lora_disabled(core):
                yield core
