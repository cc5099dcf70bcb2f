"""torchrun/DDP helpers that degrade to no-ops in a single process.

``python train_grip.py`` runs one process, ``torchrun --nproc_per_node=N train_grip.py`` N: torchrun
sets RANK, LOCAL_RANK and WORLD_SIZE, `init_distributed` joins NCCL on GPUs or Gloo on CPU. As in
nanoGPT, rank 0 logs and saves, and gradients sync only on an accumulation's last micro-step
(`no_sync`). Every rank must run the same collectives in the same order, hence the same number of
backward passes: `equalize` pads a rank's micro-batches with repeats whose loss the caller zeroes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    is_master: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group if launched by torchrun, else describe a single process. `device`
    forces "cpu" or "cuda"; by default CUDA when present (rank r on GPU LOCAL_RANK), else CPU."""
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    if not under_torchrun():
        dev = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        return DistInfo(rank=0, local_rank=0, world_size=1, device=dev, is_master=True)

    die_with_launcher()
    rank, local_rank, world = _env_int("RANK"), _env_int("LOCAL_RANK"), _env_int("WORLD_SIZE")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} "
                             "CUDA devices are visible")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)                              # before NCCL init: one GPU per rank
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=dev, is_master=rank == 0)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_launcher() -> None:
    """SIGKILL this worker when its parent, the torchrun launcher, dies (``prctl(PR_SET_PDEATHSIG)``,
    Linux only). torchrun starts workers in sessions of their own, so a killed launcher (OOM, lost ssh)
    would leave them training into a run the user believes stopped. SIGKILL: no handler may run a
    collective with dying peers, and checkpoints survive a kill at any instant (atomic renames)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str | None = None, timeout_s: float = 1800.0) -> Iterator[DistInfo]:
    """``with distributed() as info: main(cfg, info)`` joins the group and always leaves it, even
    on an exception. Keep the DDP model local to ``main`` (or ``del`` it) so it is freed before the
    group is destroyed: a DDP reducer still alive at interpreter exit can abort in Gloo's teardown."""
    info = init_distributed(device=device, timeout_s=timeout_s)
    try:
        yield info
    except BaseException:
        cleanup()
        raise
    # a normal end: wait until every rank is done before tearing the group down, or a rank still
    # finishing its last collective sees its peer's connections close and Gloo aborts it (SIGABRT)
    barrier()
    cleanup()


def rank() -> int:
    """This process's rank (torchrun's RANK before the group is joined, 0 without torchrun)."""
    if _active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_master() -> bool:
    return rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    if is_master():
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if _active():
        dist.barrier()


def _collective_device() -> torch.device:
    """NCCL only reduces CUDA tensors; Gloo reduces CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean over ranks, of the kind (tensor or float) given; the input is not modified."""
    if not _active():
        return value.clone() if isinstance(value, torch.Tensor) else float(value)
    if isinstance(value, torch.Tensor):
        dtype = value.dtype if value.is_floating_point() else torch.float64   # integer means are fractions
        buf = value.detach().to(device=_collective_device(), dtype=dtype, copy=True)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return (buf / dist.get_world_size()).to(value.device)
    buf = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.item() / dist.get_world_size()


def all_reduce_max(value: int | float) -> int | float:
    if not _active():
        return value
    buf = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(buf, op=dist.ReduceOp.MAX)
    return type(value)(buf.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Every rank gets rank `src`'s (picklable) object; other ranks' arguments are ignored."""
    if not _active():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_object(obj: Any) -> list:
    """A list of every rank's object, in rank order."""
    if not _active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_by_stride(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Items rank, rank+world, ...: each item on exactly one rank, shard sizes within one of each other."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard_by_stride: need 0 <= rank < world, got rank={rank}, world={world}")
    return list(items[rank::world])


def equalize(items: Sequence[T]) -> list[tuple[T, bool]]:
    """``[(item, is_real)]``: this rank's micro-batches padded to the largest count over ranks with
    repeats (``is_real=False``, loss scaled by 0), so DDP's one all-reduce per backward stays in step."""
    count = all_reduce_max(len(items))
    if count > 0 and not items:
        raise ValueError("equalize: this rank has no items to repeat as padding; give every rank at least one")
    return [(items[i % len(items)], i < len(items)) for i in range(count)]


def no_sync(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync()`` unless `sync` (the last micro-step) or the model is not DDP-wrapped:
    ``with no_sync(model, sync=(micro == accum - 1)): loss.backward()``."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def wrap_ddp(model: torch.nn.Module, info: DistInfo, **kwargs: Any) -> torch.nn.Module:
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    return DDP(model, device_ids=device_ids, **kwargs)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (what you save and sample from)."""
    return model.module if hasattr(model, "no_sync") and hasattr(model, "module") else model


def fail(message: str, code: int = 2) -> None:
    """One line on stderr (from rank 0 only), leave the group, exit: how the CLIs report bad input."""
    if is_master():
        print(f"error: {message}", file=sys.stderr, flush=True)
    cleanup()
    if under_torchrun():
        leave_now(code)
    raise SystemExit(code)


def leave_now(code: int) -> None:
    """End a finished torchrun worker without the interpreter's teardown, where destroying Gloo's
    background threads can abort (SIGABRT) a run that finished."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
