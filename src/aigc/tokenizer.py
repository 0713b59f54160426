"""Tokenizer: a thin, torch-free wrapper around a HF `tokenizers.Tokenizer`.

It loads from a HF tokenizer directory (`from_dir`) or from a GGUF file's metadata (`from_gguf`),
encodes/decodes, renders chat templates (through `aigc.chat_template`, the single template code
path) and saves a directory that `transformers.AutoTokenizer` loads with identical results.

`IncrementalDetokenizer` turns a stream of generated ids into text deltas for streaming, never
emitting half a UTF-8 character.

Special tokens in `encode` input text (e.g. "<|im_start|>") are matched and become their single
ids, as in transformers; callers that must not let user text inject them should strip them first.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors

from aigc.chat_template import DEFAULT_CHAT_TEMPLATE, TemplateError, render_chat

__all__ = ["Tokenizer", "TokenizerError", "IncrementalDetokenizer", "TemplateError", "END_OF_TURN_TOKENS"]

# Special tokens that end a turn or a document in common model families. Any of them that the
# tokenizer knows as a *special* token is a stop token (see `Tokenizer.eos_token_ids`).
END_OF_TURN_TOKENS = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
    "<end_of_turn>", "<|end|>", "</s>", "<eos>",
)

# GGUF `tokenizer.ggml.pre` names -> how llama.cpp splits text before BPE (facts from llama.cpp).
_GPT2_DIGITS = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b")
_GPT2 = ("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "default")
_QWEN2 = ("qwen2", "deepseek-r1-qwen", "stablelm2")
_LLAMA3 = ("llama-bpe", "llama3", "smaug-bpe", "falcon3")
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_REGEX = _QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|")

_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED = 3, 4


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded (missing files, unsupported GGUF vocabulary, ...)."""


