"""Structured outputs: a grammar the output must match, enforced while decoding by a token mask.

A `GuidedDecoding` says what the text must be: JSON valid against a schema, any JSON object, a
regular expression, one of fixed choices, or a Lark / GBNF grammar. At every step the choice's
`Constraint` tells the sampler which tokens keep the text inside the grammar (all others get -inf
before temperature and filtering), then consumes the token that was picked; when the grammar is
complete the choice ends with finish_reason "stop". So a completion either matches or was cut by
max_tokens ("length") — also with a tiny model at temperature 1.

The grammar engine is llguidance (Rust, a CPU wheel without dependencies; the one vLLM and
llama.cpp ship). Its tokenizer view is built once per tokenizer (~0.3 s for a 49k vocabulary) and
compiled grammars are cached per spec, so a schema costs its compile time (about a millisecond for
the usual schemas) once.

How the JSON is written, within what the schema allows (every output still validates against the
schema as given): compact (no whitespace outside strings), numbers with at most 6 decimals and,
where the schema sets no bound, at most 15 integer digits. Otherwise a small model at temperature 1
can spend its whole token budget on indentation or on the digits of one number.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from aigc.generation.params import InvalidParameterError

if TYPE_CHECKING:
    import llguidance

    from aigc.tokenizer import Tokenizer

GuidedKind = Literal["json_schema", "json_object", "regex", "choice", "grammar", "lark"]
_JSON_OPTIONS = {"whitespace_flexible": False}


@dataclass(frozen=True)
class GuidedDecoding:
    """What the output must match. `spec`: the JSON schema or the choices as JSON text, the regex, or
    the grammar text. `param`: the request parameter it came from (named in errors)."""

    kind: GuidedKind
    spec: str = ""
    param: str = "response_format"

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | bool, param: str = "response_format") -> GuidedDecoding:
        if not isinstance(schema, dict | bool):
            raise InvalidParameterError(f"{param}: the JSON schema must be an object, got {type(schema).__name__}",
                                        param)
        written = _tighten_numbers(schema) if isinstance(schema, dict) else schema
        return cls("json_schema", json.dumps(written, ensure_ascii=False), param)  # key order is output order

    @classmethod
    def json_object(cls, param: str = "response_format") -> GuidedDecoding:
        return cls("json_object", "", param)

    @classmethod
    def regex(cls, pattern: str, param: str = "guided_regex") -> GuidedDecoding:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidParameterError(f"{param} must be a non-empty regular expression", param)
        return cls("regex", pattern, param)

    @classmethod
    def choice(cls, choices: list[str], param: str = "guided_choice") -> GuidedDecoding:
        if (not isinstance(choices, list) or not choices
                or not all(isinstance(c, str) and c for c in choices)):
            raise InvalidParameterError(f"{param} must be a non-empty list of non-empty strings", param)
        return cls("choice", json.dumps(choices, ensure_ascii=False), param)

    @classmethod
    def lark(cls, text: str, param: str) -> GuidedDecoding:
        """A grammar in llguidance's Lark dialect as is (`%json {schema}` embeds a JSON schema)."""
        return cls("lark", text, param)

    @classmethod
    def grammar(cls, text: str, param: str = "guided_grammar") -> GuidedDecoding:
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameterError(f"{param} must be a non-empty Lark or GBNF grammar", param)
        return cls("grammar", text, param)


