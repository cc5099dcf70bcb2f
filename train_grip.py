"""GRIP reinforcement learning for Time-R1 (arXiv 2506.10630, Sec. 3.3), after the SFT warm-up.

One process (CPU or one GPU):

    python train_grip.py --config configs/grip_tiny.toml
    python train_grip.py --config configs/smoke_grip.toml --out_dir=/tmp/smoke      # seconds, random model

DDP on one node with 4 GPUs (the 7B recipe: bf16 weights, fp32 LoRA, activation checkpointing):

    torchrun --standalone --nproc_per_node=4 train_grip.py --config configs/grip_qwen2.5_7b.toml \\
        --model.path=/models/Qwen2.5-7B-Instruct --sft_adapter=runs/sft_qwen2.5_7b

Several nodes (run the same command on every node, node_rank 0..nnodes-1; MASTER is node 0's address):

    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=MASTER --master_port=29500 \\
        train_grip.py --config configs/grip_qwen2.5_7b.toml

Continue a killed run from its latest checkpoint (same command plus ``--resume=true``; the step count,
Adam state, RNG states and metrics log all continue, and the result equals an uninterrupted run).

Each step, visible in ``main`` below: draw ``batch`` training windows (train region only); split them
across ranks by stride (a prompt and all its samples stay on one rank); render prompts; sample
``k * G`` completions per prompt from the current policy; score them (format, length, mse,
seasonal, trend, change-point rewards); select G per prompt and compute advantages and weights;
compute old and reference log-probs; then ``mu`` optimizer steps over the same rollout (so the
clipped ratio matters), each over micro-batches with DDP gradient sync on the last micro-batch
only. Every rank runs the same number of micro-batches (``dist.equalize``). Rank 0 logs JSONL
(``out_dir/metrics.jsonl``) and a progress line, validates greedy forecasts (MSE on held-out
windows) every ``eval_every`` steps, and saves checkpoints, keeping the ``keep_best`` best by
validation MSE. The pieces live in ``timer1/rollout.py`` and ``timer1/grip.py``.

Speed and memory knobs: ``share_prompts`` (default on) runs each group's prompt once in the loss and
reference forwards (a KV cache copied to the group's rows) instead of once per row; the update
falls back to one forward per row under ``model.gradient_checkpointing``. ``rollout_prompts`` caps
the prompts per sampler call (the KV cache holds ``rollout_prompts * k * G`` rows). Old log-probs
are the sampler's own when they equal the loss's (fp32, top_p = 1), else recomputed
(``old_logprobs``).

Starting point: ``--sft_adapter=DIR`` (a PEFT adapter directory or an SFT run directory) continues
training that adapter, and the KL reference is the SFT adapter itself (``reference="init"``; its
weights are swapped in for the reference pass, no second model); ``--reference=base`` uses the
base model with LoRA off instead. Without an adapter, ``model.path`` (an HF directory or a full SFT
run directory) is the start and the reference: with LoRA the reference is the same model with
LoRA off; with full fine-tuning (``--lora.enabled=false``) a frozen copy is kept (twice the
weights' memory; ``--beta=0`` drops it).

The paper's relatives are configs of the same loop:

    GRPO:                 --selection=uniform --weights=uniform --k=1
    pairwise ranking RL:  --selection=uniform --weights=uniform --k=1 --G=2
    official Time-R1:     --selection=uniform --weights=uniform --k=1 --loss_agg=token-mean --beta=0.001
                          --reward=official

Paper defaults (GRIPConfig): G 16, k 3, batch 16, eps 0.2, beta 0.04, lr 1e-6, temperature 1,
max completion 3000 tokens.
"""

from __future__ import annotations

import copy
import hashlib
import time

import numpy as np
import torch

from timer1 import dist
from timer1.checkpoint import resolve_checkpoint, seed_everything
from timer1.data import evenly_spaced
from timer1.config import GRIPConfig, load_config_or_exit
from timer1.grip import Variant, make_groups
from timer1.lora import lora_modules
from timer1.rollout import (BatchTotals, Reference, adapter_snapshot, build_batch, micro_loss,
                            old_logprob_source, old_logprobs, reference_logprobs, sample_rollout,
                            score_rollout, with_logprobs)
