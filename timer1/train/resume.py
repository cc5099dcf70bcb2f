"""Reading a run's checkpoints back: the newest readable one into the model and optimizer (with each
rank's RNG states), checked before anything is copied; the random-init base a LoRA run's adapters
need; a digest of the weights that tells whether DDP ranks ended equal."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from timer1.core.lora import ADAPTER_WEIGHTS, PEFT_PREFIX, lora_modules
from timer1.core.model import Qwen2
from timer1.core.policy import Policy, save_policy
from timer1.train.checkpoint import checkpoints_newest_first, read_train_state, restore_train_state
from timer1.train.setup import loaded
from timer1.util import dist, fsdp


def uses_lora(model: torch.nn.Module) -> bool:
    return bool(lora_modules(dist.unwrap(model)))


def save_base_model(policy: Policy, out_dir: str | os.PathLike) -> Path:
    """A LoRA run on a random-init base saves that base once as ``out_dir/base_model``, so its adapter
    checkpoints load with ``load_policy(out_dir/base_model, adapter=out_dir/step_XXXXXX)``. Rank 0."""
    path = Path(out_dir) / "base_model"
    core = dist.unwrap(policy.model)
    base_state = {k: v for k, v in core.state_dict().items() if ".lora_" not in k}  # LoRALinear keeps `weight`
    base = type(core)(core.config)
    missing, unexpected = base.load_state_dict(base_state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ValueError(f"base weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    save_policy(Policy(base, policy.tokenizer, policy.source, policy.prompt_format), path)
    return path


def read_weights(ckpt_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A checkpoint's trainable weights by parameter name: LoRA A/B of an adapter checkpoint, else
    every weight of the full model (in `dtype`, on the CPU)."""
    if (ckpt_dir / ADAPTER_WEIGHTS).is_file():
        return {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(ckpt_dir / ADAPTER_WEIGHTS)).items()}
    return Qwen2.from_pretrained(ckpt_dir, dtype=dtype, device="cpu").state_dict()


def copy_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], ckpt_dir: Path) -> None:
    """Copy `read_weights` output into `model` (with LoRA layers for a LoRA checkpoint); every name and
    shape is checked before any copy."""
    params = dict(dist.unwrap(model).named_parameters(remove_duplicate=False))  # tied lm_head.weight too
    for key, tensor in tensors.items():
        if key not in params:
            raise ValueError(f"checkpoint {ckpt_dir} holds {key}, which this model does not have")
        if params[key].shape != tensor.shape:
            raise ValueError(f"checkpoint {ckpt_dir}: {key} has shape {tuple(tensor.shape)}, "
                             f"the model {tuple(params[key].shape)}")
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor)


def read_checkpoint(ckpt_dir: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, train state) of a checkpoint, both read before anything is restored."""
    weights_file = ADAPTER_WEIGHTS if (ckpt_dir / ADAPTER_WEIGHTS).is_file() else "the model weights"
    tensors = loaded(f"{weights_file} of {ckpt_dir.name}", lambda: read_weights(ckpt_dir, dtype))
    state = loaded(f"train_state.pt of {ckpt_dir.name}", lambda: read_train_state(ckpt_dir))
    return tensors, state


def resume_run(out_dir: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               rank: int = 0) -> dict | None:
    """Load the newest readable checkpoint in `out_dir` into `model` and `optimizer`, restore this
    rank's RNGs, return its train state (``step``, ``extra``, ``path``); None when the directory holds
    no checkpoint at all (a run stopped before its first: the caller starts from step 0). An unreadable
    checkpoint (a full disk, a partial copy) is skipped with a warning; one that reads but does not fit
    is an error (an older one would not fit either). Every rank must pick the same one (checked)."""
    dtype = next(dist.unwrap(model).parameters()).dtype
    skipped, found = [], None
    for ckpt in checkpoints_newest_first(out_dir):
        try:
            found = ckpt, *read_checkpoint(ckpt, dtype)
            break
        except (ValueError, OSError) as err:
            skipped.append(f"{ckpt.name}, unreadable ({err})")
    chosen = dist.all_gather_object(found[0].name if found else None)   # one collective, whatever was found
    if len(set(chosen)) > 1:
        raise ValueError(f"ranks would resume from different checkpoints ({chosen}): "
                         f"is {out_dir} the same readable directory on every node?")
    if found is None:
        if skipped:
            raise FileNotFoundError(f"--resume=true but no checkpoint in {out_dir} can be read: {'; '.join(skipped)}")
        return None
    ckpt, tensors, state = found
    copy_weights(model, tensors, ckpt)
    restore_train_state(state, optimizer, rank=rank, source=ckpt / "train_state.pt")
    for reason in skipped:
        dist.print0(f"warning: skipped checkpoint {reason}; resuming from {ckpt.name}", file=sys.stderr)
    state["path"] = str(ckpt)
    return state


def weights_digest(model: torch.nn.Module, trainable_only: bool = False) -> str:
    """sha256 over each parameter's name and fp32 bytes: equal digests, equal weights. DDP runs log each
    rank's; `trainable_only` hashes what DDP keeps in sync (a 7B LoRA run: megabytes, not the model).
    FSDP shards are gathered whole first (collective: every rank calls it)."""
    digest = hashlib.sha256()
    for name, param in sorted(dist.unwrap(model).named_parameters()):
        if param.requires_grad or not trainable_only:
            digest.update(name.encode())
            digest.update(fsdp.whole(param).float().contiguous().numpy().tobytes())
    return digest.hexdigest()
