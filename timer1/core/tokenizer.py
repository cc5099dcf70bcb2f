"""Tokenizer: a thin wrapper over the `tokenizers` library, with the checkpoints' chat templates in Python.

Also trains the tiny model's byte-level BPE the way Qwen2 builds its `tokenizer.json` (NFC, a regex
split that isolates every digit, byte-level mapping).

Facts followed (Qwen2.5-Instruct on the Hub): no BOS token; `<|endoftext|>` 151643 is pad, `<|im_end|>`
151645 ends a chat turn; generation_config.json's `eos_token_id: [151645, 151643]` wins over
tokenizer_config.json's `eos_token`. SmolLM2-Instruct renders the same ChatML turns with its own
default system prompt.
"""

from __future__ import annotations

import json
import operator
import os
from pathlib import Path

import tokenizers
from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors, trainers

from timer1.util.atomic import write_text_atomic

# Qwen2's pre-tokenizer regex (HF `tokenization_qwen2.PRETOKENIZE_REGEX`). Unlike GPT-2's, the
# `\p{N}` alternative matches ONE digit, so numbers are always split digit by digit: a series
# value costs one token per digit, and the model never has to learn multi-digit tokens.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Control tokens of Qwen2.5 we keep in the tiny vocabulary, in Qwen's relative order.
QWEN_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
# Time-R1's reasoning/answer tags. In the tiny tokenizer they are single, NON-special added tokens
# (as Qwen3 does for <think>): decode(skip_special_tokens=True) keeps them, so a completion
# decoded for the reward parser still shows its tags.
REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SMOLLM2_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# Qwen2.5-Instruct's `chat_template` (tokenizer_config.json), verbatim. It is only written to disk
# so that Hugging Face tools render our checkpoints the same way; at run time the Python
# `apply_chat_template` below produces the same text (tests compare them on stored renders).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and'
    " arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud."
    " You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first)'
    ' or (message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# SmolLM2-Instruct's `chat_template`, verbatim (its tokenizer_config.json, and its GGUF's
# tokenizer.chat_template): ChatML turns, the default system turn only when messages[0] is not one.
# Its jinja string literals hold real newline characters (Qwen's hold the two characters backslash, n).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The templates apply_chat_template reproduces (without jinja), each with its default system prompt.
# Both render the same ChatML turns; they differ in that prompt (and Qwen's tool branch, unsupported).
KNOWN_CHAT_TEMPLATES = {QWEN25_CHAT_TEMPLATE: DEFAULT_SYSTEM_PROMPT, SMOLLM2_CHAT_TEMPLATE: SMOLLM2_SYSTEM_PROMPT}

CHAT_ROLES = ("system", "user", "assistant")


class Tokenizer:
    """Encode/decode text and render chats as the checkpoint's chat template does. `config` is
    tokenizer_config.json (kept whole, so `save_pretrained` round-trips keys we do not use)."""

    def __init__(self, backend: tokenizers.Tokenizer, config: dict | None = None,
                 eos_ids: tuple[int, ...] | None = None):
        self.backend = backend
        self.config = dict(config or {})
        self.eos_ids = tuple(eos_ids) if eos_ids is not None else self._eos_from_config()
        self.pad_id = self._pad_from_config()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Tokenizer":
        """tokenizer.json (required), tokenizer_config.json and generation_config.json (optional)."""
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {directory}")
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"missing {tokenizer_file} (a Hugging Face tokenizers file is required)")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as err:  # the Rust side raises plain Exception subclasses
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{tokenizer_file} is not a valid tokenizer.json: {first_line}") from None
        config = _read_json_if_present(directory / "tokenizer_config.json")
        tokenizer = cls(backend, config)
        generation = _read_json_if_present(directory / "generation_config.json")
        if "eos_token_id" in generation:
            tokenizer.eos_ids = _as_id_tuple(generation["eos_token_id"], directory / "generation_config.json")
        return tokenizer

    def _eos_from_config(self) -> tuple[int, ...]:
        """tokenizer_config's eos_token, else Qwen's <|im_end|> or <|endoftext|>, else none."""
        name = _token_content(self.config.get("eos_token"))
        if name is not None:
            return (self._required_id(name, "eos_token"),)
        for fallback in (IM_END, ENDOFTEXT):
            if self.backend.token_to_id(fallback) is not None:
                return (self.backend.token_to_id(fallback),)
        return ()

    def _pad_from_config(self) -> int | None:
        """tokenizer_config's pad_token, else <|endoftext|> (Qwen's pad) when the vocab has it."""
        name = _token_content(self.config.get("pad_token"))
        if name is not None:
            return self._required_id(name, "pad_token")
        return self.backend.token_to_id(ENDOFTEXT)

    def _required_id(self, token: str, key: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer_config.json {key} {token!r} is not in the vocabulary")
        return token_id

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (vocab + added tokens); the model's embedding may
        have more rows."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS is added, special tokens in the text become their single ids."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (a list of ints or a 1-D tensor). skip_special_tokens drops control tokens
        (<|im_end|> ...) but keeps <think> and friends; ids past the vocab decode to nothing, as in HF."""
        try:  # operator.index takes Python and numpy integers, refuses floats and strings
            ids = [operator.index(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        except TypeError:
            ids = None
        if ids is None or any(i < 0 for i in ids):
            raise ValueError("decode expects non-negative integer token ids")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat text of `messages` exactly as tokenizer_config.json's `chat_template` (one of
        KNOWN_CHAT_TEMPLATES; none given: Qwen2.5's) renders it, without jinja and without tools."""
        default_system = self._default_system_prompt()
        _check_messages(messages)
        parts = []
        if messages[0]["role"] != "system":
            parts.append(_chat_turn("system", default_system))
        for message in messages:
            parts.append(_chat_turn(message["role"], message["content"]))
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)

    def _default_system_prompt(self) -> str:
        template = self.config.get("chat_template", QWEN25_CHAT_TEMPLATE)
        if template is None:
            raise ValueError("this tokenizer has no chat_template (tokenizer_config.json), so no chat format")
        if not isinstance(template, str) or template not in KNOWN_CHAT_TEMPLATES:
            raise ValueError("tokenizer_config.json chat_template is not one timer1 reproduces "
                             "(Qwen2.5-Instruct's or SmolLM2-Instruct's, verbatim)")
        return KNOWN_CHAT_TEMPLATES[template]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json and tokenizer_config.json atomically. Several eos ids survive a reload
        only through generation_config.json, the model's file (timer1.core.policy.save_policy_files)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(directory / "tokenizer.json", self.backend.to_str(pretty=True))
        config_text = json.dumps(self._config_to_save(), indent=2, ensure_ascii=False) + "\n"
        write_text_atomic(directory / "tokenizer_config.json", config_text)

    def _config_to_save(self) -> dict:
        """HF tokenizer_config.json fields (Qwen2.5 layout), the loaded ones taking precedence."""
        config = {
            "add_bos_token": False,
            "add_prefix_space": False,
            "bos_token": None,
            "chat_template": QWEN25_CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "errors": "replace",
            "model_max_length": 32768,
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        }
        config.update(self.config)
        config["added_tokens_decoder"] = {
            str(token_id): {
                "content": added.content, "lstrip": added.lstrip, "normalized": added.normalized,
                "rstrip": added.rstrip, "single_word": added.single_word, "special": added.special,
            }
            for token_id, added in sorted(self.backend.get_added_tokens_decoder().items())
        }
        if self.eos_ids:  # a loaded eos_token stays (generation_config may list several eos ids)
            config.setdefault("eos_token", self.backend.id_to_token(self.eos_ids[0]))
        if self.pad_id is not None:
            config["pad_token"] = self.backend.id_to_token(self.pad_id)
        return config


