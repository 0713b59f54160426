"""`aigc train tokenizer`: a byte-level BPE tokenizer trained with HF `tokenizers`.

Byte-level means the 256 byte values are the base alphabet: any text encodes, nothing is unknown.
Text is first split by a regex (contractions, runs of letters, single digits, punctuation, spaces),
the same kind GPT-4/Qwen2 use; a run of Chinese characters is one letter run, so merges learn
multi-character words inside it. Special tokens come first (ids 0..3): `<|endoftext|>` separates
documents, `<|im_start|>`/`<|im_end|>` frame chat turns (ChatML template included), `<|pad|>` pads.
The result is saved with `Tokenizer.save_pretrained`, so `Tokenizer.from_dir` and
`transformers.AutoTokenizer` both open it.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from aigc.chat_template import DEFAULT_CHAT_TEMPLATE
from aigc.tokenizer import Tokenizer
from aigc.training.checkpointing import atomic_directory, refuse_to_overwrite
from aigc.training.data.sources import Simplifier, expand_inputs, iter_documents

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
MAX_VOCAB_SIZE = 1 << 20
# Contractions | letters (with one leading non-letter, e.g. a space) | one digit | punctuation | spaces
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
HELD_OUT_EVERY = 50  # every 50th document measures characters per token and is not trained on
HELD_OUT_CHARS = 1 << 20  # per script


def new_bpe_backend() -> tokenizers.Tokenizer:
    """An untrained byte-level BPE pipeline: NFC, regex split, byte mapping, byte-level decoding."""
    backend = tokenizers.Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"--vocab-size {vocab_size} is too small: byte-level BPE needs at least "
                         f"{MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(f"--vocab-size {vocab_size} is too large (at most {MAX_VOCAB_SIZE})")


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
              show_progress: bool = False, model_max_length: int | None = None) -> Tokenizer:
    """Train on an iterable of documents; returns our `Tokenizer` with specials and a ChatML template."""
    check_vocab_size(vocab_size)
    backend = new_bpe_backend()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend, eos_token="<|endoftext|>", pad_token="<|pad|>",
                     chat_template=DEFAULT_CHAT_TEMPLATE, model_max_length=model_max_length)


def script_of(text: str) -> str | None:
    """'zh' when CJK characters make up at least a third of the letters, 'en' for Latin text, else None."""
    cjk = latin = 0
    for ch in text[:2000]:
        if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff":
            cjk += 1
        elif ch.isascii() and ch.isalpha():
            latin += 1
        elif ch.isalpha() and unicodedata.name(ch, "").startswith("CJK"):
            cjk += 1
    if cjk + latin == 0:
        return None
    return "zh" if cjk * 3 >= cjk + latin else "en"


def chars_per_token(tokenizer: Tokenizer, texts: list[str]) -> float | None:
    """Characters per token over `texts` (higher = the tokenizer compresses this language better)."""
    chars = sum(len(t) for t in texts)
    tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts)) if texts else 0
    return round(chars / tokens, 3) if tokens else None


@dataclass
class TokenizerReport:
    vocab_size: int
    documents: int
    chars: int
    chars_per_token: dict[str, float | None] = field(default_factory=dict)
    held_out_chars: dict[str, int] = field(default_factory=dict)
    measured_on: str = "held-out documents"  # or "training documents" when too few to hold out
    seconds: float = 0.0


class _HeldOut:
    """Takes every HELD_OUT_EVERY-th document aside, per script, for an unbiased chars/token figure."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {"zh": [], "en": []}
        self.sizes = {"zh": 0, "en": 0}
        self.seen: dict[str, list[str]] = {"zh": [], "en": []}  # fallback: trained-on samples
        self.documents = self.chars = 0

    def split(self, docs: Iterable[str]) -> Iterator[str]:
        for i, doc in enumerate(docs):
            script = script_of(doc)
            if script is not None and i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 and self.sizes[script] < HELD_OUT_CHARS:
                self.texts[script].append(doc)
                self.sizes[script] += len(doc)
                continue
            if script is not None and sum(map(len, self.seen[script])) < HELD_OUT_CHARS // 4:
                self.seen[script].append(doc)
            self.documents += 1
            self.chars += len(doc)
            yield doc


def train_tokenizer(
    inputs: list[str | Path],
    out_dir: str | Path,
    vocab_size: int,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    doc_split: str = "blank",
    simplify: bool = False,
    min_frequency: int = 2,
    max_chars: int | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> TokenizerReport:
    """Train on the documents of `inputs` and save to `out_dir` (written atomically)."""
    check_vocab_size(vocab_size)
    out_dir = Path(out_dir)
    refuse_to_overwrite(out_dir, force)
    files = expand_inputs(inputs)
    simplifier = Simplifier() if simplify else None
    held_out = _HeldOut()
    started = time.time()

    def documents() -> Iterator[str]:
        total = 0
        for f in files:
            for doc in iter_documents(f, fmt, text_field=text_field, doc_split=doc_split):
                if not doc.strip():
                    continue
                yield simplifier(doc) if simplifier else doc
                total += len(doc)
                if max_chars is not None and total >= max_chars:
                    return

    tokenizer = train_bpe(held_out.split(documents()), vocab_size, min_frequency=min_frequency,
                          show_progress=show_progress)
    if held_out.documents == 0:
        raise ValueError(f"no text found in {len(files)} input file(s)")
    measured = held_out.texts
    if not any(measured.values()):  # too few documents to hold any out
        measured = held_out.seen
    report = TokenizerReport(
        vocab_size=tokenizer.vocab_size, documents=held_out.documents, chars=held_out.chars,
        chars_per_token={s: chars_per_token(tokenizer, t) for s, t in measured.items()},
        held_out_chars={s: sum(map(len, t)) for s, t in measured.items()},
        measured_on="held-out documents" if measured is held_out.texts else "training documents",
        seconds=round(time.time() - started, 2),
    )
    with atomic_directory(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
        (tmp / "tokenizer_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report
