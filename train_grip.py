"""GRIP reinforcement learning for Time-R1 (arXiv 2506.10630, Sec. 3.3), after the SFT warm-up.

    python train_grip.py --config configs/smoke_grip.toml --out_dir=/tmp/smoke       # seconds, random model
    python train_grip.py --config configs/tiny_grip.toml                             # timer1-tiny, CPU
    torchrun --standalone --nproc_per_node=4 train_grip.py --config configs/grip_qwen2.5_7b.toml \
        --model.path=/models/Qwen2.5-7B-Instruct --sft_adapter=runs/sft_qwen2.5_7b

Add ``--resume=true`` to continue a stopped run. One step, visible in ``main``: draw ``batch`` windows
and split them over ranks; sample ``k * G`` completions per prompt; score them; select G per prompt
with advantages and weights; reference log-probs; then ``mu`` updates on that rollout (so the clip
matters). The model stays in eval mode throughout: a fresh dropout mask in each forward would make the
ratio of sampling and updated policy noise. The KL reference is the SFT adapter (``--sft_adapter``),
the base with LoRA off (``--reference=base``) or a frozen copy (full fine-tuning). GRPO, DAPO, Dr. GRPO
and GSPO are config values of the same loop (configs/grpo_tiny.toml, configs/dapo_tiny.toml; timer1/grip.py).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from timer1.util import dist
from timer1.util.seeding import derive_seed, seed_everything
from timer1.train.checkpoint import resolve_checkpoint
from timer1.train.config import GRIPConfig, save_config
from timer1.data.protocol import evenly_spaced
from timer1.core.grip import grip_loss, loss_totals, LossTotals, make_groups, overlong_penalty
from timer1.core.lora import lora_modules
from timer1.core.reference import Reference, adapter_snapshot
from timer1.core.rollout import build_batch, completion_logprobs, sample_rollout, score_rollout
from timer1.data.window_sets import load_windows, window_spec_from
from timer1.core.codec import prompt_format_from, prompt_ids, reward_target
from timer1.train.run_dir import MetricsLog, Progress, claim_out_dir
from timer1.train.setup import autocast, build_optimizer, build_policy, lr_at, set_lr, trainable_parameters
from timer1.train.validation import checkpoint_score, evaluate_forecasts
from timer1.train.resume import resume_run, save_base_model, save_run_checkpoint, weights_digest
from timer1.train.launch import run_cli

ROLLOUT, SELECTION = 0, 1  # tags that keep the seeds of the step's two random draws apart


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


def step_totals(batch, info: dist.DistInfo) -> LossTotals:
    """The loss normalisers of the whole step: this rank's batch summed over ranks."""
    local = loss_totals(batch.weights, batch.completion_mask)
    summed = dist.all_reduce_mean(torch.tensor([local.weight, local.rows, local.tokens], dtype=torch.float64))
    weight, rows, tokens = (summed * info.world_size).tolist()
    return LossTotals(weight, int(round(rows)), int(round(tokens)))


def rows_to_keep(groups, rollout, cfg: GRIPConfig) -> torch.Tensor:
    """(B, G) bool: the selected rows that enter the update (DAPO's filters, when switched on)."""
    keep = torch.ones_like(groups.index, dtype=torch.bool)  # (B, G)
    if cfg.drop_zero_variance:
        keep &= ~groups.zero_variance[:, None]
    if cfg.overlong == "drop":
        finished = torch.tensor(rollout.finished).view(-1, rollout.K)  # (B, K)
        keep &= finished.gather(1, groups.index)
    return keep


def policy_update(ddp, optimizer, micro_batches, ref, totals: LossTotals, cfg: GRIPConfig, world_size: int):
    """``mu`` optimizer steps on one rollout, each over every micro-batch with DDP's gradient sync on the
    last one only. Inner step 0 runs at the sampling weights, so its log-probs, detached, are the old
    policy's for every later inner step. Returns the loss metrics of every micro-step and the last
    gradient norm."""
    old = [None] * len(micro_batches)
    inner_stats = []
    for inner in range(cfg.mu):
        optimizer.zero_grad(set_to_none=True)
        for i, (mb, real) in enumerate(micro_batches):
            sync = i == len(micro_batches) - 1
            with dist.no_sync(ddp, sync=sync), autocast(mb.completion_ids.device, cfg.model.dtype):
                logp = completion_logprobs(ddp, mb, cfg.temperature)  # (n, T)
                if inner == 0:
                    old[i] = logp.detach()
                loss, stats = grip_loss(logp, old[i], ref[i], mb.advantages, mb.weights, mb.completion_mask,
                                        cfg.eps, cfg.beta, eps_high=cfg.eps_high, agg=cfg.loss_agg,
                                        ratio_level=cfg.ratio_level, totals=totals, const_len=cfg.max_completion)
                # DDP averages gradients over ranks, the loss is a sum over them; padding adds nothing
                (loss * (world_size if real else 0.0)).backward()
            if real:
                inner_stats.append({**stats, "inner": inner})
        params = trainable_parameters(dist.unwrap(ddp))
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
        if totals.weight > 0:  # 0 when every row of the step was dropped: nothing to learn from
            optimizer.step()
    return inner_stats, grad_norm


