"""GRIP reinforcement learning for Time-R1 (arXiv 2506.10630, Sec. 3.3), after the SFT warm-up.

    python train_grip.py --config configs/smoke_grip.toml --out_dir=/tmp/smoke       # seconds, random model
    python train_grip.py --config configs/tiny_grip.toml                             # timer1-tiny, CPU
    torchrun --standalone --nproc_per_node=4 train_grip.py --config configs/grip_qwen2.5_7b.toml \
        --model.path=/models/Qwen2.5-7B-Instruct --sft_adapter=runs/sft_qwen2.5_7b

Add ``--resume=true`` to continue a stopped run. One step, numbered in ``grip_step``: draw ``batch`` windows
and split them over ranks; sample ``k * G`` completions per prompt; score them; select G per prompt
with advantages and weights; reference log-probs; then ``mu`` updates on that rollout (so the clip
matters). The model stays in eval mode throughout: a fresh dropout mask in each forward would make the
ratio of sampling and updated policy noise. The KL reference is the SFT adapter (``--sft_adapter``),
the base with LoRA off (``--reference=base``) or a frozen copy (full fine-tuning). GRPO, DAPO, Dr. GRPO
and GSPO are config values of the same loop (configs/grpo_tiny.toml, configs/dapo_tiny.toml; timer1/core/grip.py).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from timer1.core.codec import prompt_ids, reward_target
from timer1.core.grip import LossConfig, LossTotals, grip_loss, loss_totals, make_groups, overlong_penalty
from timer1.core.judge import judge_prompt_ids
from timer1.core.lora import lora_modules
from timer1.core.reference import Reference, adapter_snapshot
from timer1.core.rollout import build_batch, completion_logprobs, sample_rollout, score_rollout
from timer1.data.protocol import evenly_spaced
from timer1.data.window_sets import load_windows, window_spec_from
from timer1.train.checkpoint import resolve_checkpoint
from timer1.train.config import GRIPConfig, group_of
from timer1.train.judge_task import evaluate_judgements, load_cases, score_judgements
from timer1.train.launch import run_cli
from timer1.train.resume import weights_digest
from timer1.train.run import Run, begin, open_run, save_run_checkpoint, shard_frozen
from timer1.train.setup import autocast, lr_at, set_lr, trainable_parameters
from timer1.train.validation import checkpoint_score, evaluate_forecasts
from timer1.util import dist, fsdp
from timer1.util.seeding import derive_seed

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


def policy_update(run: Run, micro_batches, ref, totals: LossTotals, loss: LossConfig):
    """``mu`` optimizer steps on one rollout, each over every micro-batch with DDP's gradient sync on the
    last one only. Inner step 0 runs at the sampling weights, so its log-probs, detached, are the old
    policy's for every later inner step. Returns the loss metrics of every micro-step and the last
    gradient norm."""
    cfg, wrapped = run.cfg, run.wrapped
    old = [None] * len(micro_batches)
    inner_stats = []
    for inner in range(cfg.mu):
        run.optimizer.zero_grad(set_to_none=True)
        # FSDP: the weights stay whole over the inner step's forwards and backwards, since the prompt's
        # keys and values reach them through the KV cache, not through a layer's output where FSDP's
        # re-gathering hooks sit (rollout.completion_logprobs)
        with fsdp.gathered(wrapped):
            for i, (mb, real) in enumerate(micro_batches):
                sync = i == len(micro_batches) - 1
                with dist.no_sync(wrapped, sync=sync), autocast(mb.completion_ids.device, cfg.model.dtype):
                    logp = completion_logprobs(wrapped, mb, cfg.temperature)  # (n, T)
                    if inner == 0:
                        old[i] = logp.detach()
                    objective, stats = grip_loss(logp, old[i], ref[i], mb.advantages, mb.weights,
                                                 mb.completion_mask, loss, totals)
                    # DDP and FSDP average gradients over ranks, the loss is a sum over them; padding adds nothing
                    (objective * (run.info.world_size if real else 0.0)).backward()
                if real:
                    inner_stats.append({**stats, "inner": inner})
        params = trainable_parameters(run.model)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if totals.weight > 0:  # 0 when every row of the step was dropped: nothing to learn from
            run.optimizer.step()
    return inner_stats, grad_norm


@dataclass
class Windows:
    """The run's training windows (train region), held-out validation windows (validation region);
    with ``data.judge_dir``, the judge's training and validation cases (timer1.train.judge_task)."""

    train: list
    val: list


