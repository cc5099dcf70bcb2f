"""Checkpoints: atomic saves, a resume pointer, keep-best-k, and exact RNG capture/restore.

Layout of a run directory::

    out_dir/
      latest                 text file naming the newest complete checkpoint ("step_000120")
      best.json              validation scores of the kept checkpoints and their ranking
      step_000120/
        model.safetensors, config.json         full model (Hugging Face layout, model.save_pretrained)
        adapter_model.safetensors, adapter_config.json   or LoRA adapter (PEFT layout, lora.save_adapter)
        train_state.pt       step, optimizer, scheduler, RNG states, anything extra
        config.toml          the resolved run config (repeat the run with --config this file);
                             a plain dict config is written as run_config.json instead
        metrics.json         metrics logged at this step

A checkpoint is written into ``out_dir/.tmp-step_000120``, its files are fsynced, and it is renamed
into place only then; ``latest`` is rewritten (atomically) after that, so a crash mid-save leaves the
previous checkpoint as ``latest`` and no half-written directory under a checkpoint name. A kill leaves
only temporaries behind, which `clean_stale_temps` removes at the next start. A checkpoint damaged
some other way (a disk that filled, a partial copy) is skipped on resume: `checkpoints_newest_first`
gives the candidates and the loader tries them in turn.

Call `save_checkpoint` on the master rank only. For an exact resume under torchrun, gather every
rank's `capture_rng_state()` (`dist.all_gather_object`) and pass the list; `load_train_state` then
restores the entry of the calling rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from timer1.atomic import write_text_atomic
from timer1.config import save_config

STEP_DIR = re.compile(r"^step_(\d+)$")
# Temporaries our writers leave if killed mid-write: save_checkpoint's ".tmp-step_X" / ".old-step_X"
# directories, timer1.atomic's ".NAME.RANDOM.tmp" files, Qwen2.save_pretrained's ".NAME.tmp-RANDOM"
# directories, and the ".write-test-RANDOM" probe of timer1.train_utils.check_writable.
STALE_TEMP = re.compile(r"^\.(tmp-step_\d+|old-step_\d+|.+\.tmp|.+\.tmp-.+|write-test-.+)$")
OLD_STEP = re.compile(r"^\.old-(step_\d+)$")
TRAIN_STATE = "train_state.pt"
LATEST = "latest"
BEST_INDEX = "best.json"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


# ----------------------------------------------------------------------------- RNG

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*keys: int) -> int:
    """A seed for one use, e.g. ``derive_seed(seed, step, rank, call)``: NumPy's SeedSequence hashes the
    whole tuple, so distinct tuples give unrelated seeds (``base * 1024 + rank + call`` made rank r's
    call c+1 equal rank r+1's call c)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


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


# ----------------------------------------------------------------------------- listing

def list_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in `out_dir` as (step, path), oldest first (temp dirs are ignored)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for child in out_dir.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / TRAIN_STATE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Optional[Path]:
    """The checkpoint named by ``out_dir/latest``, else the highest step on disk, else None."""
    out_dir = Path(out_dir)
    pointer = out_dir / LATEST
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if STEP_DIR.match(name) and (out_dir / name / TRAIN_STATE).is_file():
            return out_dir / name
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def checkpoints_newest_first(out_dir: str | os.PathLike) -> list[Path]:
    """Every checkpoint to try on resume, best candidate first: the one ``latest`` names, then the
    others from the highest step down (a caller skips the ones it cannot read)."""
    found = [path for _, path in reversed(list_checkpoints(out_dir))]
    latest = latest_checkpoint(out_dir)
    return [latest] + [path for path in found if path != latest] if latest is not None else found


def clean_stale_temps(out_dir: str | os.PathLike) -> list[str]:
    """Remove the temporaries a killed run left in `out_dir` and in its ``base_model`` (see
    STALE_TEMP) and return their names. ``.old-step_X`` is the previous copy of a step being re-saved:
    when the kill came between the two renames it is the only copy, so it is renamed back instead.
    Call on the master rank while no other process writes the run (at the start of a run)."""
    out_dir = Path(out_dir)
    cleaned = []
    for folder in (out_dir, out_dir / "base_model"):
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if not STALE_TEMP.match(child.name):
                continue
            old = OLD_STEP.match(child.name)
            if old and not (folder / old.group(1)).exists():
                os.replace(child, folder / old.group(1))
            elif child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
            cleaned.append(str(child.relative_to(out_dir)))
    return cleaned


def read_best_index(out_dir: str | os.PathLike) -> dict:
    """``best.json``: {"higher_is_better": bool, "scores": {dir name: score}, "best": [names, best first]}."""
    path = Path(out_dir) / BEST_INDEX
    if not path.is_file():
        return {"higher_is_better": False, "scores": {}, "best": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def best_checkpoint(out_dir: str | os.PathLike) -> Optional[Path]:
    """The kept checkpoint with the best validation score, or None if none was scored."""
    best = read_best_index(out_dir)["best"]
    return Path(out_dir) / best[0] if best else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A directory to load weights from: `path` itself if it holds weights, or, for a run
    directory, its best-scored checkpoint, else its latest. Lets configs name a run
    (``model.path = "runs/sft_tiny"``) instead of a step."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint or run directory not found: {path}")
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    chosen = best_checkpoint(path) or latest_checkpoint(path)
    if chosen is None or not chosen.is_dir():
        raise FileNotFoundError(f"{path} holds neither model weights nor checkpoints (step_XXXXXX/)")
    return chosen


# ----------------------------------------------------------------------------- saving

def _save_weights(model: torch.nn.Module, path: Path, adapter_only: bool, base_model: str = "") -> None:
    """Full model in the HF layout, or only the LoRA adapter in PEFT's layout."""
    model = model.module if hasattr(model, "no_sync") and hasattr(model, "module") else model  # unwrap DDP
    if adapter_only:
        from timer1.lora import save_adapter                     # lazy: lora is optional here
        save_adapter(model, path, base_model_name_or_path=base_model)
    else:
        model.save_pretrained(path)


def _plain(value: Any) -> Any:
    """JSON fallback for metric values: 0-d tensors and NumPy scalars become numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value {value!r} is not JSON-serialisable")


def _write_train_state(path: Path, step: int, optimizer, scheduler, rng_state, extra: Optional[dict],
                       adapter_only: bool) -> None:
    state = {
        "step": step,
        "adapter_only": adapter_only,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state,
        "extra": extra or {},
    }
    torch.save(state, path)


def save_checkpoint(out_dir: str | os.PathLike, step: int, model: torch.nn.Module, optimizer=None,
                    scheduler=None, rng_state: dict | list | None = None, config: Any = None,
                    metrics: Optional[dict] = None, *, adapter_only: bool = False,
                    score: Optional[float] = None, higher_is_better: bool = False,
                    keep_best: int = 1, keep_last: int = 1, extra: Optional[dict] = None,
                    tokenizer: Any = None, base_model: str = "") -> Path:
    """Write ``out_dir/step_XXXXXX`` atomically, point ``latest`` at it, then prune.

    `rng_state` is `capture_rng_state()` (captured now if None) or a per-rank list of them.
    `score` is the validation score at this step (lower is better unless `higher_is_better`);
    pruning keeps the `keep_best` best-scored checkpoints, the `keep_last` newest ones, and always
    the one just written. `extra` holds any further resumable state (tensors and plain values).
    A `tokenizer` (anything with ``save_pretrained(dir)``) is saved beside the weights, so the
    checkpoint directory loads on its own (needed when the tokenizer was trained for a tiny model).
    `base_model` is recorded as an adapter's ``base_model_name_or_path``.
    Returns the checkpoint directory.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    final, tmp = out_dir / name, out_dir / f".tmp-{name}"
    if tmp.exists():                                             # left by an earlier crash
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _save_weights(model, tmp, adapter_only, base_model)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _write_train_state(tmp / TRAIN_STATE, step, optimizer, scheduler,
                           capture_rng_state() if rng_state is None else rng_state, extra, adapter_only)
        if config is not None:
            if dataclasses.is_dataclass(config):
                save_config(config, tmp / "config.toml")
            else:
                write_text_atomic(tmp / "run_config.json", json.dumps(config, indent=2) + "\n")
        metrics_text = json.dumps({"step": step, **(metrics or {})}, indent=2, default=_plain)
        write_text_atomic(tmp / "metrics.json", metrics_text + "\n")
        _fsync_files(tmp)
        if final.exists():                                       # re-saving a step (e.g. after a resume)
            old = out_dir / f".old-{name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(out_dir / LATEST, name + "\n")
    _record_score(out_dir, name, score, higher_is_better)
    prune_checkpoints(out_dir, keep_best=keep_best, keep_last=keep_last)
    return final


def _fsync_files(folder: Path) -> None:
    """Flush every file under `folder` to the disk: a rename is atomic, but after a power loss it can
    be on disk before the data it names unless the data was synced first."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def _record_score(out_dir: Path, name: str, score: Optional[float], higher_is_better: bool) -> None:
    index = read_best_index(out_dir)
    index["higher_is_better"] = higher_is_better
    if score is not None:
        index["scores"][name] = float(score)
    _write_best_index(out_dir, index)


def _write_best_index(out_dir: Path, index: dict) -> None:
    sign = -1.0 if index["higher_is_better"] else 1.0
    index["best"] = sorted(index["scores"], key=lambda n: (sign * index["scores"][n], n))
    write_text_atomic(out_dir / BEST_INDEX, json.dumps(index, indent=2) + "\n")


def prune_checkpoints(out_dir: str | os.PathLike, keep_best: int = 1, keep_last: int = 1) -> list[Path]:
    """Delete checkpoints that are neither among the `keep_best` best scored, the `keep_last`
    newest, nor ``latest``. Returns the deleted directories."""
    out_dir = Path(out_dir)
    found = list_checkpoints(out_dir)
    names = [p.name for _, p in found]
    index = read_best_index(out_dir)
    index["scores"] = {n: s for n, s in index["scores"].items() if n in names}
    keep = set(names[-keep_last:] if keep_last > 0 else [])
    sign = -1.0 if index["higher_is_better"] else 1.0
    keep |= set(sorted(index["scores"], key=lambda n: (sign * index["scores"][n], n))[:keep_best])
    latest = latest_checkpoint(out_dir)
    if latest is not None:
        keep.add(latest.name)
    deleted = []
    for _, path in found:
        if path.name not in keep:
            shutil.rmtree(path)
            index["scores"].pop(path.name, None)
            deleted.append(path)
    _write_best_index(out_dir, index)
    return deleted


# ----------------------------------------------------------------------------- loading

def read_train_state(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``train_state.pt`` of a checkpoint as saved: ``step`` (the step the checkpoint was taken after),
    ``optimizer``, ``scheduler``, ``rng``, ``extra``, ``adapter_only``. Nothing is restored."""
    path = Path(ckpt_dir) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAIN_STATE} in checkpoint {ckpt_dir}")
    return torch.load(path, map_location=map_location, weights_only=True)