def main(cfg: GRIPConfig, info: dist.DistInfo) -> None:
    master = info.is_master
    if cfg.batch < info.world_size:
        raise ValueError(f"batch={cfg.batch} prompts cannot be split over {info.world_size} ranks (need batch >= ranks)")
    out_dir = str(claim_out_dir(cfg.out_dir, cfg.resume))  # collective: a refusal stops every rank
    seed_everything(cfg.seed)  # the same LoRA init on every rank (DDP also broadcasts rank 0's weights)

    # ---- data: training windows (train region) and held-out validation windows (validation region)
    spec = window_spec_from(cfg.data)
    train_set = load_windows(spec, "train", cfg.seed)
    val_set = evenly_spaced(load_windows(spec, "val", cfg.seed), cfg.eval_windows)
    fmt = prompt_format_from(cfg.data)

    # ---- policy (eval mode for good: no dropout in any RL forward), reference, optimizer
    sft = str(resolve_checkpoint(cfg.sft_adapter)) if cfg.sft_adapter else ""
    policy = build_policy(cfg, info.device, seed=cfg.seed, adapter=sft)
    model, tokenizer = policy.model.eval(), policy.tokenizer
    model.gradient_checkpointing = cfg.model.gradient_checkpointing
    seed_everything(derive_seed(cfg.seed, info.rank))
    reference = make_reference(cfg, model, from_adapter=bool(sft))
    optimizer = build_optimizer(model, cfg.optim)
    log = MetricsLog(f"{out_dir}/metrics.jsonl", enabled=master)
    start = 0
    if cfg.resume:
        state = resume_run(out_dir, model, optimizer, info.rank)
        start = state["step"]
        if start >= cfg.steps:
            dist.print0(f"{out_dir} is finished already: {start}/{cfg.steps} steps ({state['path']}); nothing to do")
            return
        log.truncate_after(start)
        dist.print0(f"resumed from {state['path']} after step {start}")
    elif master:
        save_config(cfg, f"{out_dir}/config.toml")
        if cfg.model.random_init and lora_modules(model):
            save_base_model(policy, out_dir)  # adapters need their base on disk to be loadable
    ddp = dist.wrap_ddp(model, info)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    n_params = sum(p.numel() for p in trainable_parameters(model))
    dist.print0(f"GRIP: {len(train_set)} train / {len(val_set)} val windows, {info.world_size} rank(s), "
                f"{n_params:,} trainable parameters, reference {reference.kind if reference else 'none (beta=0)'}")
    progress = Progress(cfg.steps, start_step=start, enabled=master)
    if val_set and start == 0:  # the score to beat: the policy as it starts (the SFT model)
        before = validate(ddp, tokenizer, val_set, fmt, cfg, info)
        log.log({"step": 0, **before})
        dist.print0(f"step 0 (before training) | val_mse {before['val_mse']:.4g} | val_mase {before['val_mase']:.4g}")

    for step in range(start, cfg.steps):
        t_start = time.perf_counter()
        set_lr(optimizer, lr := lr_at(step, cfg.steps, cfg.optim))
        # 1. this rank's prompts: the step's windows split by stride, each group stays on one rank
        windows = dist.shard_by_stride(draw_windows(train_set, cfg.batch, cfg.seed, step), info.rank, info.world_size)
        prompts = [prompt_ids(tokenizer, w, fmt) for w in windows]
        targets = [reward_target(w, fmt) for w in windows]  # (H,) each, on the completion's scale
        # 2. rollout: k*G samples per prompt from the current (old) policy
        with torch.no_grad(), autocast(info.device, cfg.model.dtype):
            rollout = sample_rollout(model, tokenizer, prompts, K=cfg.k * cfg.G, max_new_tokens=cfg.max_completion,
                                     temperature=cfg.temperature, top_p=cfg.top_p,
                                     seed=derive_seed(cfg.seed, step, info.rank, ROLLOUT),
                                     prompts_per_call=cfg.rollout_prompts)
        t_gen = time.perf_counter()
        # 3. rewards (B, K); select G per prompt with advantages and weights; the rows that train
        rewards, terms = score_rollout(rollout, targets, reward=cfg.reward, digit_bonus=cfg.digit_bonus)
        if cfg.overlong == "soft-penalty":
            lengths = torch.tensor([len(c) for c in rollout.completions]).view_as(rewards)  # (B, K)
            penalty = overlong_penalty(lengths, cfg.max_completion)  # (B, K)
            rewards = rewards + penalty
            terms["overlong"] = penalty.numpy()
        selector = torch.Generator().manual_seed(derive_seed(cfg.seed, step, info.rank, SELECTION))
        groups = make_groups(rewards, cfg.G, selection=cfg.selection, weighting=cfg.weights,
                             adv_scale=cfg.adv_scale, generator=selector)  # (B, G) each
        batch = build_batch(rollout, groups, pad_id, keep=rows_to_keep(groups, rollout, cfg)).to(info.device)
        micro_batches = dist.equalize(batch.micro_batches(cfg.micro_batch))  # the same count on every rank
        totals = step_totals(batch, info)
        t_reward = time.perf_counter()
        # 4. reference log-probs (N, T) per micro-batch, by the same function as the update's
        ref = [None] * len(micro_batches)
        if reference is not None:
            with torch.no_grad(), autocast(info.device, cfg.model.dtype), reference.active(model) as ref_model:
                ref = [completion_logprobs(ref_model, mb, cfg.temperature) for mb, _ in micro_batches]
        t_logp = time.perf_counter()
        # 5. mu updates on this rollout (the first also records the old log-probs)
        inner_stats, grad_norm = policy_update(ddp, optimizer, micro_batches, ref, totals, cfg, info.world_size)
        t_end = time.perf_counter()

        # 6. metrics (means over ranks), progress line, validation, checkpoint
        tokens = rollout.num_tokens
        metrics = step_metrics(rollout, rewards, terms, groups, batch, inner_stats, cfg.mu)
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
            metrics.update(validate(ddp, tokenizer, val_set, fmt, cfg, info))
        record = {"step": done, **metrics, "eta_s": (time.perf_counter() - progress.t0) / (done - start) * (cfg.steps - done)}
        if last:  # every rank's trained weights must be identical after DDP training: record each rank's digest
            record["rank_digests"] = dist.all_gather_object(weights_digest(model, trainable_only=True))
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