def training_examples(cfg: GRIPConfig) -> Windows:
    if cfg.data.judge_dir:
        return Windows([c.case for c in load_cases(cfg.data.judge_dir, "train")],
                       evenly_spaced(load_cases(cfg.data.judge_dir, "val"), cfg.eval_windows))
    spec = window_spec_from(cfg.data)
    return Windows(load_windows(spec, "train", cfg.seed), evenly_spaced(load_windows(spec, "val", cfg.seed), cfg.eval_windows))


def main(cfg: GRIPConfig, info: dist.DistInfo) -> None:
    if cfg.batch < info.world_size:
        raise ValueError(f"batch={cfg.batch} prompts cannot be split over {info.world_size} ranks "
                         f"(need batch >= ranks)")
    sft = str(resolve_checkpoint(cfg.sft_adapter)) if cfg.sft_adapter else ""
    run = open_run(cfg, info, adapter=sft)
    run.model.eval()  # for good: no dropout in any RL forward
    windows = training_examples(cfg)
    reference = make_reference(cfg, run.model, from_adapter=bool(sft))
    if not begin(run, cfg.steps):
        return
    if reference is not None and reference.kind == "model":
        shard_frozen(run, reference.model)
    n_params = sum(p.numel() for p in trainable_parameters(run.model))
    dist.print0(f"GRIP: {len(windows.train)} train / {len(windows.val)} val windows, {info.world_size} rank(s), "
                f"{n_params:,} trainable parameters, reference {reference.kind if reference else 'none (beta=0)'}")
    if windows.val and run.start == 0:  # the score to beat: the policy as it starts (the SFT model)
        before = validate(run, windows.val)
        run.log.log({"step": 0, **before})
        dist.print0(f"step 0 (before training) | val_mse {before['val_mse']:.4g} | val_mase {before['val_mase']:.4g}")
    for step in range(run.start, cfg.steps):
        metrics, tokens = grip_step(run, windows.train, reference, step)
        finish_step(run, step + 1, metrics, tokens, windows.val)
    run.wrapped = None  # free the DDP reducer (FSDP's hooks) before the process group goes away


def grip_step(run: Run, train_set: list, reference: Reference | None, step: int) -> tuple[dict, int]:
    """One GRIP step (paper Sec. 3.3), numbered as the module docstring tells it; returns this rank's
    metrics and the tokens it sampled."""
    cfg, info, tokenizer = run.cfg, run.info, run.policy.tokenizer
    fmt, model = run.policy.prompt_format, run.model
    t_start = time.perf_counter()
    set_lr(run.optimizer, lr := lr_at(step, cfg.steps, cfg.optim))
    # 1. this rank's prompts: the step's windows split by stride, each group stays on one rank
    windows = dist.shard_by_stride(draw_windows(train_set, cfg.batch, cfg.seed, step), info.rank, info.world_size)
    judge = bool(cfg.data.judge_dir)  # the windows are judge cases (timer1.train.judge_task)
    prompts = [judge_prompt_ids(tokenizer, w) if judge else prompt_ids(tokenizer, w, fmt) for w in windows]
    # 2. rollout: k*G samples per prompt from the current (old) policy (FSDP: from its gathered weights,
    #    since each rank's samples end after their own number of decode steps)
    with torch.no_grad(), autocast(info.device, cfg.model.dtype), fsdp.gathered(model):
        rollout = sample_rollout(model, tokenizer, prompts, K=cfg.k * cfg.G, max_new_tokens=cfg.max_completion,
                                 seed=derive_seed(cfg.seed, step, info.rank, ROLLOUT),
                                 prompts_per_call=cfg.rollout_prompts, temperature=cfg.temperature, top_p=cfg.top_p)
    t_gen = time.perf_counter()
    # 3. rewards (B, K); select G per prompt with advantages and weights; the rows that train
    if judge:
        rewards, terms = score_judgements(rollout.texts, windows, rollout.K)
    else:
        targets = [reward_target(w, fmt) for w in windows]  # (H,) each, on the completion's scale
        rewards, terms = score_rollout(rollout, targets, reward=cfg.reward, digit_bonus=cfg.digit_bonus)
    if cfg.overlong == "soft-penalty":
        lengths = torch.tensor([len(c) for c in rollout.completions]).view_as(rewards)  # (B, K)
        penalty = overlong_penalty(lengths, cfg.max_completion)  # (B, K)
        rewards = rewards + penalty
        terms["overlong"] = penalty.numpy()
    selector = torch.Generator().manual_seed(derive_seed(cfg.seed, step, info.rank, SELECTION))
    groups = make_groups(rewards, cfg.G, selection=cfg.selection, weighting=cfg.weights,
                         adv_scale=cfg.adv_scale, generator=selector)  # (B, G) each
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
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
    inner_stats, grad_norm = policy_update(run, micro_batches, ref, totals, group_of(cfg, LossConfig))
    t_end = time.perf_counter()
    metrics = step_metrics(rollout, rewards, terms, groups, batch, inner_stats, cfg.mu)
    metrics.update(grad_norm=fsdp.grad_norm(grad_norm), lr=lr, gen_s=t_gen - t_start, reward_s=t_reward - t_gen,
                   logprob_s=t_logp - t_reward, update_s=t_end - t_logp, step_s=t_end - t_start)
    return metrics, rollout.num_tokens