def train_tokenizer(texts, vocab_size: int, *, model_max_length: int = 32768) -> Tokenizer:
    """Train a byte-level BPE tokenizer laid out like Qwen2's, for the tiny CPU model.

    Ids 0, 1, 2 are <|endoftext|>, <|im_start|>, <|im_end|> (special, Qwen's relative order) and
    3..6 are <think>, </think>, <answer>, </answer> as non-special added tokens: fixed low ids do not
    depend on the corpus. `vocab_size` counts everything; a small corpus may stop short of it.
    """
    reserved = QWEN_SPECIAL_TOKENS + REASONING_TOKENS
    minimum = len(reserved) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (7 reserved tokens + 256 bytes), got {vocab_size}")
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(byte_fallback=False, fuse_unk=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    # As in Qwen2.5's hub tokenizer.json; it adds no tokens (no BOS), only maps offsets.
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(reserved), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer=trainer)
    layout = json.loads(backend.to_str())  # the trainer made every reserved token special: flip the tags
    for added in layout["added_tokens"]:
        if added["content"] in REASONING_TOKENS:
            added["special"] = False
    backend = tokenizers.Tokenizer.from_str(json.dumps(layout))
    config = {"eos_token": IM_END, "pad_token": ENDOFTEXT, "model_max_length": model_max_length}
    return Tokenizer(backend, config)


def _chat_turn(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def _check_messages(messages) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{index}] must be a dict with a str 'content'")
        if message.get("role") not in CHAT_ROLES:
            raise ValueError(f"messages[{index}] role {message.get('role')!r} is not one of {CHAT_ROLES} "
                             "(tool turns are not supported)")
        if message.get("tool_calls"):
            raise ValueError(f"messages[{index}] has tool_calls, which are not supported")


def _token_content(value) -> str | None:
    """tokenizer_config stores special tokens as a str or as a serialized AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _as_id_tuple(value, source: Path) -> tuple[int, ...]:
    ids = [value] if isinstance(value, int) else value
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{source}: eos_token_id must be an int or a list of ints, got {value!r}")
    return tuple(ids)


def _read_json_if_present(file: Path) -> dict:
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data