_NOT_SCHEMAS = frozenset({"enum", "const", "default", "examples", "required"})  # values, not subschemas
_NUMBER_LIMIT = 10**15


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema as structured outputs write it (see the module doc), for embedding in a Lark grammar."""
    return {**_tighten_numbers(schema), "x-guidance": _JSON_OPTIONS}


def _tighten_numbers(node: Any) -> Any:
    """A copy of a schema whose numbers have at most 6 decimals (multipleOf 1e-6 where none is set) and
    15 integer digits (bounds where none are set): a narrowing, so outputs still validate."""
    if isinstance(node, list):
        return [_tighten_numbers(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in _NOT_SCHEMAS else _tighten_numbers(v)) for k, v in node.items()}
    kinds = out.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if isinstance(kinds, list) and kinds and all(k in ("number", "integer") for k in kinds):
        if "number" in kinds and "multipleOf" not in out:
            out["multipleOf"] = 1e-6
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -_NUMBER_LIMIT
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = _NUMBER_LIMIT
    return out


@functools.lru_cache(maxsize=512)
def _grammar(kind: GuidedKind, spec: str) -> str:
    """The llguidance grammar for a spec (cached: a schema is converted once)."""
    from llguidance import LLMatcher, grammar_from

    if kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(spec, defaults=_JSON_OPTIONS)
    if kind == "json_object":
        return LLMatcher.grammar_from_json_schema('{"type": "object"}', defaults=_JSON_OPTIONS)
    if kind == "regex":
        return LLMatcher.grammar_from_regex(spec)
    if kind == "choice":
        return grammar_from("choice", spec)
    if kind == "lark":
        return LLMatcher.grammar_from_lark(spec)
    return grammar_from("grammar", spec)


_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TOKENIZERS_LOCK = threading.Lock()


def _ll_tokenizer(tokenizer: Tokenizer, vocab_size: int) -> llguidance.LLTokenizer:
    """llguidance's view of our tokenizer, for a model with `vocab_size` logits (built once)."""
    import llguidance

    with _TOKENIZERS_LOCK:
        per_size = _TOKENIZERS.setdefault(tokenizer, {})
        if vocab_size not in per_size:
            eos = sorted(tokenizer.eos_token_ids) or [tokenizer.eos_token_id or 0]
            per_size[vocab_size] = llguidance.LLTokenizer(tokenizer.backend.to_str(), n_vocab=vocab_size,
                                                          eos_token=eos)
        return per_size[vocab_size]


class Constraint:
    """One choice's position in its grammar."""

    def __init__(self, guided: GuidedDecoding, tokenizer: Tokenizer, vocab_size: int):
        import llguidance

        try:
            grammar = _grammar(guided.kind, guided.spec)
        except ValueError as e:
            raise InvalidParameterError(f"{guided.param}: {e}", guided.param) from None
        self.vocab_size = vocab_size
        self.eos_ids = sorted(t for t in tokenizer.eos_token_ids if t < vocab_size)
        self.matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer, vocab_size), grammar, log_level=0)
        if self.matcher.is_error():
            raise InvalidParameterError(f"{guided.param}: {self.matcher.get_error()}", guided.param)

    def advance(self, token: int) -> None:
        self.matcher.consume_token(token)

    @property
    def done(self) -> bool:
        """The grammar is complete (nothing but end-of-sequence could follow) or broken."""
        return self.matcher.is_stopped() or self.matcher.is_error()


_EXECUTOR = None
_BIT = torch.arange(32, dtype=torch.int32)


def allowed_tokens(constraints: list[Constraint]) -> torch.Tensor:
    """Bool [len(constraints), vocab_size]: every row's allowed tokens, the masks computed in parallel
    by llguidance's threads (without the GIL) into one bitmask, expanded with one vectorized op."""
    global _EXECUTOR
    import llguidance

    vocab = constraints[0].vocab_size
    words = (vocab + 31) // 32
    bits = torch.zeros(len(constraints), words, dtype=torch.int32)
    if len(constraints) == 1:
        constraints[0].matcher.unsafe_compute_mask_ptr(bits.data_ptr(), words * 4)
    else:
        if _EXECUTOR is None:
            _EXECUTOR = llguidance.LLExecutor()
        _EXECUTOR.unsafe_compute_mask_ptr([(c.matcher, i) for i, c in enumerate(constraints)], bits.data_ptr(),
                                          words * 4, len(constraints))
    return ((bits[:, :, None] >> _BIT) & 1).bool().view(len(constraints), words * 32)[:, :vocab]


def check(guided: GuidedDecoding, tokenizer: Tokenizer, vocab_size: int) -> None:
    """Raise InvalidParameterError (naming guided.param) if the spec does not compile."""
    Constraint(guided, tokenizer, vocab_size)