def validate(model, tokenizer, val_set, fmt, cfg: GRIPConfig, info) -> dict:
    """The policy's forecasts on the held-out windows now: val_mse, val_mase, ... (timer1.train_utils)."""
    return evaluate_forecasts(model, tokenizer, val_set, fmt, max_new_tokens=cfg.max_completion,
                              samples=cfg.eval_samples, batch_size=max(1, cfg.micro_batch), info=info)


def step_metrics(rollout, rewards, terms, groups, batch, inner_stats, mu) -> dict:
    """This rank's numbers for one step: rewards of all samples and of the selected groups, every reward
    term, completion lengths, the filters' counts, the weights' entropy, and the loss metrics of the
    first and last inner update (token-weighted over micro-batches)."""
    weights = groups.weights.clamp_min(1e-30)  # (B, G)
    out = {"reward": float(rewards.mean()), "reward_selected": float(groups.rewards.mean()),
           "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
           "format_rate": float((terms["format"] == 0).mean()),
           "answer_tokens": rollout.num_tokens / max(len(rollout.completions), 1),
           "truncated_frac": 1.0 - float(np.mean(rollout.finished)),
           "zero_variance_frac": float(groups.zero_variance.float().mean()),
           "trained_rows": float(batch.num_rows if float(batch.weights.sum()) > 0 else 0),
           "weight_entropy": float(-(weights * weights.log()).sum(dim=1).mean())}
    out.update({f"reward_{k}": float(v.mean()) for k, v in terms.items() if k != "total"})
    for inner, prefix in ((0, "first_"), (mu - 1, "")):
        stats = [s for s in inner_stats if s["inner"] == inner]
        tokens = sum(s["tokens"] for s in stats) or 1.0
        for key in ("ratio", "kl", "entropy", "clip_frac", "clip_frac_low", "clip_frac_high"):
            out[prefix + key] = sum(s[key] * s["tokens"] for s in stats) / tokens
        out[prefix + "loss"] = sum(s["loss"] for s in stats)
    return out


if __name__ == "__main__":
    run_cli(main, GRIPConfig, __doc__)
