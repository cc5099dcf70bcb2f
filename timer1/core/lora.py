"""LoRA (Hu et al. 2021, arXiv 2106.09685), written by hand, saved and loaded in PEFT's on-disk format.

A frozen linear map ``W`` gets a trainable low-rank update: ``y = x W^T + b + s * dropout(x) A^T B^T``
with ``A`` of shape ``(r, in)`` (kaiming-uniform, a=sqrt(5)), ``B`` of shape ``(out, r)`` (zeros, so
the adapted model starts equal to the base) and ``s = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA
(Kalajdzievski 2023, arXiv 2312.03732). Facts follow PEFT's ``tuners/lora``; the code is ours.

As in torchtune, ``LoRALinear`` keeps the base ``weight``/``bias`` names, and ``lora_disabled(model)``
gives the base model's outputs (GRIP's reference policy for the KL term) without a second copy of
the weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from timer1.util.atomic import replacing_directory
from timer1.util.dist import unwrap

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the HF model: the prefix of every key on disk
ALL_LINEAR = "all-linear"  # PEFT's shorthand: every nn.Linear except the output head
OUTPUT_HEAD = "lm_head"
# The PEFT release whose adapter_config.json field list save_adapter reproduces (tests/fixtures/peft_lora).
PEFT_FORMAT_VERSION = "0.21.2"


@dataclass(frozen=True)
class LoRAConfig:
    """What ``apply_lora`` did to a model; ``save_adapter`` writes it as PEFT's adapter_config.json."""

    targets: tuple[str, ...] | str
    r: int = 8
    alpha: float = 16
    dropout: float = 0.0
    use_rslora: bool = False


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` sharing the wrapped layer's Parameters, plus a low-rank update ``s * B @ A``
    that is never materialised in forward. ``disabled = True`` makes it the base layer."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        # Build the nn.Linear shell on the meta device (no allocation, no init), then adopt the base's
        # own Parameters: a 7B model is wrapped without copying or re-initialising any weight.
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight = base.weight
        self.bias = base.bias
        weight = base.weight
        # Like PEFT (autocast_adapter_dtype): half-precision bases get fp32 adapters, so AdamW updates
        # of the small A, B matrices are not lost to bf16 rounding.
        lora_dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=weight.device, dtype=lora_dtype)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=weight.device, dtype=lora_dtype)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scale = alpha / math.sqrt(r) if use_rslora else alpha / r  # rsLoRA: stable as r grows
        self.disabled = False
        self.reset_lora_parameters()
        self.train(base.training)  # a fresh Dropout is in train mode: follow the wrapped layer

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """A kaiming-uniform (as nn.Linear and PEFT), B zero: the update starts at exactly 0."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.disabled:
            return out
        h = self.lora_dropout(x.to(self.lora_A.weight.dtype))  # (..., in), dropout on the LoRA branch only
        update = self.lora_B(self.lora_A(h) * self.scale)  # (..., r) -> (..., out); scaled at rank r, not out
        return out + update.to(out.dtype)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """s * B @ A, shape (out, in), in fp32."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}, scale={self.scale:g}"


# ---------------------------------------------------------------------------------------------------
# Applying, disabling, merging


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in ``model``, by its full module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def find_targets(model: nn.Module, targets: Sequence[str] | str) -> list[str]:
    """Names of the modules ``targets`` selects, with PEFT's rules: a list entry matches a full name or
    its ``"." + entry`` suffix, a string is a regex over the full name, ``"all-linear"`` is every
    ``nn.Linear`` but the output head."""
    if isinstance(targets, str) and targets.lower() == ALL_LINEAR:
        names = [
            name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.split(".")[-1] != OUTPUT_HEAD
        ]
    else:
        names = [name for name, _ in model.named_modules() if name and _matches(name, targets)]
    if not names:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {targets if isinstance(targets, str) else list(targets)!r} match no module; "
                         f"its linear layers are named {linear}")
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(modules[name], nn.Linear):
            kind = type(modules[name]).__name__
            raise ValueError(f"LoRA target {name!r} is a {kind}; only nn.Linear layers are supported")
    return names


def _matches(name: str, targets: Sequence[str] | str) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(
    model: nn.Module,
    targets: Sequence[str] | str = ("q_proj", "v_proj"),
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> nn.Module:
    """Wrap the target linear layers in LoRALinear (in place), freeze every other parameter, return ``model``."""
    if not isinstance(r, int) or r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    existing = lora_modules(model)
    if existing:
        raise ValueError(f"LoRA is already applied to this model (e.g. {next(iter(existing))}); "
                         "merge_lora it or start from the base model")
    names = find_targets(model, targets)
    for param in model.parameters():
        param.requires_grad_(False)
    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child_name, LoRALinear(getattr(parent, child_name), r, alpha, dropout, use_rslora))
    # "all-linear" is recorded expanded to module names, as PEFT records it.
    recorded = tuple(names) if isinstance(targets, str) and targets.lower() == ALL_LINEAR else targets
    if not isinstance(recorded, str):
        recorded = tuple(recorded)
    model.lora_config = LoRAConfig(recorded, r, alpha, float(dropout), use_rslora)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights only, under the model's own state-dict names (``...q_proj.lora_A.weight``)."""
    state = {}
    for name, m in lora_modules(model).items():
        state[f"{name}.lora_A.weight"] = m.lora_A.weight.detach()  # (r, in)
        state[f"{name}.lora_B.weight"] = m.lora_B.weight.detach()  # (out, r)
    return state


@contextlib.contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the base model inside the block (every LoRA update switched off), restore afterwards.
    A model without LoRA is an error: the trained policy as "reference" would make the KL term zero."""
    modules = list(lora_modules(model).values())
    if not modules:
        raise ValueError("lora_disabled needs a model with LoRA layers (apply_lora/load_adapter); "
                         "with full fine-tuning keep a separate reference model")
    previous = [m.disabled for m in modules]
    for m in modules:
        m.disabled = True
    try:
        yield model
    finally:
        for m, was_disabled in zip(modules, previous):
            m.disabled = was_disabled


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold each update into its weight (``W += s * B @ A``) and put back plain nn.Linear layers, in place.
    A weight shared with another module (a tied ``lm_head``) is refused: merging would change both."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("merge_lora: the model has no LoRA layers")
    uses = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    for name, m in modules.items():
        if uses[id(m.weight)] > 1:
            raise ValueError(f"merge_lora: {name}.weight is shared with another module (tied embeddings); "
                             "merging would change both")
    for name, m in modules.items():
        m.weight.add_(m.delta_weight().to(m.weight.dtype))  # (out, in)
        plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
        plain.weight, plain.bias = m.weight, m.bias
        plain.train(m.training)
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, plain)
    if "lora_config" in vars(model):
        del model.lora_config
    return model


# ---------------------------------------------------------------------------------------------------
# PEFT's on-disk format


def _peft_config_dict(config: LoRAConfig, base_model_name_or_path: str) -> dict:
    """adapter_config.json as PEFT 0.21 writes it: every field, the unused ones at PEFT's defaults."""
    targets = config.targets if isinstance(config.targets, str) else list(config.targets)
    return {
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path, "bias": "none", "corda_config": None,
        "ensure_weight_tying": False, "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "kasa_config": None, "layer_replication": None,
        "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": config.alpha,
        "lora_bias": False, "lora_dropout": config.dropout, "lora_ga_config": None, "megatron_config": None,
        "megatron_core": "megatron.core", "modules_to_save": None, "monteclora_config": None,
        "peft_type": "LORA", "peft_version": PEFT_FORMAT_VERSION, "qalora_group_size": 16, "r": config.r,
        "rank_pattern": {}, "revision": None, "target_modules": targets, "target_parameters": None,
        "task_type": "CAUSAL_LM", "trainable_token_indices": None, "use_bdlora": None, "use_dora": False,
        "use_qalora": False, "use_rslora": config.use_rslora, "velora_config": None,
    }


# Options a PEFT LoRA adapter may set that change what its tensors mean or which layers they touch;
# this implementation has none of them, so each must be off. (Init-only options such as loftq/eva/corda
# and the backward-only velora leave a plain LoRA adapter behind and load fine.)
_UNSUPPORTED_OPTIONS = (
    "use_dora", "modules_to_save", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "layers_to_transform",
    "layer_replication", "lora_bias", "use_qalora", "target_parameters", "trainable_token_indices",
    "exclude_modules", "alora_invocation_tokens", "use_bdlora", "arrow_config", "kasa_config",
    "monteclora_config",
)


def _config_from_peft(raw: dict, source: Path) -> LoRAConfig:
    """Validate a parsed adapter_config.json and turn it into a LoRAConfig; one-line errors name the file."""
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"{source}: peft_type is {raw.get('peft_type')!r}; only 'LORA' is supported")
    if raw.get("bias", "none") != "none":
        raise ValueError(f"{source}: bias={raw['bias']!r} is not supported (only 'none')")
    for option in _UNSUPPORTED_OPTIONS:
        if raw.get(option):  # None, False, {} and [] all mean "off"
            raise ValueError(f"{source}: {option}={raw[option]!r} is not supported by timer1.core.lora")
    targets = raw.get("target_modules")
    if not targets or not isinstance(targets, (str, list)):
        raise ValueError(f"{source}: target_modules must be a module-name list or a regex, got {targets!r}")
    r, alpha = raw.get("r"), raw.get("lora_alpha")
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, (int, float)):
        raise ValueError(f"{source}: r={r!r} must be a positive integer and lora_alpha={alpha!r} a number")
    targets = targets if isinstance(targets, str) else tuple(targets)
    return LoRAConfig(targets, r, alpha, float(raw.get("lora_dropout") or 0.0), bool(raw.get("use_rslora")))


def save_adapter(model: nn.Module, path: str | os.PathLike, base_model_name_or_path: str = "") -> Path:
    """Write the adapter as PEFT lays it out (``peft.PeftModel.from_pretrained(base, path)`` loads
    it), swapped into place whole."""
    path = Path(path)
    if path.exists():
        adapter_files = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
        others = [p.name for p in path.iterdir() if p.name not in adapter_files] if path.is_dir() else [path]
        if others:
            raise ValueError(f"save_adapter: refusing to replace {path}: it holds other files ({others[:3]})")
    with replacing_directory(path) as tmp:
        write_adapter(model, tmp, base_model_name_or_path)
    return path


def write_adapter(model: nn.Module, folder: Path, base_model_name_or_path: str = "",
                  state: dict[str, torch.Tensor] | None = None) -> None:
    """The two adapter files of `save_adapter`, written into an existing `folder`. ``state``: the
    model's weights by state-dict name when it holds only its shard of them (FSDP), else its own."""
    model = unwrap(model)                       # PEFT's keys are relative to the model DDP wraps
    config = vars(model).get("lora_config")
    if config is None or not lora_modules(model):
        raise ValueError("save_adapter: the model has no LoRA adapter (apply_lora or load_adapter first)")
    adapter = lora_state_dict(model) if state is None else {key: state[key] for key in lora_state_dict(model)}
    tensors = {PEFT_PREFIX + key: t.to("cpu").contiguous() for key, t in adapter.items()}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config_text = json.dumps(_peft_config_dict(config, base_model_name_or_path), indent=2, sort_keys=True)
    (folder / ADAPTER_CONFIG).write_text(config_text)


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Apply LoRA as ``path/adapter_config.json`` says, then load ``adapter_model.safetensors`` strictly.
    Everything is checked before the model is touched."""
    path = Path(path)
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not config_file.is_file():
        raise FileNotFoundError(f"no adapter found: {config_file} does not exist")
    if not weights_file.is_file():
        if (path / "adapter_model.bin").is_file():
            raise ValueError(f"{path / 'adapter_model.bin'}: pickled adapters are not loaded; "
                             f"resave it as {ADAPTER_WEIGHTS}")
        raise FileNotFoundError(f"adapter weights missing: {weights_file} does not exist")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    config = _config_from_peft(raw, config_file)
    tensors = load_file(str(weights_file))
    if lora_modules(model):
        raise ValueError(f"load_adapter: LoRA is already applied to this model; load {path} into the base")
    expected = {}                               # PEFT file key -> the shape this model needs
    for name in find_targets(model, config.targets):
        linear = model.get_submodule(name)
        expected[f"{PEFT_PREFIX}{name}.lora_A.weight"] = (config.r, linear.in_features)
        expected[f"{PEFT_PREFIX}{name}.lora_B.weight"] = (linear.out_features, config.r)
    _check_tensors(tensors, expected, model, weights_file)
    apply_lora(model, config.targets, config.r, config.alpha, config.dropout, config.use_rslora)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key.removeprefix(PEFT_PREFIX)].copy_(tensor)
    return model


def _check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                   model: nn.Module, source: Path) -> None:
    """Every tensor must be one the config implies, with this model's shape, and none may be missing."""
    module_names = {name for name, _ in model.named_modules()}
    for key, tensor in tensors.items():
        if key not in expected:
            module = key.removeprefix(PEFT_PREFIX).rsplit(".", 2)[0]
            if not key.startswith(PEFT_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
                raise ValueError(f"{source}: unexpected tensor {key} (only lora_A/lora_B weights are known)")
            if module not in module_names:
                raise ValueError(f"{source}: tensor {key} is for module {module}, "
                                 "which this model does not have (adapter made for another base model?)")
            raise ValueError(f"{source}: tensor {key} is for module {module}, "
                             "which the adapter's target_modules do not select")
        if tuple(tensor.shape) != expected[key]:
            raise ValueError(
                f"adapter was made for another base model: tensor {key} in {source} has shape "
                f"{tuple(tensor.shape)} but the model expects {expected[key]}"
            )
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{source}: {len(missing)} LoRA tensors the config implies are missing, "
                         f"e.g. {missing[0]}")
