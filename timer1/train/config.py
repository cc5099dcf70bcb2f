"""Run configuration: dataclasses with the paper's defaults, a TOML preset, then ``--key=value`` overrides.

A run is one dataclass (`SFTConfig` or `GRIPConfig`) whose groups (`model`, `lora`, `data`, `optim`)
are dataclasses too: a TOML table or ``--group.key=value`` sets a group's field. Groups a run shares
or a method function takes whole are base classes, so their keys stay flat (``--out_dir``, ``--beta``):
`RunConfig` (the run's bookkeeping, SFT and GRIP alike), `timer1.core.grip.LossConfig` (the GRIP
objective, taken whole by ``grip_loss``) and `RandomInitDims` (a random model's dims, under ``model.``);
`group_of` hands a function just its group. Every value is
coerced to its field's annotated type; a bad key or value is a one-line `ConfigError` naming the key.
nanoGPT's configurator without its ``exec``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from timer1.core.grip import LossConfig
from timer1.util.atomic import write_text_atomic


class ConfigError(ValueError):
    """A bad config key or value; the message is one line and names the key."""


def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help string shown by ``--help``."""
    return field(default=default, metadata={"help": help})


def group(factory: Any, help: str) -> Any:
    """A nested group: `factory` builds its dataclass (a lambda gives run-specific defaults)."""
    return field(default_factory=factory, metadata={"help": help})


# ----------------------------------------------------------------------------- groups

@dataclass
class RandomInitDims:
    """A randomly initialised Qwen2's dims (smoke runs, the tiny model), under HF ``config.json`` names
    by `config_dict`."""

    vocab_size: int = opt(151936, "random_init: vocabulary rows (Qwen2.5 uses 151936)")
    hidden_size: int = opt(64, "random_init: model width")
    intermediate_size: int = opt(128, "random_init: SwiGLU hidden width")
    num_layers: int = opt(2, "random_init: decoder blocks")
    num_heads: int = opt(4, "random_init: query heads")
    num_kv_heads: int = opt(2, "random_init: key/value heads (GQA)")
    tie_word_embeddings: bool = opt(True, "random_init: share lm_head with embed_tokens")
    rope_theta: float = opt(1e6, "random_init: RoPE base (Qwen2.5 uses 1e6)")

    def config_dict(self) -> dict:
        """The dims under HF ``config.json`` names (for ``Qwen2Config.from_dict``)."""
        return {"model_type": "qwen2", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
                "tie_word_embeddings": self.tie_word_embeddings, "rope_theta": self.rope_theta}


