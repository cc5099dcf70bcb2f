"""Run configuration: small dataclasses, TOML presets and ``--key=value`` overrides.

A run is described by one dataclass (`SFTConfig` or `GRIPConfig`) whose groups (`model`, `lora`,
`data`, `optim`) are dataclasses too. Values come, in order of precedence, from

1. the dataclass defaults (the paper's settings where the paper gives one),
2. a TOML preset (``--config configs/grip_tiny.toml``): top-level keys are top-level fields and
   each TOML table is a group (``[optim]`` holds ``lr = 1e-6``),
3. command-line overrides ``--key=value`` / ``--group.key=value`` (``--key value`` works too, and a
   bare ``--flag`` sets a bool to true). A key that is not top-level may be given by its bare name
   when exactly one group has it (``--lr=1e-6`` means ``--optim.lr=1e-6``).

Every value is coerced to the field's annotated type (int, float, bool, str, Literal choices,
tuples from comma lists, Optional); unknown keys and bad values raise `ConfigError` with one line
naming the key. Training scripts print that line and exit with status 2.

The resolved config is saved beside every checkpoint (`save_config`) as TOML, so a run can be
repeated with ``--config <ckpt>/config.toml``. Style follows nanoGPT's configurator (plain values,
command-line overrides) without its ``exec``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from timer1.atomic import write_text_atomic


class ConfigError(ValueError):
    """A bad config key or value; the message is one line and names the key."""


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help string shown by ``--help``."""
    return field(default=default, metadata={"help": help})


def group(factory: Any, help: str) -> Any:
    """A nested config group: `factory` is the group's dataclass, or a function returning one with
    run-specific defaults (GRIP's learning rate differs from SFT's)."""
    return field(default_factory=factory, metadata={"help": help})


# ----------------------------------------------------------------------------- groups

