"""Seeds and RNG states: one seed for every library, seeds derived from (seed, step, rank, ...) keys, and
the exact capture and restore of Python's, numpy's and torch's RNG states that a resume needs."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*keys: int) -> int:
    """A seed for one use, e.g. ``derive_seed(seed, step, rank, call)``: NumPy's SeedSequence hashes the
    whole tuple, so distinct tuples give unrelated seeds (arithmetic mixing makes them collide)."""
    state = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])
    return state >> 1  # a Python int: numpy 1.x cannot shift a uint64 by a Python int


def capture_rng_state() -> dict:
    """Every RNG the training loop draws from, as tensors and plain values (safe for
    ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Put the RNGs back exactly as `capture_rng_state` found them."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(f"checkpoint holds RNG states for {len(state['cuda'])} CUDA devices, "
                             f"{torch.cuda.device_count()} are visible")
        torch.cuda.set_rng_state_all(state["cuda"])