def restore_train_state(state: dict, optimizer=None, scheduler=None, *, restore_rng: bool = True,
                        rank: int = 0, source: str | os.PathLike = TRAIN_STATE) -> None:
    """Put a `read_train_state` result back: optimizer/scheduler (when given) and this rank's RNGs.
    `source` names the file in error messages."""
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"{source} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        if state["scheduler"] is None:
            raise ValueError(f"{source} holds no scheduler state")
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state["rng"] is not None:
        rng = state["rng"]
        if isinstance(rng, list):
            if rank >= len(rng):
                raise ValueError(f"{source} holds RNG states for {len(rng)} ranks, this is rank {rank}")
            rng = rng[rank]
        restore_rng_state(rng)


def load_train_state(ckpt_dir: str | os.PathLike, optimizer=None, scheduler=None, *,
                     restore_rng: bool = True, rank: int = 0,
                     map_location: str | torch.device = "cpu") -> dict:
    """`read_train_state`, then `restore_train_state`; returns the state. Model weights are not touched:
    load them with ``Qwen2.from_pretrained(ckpt_dir)`` or ``lora.load_adapter(model, ckpt_dir)``."""
    state = read_train_state(ckpt_dir, map_location)
    restore_train_state(state, optimizer, scheduler, restore_rng=restore_rng, rank=rank,
                        source=Path(ckpt_dir) / TRAIN_STATE)
    return state
