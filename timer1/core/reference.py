"""The rollout half of a GRIP step as small functions; train_grip.py runs them in order.

One GRIP step (paper Sec. 3.3; the objective is ``timer1.core.grip``) on B prompts:

1. ``sample_rollout``: the current policy samples ``K = k * G`` completions per prompt;
2. ``score_rollout``: each completion is scored by ``compute_reward`` -> rewards ``(B, K)``;
3. ``timer1.core.grip.make_groups``: G of the K are selected per prompt, with advantages and weights;
4. ``build_batch``: the selected trajectories become one token batch, each distinct prompt stored
   once and each completion pointing to its prompt;
5. ``completion_logprobs``: the one function that turns a batch into per-token log-probs
   ``(N, T)``, encoding each prompt once; the reference pass and every update use it alike.

Old log-probs are not a separate pass: at the first inner update of a rollout the weights are
still the sampling weights, so ``old = logp.detach()`` of that forward is the old policy by
definition (ratio exactly 1 there, whatever the dtype, autocast or checkpointing), and later
inner updates reuse it. The sampler's own log-probs come from another kernel order (KV-cached
decoding) and would bias the ratio in bf16, so they are not used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from timer1.core.lora import lora_disabled, lora_modules
from timer1.util.dist import unwrap


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
        """The module whose log-probs are the reference's."""
        core = unwrap(policy)
        if self.kind == "model":
            yield self.model
        elif self.kind == "adapter":
            with swapped_adapter(core, self.snapshot):
                yield core
        else:
            with lora_disabled(core):
                yield core
