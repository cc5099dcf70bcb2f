"""FSDP2 (``torch.distributed.fsdp.fully_shard``): the training scripts' ``--dist=fsdp``.

DDP keeps the whole model, its gradients and AdamW's two moments on every rank. Full fine-tuning of
Qwen2.5-7B (7.6B parameters) needs about 16 bytes a parameter that way (bf16 weights and gradients,
fp32 master weights, two fp32 moments: ~122 GB), more than one GPU holds. FSDP (Zhao et al. 2023,
"PyTorch FSDP: experiences on scaling fully sharded data parallel"; ZeRO-3 in Rajbhandari et al. 2020)
keeps 1/N of each on each of N ranks, all-gathers a unit's parameters just before its forward (and
again for its backward) and reduce-scatters its gradients after, averaged over ranks as DDP averages
them. FSDP2 holds each parameter as a DTensor sharded along dim 0. The units here are PyTorch's FSDP2
tutorial's and torchtitan's: each decoder layer, then the root (embeddings, final norm and the head,
tied or not), so one layer's full parameters are alive at a time.

Besides the sharded forward and backward, training needs three things from a sharded model:
- ``gathered``: sampling and validation run a number of forwards that differs across ranks (each rank's
  sequences end when they end), while every sharded forward is a collective. Inside the block every
  unit's parameters are all-gathered once and kept, so those forwards run no collective (the memory of
  one full copy in the compute dtype, as a generation engine would hold).
- ``full_weights`` and ``full_optimizer_state``: a checkpoint is the same Hugging Face directory and
  train state a one-process run writes (collective: every rank gathers, rank 0 writes), so runs resume
  under either ``--dist`` and checkpoints load anywhere.
- ``shard_optimizer``: AdamW over the sharded parameters, a resumed full state carried over as shards.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor


def shard_model(model: nn.Module, compute_dtype: torch.dtype) -> nn.Module:
    """Shard ``model`` (a Qwen2) in place: each decoder layer, then the root. A bf16 run all-gathers
    its parameters in bf16 and reduces gradients in fp32 (``MixedPrecisionPolicy``), so the master
    weights and AdamW's state stay fp32 shards; an fp32 run computes as it stores."""
    policy = (MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
              if compute_dtype != torch.float32 else MixedPrecisionPolicy())
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=policy, reshard_after_forward=True)
    fully_shard(model, mp_policy=policy, reshard_after_forward=ROOT_RESHARDS)
    return model


ROOT_RESHARDS = False   # the root's weights stay whole after its forward: the head's log-probs (computed
                        # after the forward returns) and the backward need them at once (FSDP2's default)


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def _units(model: nn.Module) -> list[FSDPModule]:
    """The model's FSDP units, the root last (the order every rank gathers them in)."""
    return [m for m in reversed(list(model.modules())) if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the sharded ``model``'s parameters are whole on every rank (all-gathered once,
    resharded neither after a forward nor after a backward), so forwards make no collective and ranks may
    run different numbers of them; a backward still reduce-scatters the gradients as it ends. Resharded
    after the block: an optimizer step updates the shards, so a block never spans one. A model that is
    not sharded passes through."""
    if not is_sharded(model):
        yield model
        return
    units = _units(model)
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.set_reshard_after_backward(False, recurse=False)
        unit.unshard()
    try:
        yield model
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(unit is not model or ROOT_RESHARDS, recurse=False)
            unit.set_reshard_after_backward(True, recurse=False)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value on the CPU (a collective), a plain tensor's as it is."""
    whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
    return whole.detach().to("cpu")


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by its state-dict name, whole, on the CPU (collective: every rank calls it)."""
    return {name: whole(param) for name, param in model.named_parameters(remove_duplicate=False)}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with each sharded moment gathered whole: the layout a one-process
    run saves (collective: every rank calls it)."""
    state = optimizer.state_dict()
    state["state"] = {index: {key: whole(value) if isinstance(value, torch.Tensor) else value
                              for key, value in sorted(entry.items())}
                      for index, entry in sorted(state["state"].items())}
    return state


def shard_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module,
                    build: Callable[[nn.Module], torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """``build(model)``'s optimizer over the sharded ``model``, holding ``optimizer``'s state (built
    over the same parameters before sharding; a resumed run's moments) as shards of each parameter's
    layout. Collective when there is state to shard."""
    sharded = build(model)
    state = optimizer.state_dict()
    params = [p for group in sharded.param_groups for p in group["params"]]  # state-dict index order
    for index, entry in state["state"].items():
        param = params[index]
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:   # the moments, not ``step``
                entry[key] = distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    sharded.load_state_dict(state)
    return sharded


def grad_norm(norm: torch.Tensor) -> float:
    """``clip_grad_norm_``'s total norm as a number (a DTensor's over all shards when sharded)."""
    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
