"""SFT warm-up of Time-R1 (paper Section 3.2): teach the model the <think>/<answer> layout and a
reasoning habit before GRIP RL. Paper settings: 300 samples, one epoch, lr 5e-5.

One process (CPU or one GPU):

    python train_sft.py --config configs/smoke_sft.toml
    python train_sft.py --config configs/demo_sft.toml --out_dir=runs/demo_sft

Several processes (DDP; NCCL on GPUs, Gloo on CPU):

    torchrun --standalone --nproc_per_node=8 train_sft.py --config configs/sft_qwen2.5_7b.toml \\
        --model.path=/models/Qwen2.5-7B-Instruct --data.sft_jsonl=data/sft_etth1.jsonl

Resume an interrupted run (same config, same number of processes): add ``--resume=true``.

Data: ``data.sft_jsonl`` (built by ``python -m timer1.train.sft_jsonl``, paper Algorithm 1, any teacher), or
empty to build the samples here from the train region with the statistical teacher. The loss is the
mean negative log-likelihood of the completion tokens only (an explicit mask over the prompt, not a
pad id), averaged over every completion token of an optimizer step on all ranks.

The shape is nanoGPT's: config, init, model, optimizer, then ONE loop. Each optimizer step runs
``grad_accum`` micro-batches (gradients all-reduced only on the last), clips, steps, and then logs,
validates (validation loss and greedy-answer forecast MSE on held-out windows) and checkpoints
(the best by validation MSE is kept). The data order is a seeded permutation per epoch, so a
resumed run (weights, optimizer, RNG states and the step counter restored) matches an
uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from timer1.core.codec import chat_ids, completion_ids
from timer1.core.model import token_logprobs
from timer1.core.sft_data import StatisticalTeacher, build_samples
from timer1.data.protocol import evenly_spaced
from timer1.data.window_sets import load_windows, window_spec_from
from timer1.train.config import SFTConfig
from timer1.train.judge_task import evaluate_judgements, scaled_case, split_path
from timer1.train.launch import run_cli, warn_short_schedule
from timer1.train.resume import uses_lora, weights_digest
from timer1.train.run import Run, begin, open_run, save_run_checkpoint
from timer1.util.progress import format_seconds
from timer1.train.setup import autocast, lr_at, set_lr, trainable_parameters
from timer1.train.sft_jsonl import read_jsonl, train_values
from timer1.train.validation import checkpoint_score, evaluate_forecasts, evaluating
from timer1.util import dist, fsdp

SCORES = ("val_loss", "val_mse", "val_mase")   # the validation numbers a person compares across steps
BUCKET_CHUNK = 16  # length bucketing: sort by length within shuffled chunks of this many micro-batches


# ----------------------------------------------------------------------------------------------
# Data: records -> token ids -> a deterministic per-rank schedule of micro-batches


@dataclass
class Example:
    ids: list[int]   # chat-templated prompt, then completion + eos
    n_prompt: int    # the first n_prompt tokens are masked out of the loss


def encode(record: dict, tokenizer) -> Example:
    """A {prompt, completion} record as token ids; a plain-text prompt becomes one user message."""
    messages = record["prompt"] if isinstance(record["prompt"], list) else [{"role": "user", "content": record["prompt"]}]
    prompt = chat_ids(tokenizer, messages)
    return Example(prompt + completion_ids(tokenizer, record["completion"]), len(prompt))


def statistical_teacher(cfg: SFTConfig, fmt, spec) -> StatisticalTeacher:
    """The teacher that builds samples on the fly (and the validation targets)."""
    verbosity = cfg.reasoning if cfg.reasoning != "auto" else ("short" if fmt.style == "compact" else "long")
    return StatisticalTeacher(fmt, verbosity, train_values(spec))


def teacher_records(windows: list, teacher: StatisticalTeacher, fmt, k: int, what: str) -> list[dict]:
    """Algorithm 1 over `windows` as {prompt, completion, ...} records."""
    dist.print0(f"sft data: the statistical teacher over {len(windows)} {what} windows (minutes for tens of thousands)...")
    started = time.perf_counter()
    samples, counts = build_samples(windows, teacher, fmt, k)
    dist.print0(f"sft data: {len(samples)} {what} samples in {format_seconds(time.perf_counter() - started)} ({counts})")
    if not samples:
        raise ValueError(f"no SFT sample could be built from {len(windows)} {what} windows ({counts})")
    return [s.to_json() for s in samples]


def train_records(cfg: SFTConfig, fmt, spec, teacher: StatisticalTeacher) -> list[dict]:
    """data.sft_jsonl when given (any teacher, built by timer1.train.sft_jsonl), else statistical-teacher
    samples of the train-region windows."""
    if cfg.data.sft_jsonl:
        return read_jsonl(cfg.data.sft_jsonl, prompt_style=fmt.style)
    if cfg.teacher == "model":
        raise ValueError("teacher = 'model' needs prebuilt data: run python -m timer1.train.sft_jsonl ... --out FILE "
                         "and pass --data.sft_jsonl=FILE")
    return teacher_records(load_windows(spec, "train", seed=cfg.seed), teacher, fmt, cfg.teacher_k, "train")


def rank_micro_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This rank's micro-batches (example indices) for one epoch: a seeded permutation, dealt to
    ranks by stride, then length-bucketed (sorted within chunks, batches shuffled)."""
    rng = np.random.default_rng([seed, epoch])
    mine = rng.permutation(len(lengths))[rank::world]
    chunk = batch_size * BUCKET_CHUNK
    batches = []
    for i in range(0, len(mine), chunk):
        piece = sorted(mine[i:i + chunk].tolist(), key=lambda j: lengths[j])
        batches += [piece[k:k + batch_size] for k in range(0, len(piece), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def plan_run(lengths: list[int], cfg: SFTConfig, world: int) -> list[list[tuple[list[int], bool]]]:
    """plan[r] = rank r's (micro-batch, is_real) list over all epochs. Every rank gets the same
    count (DDP all-reduces once per backward): short ranks repeat batches as padding with loss 0.
    Each rank computes every rank's plan (cheap index lists), so step token counts need no collective."""
    plan = [[] for _ in range(world)]
    for epoch in range(cfg.epochs):
        per_rank = [rank_micro_batches(lengths, cfg.batch_size, cfg.seed, epoch, r, world) for r in range(world)]
        longest = max(len(b) for b in per_rank)
        for r, batches in enumerate(per_rank):
            plan[r] += [(batches[i % len(batches)], i < len(batches)) for i in range(longest)]
    return plan


def step_batches(plan, step: int, grad_accum: int, examples: list[Example], rank: int, prompt_loss: float = 0.0):
    """This rank's (micro-batch, is_real) list for optimizer step `step`, plus the step's loss weight
    and all tokens over EVERY rank (from the shared plan, no collective): the loss is the weighted mean
    over the step's tokens (completion tokens weigh 1, predicted prompt tokens ``prompt_loss``), so
    each rank divides its sum by the global weight."""
    window = slice(step * grad_accum, (step + 1) * grad_accum)
    real = [j for rank_plan in plan for batch, is_real in rank_plan[window] if is_real for j in batch]
    weight = sum(len(examples[j].ids) - examples[j].n_prompt + prompt_loss * (examples[j].n_prompt - 1) for j in real)
    all_tokens = sum(len(examples[j].ids) for j in real)
    return plan[rank][window], weight, all_tokens


def collate(examples: list[Example], pad_id: int, device, prompt_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the loss weights (B, T-1) aligned with token_logprobs' output:
    ``weights[b, t]`` is 1 when token t+1 of row b is a completion token, ``prompt_loss`` when it is a
    prompt token, 0 on padding. Right padding needs no attention mask: nothing real follows a pad."""
    T = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    weights = torch.zeros(len(examples), T - 1, dtype=torch.float32)
    for b, e in enumerate(examples):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        weights[b, :e.n_prompt - 1] = prompt_loss
        weights[b, e.n_prompt - 1:len(e.ids) - 1] = 1.0
    return ids.to(device), weights.to(device)


def weighted_nll(model, ids, weights) -> torch.Tensor:
    """Sum of -log p of each next token times its weight (fp32 log-probs)."""
    logp = token_logprobs(model, ids)  # (B, T-1) fp32, causal: padding only trails
    return -(logp * weights).sum()


@dataclass
class Validation:
    """What a run is validated on: held-out SFT examples (validation loss) and held-out windows, or
    judge cases with ``data.judge_dir`` (greedy answers of at most ``max_tokens`` tokens)."""

    examples: list[Example]
    held_out: list
    max_tokens: int
    pad_id: int


def validate(run: Run, val: Validation) -> dict:
    """Validation loss and the greedy answers' scores (val_mse, val_mase, ...) of the model now."""
    cfg, policy = run.cfg, run.policy
    metrics = {"val_loss": validation_loss(run, val.examples, val.pad_id)}
    batch_size = max(cfg.batch_size, 8)
    if cfg.data.judge_dir:
        metrics.update(evaluate_judgements(run.wrapped, policy.tokenizer, val.held_out, max_new_tokens=val.max_tokens,
                                           batch_size=batch_size, info=run.info))
    else:
        metrics.update(evaluate_forecasts(run.wrapped, policy.tokenizer, val.held_out, policy.prompt_format,
                                          max_new_tokens=val.max_tokens, batch_size=batch_size, info=run.info))
    return metrics


@torch.no_grad()
def validation_loss(run: Run, examples: list[Example], pad_id: int) -> float:
    """Mean completion-token NLL over held-out examples (sharded by stride, summed over ranks)."""
    info, batch_size = run.info, run.cfg.batch_size
    shard = dist.shard_by_stride(examples, info.rank, info.world_size)
    totals = torch.zeros(2, dtype=torch.float64)           # nll, tokens
    with evaluating(run.model) as core:
        for i in range(0, len(shard), batch_size):
            ids, mask = collate(shard[i:i + batch_size], pad_id, info.device)
            with autocast(info.device, run.cfg.model.dtype):
                totals[0] += weighted_nll(core, ids, mask).item()
            totals[1] += mask.sum().item()
    totals = dist.all_reduce_mean(totals) * info.world_size
    return totals[0].item() / max(totals[1].item(), 1.0)


@dataclass
class Data:
    """The run's tokenized training examples, its per-rank plan of micro-batches over all epochs (and
    the optimizer steps that makes), and what it validates on."""

    examples: list[Example]
    plan: list
    total_steps: int
    val: Validation
    too_long: int


def split_records(cfg: SFTConfig, fmt) -> tuple[list[dict], list[dict], list]:
    """(train records, validation records, held-out windows or judge cases they validate on)."""
    if cfg.data.judge_dir:
        val_records = (evenly_spaced(read_jsonl(split_path(cfg.data.judge_dir, "val")), cfg.eval_windows)
                       if cfg.eval_windows else [])
        return (read_jsonl(split_path(cfg.data.judge_dir, "train")), val_records,
                [scaled_case(r) for r in val_records])
    spec = window_spec_from(cfg.data)
    teacher = statistical_teacher(cfg, fmt, spec)
    train = train_records(cfg, fmt, spec, teacher)
    val_windows = evenly_spaced(load_windows(spec, "val", seed=cfg.seed), cfg.eval_windows) if cfg.eval_windows else []
    val_records = teacher_records(val_windows, teacher, fmt, cfg.teacher_k, "validation") if val_windows else []
    return train, val_records, val_windows


def prepare_data(run: Run) -> Data:
    """Train examples (too long ones dropped), held-out examples and windows (or judge cases) for
    validation, the plan."""
    cfg, tokenizer, fmt = run.cfg, run.policy.tokenizer, run.policy.prompt_format
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    train, val_records, held_out = split_records(cfg, fmt)
    examples = [encode(r, tokenizer) for r in train]
    kept = [e for e in examples if len(e.ids) <= cfg.max_seq_len]
    if not kept:
        raise ValueError(f"every SFT sample is longer than max_seq_len={cfg.max_seq_len} tokens")
    val_examples = [e for e in (encode(r, tokenizer) for r in val_records) if len(e.ids) <= cfg.max_seq_len]
    answer_tokens = max(len(e.ids) - e.n_prompt for e in val_examples) if val_examples else 64
    val = Validation(val_examples, held_out, cfg.val_max_tokens or int(answer_tokens * 1.25) + 8, pad_id)
    plan = plan_run([len(e.ids) for e in kept], cfg, run.info.world_size)
    return Data(kept, plan, math.ceil(len(plan[0]) / cfg.grad_accum), val, len(examples) - len(kept))


def main(cfg: SFTConfig, info: dist.DistInfo) -> dict:
    run = open_run(cfg, info)
    data = prepare_data(run)
    if not begin(run, data.total_steps, run_shape(run, data)):
        return {}
    n_params = sum(p.numel() for p in trainable_parameters(run.model))
    dist.print0(f"sft: {len(data.examples)} samples ({data.too_long} longer than {cfg.max_seq_len} dropped), "
                f"{data.total_steps} steps x {cfg.grad_accum} micro-batches of {cfg.batch_size} x {info.world_size} "
                f"ranks, {n_params:,} trainable params ({'LoRA' if uses_lora(run.model) else 'full'}), "
                f"device {info.device}" + (f", resuming after step {run.start}" if run.start else ""))
    warn_short_schedule(len(data.examples), data.total_steps, cfg.optim.warmup_steps)
    before = {}
    if data.val.held_out and run.start == 0:   # the score to beat: the model as it starts
        before = validate(run, data.val)
        run.log.log({"step": 0, **before})
        dist.print0("step 0 (before training) | " + " | ".join(f"{k} {before[k]:.4g}" for k in SCORES))
    metrics: dict = {}
    for step in range(run.start, data.total_steps):
        step_result = sft_step(run, data, step)
        metrics = finish_step(run, data, step + 1, step_result) or metrics
    if "rank_digests" in metrics and len(set(metrics["rank_digests"])) > 1:
        raise RuntimeError(f"ranks ended with different weights: {metrics['rank_digests']}")
    change = (f"; val_mase {before['val_mase']:.4g} before training -> {metrics['val_mase']:.4g}"
              if before and "val_mase" in metrics else "")
    dist.print0(f"done: {data.total_steps} steps, checkpoints in {run.out_dir}{change}")
    run.wrapped = None  # free the DDP reducer (FSDP's hooks) before the process group goes away
    return metrics


def sft_step(run: Run, data: Data, step: int) -> dict:
    """One optimizer step: ``grad_accum`` micro-batches (DDP syncs gradients on the last one), then clip
    and step. Returns this rank's summed NLL and the step's loss weight, tokens, grad norm and lr."""
    cfg, info = run.cfg, run.info
    set_lr(run.optimizer, lr := lr_at(step, data.total_steps, cfg.optim))
    micro, step_weight, seen_tokens = step_batches(data.plan, step, cfg.grad_accum, data.examples, info.rank,
                                                   cfg.prompt_loss)
    nll_sum = 0.0
    for k, (batch, real) in enumerate(micro):
        ids, loss_weights = collate([data.examples[j] for j in batch], data.val.pad_id, info.device, cfg.prompt_loss)
        with dist.no_sync(run.wrapped, sync=k == len(micro) - 1):
            with autocast(info.device, cfg.model.dtype):
                nll = weighted_nll(run.wrapped, ids, loss_weights)
            # DDP averages gradients over ranks: scale by world size so the result is the global token mean
            loss = nll * (info.world_size / step_weight) * (1.0 if real else 0.0)
            loss.backward()
        nll_sum += nll.item() if real else 0.0
    params = trainable_parameters(run.model)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {"nll_sum": nll_sum, "weight": step_weight, "tokens": seen_tokens, "grad_norm": fsdp.grad_norm(grad_norm), "lr": lr}


def finish_step(run: Run, data: Data, done: int, result: dict) -> dict | None:
    """After optimizer step `done`: the log record (loss averaged over ranks), validation and the
    progress line when due, the checkpoint. Returns the record when one was made."""
    cfg, info = run.cfg, run.info
    run.progress.add_tokens(result["tokens"])
    last = done == data.total_steps
    evaluate = bool(data.val.held_out) and (bool(cfg.eval_every and done % cfg.eval_every == 0) or last)
    metrics = None
    if done % cfg.log_every == 0 or evaluate or last:
        train_loss = dist.all_reduce_mean(result["nll_sum"]) * info.world_size / result["weight"]
        metrics = {"step": done, "loss": train_loss, "lr": result["lr"], "grad_norm": result["grad_norm"],
                   "tokens": result["tokens"]}
        if evaluate:
            metrics.update(validate(run, data.val))
        scores = {k: metrics[k] for k in SCORES} if evaluate else {}
        run.progress.update(done, loss=train_loss, lr=result["lr"], **scores)
        if last:                                  # every rank's weights must agree under DDP
            metrics["rank_digests"] = dist.all_gather_object(weights_digest(run.model))
        run.log.log(metrics)
    if (cfg.save_every and done % cfg.save_every == 0) or last:
        score = checkpoint_score(metrics) if metrics is not None else None
        save_run_checkpoint(run, done, metrics or {"step": done}, score=score,
                            extra={"run_shape": run_shape(run, data)})
    return metrics


def run_shape(run: Run, data: Data) -> dict:
    """What a resumed run must share with the run it continues (its plan of steps depends on these)."""
    return {"samples": len(data.examples), "world_size": run.info.world_size, "total_steps": data.total_steps}


if __name__ == "__main__":
    run_cli(main, SFTConfig, __doc__)
