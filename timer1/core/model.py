"""The Qwen2 / Qwen2.5 decoder (Llama too: the same decoder with other biases), by hand, under HF's names.

Every formula follows Hugging Face ``transformers/models/qwen2/modeling_qwen2.py`` (and
``modeling_llama.py``: no q/k/v bias by default, ``attention_bias`` / ``mlp_bias`` add them). Module
names equal HF's, so loading a checkpoint is a strict ``load_state_dict``; every projection is a plain
``nn.Linear`` that LoRA (timer1/core/lora.py) swaps for a subclass keeping ``weight``/``bias``.

One forward serves training, scoring and decoding (nanochat's habit). ``attention_mask`` marks left
padding (pads are never attended to and rotary positions count real tokens only, so a padded row gives
the logits of the row alone); ``cache`` is a :class:`KVCache`, a plain object (never a module buffer,
so DDP and ``state_dict`` never see it).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from timer1.core import hf_io

# ----------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """``weight * (x / sqrt(mean(x^2) + eps))``, normalised in fp32 and cast back before the weight."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """Rotary tables for integer positions ``(B, T)``, computed in fp32 then cast to ``dtype``:
    ``cos = [cos, cos]`` and ``sin_signed = [-sin, sin]``, each ``(B, 1, T, head_dim)``."""
    angles = positions[..., None].float() * inv_freq  # (B, T, d/2)
    cos, sin = angles.cos(), angles.sin()
    return (torch.cat((cos, cos), dim=-1).to(dtype)[:, None],
            torch.cat((-sin, sin), dim=-1).to(dtype)[:, None])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """HF's ``x * cos + rotate_half(x) * sin`` with ``rotate_half([x1, x2]) = [-x2, x1]``: rolling ``x``
    by half its width gives ``[x2, x1]`` and the table ``[-sin, sin]`` carries the sign, so the numbers
    are the same with three fewer ops per call (they add up over a decode step's layers)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


class Attention(nn.Module):
    """Grouped-query self-attention with rotary embeddings; SDPA does the softmax in fp32."""

    def __init__(self, config: Qwen2Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        qkv_bias = config.qkv_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=config.attention_bias)

    def forward(self, x, cos, sin, mask, is_causal, cache: KVCache | None, start: int | torch.Tensor = 0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, d)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, d)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # write slots [start, start + T), then attend to slots [0, start + T)
            k, v = cache.write(self.layer_idx, k, v, start)  # (B, Hkv, S, d)
        y = _sdpa(q, k, v, mask, is_causal)  # (B, H, T, d)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


