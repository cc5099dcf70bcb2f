"""What train_sft.py and train_grip.py share: policy and optimizer setup, the LR schedule, the run
directory, metrics log and progress line, validation forecasts, checkpoints and resume. No trainer and
no callbacks: each script calls these from its own visible loop."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import math
import os
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import torch
from safetensors.torch import load_file

from timer1 import dist
from timer1.checkpoint import (capture_rng_state, checkpoints_newest_first, clean_stale_temps, latest_checkpoint,
                               read_train_state, resolve_checkpoint, restore_train_state, save_checkpoint)
from timer1.atomic import json_default, write_text_atomic
from timer1.cli import show_warnings_as_lines
from timer1.config import load_config_or_exit
from timer1.lora import ADAPTER_WEIGHTS, PEFT_PREFIX, apply_lora, load_adapter, lora_modules
from timer1.metrics import mae, mase, mse
from timer1.model import Qwen2
from timer1.policy import Policy, load_policy, resolve_device, save_policy, save_policy_files
from timer1.random_init import random_policy
from timer1.sampler import generate
from timer1.slow_think import SlowThinkConfig, slow_think
from timer1.task import PromptFormat, complete_forecast, forecast_from_completion, prompt_format_from, prompt_ids
from timer1.tokenizer import Tokenizer

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------
# Model, LoRA, optimizer


def build_policy(cfg: Any, device: torch.device | str, *, seed: int = 0, adapter: str = "") -> Policy:
    """The policy of an SFTConfig/GRIPConfig, with LoRA applied (or `adapter` loaded), on `device`. A
    random-init model is built from `seed` alike on every rank; LoRA's A matrices draw from torch's
    global RNG, so seed it first. A missing or broken model/adapter path is one-line error.

    Precision (the same on CPU and CUDA): a LoRA run stores its frozen base in ``model.dtype`` and
    its adapter in fp32; full fine-tuning keeps every weight as an fp32 master copy, as mixed-precision
    training does. So AdamW's state is fp32, and the forward computes in ``model.dtype`` under
    :func:`autocast`."""
    what = "model" if cfg.model.random_init else f"model.path {cfg.model.path}"
    policy = loaded(what, lambda: policy_from_config(cfg.model, prompt_format_from(cfg.data), seed=seed, device=device))
    if adapter:
        loaded(f"adapter {adapter}", lambda: load_adapter(policy.model, adapter))
    elif cfg.lora.enabled:
        lora = cfg.lora
        apply_lora(policy.model, tuple(lora.targets), lora.r, lora.alpha, lora.dropout, lora.use_rslora)
    else:
        policy.model.float()                      # full fine-tuning: fp32 master weights
    policy.model.to(device)                       # LoRA A/B are created on the CPU
    policy.model.train()
    return policy


def policy_from_config(model_cfg, prompt_format: PromptFormat = PromptFormat(), *, seed: int = 0,
                       device=None) -> Policy:
    """The policy a run's ``ModelConfig`` describes: with ``random_init`` a random Qwen2 of its dims
    (tokenizer from ``model_cfg.tokenizer`` or trained on task-like text), else the checkpoint at
    ``model_cfg.path``, which may be a run directory (its best, else latest, checkpoint)."""
    if model_cfg.random_init:
        tokenizer = Tokenizer.from_pretrained(model_cfg.tokenizer) if model_cfg.tokenizer else None
        policy = random_policy(model_cfg.random_config_dict(), seed=seed, tokenizer=tokenizer,
                               prompt_format=prompt_format, device=device, dtype=model_cfg.dtype)
    else:
        policy = load_policy(resolve_checkpoint(model_cfg.path), tokenizer_path=model_cfg.tokenizer or None,
                             device=device, dtype=model_cfg.dtype)
        policy.prompt_format = prompt_format
    policy.model.gradient_checkpointing = model_cfg.gradient_checkpointing
    return policy


def loaded(what: str, load: Callable[[], T]) -> T:
    """``load()``, with any failure inside a weights or tokenizer file (a truncated safetensors header,
    a cut zip: SafetensorError, RuntimeError, EOFError...) as one ValueError naming `what`."""
    try:
        return load()
    except (ValueError, FileNotFoundError):                # ours: already one line naming the path
        raise
    except Exception as err:
        raise ValueError(f"cannot load {what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with requires_grad (apply_lora freezes all but the LoRA A/B matrices)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: torch.nn.Module, optim_cfg: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: matrices are decayed, biases and norm gains are not."""
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters (LoRA targets matched nothing?)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": optim_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim_cfg.lr,
                             betas=tuple(optim_cfg.betas))


