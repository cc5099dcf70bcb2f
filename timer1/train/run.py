"""A training run's live state and its life cycle, the same for train_sft.py and train_grip.py:
open it (claim the directory, seed, build the policy and optimizer), start or resume it, checkpoint
it. No trainer and no callbacks: each script holds its own loop and calls these around it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from timer1.core.policy import Policy, resolve_device, save_policy_files
from timer1.train.checkpoint import CheckpointContents, save_checkpoint
from timer1.train.config import save_config
from timer1.train.resume import resume_run, save_base_model, uses_lora
from timer1.train.run_dir import MetricsLog, Progress, claim_out_dir
from timer1.train.setup import build_optimizer, build_policy
from timer1.util import dist, fsdp
from timer1.util.seeding import capture_rng_state, derive_seed, seed_everything


@dataclass
class Run:
    """What a training loop works with: its config (an SFTConfig or GRIPConfig), process group, run
    directory, policy (its ``model``, unwrapped), optimizer, metrics log, the optimizer steps done
    before this process started (a resume), and, once started, the module the training forward runs
    through (``wrapped``: the DDP wrapper, or the model itself, sharded in place by FSDP2 or alone) and
    the progress line."""

    cfg: Any
    info: dist.DistInfo
    out_dir: Path
    policy: Policy
    optimizer: torch.optim.Optimizer
    log: MetricsLog
    start: int = 0
    wrapped: Optional[torch.nn.Module] = None
    progress: Optional[Progress] = None

    @property
    def model(self) -> torch.nn.Module:
        return self.policy.model


def open_run(cfg: Any, info: dist.DistInfo, adapter: str = "") -> Run:
    """Claim ``cfg.out_dir`` (collective: a refusal stops every rank), build the policy from the same
    seed on every rank (the same LoRA init; DDP also broadcasts rank 0's weights), then give each rank
    its own random stream (dropout masks, sampling), and the optimizer."""
    out_dir = claim_out_dir(cfg.out_dir, cfg.resume)
    seed_everything(cfg.seed)
    policy = build_policy(cfg, info.device, seed=cfg.seed, adapter=adapter)
    seed_everything(derive_seed(cfg.seed, info.rank))
    log = MetricsLog(out_dir / "metrics.jsonl", enabled=info.is_master)
    return Run(cfg, info, out_dir, policy, build_optimizer(policy.model, cfg.optim), log)


def begin(run: Run, total_steps: int, shape: Optional[dict] = None) -> bool:
    """Resume from the newest checkpoint (``--resume=true``) or start fresh (rank 0 writes config.toml,
    and the random-init base a LoRA run's adapters need), then spread the model over the ranks. ``shape``
    (what the run's step plan depends on) must match the resumed run's. False when there is nothing
    left to do."""
    cfg = run.cfg
    state = resume_run(run.out_dir, run.model, run.optimizer, run.info.rank) if cfg.resume else None
    if cfg.resume and state is None:   # stopped before its first checkpoint (Ctrl-C, preemption): nothing to keep
        run.log.truncate_after(0)
        dist.print0(f"{run.out_dir} holds no checkpoint yet (its run stopped before the first): starting from step 0")
    if state is not None:
        resumed_shape = state["extra"].get("run_shape", shape)
        if resumed_shape != shape:
            raise ValueError(f"cannot resume {state['path']}: it was made by a run with {resumed_shape}, "
                             f"this one has {shape} (same data, config and process count are needed)")
        run.start = state["step"]
        if run.start >= total_steps:
            dist.print0(f"{run.out_dir} is finished already: {run.start}/{total_steps} steps ({state['path']}); "
                        f"nothing to do")
            return False
        run.log.truncate_after(run.start)
        dist.print0(f"resumed from {state['path']} after step {run.start}")
    elif run.info.is_master:
        save_config(cfg, run.out_dir / "config.toml")
        if cfg.model.random_init and uses_lora(run.model):
            save_base_model(run.policy, run.out_dir)  # adapters need their base on disk to be loadable
    parallelize(run)
    run.progress = Progress(total_steps, start_step=run.start, enabled=run.info.is_master)
    return True


def parallelize(run: Run) -> None:
    """Spread the model over the ranks as ``--dist`` says: a DDP replica on each, or FSDP2 shards
    (``timer1.util.fsdp``; the optimizer is rebuilt over the shards, holding a resumed state). One
    process trains the model as it is."""
    if run.cfg.dist == "fsdp" and run.info.distributed:
        fsdp.shard_model(run.model, _compute_dtype(run))
        run.optimizer = fsdp.shard_optimizer(run.optimizer, run.model, lambda m: build_optimizer(m, run.cfg.optim))
        run.wrapped = run.model
    else:
        run.wrapped = dist.wrap_ddp(run.model, run.info)


def shard_frozen(run: Run, module: torch.nn.Module) -> None:
    """Shard a frozen copy of the model (GRIP's reference under full fine-tuning) as ``parallelize``
    sharded the model; under DDP or in one process it stays whole."""
    if fsdp.is_sharded(run.model):
        fsdp.shard_model(module, _compute_dtype(run))


def _compute_dtype(run: Run) -> torch.dtype:
    return resolve_device(run.info.device, run.cfg.model.dtype)[1]


def save_run_checkpoint(run: Run, step: int, metrics: dict, score: Optional[float] = None,
                        extra: Optional[dict] = None) -> Optional[Path]:
    """Checkpoint after optimizer step `step`. Collective: every rank must call it (RNG states are
    gathered so a resume restores each rank's own); rank 0 writes, the others return None. Lower
    `score` is better (`timer1.train.validation.checkpoint_score`); the run's keep_best / keep_last
    (`RunConfig`) drive pruning."""
    rng = dist.all_gather_object(capture_rng_state()) if run.info.distributed else capture_rng_state()
    weights, optimizer_state = None, None
    if fsdp.is_sharded(run.model):      # every rank gathers its shards: the same files as one process writes
        weights, optimizer_state = fsdp.full_weights(run.model), fsdp.full_optimizer_state(run.optimizer)
    path = None
    if run.info.is_master:
        policy, keep = run.policy, run.cfg
        base = str(run.out_dir / "base_model") if policy.source == "random" else policy.source
        contents = CheckpointContents(optimizer_state or run.optimizer.state_dict(), rng, run.cfg, metrics, extra,
                                      base_model=base, weights=weights,
                                      write_files=functools.partial(save_policy_files, policy.tokenizer,
                                                                    policy.prompt_format))
        path = save_checkpoint(run.out_dir, step, run.model, contents, score=score,
                               keep_best=keep.keep_best, keep_last=keep.keep_last)
    dist.barrier()
    return path
