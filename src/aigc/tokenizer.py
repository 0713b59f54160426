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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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

# GGUF token types (llama.cpp's `llama_token_type`).
_TOKEN_TYPE_NORMAL, _TOKEN_TYPE_UNKNOWN, _TOKEN_TYPE_CONTROL = 1, 2, 3
_TOKEN_TYPE_USER_DEFINED, _TOKEN_TYPE_UNUSED, _TOKEN_TYPE_BYTE = 4, 5, 6

# `tokenizer.ggml.model` values we can build, named for error messages.
_GGUF_MODELS = {"llama": "SentencePiece", "gpt2": "byte-level BPE", "gemma4": "Gemma 4 BPE"}
_SPACE = "\u2581"  # SentencePiece's visible space, "▁"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")

_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_REGEX = _QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
_QWEN35_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_TEKKEN_REGEX = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_GPT4O_REGEX = (
    rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTION}|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*{_CONTRACTION}"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Families that llama.cpp splits with several regexes in turn (each splits the pieces of the last).
_CJK = "[一-龥ࠀ-一가-\ud7ff]+"
_DEEPSEEK_LLM_REGEXES = (
    r"[\r\n]",
    # (escaped: the characters that NFC would change, so that no editor normalizes them away)
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-"
    "\u1f7d" r"ᾀ-ᾴᾶ-ᾼ" "\u1fbe" r"ῂ-ῄῆ-ῌῐ-" "\u1fd3" r"ῖ-" "\u1fdb" r"ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ" "\u2126" r"ℨ"
    "\u212a" r"-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟" "\u3000" r"-。]+",
    r"\s+$",
    _CJK,
    r"\p{N}+",
)
_DEEPSEEK_CODER_REGEXES = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}")
_DEEPSEEK3_REGEXES = (
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_FALCON_REGEXES = (
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
)


@dataclass(frozen=True)
class _PreTokenizer:
    """How llama.cpp splits text before byte-level BPE for one family of `tokenizer.ggml.pre` names."""

    regexes: tuple[str, ...] = ()  # split in turn by each; none: GPT-2's (the ByteLevel pre-tokenizer's own)
    digits: bool = False  # every digit alone first (StarCoder, SmolLM, ...)
    nfc: bool = False  # NFC first
    ignore_merges: bool = False  # a word that is itself a token is taken whole (llama.cpp's ignore_merges)
    add_bos: bool = False  # llama.cpp's default when the file has no tokenizer.ggml.add_bos_token


def _pre_family(names: str, pre: _PreTokenizer) -> dict[str, _PreTokenizer]:
    return dict.fromkeys(names.split(), pre)


# `tokenizer.ggml.pre` -> splitting; the names, regexes and flags are llama.cpp's (llama-vocab.cpp).
_PRE_TOKENIZERS: dict[str, _PreTokenizer] = {
    **_pre_family("default gpt-2 gpt2 phi-2 mpt olmo jais trillion granite-docling roberta-bpe jina-es jina-de "
                  "jina-v1-en jina-v2-es jina-v2-de jina-v2-code gigachat a.x-4.0 mellum modern-bert exaone4",
                  _PreTokenizer()),
    **_pre_family("starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", _PreTokenizer(digits=True)),
    **_pre_family("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
                  _PreTokenizer((_LLAMA3_REGEX,), ignore_merges=True, add_bos=True)),
    **_pre_family("dbrx smaug-bpe", _PreTokenizer((_LLAMA3_REGEX,))),
    # NFC as Qwen2's tokenizer.json (llama.cpp has none: "e\u0301" stays two characters there).
    "qwen2": _PreTokenizer((_QWEN2_REGEX,), nfc=True),
    **_pre_family("deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open", _PreTokenizer((_QWEN2_REGEX,))),
    "qwen35": _PreTokenizer((_QWEN35_REGEX,)),
    "tekken": _PreTokenizer((_TEKKEN_REGEX,), ignore_merges=True, add_bos=True),
    **_pre_family("gpt-4o llama4 kanana2 talkie minimax-m2", _PreTokenizer((_GPT4O_REGEX,))),
    "deepseek-llm": _PreTokenizer(_DEEPSEEK_LLM_REGEXES),
    "deepseek-coder": _PreTokenizer(_DEEPSEEK_CODER_REGEXES),
    "deepseek-v3": _PreTokenizer(_DEEPSEEK3_REGEXES),
    "falcon": _PreTokenizer(_FALCON_REGEXES),
}


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


def _content_spans(marked: str, contents: list[str], text: str) -> list[tuple[int, int]] | None:
    """Where the contents are in `text`, the prompt `marked` rendered with markers for contents.

    Templates often strip contents (`content.strip()`, `| trim`): that is recognised too. None
    when the prompt cannot be rebuilt from the template's text and the contents."""
    pieces = _MARKER.split(marked)  # template text, content index, template text, ...
    if any(_MARKER_CHARS & set(p) for p in pieces[::2]) or any(int(i) >= len(contents) for i in pieces[1::2]):
        return None
    for variant in (contents, [c.strip() for c in contents]):
        spans, parts, pos = [], [], 0
        for i, piece in enumerate(pieces):
            part = piece if i % 2 == 0 else variant[int(piece)]
            if i % 2:
                spans.append((pos, pos + len(part)))
            parts.append(part)
            pos += len(part)
        if "".join(parts) == text:
            return spans
    return None


class Tokenizer:
    """A fast tokenizer plus what a chat model needs around it.

    Build one with `Tokenizer.load(path)` (directory or .gguf), `from_dir`, `from_gguf`, or the
    constructor around any `tokenizers.Tokenizer` (e.g. one just trained).

    Special-token strings given here that exist in the vocabulary are registered in the backend
    as special tokens (as transformers does), so they encode as single ids and
    `decode(..., skip_special_tokens=True)` drops them.

    BOS/EOS: `encode(text, add_special_tokens=True)` adds whatever the backend's post-processor
    adds. With `add_bos_token=True` (`add_eos_token=True`) a post-processor that prepends BOS
    (appends EOS) is installed if the backend lacks one (this is what transformers' Llama tokenizer
    does), so both libraries agree.
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
        add_eos_token: bool = False,
        chat_template: str | Mapping[str, str] | None = None,
        extra_eos_token_ids: Iterable[int] = (),
        model_max_length: int | None = None,
    ) -> None:
        self._backend = backend
        self._plain_backend: tokenizers.Tokenizer | None = None  # for encode_text, made on first use
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = bos_token, eos_token, pad_token, unk_token
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self._gguf_meta: dict[str, Any] | None = None  # the tokenizer.* keys of a GGUF this came from
        self.model_max_length = model_max_length
        if isinstance(chat_template, str):
            chat_template = {"default": chat_template}
        self.chat_templates: dict[str, str] = dict(chat_template or {})

        known = [t for t in (bos_token, eos_token, pad_token, unk_token) if t is not None and self.token_to_id(t) is not None]
        if known:
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in known])
        added = backend.encode("").ids  # what the post-processor already adds around a text
        bos = bos_token if add_bos_token and self.bos_token_id is not None and self.bos_token_id not in added else None
        eos = eos_token if add_eos_token and self.eos_token_id is not None and self.eos_token_id not in added else None
        if bos is not None or eos is not None:
            def wrap(seq: str, type_id: int) -> str:
                return " ".join(f"{t}:{type_id}" for t in (bos, seq, eos) if t)

            template = processors.TemplateProcessing(
                single=wrap("$A", 0),
                pair=f"{wrap('$A', 0)} {wrap('$B', 1)}",
                special_tokens=[(t, self._id(t)) for t in dict.fromkeys(t for t in (bos, eos) if t)],
            )
            old = backend.post_processor
            backend.post_processor = processors.Sequence([old, template]) if old is not None else template

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
        tokens as strings or AddedToken dicts, `add_bos_token`/`add_eos_token`, `model_max_length`,
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
            add_eos_token=bool(config.get("add_eos_token", False)),
            chat_template=templates,
            extra_eos_token_ids=_as_id_list(generation.get("eos_token_id")),
            # transformers writes a huge sentinel (1e30) when the length is unknown
            model_max_length=int(max_len) if isinstance(max_len, int | float) and max_len < 1e12 else None,
        )

    @classmethod
    def from_gguf(cls, source: Any) -> Tokenizer:
        """Build the tokenizer a GGUF file's metadata describes, as llama.cpp runs it.

        `source` is a `.gguf` path, an open `gguf.GGUFReader`, or an already-parsed metadata
        mapping {key: value} (strings as str, arrays as lists), e.g. from a faster header parser.

        Three `tokenizer.ggml.model`s are supported:

        - "llama": SentencePiece (Llama 2, Mistral, Gemma, Phi-3 files). A BPE whose merge order
          is the merged token's score (llama.cpp merges the best-scoring adjacent pair first),
          byte fallback to the `<0xXX>` tokens, spaces written as "▁", and a "▁" put before the
          text and after every special token when `tokenizer.ggml.add_space_prefix` (default
          true; Gemma's files say false). BOS is added by default, as llama.cpp does.
        - "gpt2": byte-level BPE on the file's merges, split as llama.cpp does for
          `tokenizer.ggml.pre` (see `_PRE_TOKENIZERS`: "smollm"/"starcoder" digits, "gpt-2",
          "qwen2"/"qwen35" (+ NFC, as their tokenizer.json), "llama-bpe" (Llama 3; words that
          are tokens are taken whole), "tekken", "gpt-4o", "deepseek-v3", ...). Unknown names
          fall back to GPT-2 splitting with a warning.
        - "gemma4": BPE on the file's merges over characters, spaces as "▁", byte fallback.

        Control (type 3) and unknown (2) tokens become special added tokens and user-defined
        ones (4) plain added tokens, so both are matched whole in text. `add_bos_token` and
        `add_eos_token` are honoured by `encode(..., add_special_tokens=True)`; eot/eom ids are
        stop ids; `tokenizer.chat_template` (and `tokenizer.chat_template.NAME`) are the templates.
        Missing or malformed metadata raises `TokenizerError`. Opening a `GGUFReader` costs
        seconds for a large vocabulary: share an open reader or pass parsed metadata when you can.
        """
        if isinstance(source, Mapping):
            meta = dict(source)
        else:
            meta = _read_gguf_tokenizer_metadata(source)

        kind = meta.get("tokenizer.ggml.model")
        supported = ", ".join(f"{k!r} ({v})" for k, v in _GGUF_MODELS.items())
        if kind is None:
            raise TokenizerError(f"GGUF metadata has no tokenizer (no tokenizer.ggml.model); supported: {supported}")
        if kind not in _GGUF_MODELS:
            raise TokenizerError(f"unsupported GGUF tokenizer model {kind!r}; supported: {supported}")
        tokens, types = _gguf_vocab(meta)

        def meta_id(key: str, default: int | None = None) -> int | None:
            value = meta.get(f"tokenizer.ggml.{key}", default)
            return value if isinstance(value, int) and 0 <= value < len(tokens) else None

        if kind == "llama":
            # llama.cpp's SentencePiece defaults: <unk>=0, <s>=1, </s>=2, BOS added, space prefix.
            unk_id, bos_id, eos_id = meta_id("unknown_token_id", 0), meta_id("bos_token_id", 1), meta_id("eos_token_id", 2)
            add_bos_default = True
            backend = _spm_backend(meta, tokens, types, unk_id)
        elif kind == "gemma4":
            unk_id, bos_id, eos_id = meta_id("unknown_token_id"), meta_id("bos_token_id"), meta_id("eos_token_id")
            add_bos_default = True
            backend = _gemma4_backend(meta, tokens)
        else:
            unk_id, bos_id, eos_id = meta_id("unknown_token_id"), meta_id("bos_token_id"), meta_id("eos_token_id")
            pre_name = str(meta.get("tokenizer.ggml.pre", "default"))
            pre = _PRE_TOKENIZERS.get(pre_name)
            if pre is None:
                warnings.warn(f"unknown GGUF pre-tokenizer {pre_name!r}; using GPT-2 splitting", stacklevel=2)
                pre = _PreTokenizer()
            add_bos_default = pre.add_bos
            backend = _byte_level_backend(meta, tokens, pre)

        # Control and unknown tokens are matched in text only as special tokens (llama.cpp's
        # parse_special); user-defined ones always, and they are ordinary text when decoded.
        specials = [t for t, k in zip(tokens, types, strict=False) if k in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_UNKNOWN)]
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        backend.add_tokens([AddedToken(t, special=False, normalized=False)
                            for t, k in zip(tokens, types, strict=False) if k == _TOKEN_TYPE_USER_DEFINED])

        templates: dict[str, str] = {}
        for key, value in meta.items():
            if isinstance(value, str) and key.startswith("tokenizer.chat_template."):
                templates[key.removeprefix("tokenizer.chat_template.")] = value
        if isinstance(meta.get("tokenizer.chat_template"), str):
            templates["default"] = meta["tokenizer.chat_template"]
        arch = meta.get("general.architecture")
        context = meta.get(f"{arch}.context_length") if arch else None
        extra_eos = [i for i in (meta_id("eot_token_id"), meta_id("eom_token_id")) if i is not None]

        def token(i: int | None) -> str | None:
            return None if i is None else tokens[i]

        tok = cls(
            backend,
            bos_token=token(bos_id),
            eos_token=token(eos_id),
            pad_token=token(meta_id("padding_token_id")),
            unk_token=token(unk_id),
            # llama.cpp always adds BOS for Gemma 4, whatever the file says (ggml-org/llama.cpp#21500).
            add_bos_token=kind == "gemma4" or bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default)),
            add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
            chat_template=templates,
            extra_eos_token_ids=extra_eos,
            model_max_length=context if isinstance(context, int) else None,
        )
        tok._gguf_meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
        return tok

    # ----------------------------------------------------------------- saving

    def gguf_metadata(self) -> dict[str, Any]:
        """The `tokenizer.*` keys a GGUF file needs for this tokenizer (llama.cpp reads them).

        A tokenizer read from GGUF gives its own keys back. One from a HF directory is described
        from its BPE model: a byte-level one as "gpt2" (tokens by id, merges, the pre-tokenizer
        name llama.cpp knows), a SentencePiece-style one (byte fallback, "▁" for spaces) as
        "llama" (scores from the merge order: llama.cpp joins the best-scoring pair first), both
        with token types, special ids, add_bos/add_eos and the chat template."""
        if self._gguf_meta:
            return dict(self._gguf_meta)
        spec = json.loads(self._backend.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise TokenizerError(f"only BPE tokenizers can be written to GGUF, not {model.get('type')!r}")
        vocab: dict[str, int] = dict(model.get("vocab") or {})
        added = {t["id"]: t for t in spec.get("added_tokens") or []}
        for i, t in added.items():
            vocab.setdefault(t["content"], i)
        size = max(vocab.values()) + 1 if vocab else 0
        tokens = [f"[PAD{i}]" for i in range(size)]
        for t, i in vocab.items():
            tokens[i] = t
        types = [_TOKEN_TYPE_CONTROL if i in added and added[i].get("special") else
                 _TOKEN_TYPE_USER_DEFINED if i in added else _TOKEN_TYPE_NORMAL for i in range(size)]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
        meta: dict[str, Any] = {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types}
        if model.get("byte_fallback"):  # SentencePiece-style; byte-level BPE needs no fallback
            meta.update(self._spm_gguf_metadata(spec, tokens, types, model.get("merges") or [], self.unk_token_id))
        else:
            pre_spec = json.dumps(spec.get("pre_tokenizer") or {})
            if '"individual_digits": true' in pre_spec:
                pre = "smollm"
            elif "\\p{N}{1,3}" in pre_spec or "p{N}{1,3}" in pre_spec:
                pre = "llama-bpe"
            elif "Split" in pre_spec:
                pre = "qwen2"
            else:
                pre = "gpt-2"
            meta.update({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.merges": merges})
        meta["tokenizer.ggml.add_bos_token"] = self.add_bos_token
        meta["tokenizer.ggml.add_eos_token"] = self.add_eos_token
        for key, value in (("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id),
                           ("padding_token_id", self.pad_token_id), ("unknown_token_id", self.unk_token_id)):
            if value is not None:
                meta[f"tokenizer.ggml.{key}"] = int(value)
        for name, template in self.chat_templates.items():
            meta["tokenizer.chat_template" if name == "default" else f"tokenizer.chat_template.{name}"] = template
        return meta

    @staticmethod
    def _spm_gguf_metadata(spec: Mapping[str, Any], tokens: list[str], types: list[int], merges: list[Any],
                           unk_id: int | None) -> dict[str, Any]:
        """The "llama" keys of a SentencePiece-style BPE (byte fallback, "▁" for spaces).

        llama.cpp joins the adjacent pair that makes the best-scoring token, so a token's score is
        minus the rank of the first merge that makes it; tokens no merge makes (characters, bytes,
        specials) get the lowest score, so llama.cpp forms them only when nothing else fits."""
        ids, lowest = {t: i for i, t in enumerate(tokens)}, -1e9
        scores = [lowest] * len(tokens)
        for rank, m in enumerate(merges):
            left, right = m.split(" ", 1) if isinstance(m, str) else m
            i = ids.get(left + right)
            if i is not None and scores[i] == lowest:
                scores[i] = -float(rank)
        # As llama.cpp's converter types a SentencePiece vocabulary: <unk> and the <0xXX> bytes too.
        types = [_TOKEN_TYPE_UNKNOWN if i == unk_id else
                 _TOKEN_TYPE_BYTE if k == _TOKEN_TYPE_NORMAL and _BYTE_TOKEN.fullmatch(t) else k
                 for i, (t, k) in enumerate(zip(tokens, types, strict=True))]

        def parts(component: Mapping[str, Any] | None, key: str) -> list[Mapping[str, Any]]:
            return list(component.get(key) or [component]) if component else []

        def prepends(p: Mapping[str, Any]) -> bool:  # older files say add_prefix_space, newer prepend_scheme
            scheme = p.get("prepend_scheme") or ("always" if p.get("add_prefix_space", True) else "never")
            return p.get("type") == "Metaspace" and scheme != "never"

        # The space prefix is a Prepend("▁") normalizer or a Metaspace pre-tokenizer that prepends
        # (llama.cpp's prefix also follows special tokens, Metaspace's "first" scheme does not).
        prefix = any(n.get("type") == "Prepend" and n.get("prepend") == _SPACE
                     for n in parts(spec.get("normalizer"), "normalizers"))
        prefix |= any(prepends(p) for p in parts(spec.get("pre_tokenizer"), "pretokenizers"))
        return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.add_space_prefix": prefix}

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
            "add_eos_token": self.add_eos_token,
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
        # (OpenAI's behaviour). Rendering contents as markers tells where they are in the prompt;
        # the prompt is encoded whole (as llama.cpp encodes it: BPE merges and SentencePiece's
        # "▁" prefix depend on the neighbouring text), and only if a special token was matched
        # inside a content is it encoded again with those spelled as text.
        text = render(messages)
        contents: list[str] = []
        spans = _content_spans(render([_mark_contents(m, contents) for m in messages]), contents, text)
        if spans is None:  # the template rewrote a content beyond recognition: no protection possible
            return self.encode(text, add_special_tokens=False)
        return self._encode_with_text_spans(text, spans)

    def _encode_with_text_spans(self, text: str, spans: list[tuple[int, int]]) -> list[int]:
        """`encode(text)`, except that special tokens overlapping a span are spelled as text.

        Special tokens outside the spans cut the text into fragments, each encoded as plain text,
        which is what llama.cpp does around special tokens (also for SentencePiece's prefix)."""
        encoding = self._backend.encode(text, add_special_tokens=False)
        cuts, injected = [], False
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
            if token_id in self._special_ids:
                if any(a < end and start < b for a, b in spans):
                    injected = True
                else:
                    cuts.append((start, end, token_id))
        if not injected:
            return encoding.ids
        ids: list[int] = []
        pos = 0
        for start, end, token_id in cuts:
            ids += self.encode_text(text[pos:start])
            ids.append(token_id)
            pos = end
        return ids + self.encode_text(text[pos:])

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


def _read_gguf_tokenizer_metadata(source: Any) -> dict[str, Any]:
    """The tokenizer keys of a `.gguf` path or an open `gguf.GGUFReader`; unreadable files raise
    `TokenizerError` with the reader's reason instead of its traceback."""
    import gguf  # imported here: only GGUF users pay for it

    if isinstance(source, gguf.GGUFReader):
        reader = source
    else:
        path = Path(source)
        if not path.is_file():
            raise TokenizerError(f"GGUF file not found: {path}")
        try:
            reader = gguf.GGUFReader(path)
        except Exception as e:  # the reader raises ValueError, struct/numpy errors, ... on a bad file
            raise TokenizerError(f"{path}: cannot be read as GGUF ({type(e).__name__}: {e})") from e
    try:
        return _gguf_metadata(reader)
    except Exception as e:  # e.g. a token that is not UTF-8
        raise TokenizerError(f"GGUF tokenizer metadata cannot be decoded ({type(e).__name__}: {e})") from e


def _as_list(value: Any) -> list[Any] | None:
    """A GGUF array as a list (parsers give lists, tuples or numpy arrays); None if not an array."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str | bytes) else None


def _gguf_vocab(meta: Mapping[str, Any]) -> tuple[list[str], list[int]]:
    """`tokenizer.ggml.tokens` and `.token_type` checked as llama.cpp checks them."""
    tokens = _as_list(meta.get("tokenizer.ggml.tokens"))
    if not tokens:
        raise TokenizerError("GGUF metadata has no tokenizer vocabulary (tokenizer.ggml.tokens is missing or empty)")
    if not all(isinstance(t, str) for t in tokens):
        raise TokenizerError("GGUF tokenizer.ggml.tokens must be an array of strings")
    # llama.cpp names empty tokens so (an empty string cannot be a vocabulary entry).
    tokens = [t or f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    seen: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if seen.setdefault(t, i) != i:  # llama.cpp refuses these too: one string cannot have two ids
            raise TokenizerError(f"GGUF vocabulary has the token {t!r} twice (ids {seen[t]} and {i})")
    raw_types = meta.get("tokenizer.ggml.token_type")
    types = _as_list(raw_types) if raw_types is not None else [_TOKEN_TYPE_NORMAL] * len(tokens)
    if types is None or len(types) < len(tokens):
        raise TokenizerError(f"GGUF tokenizer.ggml.token_type has {len(types or [])} entries for {len(tokens)} tokens")
    return tokens, [int(k) for k in types[: len(tokens)]]


def _spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """BPE merges that reproduce llama.cpp's SentencePiece tokenizer.

    llama.cpp repeatedly joins the adjacent pair whose concatenation is the best-scoring token.
    As BPE merges: every split (left, right) of every token into two tokens, best merged score
    first. Equal scores are ordered longer-left first, then by token id (transformers' order, so
    both give the same ids); llama.cpp breaks such ties by position instead, which only matters
    for two different tokens with the same score competing for the same characters.

    No merge makes a control or unknown token ("<s>" from "<" + "s>"): those are matched whole
    as special tokens or not at all, so text spelled like one stays text (llama.cpp would merge).
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    merges: list[tuple[float, int, int, int, str, str]] = []
    for i, token in enumerate(tokens):
        if types[i] in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_UNKNOWN):
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((-scores[i], -cut, cut - len(token), i, left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def _spm_backend(
    meta: Mapping[str, Any], tokens: list[str], types: list[int], unk_id: int | None
) -> tokenizers.Tokenizer:
    """llama.cpp's "llama" (SentencePiece) vocabulary as a `tokenizers` pipeline."""
    scores = _as_list(meta.get("tokenizer.ggml.scores"))
    if scores is None:  # without them there is no merge order at all
        raise TokenizerError("GGUF SentencePiece vocabulary has no tokenizer.ggml.scores")
    if len(scores) < len(tokens):
        raise TokenizerError(f"GGUF tokenizer.ggml.scores has {len(scores)} entries for {len(tokens)} tokens")
    try:
        model = models.BPE(
            vocab={t: i for i, t in enumerate(tokens)},
            merges=_spm_merges(tokens, [float(x) for x in scores], types),
            unk_token=tokens[unk_id] if unk_id is not None else None,
            fuse_unk=True,
            byte_fallback=True,  # characters that are not tokens become their <0xXX> byte tokens
        )
    except Exception as e:  # the Rust side raises plain Exceptions
        raise TokenizerError(f"GGUF SentencePiece vocabulary cannot be built ({e})") from e
    return _spm_text(tokenizers.Tokenizer(model), prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", True)))


def _spm_text(backend: tokenizers.Tokenizer, *, prefix: bool) -> tokenizers.Tokenizer:
    """Spaces as "▁", optionally one "▁" put before the text, and the way back when decoding.

    A normalizer, not the Metaspace pre-tokenizer: like llama.cpp (and SentencePiece) it puts
    "▁" before every piece of text, also one that starts with a space (" hi" -> "▁▁hi"), and
    after every special token (tokenizers normalizes each stretch between added tokens)."""
    escape = normalizers.Replace(" ", _SPACE)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend(_SPACE), escape]) if prefix else escape
    steps = [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:  # the prefix is not part of the text: drop one leading space of the decoded text
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    backend.decoder = decoders.Sequence(steps)
    return backend


def _gguf_merges(meta: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    """`tokenizer.ggml.merges` as pairs, split as llama.cpp splits them: at the first space after
    the first character."""
    raw_merges = _as_list(meta.get("tokenizer.ggml.merges"))
    if not raw_merges:
        raise TokenizerError(f"GGUF {kind} vocabulary has no tokenizer.ggml.merges")
    merges = []
    for m in raw_merges:
        cut = m.find(" ", 1) if isinstance(m, str) else -1
        if cut < 0:
            raise TokenizerError(f"GGUF tokenizer.ggml.merges has a malformed entry {m!r}")
        merges.append((m[:cut], m[cut + 1:]))
    return merges


def _gemma4_backend(meta: Mapping[str, Any], tokens: list[str]) -> tokenizers.Tokenizer:
    """llama.cpp's "gemma4" vocabulary: BPE on the file's merges over UTF-8 characters (not
    bytes), spaces as "▁", lines and runs of newlines merged separately, byte fallback."""
    try:
        model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=_gguf_merges(meta, "Gemma 4"),
                           byte_fallback=True)
    except Exception as e:  # the Rust side raises plain Exceptions (e.g. a merge of unknown tokens)
        raise TokenizerError(f"GGUF Gemma 4 vocabulary cannot be built ({e})") from e
    backend = _spm_text(tokenizers.Tokenizer(model), prefix=False)
    backend.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(r"[^\n]+|[\n]+"), behavior="isolated")
    return backend


def _byte_level_backend(meta: Mapping[str, Any], tokens: list[str], pre: _PreTokenizer) -> tokenizers.Tokenizer:
    """llama.cpp's "gpt2" (byte-level BPE) vocabulary as a `tokenizers` pipeline."""
    merges = _gguf_merges(meta, "byte-level BPE")
    try:
        model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=pre.ignore_merges)
    except Exception as e:  # the Rust side raises plain Exceptions (e.g. a merge of unknown tokens)
        raise TokenizerError(f"GGUF byte-level BPE vocabulary cannot be built ({e})") from e
    backend = tokenizers.Tokenizer(model)
    if pre.regexes:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            *(pre_tokenizers.Split(tokenizers.Regex(r), behavior="isolated") for r in pre.regexes),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    elif pre.digits:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if pre.nfc:
        backend.normalizer = normalizers.NFC()
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


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
