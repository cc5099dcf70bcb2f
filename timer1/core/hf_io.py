"""Hugging Face checkpoint directories: config.json in both dialects, safetensors weights single or sharded.

config.json comes in two dialects: hub checkpoints carry ``rope_theta`` and ``torch_dtype`` at the top
level, files written by transformers 5 carry ``rope_parameters: {rope_theta, rope_type}`` and ``dtype``.
Both are read; the hub dialect is written, since every transformers version reads it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a dtype, a name like ``"bfloat16"``/``"torch.float32"``, or None (kept)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = dtype.removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[name]


# ----------------------------------------------------------------------------------------------
# config.json


def read_json(path: str | os.PathLike) -> dict:
    """A parsed config.json; FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing config file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def config_fields(raw: dict, names: set[str], source: str) -> dict:
    """The fields of ``raw`` (either dialect) among ``names``, under the hub dialect's names."""
    check_supported(raw, source)
    raw = dict(raw)
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    if "rope_theta" in rope:  # transformers-5 dialect
        raw["rope_theta"] = rope["rope_theta"]
    if "dtype" in raw and "torch_dtype" not in raw:  # transformers-5 dialect
        raw["torch_dtype"] = raw["dtype"]
    missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers") if n not in raw]
    if missing:
        raise ValueError(f"{source}: missing field {missing[0]!r}")
    kept = {k: v for k, v in raw.items() if k in names and v is not None}
    kept["torch_dtype"] = str(kept.get("torch_dtype", "float32")).removeprefix("torch.")
    return kept


def check_supported(raw: dict, source: str) -> None:
    """Refuse, with one line naming the field, a config the decoder would only approximate."""
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{source}: unsupported model_type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    if raw.get("use_sliding_window"):
        raise ValueError(f"{source}: use_sliding_window=true is not supported")
    if any(kind != "full_attention" for kind in raw.get("layer_types") or ()):  # transformers-5 dialect
        raise ValueError(f"{source}: layer_types other than full_attention are not supported")
    if raw.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: unsupported hidden_act {raw['hidden_act']!r} (only silu)")
    if raw.get("attention_dropout", 0.0):
        raise ValueError(f"{source}: attention_dropout={raw['attention_dropout']} is not supported (only 0)")
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"{source}: unsupported rope_type {rope_type!r} (only default RoPE)")


def hub_config(config) -> dict:
    """A ``timer1.core.model.Qwen2Config`` as the hub dialect of config.json (what Qwen/Qwen2.5-* and
    HuggingFaceTB/SmolLM2-* carry). Read by attribute, not imported: the model imports this module."""
    out = {
        "architectures": ["LlamaForCausalLM" if config.model_type == "llama" else "Qwen2ForCausalLM"],
        "model_type": config.model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "hidden_act": config.hidden_act,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "torch_dtype": config.torch_dtype,
        "attention_dropout": 0.0,
        "use_cache": True,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
    }
    if config.model_type == "llama":  # LlamaConfig's own fields
        out.update(attention_bias=config.attention_bias, mlp_bias=config.mlp_bias, head_dim=config.head_dim,
                   pretraining_tp=1)
    else:  # Qwen2Config's; head_dim only when it is not the default
        out.update(use_sliding_window=False, sliding_window=config.max_position_embeddings,
                   max_window_layers=config.num_hidden_layers)
        if config.head_dim != config.hidden_size // config.num_attention_heads:
            out["head_dim"] = config.head_dim
    return out


# ----------------------------------------------------------------------------------------------
# Weights


def read_weights(path: Path, expected: dict[str, torch.Size], *, tied: bool,
                 device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint's safetensors files, read straight into ``dtype`` on ``device``
    and checked against ``expected`` shapes. With ``tied`` embeddings a stored ``lm_head.weight`` copy
    is not read: the tie wins, as in HF."""
    from safetensors import safe_open

    expected = {k: v for k, v in expected.items() if not (tied and k == "lm_head.weight")}
    state = {}
    load_device = str(device)  # safetensors wants "cuda:N", not "cuda"
    if device.type == "cuda" and device.index is None:
        load_device = f"cuda:{torch.cuda.current_device()}"
    for file in weight_files(path):
        with safe_open(str(file), framework="pt", device=load_device) as f:
            for name in f.keys():
                if name == "lm_head.weight" and tied:
                    continue
                if name not in expected:
                    raise ValueError(f"{file}: unexpected tensor {name!r}")
                shape = tuple(f.get_slice(name).get_shape())
                if shape != tuple(expected[name]):
                    raise ValueError(f"{file}: tensor {name!r} has shape {shape}, "
                                     f"config expects {tuple(expected[name])}")
                state[name] = f.get_tensor(name).to(device=device, dtype=dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{path}: missing tensor {missing[0]!r}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return state


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the single file, or the shards its index lists."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if not index.is_file():
        raise FileNotFoundError(f"missing weights: neither {single} nor {index} exists")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{index}: not a safetensors index ({err!r})") from None
    files = [path / name for name in sorted(set(weight_map.values()))]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"missing shard {file} (listed in {index.name})")
    return files


def write_checkpoint(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict,
                     max_shard_size: int | str = "5GB") -> None:
    """Write ``config.json`` and ``model.safetensors`` (sharded above ``max_shard_size``), atomically;
    into an existing ``path`` (it may hold a tokenizer) each file is moved with an atomic replace,
    config.json last."""
    from safetensors.torch import save_file

    path = Path(path)
    shards = _split_shards(state, _parse_size(max_shard_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = ("model.safetensors" if len(shards) == 1
                    else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
        if len(shards) > 1:
            total = sum(t.numel() * t.element_size() for t in state.values())
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if not path.exists():
            os.rename(tmp, path)
            return
        for old in path.glob("model*.safetensors*"):
            if not (tmp / old.name).exists():
                old.unlink()
        for new in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
            os.replace(new, path / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _parse_size(size: int | str) -> int:
    """``5000000`` or ``"5GB"``/``"500MB"``/``"100KB"`` (decimal units, as HF) -> bytes."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not like 5GB, 500MB, 100KB or an int")
    return int(float(match[1]) * {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match[2]])


def _split_shards(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    """Greedy split in state-dict order, starting a new shard when the next tensor would overflow."""
    shards, current, size = [], {}, 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    return shards