def finish_step(run: Run, done: int, metrics: dict, tokens: int, val_set: list) -> None:
    """6. metrics (means over ranks), the log record, progress line, validation, checkpoint."""
    cfg, info = run.cfg, run.info
    metrics = {k: dist.all_reduce_mean(v) for k, v in metrics.items()}
    tokens = int(round(dist.all_reduce_mean(float(tokens)) * info.world_size))
    metrics["tokens_per_s"] = tokens / max(metrics["step_s"], 1e-9)
    run.progress.add_tokens(tokens)
    last = done == cfg.steps
    evaluate = (cfg.eval_every > 0 and done % cfg.eval_every == 0) or last
    if evaluate:
        metrics.update(validate(run, val_set))
    elapsed = time.perf_counter() - run.progress.t0
    record = {"step": done, **metrics, "eta_s": elapsed / (done - run.start) * (cfg.steps - done)}
    if last:  # every rank's trained weights must be identical after DDP training: record each rank's digest
        record["rank_digests"] = dist.all_gather_object(weights_digest(run.model, trainable_only=True))
    run.log.log(record)
    if done % cfg.log_every == 0 or last:
        shown = {"loss": metrics["loss"], "reward": metrics["reward"], "format": metrics["format_rate"],
                 "kl": metrics["kl"], "clip": metrics["clip_frac"], "len": metrics["answer_tokens"]}
        if evaluate:
            shown.update(val_mse=metrics["val_mse"], val_mase=metrics["val_mase"])
        run.progress.update(done, **shown)
    if (cfg.save_every > 0 and done % cfg.save_every == 0) or evaluate or last:
        save_run_checkpoint(run, done, record, score=checkpoint_score(metrics) if evaluate else None)


def validate(run: Run, val_set: list) -> dict:
    """The policy's forecasts on the held-out windows now: val_mse, val_mase, ... (timer1.train.validation),
    or its judgements of the held-out cases (timer1.train.judge_task)."""
    cfg, policy = run.cfg, run.policy
    if cfg.data.judge_dir:
        return evaluate_judgements(run.wrapped, policy.tokenizer, val_set, max_new_tokens=cfg.max_completion,
                                   batch_size=max(1, cfg.micro_batch), info=run.info)
    return evaluate_forecasts(run.wrapped, policy.tokenizer, val_set, policy.prompt_format, max_new_tokens=cfg.max_completion,
                              samples=cfg.eval_samples, batch_size=max(1, cfg.micro_batch), info=run.info)


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