def _sdpa(q, k, v, mask, is_causal):
    """SDPA with k/v heads shared by groups of query heads: ``q`` ``(B, H, T, d)``, ``k``/``v``
    ``(B, Hkv, S, d)``, ``mask`` None, a lower-right :func:`causal_lower_right` bias, or ``(B|1, 1, T, S)``."""
    B, H, T, d = q.shape
    if q.shape[1] == k.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    if T == 1:  # decoding: the G query heads of a kv head become G queries against the same keys,
        # a plain (B, Hkv, G, S) attention with no copy of the cache (faster than enable_gqa on CPU,
        # and equal head counts let CUDA's memory-efficient kernel take the mask)
        y = F.scaled_dot_product_attention(q.reshape(B, k.shape[1], H // k.shape[1], d), k, v,
                                           attn_mask=mask)
        return y.reshape(B, H, 1, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True)


class MLP(nn.Module):
    """SwiGLU: ``down_proj(silu(gate_proj(x)) * up_proj(x))``; biases only for a llama ``mlp_bias``."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        bias = config.mlp_bias
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, config: Qwen2Config, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, is_causal, cache=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, is_causal, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2Backbone(nn.Module):
    """HF's ``Qwen2Model``: embeddings, the blocks and the final norm (``model.*`` in the state dict)."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        # its default init, N(0, 1), drawn by randn: nn.Embedding's own normal_ on the meta device
        # (where from_pretrained builds) imports torch._dynamo, about 1 s of every cold forecast
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                         _weight=torch.randn(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


# ----------------------------------------------------------------------------------------------
# The causal LM


@dataclass
class Qwen2Config:
    """The fields of a Qwen2 (or Llama) ``config.json`` that the architecture needs, under HF's names."""

    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    head_dim: int | None = None  # absent in Qwen2 configs: hidden_size // num_attention_heads
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # HF's default; every Qwen2.5 config says 1e6
    tie_word_embeddings: bool = False
    torch_dtype: str = "float32"
    model_type: str = "qwen2"
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    attention_bias: bool = False  # llama only: a bias on q, k, v and o_proj
    mlp_bias: bool = False  # llama only: a bias on gate, up and down_proj

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.model_type == "qwen2" and (self.attention_bias or self.mlp_bias):
            raise ValueError("attention_bias/mlp_bias are llama fields; qwen2 has a fixed q/k/v bias")

    @property
    def qkv_bias(self) -> bool:
        """Qwen2 always biases q/k/v; Llama when ``attention_bias``."""
        return self.model_type == "qwen2" or self.attention_bias

    def load_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype "auto" loads these weights in: the checkpoint's own on cuda, fp32 on cpu (bf16
        matmuls are slow on most CPUs)."""
        return hf_io.as_dtype(self.torch_dtype) if device.type == "cuda" else torch.float32

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> Qwen2Config:
        """From a parsed ``config.json`` of either dialect; ``source`` names the file in error messages."""
        kept = hf_io.config_fields(raw, {f.name for f in fields(cls)}, source)
        kept.setdefault("num_key_value_heads", kept.get("num_attention_heads", cls.num_attention_heads))  # HF: MHA
        try:
            return cls(**kept)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Qwen2Config:
        return cls.from_dict(hf_io.read_json(path), source=str(path))

    def to_dict(self) -> dict:
        """The hub dialect of ``config.json``."""
        return hf_io.hub_config(self)


class Qwen2(nn.Module):
    """HF's ``Qwen2ForCausalLM``: ``model`` (the backbone) and ``lm_head``."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.model = Qwen2Backbone(config)
        tied = config.tie_word_embeddings  # then a meta placeholder: never allocate a second V x D
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False,
                                 device="meta" if tied else None)
        if tied:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.gradient_checkpointing = False  # recompute block activations in backward (long RL sequences)
        self._inv_freq: torch.Tensor | None = None  # made on first use: survives meta init and .to()

    def _rope_inv_freq(self, device: torch.device) -> torch.Tensor:
        """Rotary ``1 / theta^(arange(0, d, 2) / d)`` in fp32: a plain attribute, not a buffer, so
        meta-device construction, ``.to(bfloat16)`` and ``state_dict`` never touch it."""
        if self._inv_freq is None or self._inv_freq.device != device:
            d = self.config.head_dim
            with torch.inference_mode(False):  # a normal tensor even if first made while sampling
                exponent = torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d
                self._inv_freq = 1.0 / (self.config.rope_theta ** exponent)  # (d/2,)
        return self._inv_freq

    def forward(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                return_hidden: bool = False, last_only: bool = False) -> torch.Tensor:
        """Causal forward over ``input_ids`` ``(B, T)`` -> ``(B, T, V)`` logits in the model's dtype
        (``return_hidden``: the final normed hidden states; ``last_only``: the last position only).
        A pad query attends to itself only, so it stays finite."""
        start, positions, mask, is_causal = self.prepare(input_ids, attention_mask, positions, cache)
        out = self.core(input_ids, positions, mask, is_causal, cache, start, return_hidden, last_only)
        if cache is not None:
            cache.advance(input_ids.shape[1], attention_mask)
        return out

    def prepare(self, input_ids, attention_mask=None, positions=None, cache: KVCache | None = None):
        """The Python bookkeeping of a forward, kept out of :meth:`core` so that ``torch.compile`` can
        trace ``core`` without graph breaks. Marks the new cache slots; returns the first slot
        written, rotary positions, the SDPA mask and SDPA's ``is_causal``."""
        B, T = input_ids.shape
        device = input_ids.device
        start = cache.length if cache is not None else 0
        if cache is not None and start + T > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions; {start + T} needed")
        real = None if attention_mask is None else attention_mask.to(torch.bool)  # (B, T)
        if positions is None:
            positions = self._default_positions(B, T, real, cache, device)
        if cache is not None:
            cache.mark(start, T, real)
        mask, is_causal = self._attention_mask(T, start, real, cache, device)
        return start, positions, mask, is_causal

    def core(self, input_ids, positions, mask, is_causal, cache: KVCache | None = None,
             start: int | torch.Tensor = 0, return_hidden: bool = False, last_only: bool = False) -> torch.Tensor:
        """Embeddings, the blocks, the final norm and ``lm_head`` on prepared inputs: pure tensor work
        that writes cache slots ``[start, start + T)`` and reads no other cache state (``start`` a
        tensor: the fixed-shape decode step, :meth:`KVCache.write`)."""
        x = self.model.embed_tokens(input_ids)  # (B, T, D)
        cos, sin = rope_cos_sin(positions, self._rope_inv_freq(input_ids.device), x.dtype)  # (B, 1, T, d)
        use_ckpt = self.gradient_checkpointing and torch.is_grad_enabled()
        for layer in self.model.layers:
            if use_ckpt:  # the recomputation writes the same keys and values into the cache again
                x = checkpoint(layer, x, cos, sin, mask, is_causal, cache, start, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, is_causal, cache, start)
        if last_only:
            x = x[:, -1:]  # (B, 1, D)
        x = self.model.norm(x)
        return x if return_hidden else self.lm_head(x)

    @staticmethod
    def _default_positions(B, T, real, cache, device) -> torch.Tensor:
        """Rotary positions ``(B, T)``: each row's count of real tokens before this one."""
        if real is None and cache is not None and T == 1:
            return cache.next_pos[:, None].clone()  # decoding: one position per row
        if real is None:
            pos = torch.arange(T, device=device).expand(B, T)
        else:
            pos = (real.long().cumsum(1) - 1).clamp(min=0)
        return pos if cache is None else pos + cache.next_pos[:, None]

    @staticmethod
    def _attention_mask(T, start, real, cache, device):
        """``(mask, is_causal)`` for SDPA. ``is_causal=True`` is only right when queries and keys
        start at the same slot. With a cached prefix and no pads the causal mask is offset by the
        prefix: PyTorch's lower-right causal bias, which CUDA's flash kernel runs without a ``(T, S)``
        mask (an explicit mask rules flash out, and with grouped-query heads also the memory-efficient
        kernel: a GRIP update's rows on their prompt's cache would fall back to materialized scores);
        elsewhere it is materialized, the same mask as the explicit one below. Pads need that one."""
        padded = (cache.has_padding if cache is not None
                  else real is not None and not bool(real.all()))
        if padded and cache is not None and T == 1 and real is None:
            return cache.valid[:, None, None, :start + 1], False  # (B, 1, 1, S): decode step
        if not padded:
            if start == 0:
                return None, T > 1
            if T == 1:  # one new token sees every cached slot
                return None, False
            # imported here: it loads torch._dynamo (~1 s), which a forecast that never runs the model
            # (the default on a series long enough to backtest) need not wait for
            from torch.nn.attention.bias import causal_lower_right

            return causal_lower_right(T, start + T), False  # query i sees slots [0, start + i]
        S = start + T
        q_slot = torch.arange(start, S, device=device)[:, None]  # (T, 1)
        k_slot = torch.arange(S, device=device)[None, :]  # (1, S)
        allowed = k_slot <= q_slot  # (T, S) causal, offset by the cached prefix
        key_real = cache.valid[:, :S] if cache is not None else real  # (B, S)
        allowed = (allowed & key_real[:, None, :]) | (k_slot == q_slot)  # (B, T, S)
        return allowed[:, None], False  # (B, 1, T, S)

    # -- Hugging Face directories (the file formats are timer1.core.hf_io's)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: torch.dtype | str | None = None,
                        device: torch.device | str = "cpu") -> Qwen2:
        """Load a Hugging Face Qwen2/Qwen2.5 or Llama directory. ``dtype=None``: the checkpoint's
        dtype on cuda, fp32 on cpu (bf16 matmuls are slow on most CPUs). The model is built on the
        meta device and each tensor read straight into place: peak memory is one copy of the weights.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {path}")
        config = Qwen2Config.from_json(path / "config.json")
        device = torch.device(device)
        dtype = hf_io.as_dtype(dtype) or config.load_dtype(device)
        with torch.device("meta"):
            model = cls(config)
        shapes = {name: p.shape for name, p in model.state_dict().items()}
        tied = config.tie_word_embeddings
        state = hf_io.read_weights(path, shapes, tied=tied, device=device, dtype=dtype)
        model.load_state_dict(state, strict=not tied, assign=True)
        if tied:
            model.lm_head.weight = model.model.embed_tokens.weight
        model.config.torch_dtype = str(dtype).removeprefix("torch.")
        return model.eval()

    def save_pretrained(self, path: str | os.PathLike, max_shard_size: int | str = "5GB",
                        state: dict[str, torch.Tensor] | None = None) -> None:
        """Write HF's layout atomically; a tied ``lm_head.weight`` is not written. ``state``: the
        weights by state-dict name when this model holds only its shard of them (FSDP), else its own."""
        state = {k: v.detach().to("cpu").contiguous() for k, v in (state or self.state_dict()).items()
                 if not (k == "lm_head.weight" and self.config.tie_word_embeddings)}
        dtype_name = str(next(iter(state.values())).dtype).removeprefix("torch.")
        hf_io.write_checkpoint(path, state, {**self.config.to_dict(), "torch_dtype": dtype_name}, max_shard_size)


# ----------------------------------------------------------------------------------------------
# Log-probs of given tokens


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, *,
                   attention_mask: torch.Tensor | None = None, temperature: float = 1.0,
                   chunk_rows: int | None = None) -> torch.Tensor:
    """Per-token log-probs of each next token, in fp32, differentiable: ``(B, T)`` ids -> ``(B, T - 1)``.

    ``out[b, t] = log p(input_ids[b, t + 1] | input_ids[b, : t + 1])``: a completion after a prompt of
    length ``P`` is ``out[:, P - 1:]``. The distribution is ``softmax(logits / temperature)``: GRIP's
    ratios must use the distribution the tokens were drawn from. The backbone runs through ``model``
    so DDP's hooks fire.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for log-probs, got {temperature}")
    core = getattr(model, "module", model)
    hidden = model(input_ids, attention_mask=attention_mask, return_hidden=True)  # (B, T, D)
    return head_logprobs(core.lm_head, hidden[:, :-1], input_ids[:, 1:], temperature, chunk_rows)  # (B, T-1)