@dataclass
class ModelConfig(RandomInitDims):
    path: str = opt("", "Hugging Face Qwen2/Qwen2.5 directory (config.json + safetensors)")
    tokenizer: str = opt("", "directory holding tokenizer.json; empty = same as path")
    random_init: bool = opt(False, "build a randomly initialised Qwen2 from the dims below (smoke runs)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "parameter dtype; auto = bfloat16 on CUDA, float32 on CPU")
    gradient_checkpointing: bool = opt(False, "recompute block activations in backward to save memory")


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
    judge_dir: str = opt(
        "", "train the judge task instead of forecasting: a folder with train.jsonl and val.jsonl built by "
            "python -m timer1.train.judge_data (the window options above are then unused)")


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
class RunConfig:
    """A training run's bookkeeping, the same for SFT and GRIP: validation, logging, checkpoints."""

    eval_every: int = opt(50, "validate every N optimizer steps (0 = only at the end)")
    eval_windows: int = opt(8, "validation windows per evaluation")
    log_every: int = opt(1, "print metrics every N steps")
    save_every: int = opt(100, "checkpoint every N steps (0 = only at the end)")
    keep_best: int = opt(1, "keep the K best checkpoints by validation score")
    keep_last: int = opt(1, "also keep the K most recent checkpoints")
    seed: int = opt(0, "random seed")
    out_dir: str = opt("runs/sft", "checkpoints, config and logs go here")
    resume: bool = opt(False, "continue from <out_dir>/latest")
    dist: Literal["ddp", "fsdp"] = opt(
        "ddp", "under torchrun: ddp (each rank holds the whole model) or fsdp (FSDP2: weights, gradients "
               "and optimizer state sharded over ranks, each decoder layer then the root)")


def run_default(name: str, default: Any) -> Any:
    """`RunConfig`'s field `name` with a run-specific default (same help)."""
    return opt(default, {f.name: f for f in dataclasses.fields(RunConfig)}[name].metadata["help"])


@dataclass
class SFTConfig(RunConfig):
    """SFT warm-up (paper Section 3.2: 300 samples, one epoch, lr 5e-5)."""
    model: ModelConfig = group(ModelConfig, "base model")
    lora: LoRAConfig = group(LoRAConfig, "LoRA adapters")
    data: DataConfig = group(DataConfig, "data and prompts")
    optim: OptimConfig = group(OptimConfig, "optimizer and schedule")
    epochs: int = opt(1, "passes over the SFT set")
    batch_size: int = opt(4, "sequences per micro-batch per rank")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    max_seq_len: int = opt(4096, "truncate prompt+completion to this many tokens")
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
class GRIPConfig(RunConfig, LossConfig):
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
    mu: int = opt(2, "inner policy updates per rollout (1 makes the ratio 1 and the clip inert)")
    adv_scale: Literal["group-std", "batch-std", "none"] = opt(
        "group-std", "advantage = (r - group mean) / group std (paper), / batch std (ScaleRL), or unscaled (Dr. GRPO)")
    drop_zero_variance: bool = opt(
        False, "drop groups whose rewards are all equal from the update (DAPO's dynamic-sampling filter)")
    overlong: Literal["keep", "drop", "soft-penalty"] = opt(
        "keep", "completions cut at max_completion: train on them, drop them (DAPO overlong filtering), or "
                "add DAPO's soft length penalty to every reward")
    temperature: float = opt(1.0, "sampling temperature")
    top_p: float = opt(1.0, "nucleus sampling threshold (log-probs in the loss are of the full distribution)")
    reward: Literal["paper", "official"] = opt(
        "paper", "mse reward normalisation: by target stats (paper) or the prediction's own (official)")
    reference: Literal["init", "base"] = opt(
        "init", "KL reference: the policy RL starts from (the SFT adapter / model) or the base with LoRA off")
    rollout_prompts: int = opt(
        0, "prompts per sampler call (0 = as many as half the free GPU memory holds the KV cache of, all of a "
           "rank's prompts on a CPU up to 4 GiB; timer1.core.rollout.fitting_prompts); the cache holds this * k * G rows")
    digit_bonus: float = opt(
        0.0, "smoke runs/tests only: add this times the share of digits in a completion to its reward "
             "(gives a random model a non-constant reward); 0 = the paper's reward only")
    steps: int = opt(100, "optimizer steps (rollouts)")
    eval_samples: int = opt(
        1, "validation forecasts: 1 = one greedy answer per window; N > 1 = slow thinking's median of N drafts")
    eval_every: int = run_default("eval_every", 10)
    save_every: int = run_default("save_every", 10)
    out_dir: str = run_default("out_dir", "runs/grip")


def group_of(cfg: Any, cls: type) -> Any:
    """The `cls` group (a base class of ``type(cfg)``) of a run config, as its own object: what a
    function that takes that group is given."""
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


# ----------------------------------------------------------------------------- reading

def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Field name -> (Field, resolved type) of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin is tuple:
        return f"list of {_type_name(args[0])}" if args[-1] is Ellipsis else f"{len(args)} x {_type_name(args[0])}"
    if origin in (Union, types.UnionType):
        return f"{_type_name(args[0])} or none"
    return tp.__name__


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` (a command-line string or a TOML value) as type `tp`, or ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"bad value for '{key}': {value!r} (expected {_type_name(tp)})")
    if origin in (Union, types.UnionType):                     # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], key)
    if origin is Literal:
        if value not in args:
            raise bad
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise bad
        if args[-1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise bad
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if isinstance(value, tp) and not (tp is not bool and isinstance(value, bool)):
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and tp is bool and value.lower() in _BOOLS:
        return _BOOLS[value.lower()]
    if isinstance(value, str) and tp in (int, float):
        try:
            return tp(value.replace("_", "") if tp is int else value)
        except ValueError:
            pass
    raise bad


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def from_dict(cls: type, data: dict, prefix: str = "", base: Any = None) -> Any:
    """`cls` from a nested dict, every value coerced; keys not in `data` keep `base`'s values, so a
    partial group keeps its run-specific defaults."""
    base = cls() if base is None else base
    fields, kwargs = _fields(cls), {}
    for name, value in data.items():
        key, tp = prefix + name, fields[name][1] if name in fields else None
        if tp is None or (isinstance(value, dict) and not _is_group(tp)):   # --nogroup.lr=1, --G.x=1
            while isinstance(value, dict) and value:
                sub = next(iter(value))
                key, value = f"{key}.{sub}", value[sub]
            raise ConfigError(f"unknown config key '{key}'")
        if _is_group(tp) and not isinstance(value, dict):
            raise ConfigError(f"'{key}' is a group: give it a table of keys (--{key}.<name>=...)")
        kwargs[name] = from_dict(tp, value, key + ".", getattr(base, name)) if _is_group(tp) else coerce(value, tp, key)
    return dataclasses.replace(base, **kwargs)


def to_dict(cfg: Any) -> dict:
    """The config as a nested dict of plain values (tuples become lists)."""
    return {f.name: to_dict(v) if dataclasses.is_dataclass(v) else list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(cfg) for v in [getattr(cfg, f.name)]}


def _read_toml(path: str) -> dict:
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def load_config(cls: type, argv: Optional[list[str]] = None, description: str = "") -> Any:
    """Defaults, then the ``--config`` preset, then ``--key=value`` overrides; ``--help`` prints the
    fields and exits 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(format_help(cls, description))
        raise SystemExit(0)
    preset, overrides = None, {}
    args = iter(argv)
    for arg in args:
        key, eq, value = arg[2:].partition("=")
        if not arg.startswith("--") or not key:
            raise ConfigError(f"unexpected argument '{arg}' (use --key=value)")
        if key == "config":
            preset = value if eq else next(args, None)
            if preset is None:
                raise ConfigError("missing value for '--config' (use --config PATH)")
            continue
        if not eq and not _is_flag(cls, key):
            raise ConfigError(f"missing value for '--{key}' (use --{key}=value)")
        value = value if eq else "true"                        # a bare switch: --resume
        *groups, name = key.split(".")
        node = overrides
        for part in groups:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"'{part}' is a group: give it a table of keys (--{part}.<name>=...)")
        node[name] = value
    data = {}
    if preset is not None:
        data = _read_toml(preset)
        try:
            from_dict(cls, data)                               # name the file in the error
        except ConfigError as exc:
            raise ConfigError(f"{preset}: {exc}") from None
    cfg = from_dict(cls, _merge(data, overrides))
    validate(cfg)
    return cfg


def _is_flag(cls: type, key: str) -> bool:
    """Whether ``--key`` (dotted into groups) names a bool field, which may stand alone as a switch."""
    *groups, name = key.split(".")
    for part in groups:
        field = _fields(cls).get(part)
        if field is None or not _is_group(field[1]):
            return False
        cls = field[1]
    field = _fields(cls).get(name)
    return field is not None and field[1] is bool


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config_or_exit(cls: type, argv: Optional[list[str]] = None, description: str = "") -> Any:
    """`load_config` for scripts: a bad key or value becomes one line on stderr and exit status 2."""
    try:
        return load_config(cls, argv, description)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def validate(cfg: Any) -> None:
    """Range checks that a type alone cannot express; raises ConfigError naming the key."""
    positive = ["epochs", "batch_size", "grad_accum", "max_seq_len", "G", "k", "batch", "micro_batch", "mu",
                "max_completion", "steps", "model.hidden_size", "model.num_layers", "model.num_heads",
                "model.num_kv_heads", "model.vocab_size", "lora.r", "data.lookback", "data.horizon",
                "data.stride", "data.decimals"]
    non_negative = ["eps", "beta", "temperature", "keep_best", "keep_last", "eval_every", "save_every",
                    "log_every", "optim.lr", "optim.weight_decay", "optim.warmup_steps", "optim.grad_clip",
                    "lora.dropout"]
    for keys, ok, what in ((positive, lambda v: v > 0, "> 0"), (non_negative, lambda v: v >= 0, ">= 0")):
        for key in keys:
            value = _get(cfg, key)
            if value is not None and not ok(value):
                raise ConfigError(f"bad value for '{key}': {value} (must be {what})")
    if isinstance(cfg, GRIPConfig) and cfg.G < 2:
        raise ConfigError(f"bad value for 'G': {cfg.G} (group advantages need G >= 2)")
    if not 0.0 <= cfg.data.synthetic_frac <= 1.0:
        raise ConfigError(f"bad value for 'data.synthetic_frac': {cfg.data.synthetic_frac} (must be in [0, 1])")
    if not 0.0 < _get(cfg, "top_p", 1.0) <= 1.0:
        raise ConfigError(f"bad value for 'top_p': {cfg.top_p} (must be in (0, 1])")
    m = cfg.model
    if m.random_init and (m.num_heads % m.num_kv_heads or m.hidden_size % m.num_heads):
        raise ConfigError(f"bad value for 'model.num_heads'/'model.num_kv_heads': {m.num_heads}/{m.num_kv_heads} "
                          f"(num_heads must divide hidden_size {m.hidden_size} and be a multiple of num_kv_heads)")
    if not m.random_init and not m.path:
        raise ConfigError("'model.path' is empty: give an HF Qwen2 directory or set --model.random_init=true")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part, default)
    return cfg


def format_help(cls: type, description: str = "") -> str:
    """Every field with its type, its run's default and its help: the run's own fields, then each flat
    group it inherits (`RunConfig`, `LossConfig`), then each nested group."""
    lines = [f"usage: {Path(sys.argv[0]).name or 'script'} [--config PRESET.toml] [--key=value ...] "
             f"[--group.key=value ...]"] + (["", description.strip()] if description else []) + [
             "", "  --config PATH  TOML preset; top-level keys are fields, tables are groups",
             "  -h, --help     show this message and exit"]
    defaults = cls()
    flat = [name for name, (f, tp) in _fields(cls).items() if not _is_group(tp)]
    owners = [c for c in cls.__mro__ if dataclasses.is_dataclass(c)]   # the run first, then its flat groups
    for owner in owners:
        own = [n for n in flat if _owner(owners, n) is owner]
        title = "run" if owner is cls else f"{owner.__name__}: {owner.__doc__.split(chr(10))[0].rstrip('.')}"
        lines += ["", f"{title}:"] + _field_lines(cls, own, "", defaults)
    for name, (f, tp) in _fields(cls).items():
        if _is_group(tp):
            lines += ["", f"{name}: {f.metadata['help']}"]
            lines += _field_lines(tp, [n for n, (_, t) in _fields(tp).items() if not _is_group(t)], name + ".", defaults)
    return "\n".join(lines)


def _owner(owners: list[type], name: str) -> type:
    """The most basic class of the run's hierarchy that declares field `name` (a run-specific default
    does not move a field out of its group)."""
    return [c for c in owners if name in getattr(c, "__dataclass_fields__", {})][-1]


def _field_lines(node: type, names: list[str], prefix: str, defaults: Any) -> list[str]:
    lines = []
    fields = _fields(node)
    for name in names:
        f, tp = fields[name]
        default = _get(defaults, prefix + name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines += [f"  --{prefix}{name}=<{_type_name(tp)}>  (default: {shown})", f"      {f.metadata['help']}"]
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)  # JSON escapes are TOML


def save_config(cfg: Any, path: str | Path) -> None:
    """The resolved config as a TOML preset, written atomically; None has no TOML spelling, so such
    keys are left out and load back as their default."""
    data = to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    write_text_atomic(path, "\n".join(lines) + "\n")