from timer1.task import load_windows, prompt_format_from, prompt_ids, reward_target, window_spec_from
from timer1.train_utils import (MetricsLog, Progress, autocast, build_optimizer, build_policy, check_writable,
                                checkpoint_score, evaluate_forecasts, lr_at, resume_run, save_base_model, save_run_checkpoint,
                                set_lr, trainable_parameters)


def make_reference(cfg: GRIPConfig, model: torch.nn.Module, from_adapter: bool) -> Reference | None:
    """The KL reference (see the module docstring); None when beta is 0."""
    if cfg.beta == 0:
        return None
    if lora_modules(model):
        if from_adapter and cfg.reference == "init":
            return Reference("adapter", snapshot=adapter_snapshot(model))
        return Reference("base")
    frozen = copy.deepcopy(model).eval().requires_grad_(False)  # full fine-tuning: a second copy
    return Reference("model", model=frozen)


def draw_windows(windows: list, batch: int, seed: int, step: int) -> list:
    """The step's prompts: ``batch`` windows drawn from (seed, step) only, so every rank draws the
    same ones and a resumed run draws what the uninterrupted run would have."""
    rng = np.random.default_rng([seed, step])
    picks = rng.choice(len(windows), size=batch, replace=len(windows) < batch)
    return [windows[i] for i in picks]


def batch_totals(batch, info: dist.DistInfo) -> BatchTotals:
    """Rows, weight and tokens summed over ranks (micro-batch losses are scaled by them)."""
    local = torch.tensor([batch.num_rows, float(batch.weights.sum()), batch.num_tokens], dtype=torch.float64)
    total = dist.all_reduce_mean(local) * info.world_size if info.distributed else local
    return BatchTotals(rows=int(round(total[0].item())), weight=total[1].item(), tokens=int(round(total[2].item())),
                       world=info.world_size)