def _token_content(value: Any) -> str | None:
    """Special tokens appear as plain strings or as AddedToken dicts {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}: invalid JSON ({e})") from e


def _as_id_list(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


_MARKER = re.compile("\ue000(\\d+)\ue001")  # private-use characters around a content's index
_MARKER_CHARS = {"\ue000", "\ue001"}


def _mark_contents(message: dict[str, Any], contents: list[str]) -> dict[str, Any]:
    """A copy of `message` whose text contents (a string, or text parts) are markers into `contents`."""
    def mark(text: str) -> str:
        contents.append(text)
        return f"\ue000{len(contents) - 1}\ue001"

    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": mark(content)}
    if isinstance(content, list):
        parts = [{**p, "text": mark(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                 for p in content]
        return {**message, "content": parts}
    return message


class Tokenizer:
    """A fast tokenizer plus what a chat model needs around it.

    Build one with `Tokenizer.load(path)` (directory or .gguf), `from_dir`, `from_gguf`, or the
    constructor around any `tokenizers.Tokenizer` (e.g. one just trained).

    Special-token strings given here that exist in the vocabulary are registered in the backend
    as special tokens (as transformers does), so they encode as single ids and
    `decode(..., skip_special_tokens=True)` drops them.

    BOS: `encode(text, add_special_tokens=True)` adds whatever the backend's post-processor adds.
    With `add_bos_token=True` a post-processor that prepends BOS is installed if the backend lacks
    one (this is what transformers' Llama tokenizer does), so both libraries agree.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        add_bos_token: bool = False,
        chat_template: str | Mapping[str, str] | None = None,
        extra_eos_token_ids: Iterable[int] = (),
        model_max_length: int | None = None,
    ) -> None:
        self._backend = backend
        self._plain_backend: tokenizers.Tokenizer | None = None  # for encode_text, made on first use
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = bos_token, eos_token, pad_token, unk_token
        self.add_bos_token = add_bos_token
        self.model_max_length = model_max_length
        if isinstance(chat_template, str):
            chat_template = {"default": chat_template}
        self.chat_templates: dict[str, str] = dict(chat_template or {})

        known = [t for t in (bos_token, eos_token, pad_token, unk_token) if t is not None and self.token_to_id(t) is not None]
        if known:
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in known])
        if add_bos_token and self.bos_token_id is not None and self.bos_token_id not in backend.encode("").ids:
            bos = processors.TemplateProcessing(
                single=f"{bos_token}:0 $A:0",
                pair=f"{bos_token}:0 $A:0 {bos_token}:1 $B:1",
                special_tokens=[(bos_token, self.bos_token_id)],
            )
            old = backend.post_processor
            backend.post_processor = processors.Sequence([old, bos]) if old is not None else bos

        self._special_ids = frozenset(
            i for i, tok in backend.get_added_tokens_decoder().items() if tok.special
        ) | {i for i in (self.bos_token_id, self.eos_token_id, self.pad_token_id, self.unk_token_id) if i is not None}
        stops = {self.eos_token_id, *extra_eos_token_ids}
        stops |= {self.token_to_id(t) for t in END_OF_TURN_TOKENS if self.token_to_id(t) in self._special_ids}
        self._eos_token_ids = frozenset(i for i in stops if i is not None)

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load from a HF tokenizer directory or a `.gguf` file."""
        path = Path(path)
        if path.is_file() and path.suffix == ".gguf":
            return cls.from_gguf(path)
        return cls.from_dir(path)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load a HF tokenizer directory.

        Reads `tokenizer.json` (required) and, when present, `tokenizer_config.json` (special
        tokens as strings or AddedToken dicts, `add_bos_token`, `model_max_length`,
        `chat_template` as a string or a list of {name, template}), `special_tokens_map.json`
        (fallback for special tokens), `chat_template.jinja` (takes precedence over the config's
        template) and `generation_config.json` (`eos_token_id`, int or list: extra stop ids).
        """
        path = Path(path)
        if path.is_file() and path.suffix == ".gguf":
            raise TokenizerError(f"{path} is a GGUF file: use Tokenizer.from_gguf (or Tokenizer.load)")
        if not path.is_dir():
            raise TokenizerError(f"tokenizer directory not found: {path}")
        if not (path / "tokenizer.json").is_file():
            hint = " (only a slow sentencepiece tokenizer.model is there)" if (path / "tokenizer.model").is_file() else ""
            raise TokenizerError(f"{path}: no tokenizer.json{hint}; a HF fast-tokenizer file is required")
        try:
            backend = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as e:  # the Rust side raises plain Exceptions
            raise TokenizerError(f"{path / 'tokenizer.json'}: cannot be loaded ({e})") from e
        config = _read_json(path / "tokenizer_config.json") or {}
        special_map = _read_json(path / "special_tokens_map.json") or {}

        def special(name: str) -> str | None:
            return _token_content(config.get(name)) or _token_content(special_map.get(name))

        templates: dict[str, str] = {}
        raw = config.get("chat_template")
        if isinstance(raw, str):
            templates["default"] = raw
        elif isinstance(raw, list):
            templates.update({t["name"]: t["template"] for t in raw if isinstance(t, Mapping) and "name" in t})
        template_json = _read_json(path / "chat_template.json") or {}
        if isinstance(template_json.get("chat_template"), str):
            templates["default"] = template_json["chat_template"]
        if (path / "chat_template.jinja").is_file():
            templates["default"] = (path / "chat_template.jinja").read_text(encoding="utf-8")

        generation = _read_json(path / "generation_config.json") or {}
        max_len = config.get("model_max_length")
        return cls(
            backend,
            bos_token=special("bos_token"),
            eos_token=special("eos_token"),
            pad_token=special("pad_token"),
            unk_token=special("unk_token"),
            add_bos_token=bool(config.get("add_bos_token", False)),
            chat_template=templates,
            extra_eos_token_ids=_as_id_list(generation.get("eos_token_id")),
            # transformers writes a huge sentinel (1e30) when the length is unknown
            model_max_length=int(max_len) if isinstance(max_len, int | float) and max_len < 1e12 else None,
        )

    @classmethod
    def from_gguf(cls, source: Any) -> Tokenizer:
        """Build a byte-level BPE tokenizer from GGUF metadata.

        `source` is a `.gguf` path, an open `gguf.GGUFReader`, or an already-parsed metadata
        mapping {key: value} (strings as str, arrays as lists), e.g. from a faster header parser.

        Supports `tokenizer.ggml.model == "gpt2"`. The pre-tokenizer follows
        `tokenizer.ggml.pre` as llama.cpp does: "smollm"/"starcoder"/... = each digit alone, then
        the GPT-2 regex; "gpt-2" = GPT-2 regex; "qwen2" = Qwen2 regex (+ NFC, as its HF file);
        "llama-bpe" = Llama-3 regex. Unknown names fall back to GPT-2 with a warning. Control
        tokens (token_type 3) become special added tokens, user-defined ones (4) plain added tokens.
        Opening a `GGUFReader` costs seconds for a large vocabulary: share an open reader or
        pass parsed metadata when you have them.
        """
        if isinstance(source, Mapping):
            meta = dict(source)
        else:
            import gguf  # imported here: only GGUF users pay for it

            reader = source if isinstance(source, gguf.GGUFReader) else None
            if reader is None:
                path = Path(source)
                if not path.is_file():
                    raise TokenizerError(f"GGUF file not found: {path}")
                reader = gguf.GGUFReader(path)
            meta = _gguf_metadata(reader)

        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise TokenizerError(
                f"unsupported GGUF tokenizer model {kind!r}: only byte-level BPE ('gpt2') is supported"
            )
        tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
        if not tokens:
            raise TokenizerError("GGUF file has no tokenizer.ggml.tokens")
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
        types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        pre = str(meta.get("tokenizer.ggml.pre", "default"))

        model = models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=pre in _LLAMA3
        )
        backend = tokenizers.Tokenizer(model)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        if pre in _GPT2_DIGITS:
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
            )
        elif pre in _QWEN2 or pre in _LLAMA3:
            regex = tokenizers.Regex(_QWEN2_REGEX if pre in _QWEN2 else _LLAMA3_REGEX)
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Split(regex, behavior="isolated"), byte_level]
            )
            if pre == "qwen2":
                backend.normalizer = normalizers.NFC()
        else:
            if pre not in _GPT2:
                warnings.warn(f"unknown GGUF pre-tokenizer {pre!r}; using GPT-2 splitting", stacklevel=2)
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
        backend.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=False) if k == _TOKEN_TYPE_CONTROL]
        )
        backend.add_tokens(
            [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types, strict=False) if k == _TOKEN_TYPE_USER_DEFINED]
        )

        def token_at(key: str) -> str | None:
            i = meta.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

        arch = meta.get("general.architecture")
        extra_eos = [meta[k] for k in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id") if isinstance(meta.get(k), int)]
        tok = cls(
            backend,
            bos_token=token_at("tokenizer.ggml.bos_token_id"),
            eos_token=token_at("tokenizer.ggml.eos_token_id"),
            pad_token=token_at("tokenizer.ggml.padding_token_id"),
            unk_token=token_at("tokenizer.ggml.unknown_token_id"),
            add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=meta.get("tokenizer.chat_template"),
            extra_eos_token_ids=extra_eos,
            model_max_length=meta.get(f"{arch}.context_length") if arch else None,
        )
        tok._gguf_meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
        return tok

    # ----------------------------------------------------------------- saving

    def gguf_metadata(self) -> dict[str, Any]:
        """The `tokenizer.*` keys a GGUF file needs for this tokenizer (llama.cpp reads them).

        A tokenizer read from GGUF gives its own keys back; one from a HF directory is described
        from its byte-level BPE model (tokens by id, merges, control/user-defined token types, the
        pre-tokenizer name llama.cpp knows, special ids, chat template)."""
        if getattr(self, "_gguf_meta", None):
            return dict(self._gguf_meta)
        spec = json.loads(self._backend.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise TokenizerError(f"only byte-level BPE tokenizers can be written to GGUF, not {model.get('type')!r}")
        vocab: dict[str, int] = dict(model.get("vocab") or {})
        added = {t["id"]: t for t in spec.get("added_tokens") or []}
        for i, t in added.items():
            vocab.setdefault(t["content"], i)
        size = max(vocab.values()) + 1 if vocab else 0
        tokens = [f"[PAD{i}]" for i in range(size)]
        for t, i in vocab.items():
            tokens[i] = t
        types = [_TOKEN_TYPE_CONTROL if i in added and added[i].get("special") else
                 _TOKEN_TYPE_USER_DEFINED if i in added else 1 for i in range(size)]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
        pre_spec = json.dumps(spec.get("pre_tokenizer") or {})
        if '"individual_digits": true' in pre_spec:
            pre = "smollm"
        elif "\\p{N}{1,3}" in pre_spec or "p{N}{1,3}" in pre_spec:
            pre = "llama-bpe"
        elif "Split" in pre_spec:
            pre = "qwen2"
        else:
            pre = "gpt-2"
        meta: dict[str, Any] = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
                                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                                "tokenizer.ggml.merges": merges, "tokenizer.ggml.add_bos_token": self.add_bos_token}
        for key, value in (("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id),
                           ("padding_token_id", self.pad_token_id), ("unknown_token_id", self.unk_token_id)):
            if value is not None:
                meta[f"tokenizer.ggml.{key}"] = int(value)
        template = self.chat_templates.get("default")
        if template:
            meta["tokenizer.chat_template"] = template
        return meta

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json`.

        `transformers.AutoTokenizer.from_pretrained(directory)` then loads a
        `PreTrainedTokenizerFast` with the same ids and chat-template output.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(directory / "tokenizer.json"))
        specials = {
            name: value
            for name, value in (
                ("bos_token", self.bos_token), ("eos_token", self.eos_token),
                ("pad_token", self.pad_token), ("unk_token", self.unk_token),
            )
            if value is not None
        }
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **specials,
            "add_bos_token": self.add_bos_token,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if list(self.chat_templates) == ["default"]:
            config["chat_template"] = self.chat_templates["default"]
        elif self.chat_templates:
            config["chat_template"] = [{"name": n, "template": t} for n, t in self.chat_templates.items()]
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
            (directory / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return directory

    # ----------------------------------------------------------------- encode / decode

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped `tokenizers.Tokenizer` (for training code that needs its full API)."""
        return self._backend

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Text -> ids. `add_special_tokens=True` adds BOS etc. per the post-processor (see class doc)."""
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Encode many texts at once (parallel in the Rust backend)."""
        return [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text. Invalid UTF-8 (e.g. half a character) decodes to U+FFFD."""
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def count_tokens(self, text: str) -> int:
        """Number of ids `encode(text)` gives (no special tokens added)."""
        return len(self._backend.encode(text, add_special_tokens=False).ids)

    def detokenizer(self, skip_special_tokens: bool = False) -> IncrementalDetokenizer:
        """A fresh `IncrementalDetokenizer` for one generated sequence."""
        return IncrementalDetokenizer(self, skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------------- vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of ids including added tokens (a model's embedding may have more rows)."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of an id (byte-level form, e.g. "Ġworld"), None if out of range."""
        return self._backend.id_to_token(token_id)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._backend.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Ids that end generation: the EOS id, `generation_config.json` eos ids (or GGUF eot/eom
        ids), and every token of `END_OF_TURN_TOKENS` that this tokenizer has as a special token
        (so a ChatML model stops at "<|im_end|>" and at "<|endoftext|>")."""
        return self._eos_token_ids

    @property
    def all_special_ids(self) -> list[int]:
        """Sorted ids of special added tokens plus the bos/eos/pad/unk ids."""
        return sorted(self._special_ids)

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    # ----------------------------------------------------------------- chat

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer ships its own template (otherwise `chat_template` is ChatML)."""
        return "default" in self.chat_templates

    @property
    def chat_template(self) -> str:
        """The template `apply_chat_template` uses: the tokenizer's default one, or, when it has
        none, `aigc.chat_template.DEFAULT_CHAT_TEMPLATE` (plain ChatML: `<|im_start|>{role}\\n
        {content}<|im_end|>\\n` per message, no default system prompt)."""
        return self.chat_templates.get("default", DEFAULT_CHAT_TEMPLATE)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        *,
        tools: list[dict[str, Any]] | None = None,
        template: str | None = None,
        **extra: Any,
    ) -> str | list[int]:
        """Render messages with the chat template; return the prompt string, or its ids.

        `template` may be a named template of this tokenizer (e.g. "tool_use") or a template text;
        by default `chat_template` is used. With `tokenize=True` the rendered string is encoded
        WITHOUT adding special tokens again: a template that wants BOS writes `{{ bos_token }}`
        itself, so BOS appears exactly once. Raises `TemplateError` for invalid messages.
        """
        source = self.chat_template if template is None else self.chat_templates.get(template, template)
        tokens = {"unk_token": self.unk_token, "pad_token": self.pad_token}

        def render(msgs: list[dict[str, Any]]) -> str:
            return render_chat(source, msgs, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
                               eos_token=self.eos_token, tools=tools,
                               **{k: v for k, v in tokens.items() if v is not None}, **extra)

        if not tokenize:
            return render(messages)
        # Message text is text: "<|im_end|>" typed by a user must not become the control token
        # (OpenAI's behaviour). Contents are rendered as markers, and the text between markers (the
        # template's own markup) is encoded with special tokens, each content without them.
        contents: list[str] = []
        marked = [_mark_contents(m, contents) for m in messages]
        rendered = render(marked)
        pieces = _MARKER.split(rendered)
        if len(pieces) // 2 < len(contents) or any(_MARKER_CHARS & set(p) for p in pieces[::2]):
            return self.encode(render(messages), add_special_tokens=False)  # the template rewrote a content
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                ids += self.encode(piece, add_special_tokens=False) if piece else []
            else:
                ids += self.encode_text(contents[int(piece)])
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Encode `text` as plain text: special-token strings in it are spelled with ordinary tokens."""
        if self._plain_backend is None:
            plain = tokenizers.Tokenizer.from_str(self._backend.to_str())
            plain.encode_special_tokens = True
            self._plain_backend = plain
        return self._plain_backend.encode(text, add_special_tokens=False).ids if text else []

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, eos={self.eos_token!r}, "
            f"chat_template={'own' if self.has_chat_template else 'default ChatML'})"
        )


def _gguf_metadata(reader: Any) -> dict[str, Any]:
    """Scalar and array values of the GGUF keys a tokenizer needs (strings decoded)."""
    wanted = [k for k in reader.fields if k.startswith("tokenizer.") or k == "general.architecture"]
    arch_field = reader.fields.get("general.architecture")
    meta: dict[str, Any] = {}
    if arch_field is not None:
        meta["general.architecture"] = _gguf_value(arch_field)
        key = f"{meta['general.architecture']}.context_length"
        if key in reader.fields:
            wanted.append(key)
    for key in wanted:
        meta[key] = _gguf_value(reader.fields[key])
    return meta


def _gguf_value(field: Any) -> Any:
    """One GGUF field as Python data. `ReaderField.contents()` exists in gguf>=0.11; older
    readers only expose `parts` (raw numpy chunks) and `data` (indices of the value parts)."""
    if hasattr(field, "contents"):
        return field.contents()
    import gguf

    values = []
    for idx in field.data:
        part = field.parts[idx]
        is_string = field.types[-1] == gguf.GGUFValueType.STRING
        values.append(bytes(part).decode("utf-8") if is_string else part.tolist()[0])
    is_array = field.types[0] == gguf.GGUFValueType.ARRAY
    return values if is_array else values[0]


class IncrementalDetokenizer:
    """Turns generated ids, one at a time, into text deltas safe to stream.

    `push(id)` returns only the new complete text (possibly ""); `flush()` returns what is held
    back at the end. Concatenating all pushes and the flush equals `tokenizer.decode(ids)`.

    Byte-level tokens can end in the middle of a UTF-8 character (a Chinese character or emoji
    spread over 2-4 tokens). Decoding such a prefix yields U+FFFD, so text ending in U+FFFD is held
    until the character completes. Cost per token is O(window): only the tokens since the last
    emission, plus the ones before them as context (for decoders that strip a leading space), are
    decoded, never the whole sequence.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []  # context tokens then unread tokens
        self._read = 0  # index in _ids of the first token not yet emitted
        self._prefix_text = ""  # decode(_ids[:_read])

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text that became complete."""
        if self._skip and self._tokenizer.is_special(token_id):
            return ""
        self._ids.append(token_id)
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or text.endswith("\ufffd"):
            return ""
        delta = text[len(self._prefix_text):]
        # The tokens just emitted become the context for the next window.
        self._ids = self._ids[self._read:]
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return delta

    def push_many(self, token_ids: Iterable[int]) -> str:
        return "".join(self.push(t) for t in token_ids)

    def flush(self) -> str:
        """Return the held-back tail (may contain U+FFFD if the ids ended mid-character) and reset."""
        text = self._decode(self._ids)
        delta = text[len(self._prefix_text):]
        self._ids, self._read, self._prefix_text = [], 0, ""
        return delta

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)