def head_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                  chunk_rows: int | None = None) -> torch.Tensor:
    """``log softmax(head(hidden) / temperature)`` at ``targets``: ``(N, T, D)``, ``(N, T)`` -> ``(N, T)`` fp32.

    The fp32 logits exist ``chunk_rows`` positions at a time, each chunk checkpointed under autograd,
    so no fp32 ``(N, T, V)`` tensor is ever held. Passes over ``(n, V)`` logits cost beyond the matmul
    (memory-bound on a GPU), so there are few: no head bias, so ``head(h) / t = head(h / t)`` scales the
    ``(n, D)`` hidden states; one fused ``log_softmax`` where ``logsumexp`` is four passes each way
    (benchmarks/head_logprobs.py, 1.5B head, CPU: 3.9 s -> 2.3 s beyond 7.8 s of matmuls).
    """
    N, T, D = hidden.shape
    h, t = hidden.reshape(-1, D), targets.reshape(-1)  # (N*T, D), (N*T,)
    chunk_rows = chunk_rows or max(1, (1 << 26) // head.weight.shape[0])
    assert getattr(head, "bias", None) is None, "the temperature is applied to the hidden states: no head bias"

    def chunk(h_rows: torch.Tensor, t_rows: torch.Tensor) -> torch.Tensor:
        logits = head(h_rows if temperature == 1.0 else h_rows / temperature).float()  # (n, V) fp32
        return torch.log_softmax(logits, dim=-1).gather(1, t_rows[:, None]).squeeze(1)  # (n,)

    needs_grad = torch.is_grad_enabled() and (h.requires_grad or head.weight.requires_grad)
    recompute = needs_grad and h.shape[0] > chunk_rows
    pieces = [checkpoint(chunk, h[i:i + chunk_rows], t[i:i + chunk_rows], use_reentrant=False) if recompute
              else chunk(h[i:i + chunk_rows], t[i:i + chunk_rows]) for i in range(0, h.shape[0], chunk_rows)]
    if not pieces:
        return hidden.new_zeros(N, T, dtype=torch.float32)
    return torch.cat(pieces).view(N, T)  # (N, T)


# ----------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """A static, preallocated key/value cache for decoding (gpt-fast style), a plain object.

    Per layer ``k[i], v[i]`` ``(B, n_kv_heads, max_len, head_dim)``; ``length`` slots (the same for every
    row) are filled. With left-padded prompts some slots hold pads: ``valid`` ``(B, max_len)`` marks the
    real ones and ``next_pos`` ``(B,)`` is each row's next rotary position (its count of real tokens).
    """

    def __init__(self, config: Qwen2Config, batch_size: int, max_len: int,
                 device: torch.device | str, dtype: torch.dtype):
        self.config = config
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)  # (B, S)
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.length = 0
        self.has_padding = False  # lets decoding skip the mask when no slot is a pad

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    def mark(self, start: int, T: int, real: torch.Tensor | None) -> None:
        """Before a forward attends to slots ``[start, start + T)``: mark them real, or as ``real``
        ``(B, T)`` says (left padding)."""
        self.valid[:, start:start + T] = True if real is None else real
        self.has_padding = self.has_padding or (real is not None and not bool(real.all()))

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor):
        """Store ``k``/``v`` at slots ``[start, start + T)`` of ``layer`` and return its slots
        ``[0, start + T)``. ``start`` is an argument, not ``self.length``, so a compiled step reads
        no Python state of the cache.

        ``start`` as a ``(1,)`` long tensor is the fixed-shape decode step (T = 1, gpt-fast's static
        cache): the slot is written in place with ``index_copy_`` and every slot is returned (of a
        :meth:`window`: the slots it spans), the caller's validity mask hiding those not written yet,
        so every step has the same shapes and reads its slot from device memory: it can be replayed
        as a CUDA graph."""
        if isinstance(start, torch.Tensor):
            self.k[layer].index_copy_(2, start, k)  # (B, Hkv, max_len, d)
            self.v[layer].index_copy_(2, start, v)
            return self.k[layer], self.v[layer]
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def window(self, limit: int) -> KVCache:
        """Slots ``[0, limit)`` as a cache of their own made of views of this one's tensors: a decode
        step on it attends over those slots only, and what it writes lands in this cache."""
        view = copy.copy(self)
        view.k, view.v = [t[:, :, :limit] for t in self.k], [t[:, :, :limit] for t in self.v]
        view.valid = self.valid[:, :limit]  # (B, limit); next_pos is shared as it is
        return view

    def advance(self, T: int, attention_mask: torch.Tensor | None = None) -> None:
        """After a forward wrote ``T`` slots: move ``length`` on and each row's rotary position by
        its count of real tokens (all ``T`` without a mask)."""
        self.next_pos += T if attention_mask is None else attention_mask.to(torch.bool).sum(1)
        self.length += T

    def select_rows(self, rows: torch.Tensor, max_len: int) -> KVCache:
        """A new cache of ``len(rows)`` rows and ``max_len`` slots, row i a copy of row ``rows[i]``:
        prefill a prompt once, then give each of its samples (or training rows) a copy. The copy is
        differentiable, so a training forward on top sends gradients back into the prompt's pass."""
        if max_len < self.length:
            raise ValueError(f"max_len {max_len} is shorter than the {self.length} cached slots")
        n = self.length
        new = KVCache(self.config, len(rows), max_len, self.valid.device, self.k[0].dtype)
        for old_kv, new_kv in ((self.k, new.k), (self.v, new.v)):
            for old_t, new_t in zip(old_kv, new_kv):
                new_t[:, :, :n] = old_t[rows, :, :n]  # (B*r, Hkv, n, d)
        new.valid[:, :n] = self.valid[rows, :n]
        new.next_pos = self.next_pos[rows].clone()
        new.length = n
        new.has_padding = self.has_padding
        return new
