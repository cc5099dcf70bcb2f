"""Checkpoints: atomic saves, a resume pointer, keep-best-k, and exact RNG capture/restore.

A run directory holds ``latest`` (the name of the newest complete checkpoint), ``best.json`` (the
validation scores of the kept checkpoints, best first) and ``step_000120/``: the weights (HF layout,
or a PEFT LoRA adapter), ``train_state.pt`` (step, optimizer, RNG states, extra), ``config.toml``
(rerun with ``--config`` this file) and ``metrics.json``.

A checkpoint is written into ``.tmp-step_000120``, fsynced and only then renamed into place, and
``latest`` is rewritten after that: a crash mid-save leaves the previous checkpoint as ``latest``
and no half-written directory under a checkpoint name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from timer1.train.config import save_config
from timer1.util.atomic import replacing_directory, write_json_atomic, write_text_atomic
from timer1.util.dist import unwrap
from timer1.util.seeding import capture_rng_state, restore_rng_state

STEP_DIR = re.compile(r"^step_(\d+)$")


# Temporaries our writers leave if killed mid-write: save_checkpoint's ".tmp-step_X" / ".old-step_X"
# directories, timer1.util.atomic's ".NAME.RANDOM.tmp" files, Qwen2.save_pretrained's ".NAME.tmp-RANDOM"
# directories, and the ".write-test-RANDOM" probe of timer1.train.run_dir.check_writable.
STALE_TEMP = re.compile(r"^\.(tmp-step_\d+|old-step_\d+|.+\.tmp|.+\.tmp-.+|write-test-.+)$")


OLD_STEP = re.compile(r"^\.old-(step_\d+)$")


TRAIN_STATE = "train_state.pt"


LATEST = "latest"


BEST_INDEX = "best.json"


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


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
    """Remove the temporaries a killed run left in `out_dir` and in its ``base_model`` and return
    their names. An ``.old-step_X`` whose step is gone is the only copy, so it is renamed back.
    Call on the master rank while no other process writes the run."""
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
    """``best.json``: {"scores": {dir name: score}, "best": [names, best (lowest) first]}."""
    path = Path(out_dir) / BEST_INDEX
    if not path.is_file():
        return {"scores": {}, "best": []}
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
    directory, its best-scored checkpoint, else its latest."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint or run directory not found: {path}")
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    chosen = best_checkpoint(path) or latest_checkpoint(path)
    if chosen is None or not chosen.is_dir():
        raise FileNotFoundError(f"{path} holds neither model weights nor checkpoints (step_XXXXXX/)")
    return chosen


@dataclass
class CheckpointContents:
    """What a checkpoint directory holds besides the model: the optimizer's state dict, the RNG states
    (captured at save time when None, or one per rank), the run's config and metrics, the script's own
    ``extra`` state, ``write_files(dir)`` for what else it needs to load on its own (tokenizer, prompt
    format), the base model an adapter names, and the model's ``weights`` by state-dict name when the
    model itself does not hold them whole (FSDP shards: ``timer1.util.fsdp.full_weights``)."""

    optimizer_state: Optional[dict] = None
    rng_state: dict | list | None = None
    config: Any = None
    metrics: Optional[dict] = None
    extra: Optional[dict] = None
    write_files: Optional[Callable[[Path], None]] = None
    base_model: str = ""
    weights: Optional[dict] = None


def save_checkpoint(out_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                    contents: CheckpointContents = CheckpointContents(), *, score: Optional[float] = None,
                    keep_best: int = 1, keep_last: int = 1) -> Path:
    """Write ``out_dir/step_XXXXXX`` atomically, point ``latest`` at it, then prune; call on rank 0 only.

    A model with LoRA layers is saved as its adapter, beside `contents`. `score` (lower is better)
    ranks checkpoints for `keep_best`; the `keep_last` newest are kept too.
    """
    from timer1.core.lora import lora_modules, write_adapter  # lazy: lora is only needed here
    out_dir, name = Path(out_dir), step_dir_name(step)
    with replacing_directory(out_dir / name) as tmp:            # .tmp-step_X, renamed when complete
        model = unwrap(model)
        adapter_only = bool(lora_modules(model))
        if adapter_only:
            write_adapter(model, tmp, contents.base_model, state=contents.weights)
        else:
            model.save_pretrained(tmp, state=contents.weights)
        if contents.write_files is not None:
            contents.write_files(tmp)
        torch.save({"step": step, "adapter_only": adapter_only,
                    "optimizer": contents.optimizer_state,
                    "rng": capture_rng_state() if contents.rng_state is None else contents.rng_state,
                    "extra": contents.extra or {}},
                   tmp / TRAIN_STATE)
        if contents.config is not None:
            save_config(contents.config, tmp / "config.toml")
        write_json_atomic(tmp / "metrics.json", {"step": step, **(contents.metrics or {})})
        _fsync_files(tmp)
    write_text_atomic(out_dir / LATEST, name + "\n")
    scores = read_best_index(out_dir)["scores"]
    if score is not None:
        scores[name] = float(score)
    prune_checkpoints(out_dir, scores, keep_best=keep_best, keep_last=keep_last)
    return out_dir / name


def _fsync_files(folder: Path) -> None:
    """Flush every file under `folder` to the disk: a rename is atomic, but after a power loss it can
    be on disk before the data it names unless the data was synced first."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def prune_checkpoints(out_dir: Path, scores: dict[str, float], keep_best: int = 1, keep_last: int = 1) -> None:
    """Delete checkpoints that are neither among the `keep_best` best scored, the `keep_last` newest,
    nor ``latest``; rewrite ``best.json`` with the `scores` of those left."""
    found = [path.name for _, path in list_checkpoints(out_dir)]
    scores = {n: s for n, s in scores.items() if n in found}
    ranked = sorted(scores, key=lambda n: (scores[n], n))
    keep = set(found[-keep_last:] if keep_last > 0 else []) | set(ranked[:keep_best])
    latest = latest_checkpoint(out_dir)
    if latest is not None:
        keep.add(latest.name)
    for name in found:
        if name not in keep:
            shutil.rmtree(out_dir / name)
            scores.pop(name, None)
    write_json_atomic(out_dir / BEST_INDEX, {"scores": scores, "best": [n for n in ranked if n in scores]})


def read_train_state(ckpt_dir: str | os.PathLike) -> dict:
    """``train_state.pt`` of a checkpoint as saved (``step`` = optimizer steps done); nothing restored."""
    path = Path(ckpt_dir) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"no {TRAIN_STATE} in checkpoint {ckpt_dir}")
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_train_state(state: dict, optimizer=None, *, rank: int = 0, source: str | os.PathLike = TRAIN_STATE) -> None:
    """Put a `read_train_state` result back: the optimizer (when given) and this rank's RNGs.
    Model weights are not touched. `source` names the file in error messages."""
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"{source} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    if isinstance(rng, list):
        if rank >= len(rng):
            raise ValueError(f"{source} holds RNG states for {len(rng)} ranks, this is rank {rank}")
        rng = rng[rank]
    restore_rng_state(rng)