def lr_at(step: int, total: int, optim_cfg: Any) -> float:
    """Learning rate of optimizer step `step` (0-based) of `total`: warm-up ``lr * (step + 1) /
    (warmup + 1)`` (nanoGPT), then from ``lr`` to ``min = min_lr_ratio * lr`` with p = (step - warmup) /
    (total - warmup): cosine ``min + (lr - min) * (1 + cos(pi p)) / 2``, linear, or constant."""
    peak, warmup = optim_cfg.lr, optim_cfg.warmup_steps
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if optim_cfg.schedule == "constant":
        return peak
    floor = peak * optim_cfg.min_lr_ratio
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if optim_cfg.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if optim_cfg.schedule == "linear":
        return peak - (peak - floor) * progress
    raise ValueError(f"unknown schedule {optim_cfg.schedule!r}; choose cosine, linear or constant")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast(device: torch.device | str, dtype: str | torch.dtype) -> contextlib.AbstractContextManager:
    """The precision of a training forward, one rule on every device: compute in the run's
    ``model.dtype`` (auto: bf16 on CUDA, fp32 on CPU). A half dtype runs under ``torch.autocast``:
    matmuls and attention in that dtype, the fp32 LoRA factors' included, while RMSNorm and the
    log-softmax of the log-probs stay fp32 because the model casts them itself (CPU autocast, unlike
    CUDA's, would not). fp32 runs plain."""
    device, dtype = resolve_device(device, dtype)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Output directory, metrics log, progress line


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` if needed and prove a file can be written there; ValueError (one line) if not."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"output directory {out_dir} is not writable ({err.strerror or err})") from None
    return out_dir


_RUN_LOCKS: dict[Path, Any] = {}  # open lock files: a lock lives as long as its file object


@atexit.register
def _release_run_locks() -> None:
    """Close the lock files at exit (the kernel would drop the locks anyway) rather than leave them to
    the interpreter's teardown, which warns "unclosed file" for each."""
    for handle in _RUN_LOCKS.values():
        handle.close()
    _RUN_LOCKS.clear()


def claim_out_dir(out_dir: str | os.PathLike, resume: bool) -> Path:
    """The run directory, writable and ours: a fresh run refuses one holding a run (the two would mix),
    any run one that a live process trains into (an flock on ``.run.lock``, released however that
    process ends); then a killed run's temporaries are removed, safe only because nobody else writes
    there. Collective: rank 0 looks, locks and cleans, every rank gets its verdict."""
    problem = None
    if dist.is_master():
        try:
            _claim(Path(out_dir), resume)
        except (ValueError, OSError) as err:
            problem = str(err)
    problem = dist.broadcast_object(problem)
    if problem is not None:
        raise ValueError(problem)
    return Path(out_dir)


def _claim(out_dir: Path, resume: bool) -> None:
    check_writable(out_dir)
    _lock_run(out_dir)
    if not resume and (latest_checkpoint(out_dir) is not None or (out_dir / "metrics.jsonl").exists()):
        raise ValueError(f"{out_dir} already holds a run: add --resume=true to continue it, "
                         f"or choose another --out_dir")
    cleaned = clean_stale_temps(out_dir)
    if cleaned:
        print(f"removed {len(cleaned)} temporary file(s) left by an interrupted run in {out_dir}: "
              f"{', '.join(cleaned)}", flush=True)


def _lock_run(out_dir: Path) -> None:
    """Hold an flock on ``out_dir/.run.lock`` until this process exits; ValueError when a live process
    holds it. A filesystem without locks (some network mounts) is used unlocked."""
    import fcntl                                   # POSIX: torchrun training runs on Linux (and macOS)
    if out_dir.resolve() in _RUN_LOCKS:            # this process holds it already (a run started in-process again)
        return
    handle = open(out_dir / ".run.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"{out_dir} is in use by another training process that is still running; "
                         f"wait for it or stop it first") from None
    except OSError:
        handle.close()
        return
    _RUN_LOCKS[out_dir.resolve()] = handle


class MetricsLog:
    """Append-only JSONL, one flushed record (with its ``step``) per line; rank 0 only (``enabled``)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        line = json.dumps(record, default=json_default)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records after `step` (a run that went on past its last checkpoint), so a resumed run's
        log reads like an uninterrupted one."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:                 # a line cut by the crash
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))


class Progress:
    """One line per call, ``step 12/300 | loss 1.234 | 850 tok/s | eta 3m04s``: tokens/s since the previous
    call, the ETA from this process's mean step time (a resumed run counts from `start_step`)."""

    def __init__(self, total: int, start_step: int = 0, enabled: bool = True):
        self.total, self.start_step, self.enabled = total, start_step, enabled
        self.t0 = self.t_last = time.perf_counter()
        self.tokens_since = 0

    def add_tokens(self, n: int) -> None:
        self.tokens_since += int(n)

    def update(self, step: int, **values: float) -> str:
        """`step`: optimizer steps done; `values` printed in order (floats to 4 digits). Returns the line."""
        now = time.perf_counter()
        rate = self.tokens_since / max(now - self.t_last, 1e-9)
        done = step - self.start_step
        eta = (now - self.t0) / done * (self.total - step) if done > 0 else float("nan")
        parts = [f"step {step}/{self.total}"]
        for key, value in values.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        parts += [f"{rate:.0f} tok/s", f"eta {format_seconds(eta)}"]
        self.t_last, self.tokens_since = now, 0
        line = " | ".join(parts)
        if self.enabled:
            print(line, flush=True)
        return line


def format_seconds(seconds: float) -> str:
    """1234.5 -> '20m34s'; NaN -> '?'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# ----------------------------------------------------------------------------------------------
# Validation: greedy forecasts on held-out windows


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode inside the block (no dropout), back in its previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate_forecasts(model: torch.nn.Module, tokenizer, windows: Sequence, fmt: PromptFormat, *,
                       max_new_tokens: int, batch_size: int = 8, samples: int = 1,
                       info: Optional[dist.DistInfo] = None) -> dict:
    """``{"val_mse", "val_mae", "val_mase", "val_unparsed", "val_n"}`` of one greedy answer per window
    (``samples=1``), or of slow thinking's median of ``samples`` drafts (one round, seed 0: every
    evaluation draws alike; what forecast.py does), averaged over windows on the real scale.

    A missing or short answer is completed (`timer1.task.complete_forecast`) and counted unparsed.
    ``val_mase`` is scale-free, so it is the checkpoint score: raw MSE over a mix of datasets is decided
    by the largest-scale one. With a distributed `info` the windows are sharded by stride and the sums
    all-reduced, so every rank returns the same numbers.
    """
    shard = list(windows)
    if info is not None and info.distributed:
        shard = dist.shard_by_stride(shard, info.rank, info.world_size)
    sums = torch.zeros(6, dtype=torch.float64)         # mse, mae, mase, windows with a mase, unparsed, n
    with evaluating(dist.unwrap(model)) as core:
        for i in range(0, len(shard), batch_size):
            chunk = shard[i:i + batch_size]
            for window, (forecast, complete) in zip(chunk, _forecasts(core, tokenizer, chunk, fmt, max_new_tokens, samples)):
                scaled = mase(forecast, window.target, window.history)  # NaN for a flat history
                has_mase = math.isfinite(scaled)
                sums += torch.tensor([mse(forecast, window.target), mae(forecast, window.target),
                                      scaled if has_mase else 0.0, float(has_mase), float(not complete), 1.0],
                                     dtype=torch.float64)
    if info is not None and info.distributed:
        sums = dist.all_reduce_mean(sums) * info.world_size
    n = max(sums[5].item(), 1.0)
    return {"val_mse": sums[0].item() / n, "val_mae": sums[1].item() / n,
            "val_mase": sums[2].item() / sums[3].item() if sums[3].item() > 0 else float("nan"),
            "val_unparsed": int(round(sums[4].item())), "val_n": int(round(sums[5].item()))}


def _forecasts(model, tokenizer, windows: list, fmt: PromptFormat, max_new_tokens: int, samples: int) -> list:
    """(forecast (H,), was the model's own) per window: greedy, or slow thinking's median of ``samples``."""
    if samples > 1:
        config = SlowThinkConfig(samples=samples, rounds=1, max_new_tokens=max_new_tokens, seed=0)
        results = slow_think(Policy(model, tokenizer, "validation", fmt), windows, config)
        return [(r.point, r.fallback is None) for r in results]
    out = generate(model, [prompt_ids(tokenizer, w, fmt) for w in windows], max_new_tokens=max_new_tokens,
                   temperature=0.0, eos_ids=tokenizer.eos_ids)
    return [complete_forecast(forecast_from_completion(tokenizer.decode(t, skip_special_tokens=True), w, fmt), w)
            for w, t in zip(windows, out.tokens)]


def checkpoint_score(metrics: dict) -> Optional[float]:
    """Lower is better: ``val_mase`` (``val_mse`` when no window has one); None without an evaluation."""
    if "val_mse" not in metrics:
        return None
    mase_value = metrics.get("val_mase", float("nan"))
    return mase_value if math.isfinite(mase_value) else metrics["val_mse"]


# ----------------------------------------------------------------------------------------------
# Checkpoints


def uses_lora(model: torch.nn.Module) -> bool:
    return bool(lora_modules(dist.unwrap(model)))


def save_run_checkpoint(out_dir: str | os.PathLike, step: int, model: torch.nn.Module, policy: Policy,
                        optimizer: torch.optim.Optimizer, cfg: Any, info: dist.DistInfo, *,
                        metrics: Optional[dict] = None, score: Optional[float] = None,
                        extra: Optional[dict] = None) -> Optional[Path]:
    """Checkpoint after optimizer step `step`. Collective: every rank must call it (RNG states are
    gathered so a resume restores each rank's own); rank 0 writes, the others return None.
    Lower `score` is better (validation MSE); cfg.keep_best / cfg.keep_last drive pruning."""
    rng = dist.all_gather_object(capture_rng_state()) if info.distributed else capture_rng_state()
    path = None
    if info.is_master:
        path = save_checkpoint(out_dir, step, model, optimizer, rng, cfg, metrics, score=score,
                               keep_best=cfg.keep_best, keep_last=cfg.keep_last, extra=extra,
                               write_files=functools.partial(save_policy_files, policy.tokenizer, policy.prompt_format),
                               base_model=str(Path(out_dir) / "base_model") if policy.source == "random"
                               else policy.source)
    dist.barrier()
    return path


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
               rank: int = 0) -> dict:
    """Load the newest readable checkpoint in `out_dir` into `model` and `optimizer`, restore this
    rank's RNGs, return its train state (``step``, ``extra``, ``path``). An unreadable checkpoint (a full
    disk, a partial copy) is skipped with a warning; one that reads but does not fit is an error (an
    older one would not fit either). Every rank must pick the same one (checked)."""
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
        raise FileNotFoundError(f"--resume=true but {out_dir} holds no checkpoint (step_XXXXXX/)")
    ckpt, tensors, state = found
    copy_weights(model, tensors, ckpt)
    restore_train_state(state, optimizer, rank=rank, source=ckpt / "train_state.pt")
    for reason in skipped:
        dist.print0(f"warning: skipped checkpoint {reason}; resuming from {ckpt.name}", file=sys.stderr)
    state["path"] = str(ckpt)
    return state


def weights_digest(model: torch.nn.Module, trainable_only: bool = False) -> str:
    """sha256 over each parameter's name and fp32 bytes: equal digests, equal weights. DDP runs log each
    rank's; `trainable_only` hashes what DDP keeps in sync (a 7B LoRA run: megabytes, not the model)."""
    digest = hashlib.sha256()
    for name, param in sorted(dist.unwrap(model).named_parameters()):
        if param.requires_grad or not trainable_only:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# The command line


def warn_short_schedule(samples: int, total_steps: int, warmup_steps: int) -> None:
    """A run whose every optimizer step falls inside the learning-rate warm-up never trains at the rate
    it was set to (`lr_at`): too little data for the recipe, which the person should hear before it runs."""
    if total_steps <= warmup_steps:
        warnings.warn(f"too little data: {samples} samples make {total_steps} optimizer steps, all inside the "
                      f"{warmup_steps}-step learning-rate warm-up, so the run never reaches its learning rate; "
                      f"give it more rows (or a smaller --data.stride, more --epochs), or a smaller "
                      f"--optim.warmup_steps")


def run_cli(main: Callable[[Any, dist.DistInfo], Any], config_class: type, description: str,
            argv: Optional[list[str]] = None) -> None:
    """The scripts' ``__main__``: config, process group, ``main(cfg, info)``. Bad input (ValueError,
    OSError) ends as one ``error:`` line and status 2, Ctrl-C as one line and status 130."""
    cfg = load_config_or_exit(config_class, argv, description)
    show_warnings_as_lines(enabled=dist.is_master())
    signal.signal(signal.SIGINT, lambda signum, frame: _interrupted(cfg.out_dir))
    error = None
    with dist.distributed() as info:
        try:
            main(cfg, info)
        except (ValueError, OSError) as err:
            error = str(err).splitlines()[0] if str(err) else type(err).__name__
        # the message is kept and the except block left first: its traceback would keep the DDP model alive
    if error is not None:
        dist.fail(error)
    if dist.under_torchrun():
        dist.leave_now(0)


def _interrupted(out_dir: str) -> None:
    """SIGINT (torchrun forwards it to every worker): rank 0 names the checkpoint ``--resume=true``
    continues from and every rank leaves at once. Not a KeyboardInterrupt: raised inside a collective it
    gave a traceback per rank and an aborted Gloo teardown. Safe: checkpoints are renamed in whole."""
    if dist.is_master():
        try:
            latest = latest_checkpoint(out_dir)
        except OSError:                                # an unreadable out_dir must not cost the one line
            latest = None
        where = (f"--resume=true continues from {latest}" if latest is not None
                 else "no checkpoint was written yet")
        print(f"error: interrupted; {where}", file=sys.stderr, flush=True)
    dist.leave_now(130)
