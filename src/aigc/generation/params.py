"""SamplingParams: every knob of one generation request, with validation.

Semantics follow the public APIs people already know:
- `repetition_penalty` is Hugging Face's: over prompt + generated tokens, positive logits are divided by
  the penalty and negative ones multiplied (so > 1 discourages repeats).
- `presence_penalty` / `frequency_penalty` are OpenAI's: over generated tokens only,
  logit -= presence * [count > 0] + frequency * count.
- `logit_bias` is OpenAI's: added to the raw logits.
- Beam search (`num_beams > 1`) is Hugging Face's `generate(num_beams=..., do_sample=False)`: it is
  deterministic, so sampling knobs (top_p, top_k, min_p, seed) do not apply and are rejected when set;
  temperature must be 0 or 1 (both mean "no scaling" there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aigc.generation.guided import GuidedDecoding

MAX_STOP_STRINGS = 16
MAX_N = 16
MAX_BEAMS = 16
MAX_LOGPROBS = 20


class InvalidParameterError(ValueError):
    """A request parameter out of range. `param`: the parameter's name (given, or the field the
    message starts with), so the API layer names it in its error without parsing messages."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param if param is not None else _param_named_in(message)


_EXTRA_PARAMS = ("response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "tool_choice",
                 "tools")


def _param_named_in(message: str) -> str | None:
    first = message.replace(":", " ").split(" ", 1)[0]
    known = set(SamplingParams.__dataclass_fields__) | set(_EXTRA_PARAMS)
    return first if first in known else None


@dataclass
class SamplingParams:
    max_tokens: int | None = 256  # None: up to the end of the context window
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False  # keep going past the model's eos tokens (user stop_token_ids still stop)
    seed: int | None = None
    n: int = 1
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True | False | "never" (HF beam search semantics)
    logprobs: int | None = None  # None: no logprobs; k: chosen token + k top alternatives
    guided: GuidedDecoding | None = None  # structured output: the grammar the text must match

    def __post_init__(self) -> None:
        # Accept the loose shapes JSON APIs send: a single stop string, None for empty lists.
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop_token_ids is None:
            self.stop_token_ids = []
        if self.logit_bias is None:
            self.logit_bias = {}

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def use_beam_search(self) -> bool:
        return self.num_beams > 1

    @property
    def uses_penalties(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0)

    def validate(self, vocab_size: int | None = None) -> SamplingParams:
        """Check every field; raise `InvalidParameterError` naming the first bad one. Returns self."""
        if self.max_tokens is not None:
            _int("max_tokens", self.max_tokens)
            _check(self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}")
        _float("temperature", self.temperature)
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _float("top_p", self.top_p)
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _int("top_k", self.top_k)
        _check(-1 <= self.top_k < 2**31, f"top_k must be -1, 0 (off) or a positive count, got {self.top_k}")
        _float("min_p", self.min_p)
        _check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        _float("repetition_penalty", self.repetition_penalty)
        _check(self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _float(name, value)
            _check(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value}")
        self.logit_bias = _logit_bias(self.logit_bias, vocab_size)
        _check(isinstance(self.stop, list) and all(isinstance(s, str) for s in self.stop),
               "stop must be a string or a list of strings")
        _check(len(self.stop) <= MAX_STOP_STRINGS,
               f"stop must have at most {MAX_STOP_STRINGS} strings, got {len(self.stop)}")
        _check(all(self.stop), "stop strings must not be empty")
        for t in self.stop_token_ids:
            _int("stop_token_ids", t)
            _check(t >= 0 and (vocab_size is None or t < vocab_size),
                   f"stop_token_ids has {t}, outside the vocabulary")
        if self.seed is not None:
            _int("seed", self.seed)
        _int("n", self.n)
        _check(1 <= self.n <= MAX_N, f"n must be in [1, {MAX_N}], got {self.n}")
        _int("num_beams", self.num_beams)
        _check(1 <= self.num_beams <= MAX_BEAMS, f"num_beams must be in [1, {MAX_BEAMS}], got {self.num_beams}")
        _float("length_penalty", self.length_penalty)
        _check(self.early_stopping in (True, False, "never"),
               f"early_stopping must be true, false or \"never\", got {self.early_stopping!r}")
        if self.logprobs is not None:
            _int("logprobs", self.logprobs)
            _check(0 <= self.logprobs <= MAX_LOGPROBS,
                   f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")
        if self.use_beam_search:
            self._validate_beam_search()
        return self

    def _validate_beam_search(self) -> None:
        _check(self.n <= self.num_beams, f"n must be <= num_beams with beam search, got n={self.n}, "
               f"num_beams={self.num_beams}")
        _check(self.temperature in (0, 1), "temperature must be 0 or 1 with beam search "
               f"(num_beams > 1 is deterministic), got {self.temperature}")
        for name, off in (("top_p", 1.0), ("min_p", 0.0)):
            _check(getattr(self, name) == off, f"{name} is not supported with beam search (num_beams > 1)")
        _check(self.top_k in (0, -1), "top_k is not supported with beam search (num_beams > 1)")
        _check(not self.stop, "stop strings are not supported with beam search (num_beams > 1)")
        _check(self.logprobs is None, "logprobs is not supported with beam search (num_beams > 1)")
        _check(self.guided is None, "structured outputs (response_format, guided_*) are not supported with beam "
               "search (num_beams > 1)", param="num_beams")


def _check(ok: bool, message: str, param: str | None = None) -> None:
    if not ok:
        raise InvalidParameterError(message, param)


def _int(name: str, value: object) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer, got {value!r}")


def _float(name: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    _check(ok, f"{name} must be a finite number, got {value!r}")


def _logit_bias(bias: dict, vocab_size: int | None) -> dict[int, float]:
    _check(isinstance(bias, dict), "logit_bias must be a mapping of token id to bias")
    out: dict[int, float] = {}
    for key, value in bias.items():
        try:  # JSON object keys arrive as strings
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"logit_bias keys must be token ids, got {key!r}") from None
        _check(token >= 0 and (vocab_size is None or token < vocab_size),
               f"logit_bias has token id {token}, outside the vocabulary")
        _float("logit_bias", value)
        _check(-100 <= value <= 100, f"logit_bias values must be in [-100, 100], got {value} for token {token}")
        out[token] = float(value)
    return out