def main(cfg: GRIPConfig, info: dist.DistInfo) -> None:
    master = info.is_master
    if cfg.batch < info.world_size:
        raise ValueError(f"batch={cfg.batch} prompts cannot be split over {info.world_size} ranks (need batch >= ranks)")
    out_dir = str(check_writable(cfg.out_dir))  # every rank checks, so a failure stops them all
    seed_everything(cfg.seed)  # same LoRA init on every rank (DDP also broadcasts rank 0's weights)

    # ---- data: training windows (train region) and held-out validation windows (validation region)
    spec = window_spec_from(cfg.data)
    train_set = load_windows(spec, "train", cfg.seed)
    val_set = evenly_spaced(load_windows(spec, "val", cfg.seed), cfg.eval_windows)
    fmt = prompt_format_from(cfg.data)

    # ---- policy, reference, optimizer
    sft = str(resolve_checkpoint(cfg.sft_adapter)) if cfg.sft_adapter else ""
    policy = build_policy(cfg, info.device, seed=cfg.seed, adapter=sft)
    model, tokenizer = policy.model, policy.tokenizer
    model.gradient_checkpointing = cfg.model.gradient_checkpointing
    reference = make_reference(cfg, model, from_adapter=bool(sft))
    optimizer = build_optimizer(model, cfg.optim)
    log = MetricsLog(f"{out_dir}/metrics.jsonl", enabled=master)
    start = 0
    if cfg.resume:
        state = resume_run(out_dir, model, optimizer, info.rank)
        start = state["step"]
        log.truncate_after(start)
        dist.print0(f"resumed from {state['path']} after step {start}")
    elif master and cfg.model.random_init and lora_modules(model):
        save_base_model(policy, out_dir)  # adapters need their base on disk to be loadable
    ddp = dist.wrap_ddp(model, info)
    old_source = old_logprob_source(model, cfg.top_p, requested=cfg.old_logprobs)
    variant = Variant(cfg.selection, cfg.weights, cfg.G, cfg.k)
    group_size = cfg.G if cfg.micro_batch % cfg.G == 0 else None  # per-group metrics need whole groups
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    n_params = sum(p.numel() for p in trainable_parameters(model))
    dist.print0(f"GRIP: {len(train_set)} train / {len(val_set)} val windows, {info.world_size} rank(s), "
                f"{n_params:,} trainable parameters, old log-probs: {old_source}, "
                f"reference {reference.kind if reference else 'none (beta=0)'}")
    progress = Progress(cfg.steps, start_step=start, enabled=master)

    for step in range(start, cfg.steps):
        t_start = time.perf_counter()
        set_lr(optimizer, lr := lr_at(step, cfg.steps, cfg.optim))
        # 1. this rank's prompts: the step's windows split by stride, each group stays on one rank
        windows = dist.shard_by_stride(draw_windows(train_set, cfg.batch, cfg.seed, step), info.rank, info.world_size)
        prompts = [prompt_ids(tokenizer, w, fmt) for w in windows]
        targets = [reward_target(w, fmt) for w in windows]  # (H,) each, on the completion's scale
        # 2. rollout: k*G samples per prompt from the current (old) policy
        with autocast(info.device):
            rollout = sample_rollout(model, tokenizer, prompts, K=cfg.k * cfg.G, max_new_tokens=cfg.max_completion,
                                     temperature=cfg.temperature, top_p=cfg.top_p,
                                     seed=(cfg.seed * 1_000_003 + step) * 1024 + info.rank,
                                     prompts_per_call=cfg.rollout_prompts)
        t_gen = time.perf_counter()
        # 3. rewards (B, K) and their terms; select G per prompt; advantages and weights
        rewards, terms = score_rollout(rollout, targets, variant=cfg.reward, digit_bonus=cfg.digit_bonus)
        selector = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 1024 + info.rank)
        groups = make_groups(rewards, variant, generator=selector)  # (B, G) each
        batch = build_batch(rollout, groups, pad_id).to(info.device)  # N = B * G rows
        t_reward = time.perf_counter()
        # 4. old and reference log-probs (N, T), no grad
        with autocast(info.device):
            old = old_logprobs(model, batch, source=old_source, temperature=cfg.temperature,
                               micro_batch=cfg.micro_batch, share_prompts=cfg.share_prompts)
            ref = None if reference is None else reference_logprobs(
                model, reference, batch, temperature=cfg.temperature, micro_batch=cfg.micro_batch,
                share_prompts=cfg.share_prompts)
        batch = with_logprobs(batch, old, ref)
        t_logp = time.perf_counter()
        # 5. mu optimizer steps on this rollout; sync gradients on the last micro-batch only
        totals = batch_totals(batch, info)
        micro_batches = dist.equalize(batch.micro_batches(cfg.micro_batch))  # same count on every rank
        inner_stats = []
        for inner in range(cfg.mu):
            optimizer.zero_grad(set_to_none=True)
            for i, (mb, real) in enumerate(micro_batches):
                with dist.no_sync(ddp, sync=i == len(micro_batches) - 1), autocast(info.device):
                    loss, stats = micro_loss(ddp, mb, totals, eps=cfg.eps, beta=cfg.beta, agg=cfg.loss_agg,
                                             temperature=cfg.temperature, group_size=group_size,
                                             share_prompts=cfg.share_prompts)
                    (loss * (1.0 if real else 0.0)).backward()  # padding micro-batches add nothing
                if real:
                    inner_stats.append({**stats, "loss_share": loss.item(), "inner": inner})
            grad_norm = torch.nn.utils.clip_grad_norm_(
                trainable_parameters(model), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
            optimizer.step()
        t_end = time.perf_counter()

        # 6. metrics (means over ranks), progress line, validation, checkpoint
        tokens = rollout.num_tokens
        metrics = step_metrics(rollout, rewards, terms, groups, inner_stats, cfg.mu)
        metrics.update(grad_norm=float(grad_norm), lr=lr, gen_s=t_gen - t_start, reward_s=t_reward - t_gen,
                       logprob_s=t_logp - t_reward, update_s=t_end - t_logp, step_s=t_end - t_start)
        metrics = {k: dist.all_reduce_mean(v) for k, v in metrics.items()}
        tokens = int(round(dist.all_reduce_mean(float(tokens)) * info.world_size))
        metrics["tokens_per_s"] = tokens / max(metrics["step_s"], 1e-9)
        progress.add_tokens(tokens)
        done = step + 1
        last = done == cfg.steps
        evaluate = (cfg.eval_every > 0 and done % cfg.eval_every == 0) or last
        if evaluate:
            metrics.update(evaluate_forecasts(ddp, tokenizer, val_set, fmt, max_new_tokens=cfg.max_completion,
                                              batch_size=max(1, cfg.micro_batch), info=info))
        record = {"step": done, **metrics, "eta_s": (time.perf_counter() - progress.t0) / (done - start) * (cfg.steps - done)}
        if last:  # every rank's trained weights must be identical after DDP training: record each rank's digest
            record["rank_digests"] = dist.all_gather_object(trainable_digest(model))
        log.log(record)
        if done % cfg.log_every == 0 or last:
            shown = {"loss": metrics["loss"], "reward": metrics["reward"], "format": metrics["format_rate"],
                     "kl": metrics["kl"], "clip": metrics["clip_frac"], "len": metrics["answer_tokens"]}
            if evaluate:
                shown.update(val_mse=metrics["val_mse"], val_mase=metrics["val_mase"])
            progress.update(done, **shown)
        if (cfg.save_every > 0 and done % cfg.save_every == 0) or evaluate or last:
            save_run_checkpoint(out_dir, done, ddp, policy, optimizer, cfg, info, metrics=record,
                                score=checkpoint_score(metrics) if evaluate else None)
    del ddp  # free the DDP reducer before the process group goes away


def trainable_digest(model: torch.nn.Module) -> str:
    """sha256 of the trainable parameters (names and fp32 bytes): what DDP keeps in sync; frozen weights
    never change, so a 7B LoRA run hashes megabytes, not the whole model."""
    digest = hashlib.sha256()
    for name, param in sorted(dist.unwrap(model).named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def step_metrics(rollout, rewards, terms, groups, inner_stats, mu) -> dict:
    """This rank's numbers for one step: rewards of all samples and of the selected groups, every reward
    term, format rate, answer length, and the loss metrics of the first and last inner update."""
    out = {"reward": float(rewards.mean()), "reward_selected": float(groups.rewards.mean()),
           "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
           "format_rate": float((terms["format"] == 0).mean()),
           "answer_tokens": rollout.num_tokens / max(len(rollout.completions), 1),
           "finished_rate": float(np.mean(rollout.finished))}
    out.update({f"reward_{k}": float(v.mean()) for k, v in terms.items() if k != "total"})
    last = [s for s in inner_stats if s["inner"] == mu - 1]
    tokens = sum(s["tokens"] for s in last) or 1.0
    out["loss"] = sum(s["loss_share"] for s in last)
    for key, name in (("kl_mean", "kl"), ("clip_frac", "clip_frac"), ("ratio_mean", "ratio")):
        out[name] = sum(s[key] * s["tokens"] for s in last) / tokens  # token-weighted over micro-batches
    out["clip_frac_all"] = (sum(s["clip_frac"] * s["tokens"] for s in inner_stats)
                            / (sum(s["tokens"] for s in inner_stats) or 1.0))
    out["weight_entropy"] = float(np.mean([s["weight_entropy"] for s in last])) if last else 0.0
    return out


def cli(argv: list[str] | None = None) -> None:
    cfg = load_config_or_exit(GRIPConfig, argv, __doc__)
    error = None
    with dist.distributed() as info:
        try:
            main(cfg, info)
        except (FileNotFoundError, ValueError) as err:  # bad paths, bad data: one line, no traceback
            error = str(err).splitlines()[0] if str(err) else type(err).__name__
    if error is not None:
        dist.fail(error)


if __name__ == "__main__":
    cli()
