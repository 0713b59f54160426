"""Loss, perplexity and bits per character of a causal LM on a text.

Perplexity per token depends on the tokenizer (a tokenizer with longer tokens has fewer, harder
predictions), so it only compares models that share one. Bits per character divide the total
negative log-likelihood of the text by its length in characters, which compares any two models.

Every token of the text is scored exactly once. The stream starts with the separator token as
context (so the first real token is predicted too) and is cut into windows of `block_size` tokens;
with `stride < block_size` windows overlap and only the last `stride` targets of each are scored,
giving each prediction more context. Separator (EOS) targets between documents are not scored: they
are not part of the text whose characters we count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aigc.tokenizer import Tokenizer

LOGIT_CHUNK = 256  # positions per LM-head call: a [chunk, vocab] block instead of [batch, T, vocab]


@dataclass
class EvalTokens:
    ids: np.ndarray  # int64; ids[0] is context only
    separator: int  # targets equal to this id are not scored
    chars: int  # characters of the scored text


@dataclass
class PerplexityResult:
    loss: float  # mean negative log-likelihood per scored token, nats
    perplexity: float
    bits_per_char: float
    bits_per_token: float
    tokens: int  # scored tokens
    chars: int

    def to_dict(self) -> dict:
        return asdict(self)


def _separator(tokenizer: Tokenizer) -> int:
    from aigc.training.data.prepare import separator_id

    return separator_id(tokenizer)


def load_eval_tokens(path: str | Path, tokenizer: Tokenizer, *, fmt: str = "auto", text_field: str = "text",
                     simplify: bool = False, max_chars: int | None = None) -> EvalTokens:
    """Tokens to evaluate on: a prepared data directory's validation split, or a text file.

    A text file (`fmt` text) is one document; JSONL/poem/chat files give one document per record,
    separated by the separator token as in training.
    """
    from aigc.training.data.sources import Simplifier, iter_documents, open_text

    path = Path(path)
    if path.is_dir():
        return _data_dir_tokens(path, tokenizer)
    if not path.is_file():
        raise FileNotFoundError(f"data not found: {path}")
    sep = _separator(tokenizer)
    simplifier = Simplifier() if simplify else None
    if fmt == "auto":
        from aigc.training.data.sources import detect_format

        fmt = detect_format(path)
    if fmt == "text":
        with open_text(path) as f:
            docs = [f.read(max_chars) if max_chars else f.read()]
    else:
        docs, total = [], 0
        for doc in iter_documents(path, fmt, text_field=text_field):
            docs.append(doc)
            total += len(doc)
            if max_chars is not None and total >= max_chars:
                break
    if simplifier:
        docs = [simplifier(d) for d in docs]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"{path}: no text to evaluate on")
    ids: list[int] = [sep]
    for enc in tokenizer.encode_batch(docs):
        ids += enc + [sep]
    return EvalTokens(np.asarray(ids[:-1], dtype=np.int64), sep, sum(len(d) for d in docs))


def _data_dir_tokens(path: Path, tokenizer: Tokenizer) -> EvalTokens:
    from aigc.training.data.shards import DataDir

    data = DataDir.open(path)
    data_tok = Tokenizer.from_dir(data.tokenizer_path)
    if data_tok.backend.get_vocab(with_added_tokens=True) != tokenizer.backend.get_vocab(with_added_tokens=True):
        raise ValueError(f"{path} was tokenized with a different tokenizer than the model's; "
                         "evaluate on the original text file instead")
    store = data.split("val")
    if len(store) == 0:
        raise ValueError(f"{path}: the validation split is empty")
    ids = np.concatenate([[data.eos_token_id], store.read(0, len(store))]).astype(np.int64)
    return EvalTokens(ids, data.eos_token_id, data.chars("val"))


@torch.no_grad()
def evaluate_perplexity(model: torch.nn.Module, tokens: EvalTokens, *, block_size: int | None = None,
                        stride: int | None = None, batch_size: int = 8) -> PerplexityResult:
    """Score `tokens` with `model` (our Transformer: `hidden_states` + `lm_head`)."""
    ctx = model.config.context_length
    block = min(block_size or min(ctx, 1024), ctx)
    stride = stride or block
    if block < 1 or not 1 <= stride <= block:
        raise ValueError(f"need 1 <= --stride ({stride}) <= --block-size ({block})")
    if batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    ids = torch.from_numpy(tokens.ids)
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise ValueError("the text is too short to evaluate (needs at least one token)")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    # (start, length, first scored target offset within the window)
    windows = []
    scored_until = 0  # targets 1..scored_until are done
    start = 0
    while scored_until < n_targets:
        length = min(block, n_targets - start)
        windows.append((start, length, scored_until - start))
        scored_until = start + length
        start += stride
    nll, count = 0.0, 0
    i = 0
    while i < len(windows):
        group = [w for w in windows[i : i + batch_size] if w[1] == windows[i][1]]
        i += len(group)
        x = torch.stack([ids[s : s + n] for s, n, _ in group]).to(device)
        y = torch.stack([ids[s + 1 : s + n + 1] for s, n, _ in group]).to(device)
        keep = torch.zeros_like(y, dtype=torch.bool)
        for row, (_, _, first) in enumerate(group):
            keep[row, first:] = True
        keep &= y != tokens.separator
        h = model.hidden_states(x)
        for c in range(0, h.shape[1], LOGIT_CHUNK):
            logits = model.lm_head(h[:, c : c + LOGIT_CHUNK]).float()
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, c : c + LOGIT_CHUNK].reshape(-1),
                                     reduction="none")
            mask = keep[:, c : c + LOGIT_CHUNK].reshape(-1)
            nll += float(losses[mask].double().sum())
            count += int(mask.sum())
    model.train(was_training)
    if count == 0:
        raise ValueError("nothing to score: the text holds only separator tokens")
    loss = nll / count
    chars = max(tokens.chars, 1)
    return PerplexityResult(loss=loss, perplexity=math.exp(min(loss, 700.0)), bits_per_char=nll / math.log(2) / chars,
                            bits_per_token=loss / math.log(2), tokens=count, chars=tokens.chars)