@dataclass
class ModelConfig:
    path: str = opt("", "Hugging Face Qwen2/Qwen2.5 directory (config.json + safetensors)")
    tokenizer: str = opt("", "directory holding tokenizer.json; empty = same as path")
    random_init: bool = opt(False, "build a randomly initialised Qwen2 from the dims below (smoke runs)")
    vocab_size: int = opt(151936, "random_init: vocabulary rows (Qwen2.5 uses 151936)")
    hidden_size: int = opt(64, "random_init: model width")
    intermediate_size: int = opt(128, "random_init: SwiGLU hidden width")
    num_layers: int = opt(2, "random_init: decoder blocks")
    num_heads: int = opt(4, "random_init: query heads")
    num_kv_heads: int = opt(2, "random_init: key/value heads (GQA)")
    tie_word_embeddings: bool = opt(True, "random_init: share lm_head with embed_tokens")
    rope_theta: float = opt(1e6, "random_init: RoPE base (Qwen2.5 uses 1e6)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "parameter dtype; auto = bfloat16 on CUDA, float32 on CPU")
    gradient_checkpointing: bool = opt(False, "recompute block activations in backward to save memory")

    def random_config_dict(self) -> dict:
        """The random model's dims under HF ``config.json`` names (for ``Qwen2Config.from_dict``)."""
        return {"model_type": "qwen2", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
                "tie_word_embeddings": self.tie_word_embeddings, "rope_theta": self.rope_theta}


@dataclass
class LoRAConfig:
    enabled: bool = opt(True, "train LoRA adapters instead of all weights")
    r: int = opt(8, "LoRA rank")
    alpha: float = opt(16.0, "LoRA alpha; the update is scaled by alpha/r (alpha/sqrt(r) with rslora)")
    dropout: float = opt(0.05, "dropout on the LoRA input")
    targets: tuple[str, ...] = opt(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        "module names that get adapters")
    use_rslora: bool = opt(False, "rank-stabilised scaling alpha/sqrt(r)")


@dataclass
class DataConfig:
    data_dir: str = opt("../shared/data", "folder with the dataset CSVs")
    datasets: tuple[str, ...] = opt(("ETTh1",), "training datasets (CSV stems); the paper trains on ETTh1")
    files: tuple[str, ...] = opt(
        (), "your own CSV files (paths, any layout forecast.py reads), split by time: the first 80% of "
            "rows train, the last 20% validate")
    channels: tuple[str, ...] = opt((), "channels to use; empty = all")
    lookback: int = opt(96, "history length L shown in the prompt")
    horizon: int = opt(96, "forecast length H")
    stride: int = opt(96, "step between training windows")
    max_windows: int = opt(0, "cap on training windows (0 = all)")
    decimals: int = opt(3, "decimals printed per value in the prompt")
    prompt_style: Literal["paper", "official", "compact"] = opt(
        "paper", "paper = the 5-part framing, official = the released prompt, compact = rescaled integers")
    digits: int = opt(2, "compact style: digits of the integer scale (2 = the history written as 10..89, fixed width)")
    synthetic_frac: float = opt(0.0, "fraction of training windows drawn from synthetic series")
    shapes: tuple[str, ...] = opt(
        (), "more training window shapes LOOKBACKxHORIZON (e.g. 36x36 for nasdaq's protocol, 96x24); "
            "validation keeps lookback x horizon")
    sft_jsonl: str = opt("", "SFT samples (prompt/completion JSON lines); empty = build them on the fly")


@dataclass
class OptimConfig:
    lr: float = opt(5e-5, "peak learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    betas: tuple[float, float] = opt((0.9, 0.999), "AdamW betas")
    warmup_steps: int = opt(0, "linear warm-up steps")
    grad_clip: float = opt(1.0, "clip the global grad norm to this (0 = off)")
    schedule: Literal["cosine", "constant", "linear"] = opt("cosine", "decay after warm-up")
    min_lr_ratio: float = opt(0.0, "final lr as a fraction of the peak (cosine/linear)")


# ----------------------------------------------------------------------------- runs

@dataclass
class SFTConfig:
    """SFT warm-up (paper Section 3.2: 300 samples, one epoch, lr 5e-5)."""
    model: ModelConfig = group(ModelConfig, "base model")
    lora: LoRAConfig = group(LoRAConfig, "LoRA adapters")
    data: DataConfig = group(DataConfig, "data and prompts")
    optim: OptimConfig = group(OptimConfig, "optimizer and schedule")
    epochs: int = opt(1, "passes over the SFT set")
    batch_size: int = opt(4, "sequences per micro-batch per rank")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    max_seq_len: int = opt(4096, "truncate prompt+completion to this many tokens")
    eval_every: int = opt(50, "validate every N optimizer steps (0 = only at the end)")
    eval_windows: int = opt(8, "validation windows per evaluation")
    log_every: int = opt(1, "print metrics every N steps")
    save_every: int = opt(100, "checkpoint every N steps (0 = only at the end)")
    keep_best: int = opt(1, "keep the K best checkpoints by validation score")
    keep_last: int = opt(1, "also keep the K most recent checkpoints")
    seed: int = opt(0, "random seed")
    out_dir: str = opt("runs/sft", "checkpoints, config and logs go here")
    resume: bool = opt(False, "continue from <out_dir>/latest")
    teacher: Literal["statistical", "model"] = opt(
        "statistical", "SFT data teacher (paper Algorithm 1): baselines + written analysis, or a local Qwen2 model")
    teacher_path: str = opt("", "teacher = model: a Qwen2-architecture checkpoint (e.g. DeepSeek-R1-Distill-Qwen)")
    teacher_k: int = opt(5, "candidate answers per window; the lowest-MAPE one is refined")
    teacher_max_tokens: int = opt(2048, "teacher = model: max new tokens per teacher completion")
    reasoning: Literal["auto", "short", "long"] = opt(
        "auto", "statistical teacher's reasoning length; auto = short for compact prompts, long otherwise")
    val_max_tokens: int = opt(0, "max new tokens of a validation answer (0 = sized from a target completion)")
    prompt_loss: float = opt(
        0.0, "weight of the prompt's tokens in the loss (0 = completion only, the paper; a model trained from "
             "scratch also learns the series from the history it reads)")


@dataclass
class GRIPConfig:
    """GRIP RL (paper Section 3.3: k=3, G=16, eps 0.2, beta 0.04, lr 1e-6, batch 16)."""
    model: ModelConfig = group(ModelConfig, "base model")
    lora: LoRAConfig = group(LoRAConfig, "LoRA adapters")
    data: DataConfig = group(DataConfig, "data and prompts")
    optim: OptimConfig = group(lambda: OptimConfig(lr=1e-6), "optimizer and schedule (paper: lr 1e-6)")
    sft_adapter: str = opt("", "SFT adapter (PEFT dir) to start from; empty = start from the base model")
    G: int = opt(16, "completions per prompt that enter the loss (group size)")
    k: int = opt(3, "oversampling factor: k*G completions are sampled, G are selected")
    batch: int = opt(16, "prompts per optimizer step (over all ranks)")
    micro_batch: int = opt(4, "trajectories per forward/backward pass")
    selection: Literal["cluster", "local", "uniform"] = opt(
        "cluster", "how G of the k*G completions are chosen (uniform = plain GRPO sampling)")
    weights: Literal["softmax", "positive", "uniform"] = opt(
        "softmax", "trajectory weights: softmax of rewards (paper), positive advantages only, or uniform")
    eps: float = opt(0.2, "PPO clip range (the lower side when eps_high is set)")
    eps_high: Optional[float] = opt(None, "upper clip range (DAPO clip-higher: 0.28); unset = eps")
    beta: float = opt(0.04, "KL penalty coefficient (official code: 0.001; TRL's default: 0)")
    mu: int = opt(2, "inner policy updates per rollout (1 makes the ratio 1 and the clip inert)")
    loss_agg: Literal["seq-mean", "token-mean", "batch-token-mean", "constant"] = opt(
        "seq-mean", "seq-mean = 1/|o_i| per trajectory (paper); token-mean per micro-batch (official code); "
                    "batch-token-mean over the whole step (DAPO); constant = divide by max_completion (Dr. GRPO)")
    adv_scale: Literal["group-std", "batch-std", "none"] = opt(
        "group-std", "advantage = (r - group mean) / group std (paper), / batch std (ScaleRL), or unscaled (Dr. GRPO)")
    ratio_level: Literal["token", "sequence"] = opt(
        "token", "importance ratio per token (paper) or GSPO's length-normalised sequence ratio")
    drop_zero_variance: bool = opt(
        False, "drop groups whose rewards are all equal from the update (DAPO's dynamic-sampling filter)")
    overlong: Literal["keep", "drop", "soft-penalty"] = opt(
        "keep", "completions cut at max_completion: train on them, drop them (DAPO overlong filtering), or "
                "add DAPO's soft length penalty to every reward")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling threshold (log-probs in the loss are of the full distribution)")
    max_completion: int = opt(3000, "max new tokens per completion")
    reward: Literal["paper", "official"] = opt(
        "paper", "mse reward normalisation: by target stats (paper) or the prediction's own (official)")
    reference: Literal["init", "base"] = opt(
        "init", "KL reference: the policy RL starts from (the SFT adapter / model) or the base with LoRA off")
    rollout_prompts: int = opt(
        0, "prompts per sampler call (0 = all of a rank's prompts at once); the KV cache holds this * k * G rows")
    digit_bonus: float = opt(
        0.0, "smoke runs/tests only: add this times the share of digits in a completion to its reward "
             "(gives a random model a non-constant reward); 0 = the paper's reward only")
    steps: int = opt(100, "optimizer steps (rollouts)")
    eval_every: int = opt(10, "validate every N steps (0 = only at the end)")
    eval_windows: int = opt(8, "validation windows per evaluation")
    eval_samples: int = opt(
        1, "validation forecasts: 1 = one greedy answer per window; N > 1 = slow thinking's median of N drafts")
    log_every: int = opt(1, "print metrics every N steps")
    save_every: int = opt(10, "checkpoint every N steps (0 = only at the end)")
    keep_best: int = opt(1, "keep the K best checkpoints by validation score")
    keep_last: int = opt(1, "also keep the K most recent checkpoints")
    seed: int = opt(0, "random seed")
    out_dir: str = opt("runs/grip", "checkpoints, config and logs go here")
    resume: bool = opt(False, "continue from <out_dir>/latest")


# ----------------------------------------------------------------------------- coercion

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _type_name(args[0]) if args else "str"
        return f"list of {inner}" if (len(args) == 2 and args[1] is Ellipsis) else f"{len(args)} x {inner}"
    if origin in (Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(rest[0])} or none"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn `value` (a command-line string or a TOML value) into type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"bad value for '{key}': {value!r} (expected {_type_name(tp)})")
    if origin in (Union, types.UnionType):                    # Optional[X]
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, rest[0], key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise bad
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise bad
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(f"field '{key}' has an unsupported type {tp!r}")


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Field name -> (Field, resolved type) for a config dataclass."""
    hints = typing.get_type_hints(cls, include_extras=False)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _is_group(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def from_dict(cls: type, data: dict, prefix: str = "", base: Any = None) -> Any:
    """Build `cls` from a (nested) dict, coercing every value; unknown keys raise ConfigError.
    Keys not in `data` keep the defaults of `base` (by default `cls()`), so a partial group keeps
    its run-specific defaults."""
    base = cls() if base is None else base
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a table of keys, got {data!r}")
    fields = _fields(cls)
    for name in data:
        if name not in fields:
            raise ConfigError(f"unknown config key '{prefix}{name}'")
    kwargs = {}
    for name, value in data.items():
        _, tp = fields[name]
        if _is_group(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.", base=getattr(base, name))
        elif isinstance(value, dict):
            raise ConfigError(f"'{prefix}{name}' is a value, not a group")
        else:
            kwargs[name] = coerce(value, tp, prefix + name)
    return dataclasses.replace(base, **kwargs)


def to_dict(cfg: Any) -> dict:
    """The config as a nested dict of plain values (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


# ----------------------------------------------------------------------------- command line

def _resolve_key(cls: type, key: str) -> tuple[str, ...]:
    """'optim.lr' -> ('optim', 'lr'); a bare nested name is accepted when it is unambiguous."""
    parts = tuple(key.split("."))
    fields = _fields(cls)
    if len(parts) == 1 and parts[0] not in fields:
        owners = [g for g, (_, tp) in fields.items() if _is_group(tp) and parts[0] in _fields(tp)]
        if len(owners) == 1:
            return (owners[0], parts[0])
        if len(owners) > 1:
            options = ", ".join(f"--{g}.{parts[0]}" for g in owners)
            raise ConfigError(f"ambiguous config key '{key}': use one of {options}")
    node = cls
    for i, part in enumerate(parts):
        sub = _fields(node) if _is_group(node) else {}
        if part not in sub:
            raise ConfigError(f"unknown config key '{key}'")
        node = sub[part][1]
        if i < len(parts) - 1 and not _is_group(node):
            raise ConfigError(f"unknown config key '{key}'")
    if _is_group(node):
        raise ConfigError(f"'{key}' is a group; set one of its keys, e.g. --{key}.<name>=...")
    return parts


def _split_argv(cls: type, argv: list[str]) -> tuple[Optional[str], list[tuple[str, str]], bool]:
    """argv -> (preset path, [(key, raw value)], help wanted)."""
    preset, pairs, want_help, i = None, [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            want_help, i = True, i + 1
            continue
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument '{arg}' (use --key=value)")
        key, eq, value = arg[2:].partition("=")
        if not eq:                                             # --key value, or a bare --flag
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            elif key != "config" and _field_type(cls, key) is bool:
                value = "true"
            else:
                raise ConfigError(f"missing value for '--{key}' (use --{key}=value)")
        if key == "config":
            preset = value
        else:
            pairs.append((key, value))
        i += 1
    return preset, pairs, want_help


def _field_type(cls: type, key: str) -> Any:
    try:
        parts = _resolve_key(cls, key)
    except ConfigError:
        return None
    node = cls
    for part in parts:
        node = _fields(node)[part][1]
    return node


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_toml(path: str | os.PathLike) -> dict:
    """Read a TOML preset, with a one-line error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def load_config(cls: type, argv: Optional[list[str]] = None, description: str = "") -> Any:
    """Defaults, then ``--config`` preset, then overrides; prints help and exits 0 on ``--help``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    preset, pairs, want_help = _split_argv(cls, argv)
    if want_help:
        print(format_help(cls, description))
        raise SystemExit(0)
    data: dict = {}
    if preset is not None:
        data = load_toml(preset)
        try:
            from_dict(cls, data)                              # name the file in the error
        except ConfigError as exc:
            raise ConfigError(f"{preset}: {exc}") from None
    for key, raw in pairs:
        parts = _resolve_key(cls, key)
        nested: dict = {parts[-1]: raw}
        for part in reversed(parts[:-1]):
            nested = {part: nested}
        data = _merge(data, nested)
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


parse_args = load_config


def load_config_or_exit(cls: type, argv: Optional[list[str]] = None, description: str = "") -> Any:
    """`load_config` for scripts: a bad key or value becomes one line on stderr and exit status 2."""
    try:
        return load_config(cls, argv, description)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def validate(cfg: Any) -> None:
    """Range checks that a type alone cannot express; raises ConfigError naming the key."""
    positive = ["epochs", "batch_size", "grad_accum", "max_seq_len", "G", "k", "batch",
                "micro_batch", "mu", "max_completion", "steps", "model.hidden_size",
                "model.num_layers", "model.num_heads", "model.num_kv_heads", "model.vocab_size",
                "lora.r", "data.lookback", "data.horizon", "data.stride", "data.decimals"]
    non_negative = ["eps", "beta", "temperature", "keep_best", "keep_last", "eval_every",
                    "save_every", "log_every", "optim.lr", "optim.weight_decay",
                    "optim.warmup_steps", "optim.grad_clip", "lora.dropout"]
    for keys, ok, what in ((positive, lambda v: v > 0, "> 0"), (non_negative, lambda v: v >= 0, ">= 0")):
        for key in keys:
            value = _get(cfg, key)
            if value is not None and not ok(value):
                raise ConfigError(f"bad value for '{key}': {value} (must be {what})")
    if isinstance(cfg, GRIPConfig) and cfg.G < 2:
        raise ConfigError(f"bad value for 'G': {cfg.G} (group advantages need G >= 2)")
    if not 0.0 <= _get(cfg, "data.synthetic_frac") <= 1.0:
        raise ConfigError(f"bad value for 'data.synthetic_frac': {cfg.data.synthetic_frac} (must be in [0, 1])")
    if not 0.0 < _get(cfg, "top_p", 1.0) <= 1.0:
        raise ConfigError(f"bad value for 'top_p': {cfg.top_p} (must be in (0, 1])")
    m = cfg.model
    if m.random_init and (m.num_heads % m.num_kv_heads or m.hidden_size % m.num_heads):
        raise ConfigError(f"bad value for 'model.num_heads'/'model.num_kv_heads': {m.num_heads}/{m.num_kv_heads} "
                          f"(num_heads must divide hidden_size {m.hidden_size} and be a multiple of num_kv_heads)")
    if not cfg.model.random_init and not cfg.model.path:
        raise ConfigError("'model.path' is empty: give an HF Qwen2 directory or set --model.random_init=true")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            return default
        node = getattr(node, part)
    return node


def format_help(cls: type, description: str = "") -> str:
    """Every field with its type, default and help, grouped as in the dataclass."""
    prog = Path(sys.argv[0]).name or "script"
    lines = [f"usage: {prog} [--config PRESET.toml] [--key=value ...] [--group.key=value ...]"]
    if description:
        lines += ["", description.strip()]
    lines += ["", "  --config PATH  TOML preset; top-level keys are fields, tables are groups",
              "  -h, --help     show this message and exit"]

    defaults = cls()                                     # group defaults may differ per run type

    def section(node: type, prefix: str) -> list[str]:
        out = []
        for name, (f, tp) in _fields(node).items():
            if _is_group(tp):
                continue
            default = _get(defaults, prefix + name)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            out.append(f"  --{prefix}{name}=<{_type_name(tp)}>  (default: {shown})")
            out.append(f"      {f.metadata.get('help', '')}")
        return out

    lines += ["", "run:"] + section(cls, "")
    for name, (f, tp) in _fields(cls).items():
        if _is_group(tp):
            lines += ["", f"{name}: {f.metadata.get('help', '')}"] + section(tp, f"{name}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- saving

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)           # JSON escapes are valid TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dumps_toml(data: dict) -> str:
    """A nested dict of plain values as TOML (top-level values first, then one table per group).
    None has no TOML spelling: such keys are left out, so they load back as their default."""
    top = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    out = "\n".join(top) + "\n"
    for k, v in data.items():
        if isinstance(v, dict):
            body = [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
            out += f"\n[{k}]\n" + "\n".join(body) + "\n"
    return out


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config atomically: TOML for ``*.toml`` (loadable with --config), else JSON."""
    data = to_dict(cfg)
    text = dumps_toml(data) if str(path).endswith(".toml") else json.dumps(data, indent=2) + "\n"
    write_text_atomic(path, text)


def load_saved_config(cls: type, path: str | os.PathLike) -> Any:
    """Read a config written by `save_config` (TOML or JSON) back into `cls`."""
    path = Path(path)
    if str(path).endswith(".toml"):
        data = load_toml(path)
    else:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
    return from_dict(cls, data)
