"""Moderation: category scores for a text, from our classifier, the semantic layer and the lexicon.

A category's score is the classifier's probability, raised to the semantic head's (an MLP over
multilingual-e5-small vectors, safety/semantic.py; used unless a check asks for the fast path)
and to the lexicon's score when one of its phrases matched; it is flagged at or above its
calibrated threshold (thresholds.json beside the
model, chosen on a validation split by training/moderation.py). Results come in the shape of
OpenAI's moderation API: all 13 categories; the two "threatening" ones, which the model does not
learn separately, score as harassment/hate AND violence (the smaller of the two).

A long text is read in overlapping windows of the model's length; each category takes its
highest window, so harm at the end of a long answer is not diluted by the rest.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.safety.lexicon import LEXICON_SCORE, lexicon_hits, normalize
from aigc.safety.moderation_data import LABELS

CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
              "violence/graphic")
DERIVED = {"harassment/threatening": ("harassment", "violence"), "hate/threatening": ("hate", "violence")}
DEFAULT_MODEL = "aigc-moderation"
SHORT_SENTENCE = 8  # characters: shorter sentences are joined to a neighbour by the semantic layer
SEMANTIC_CHARS = 240  # per window of the semantic layer: about the length of the texts it was trained on
MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / DEFAULT_MODEL


_SENTENCE = re.compile(r"[^。！？!?；;\n.]*(?:[。！？!?；;\n]+|[.](?=\s|$)|$)")


def semantic_windows(text: str) -> list[str]:
    """The pieces the semantic layer reads: the text itself when short, else its sentences (a very
    short one joined to its neighbour; one longer than SEMANTIC_CHARS cut)."""
    text = text.strip()
    if len(text) <= SEMANTIC_CHARS:
        return [text] if text else []
    windows: list[str] = []
    for sentence in (m.group(0).strip() for m in _SENTENCE.finditer(text)):
        if not sentence:
            continue
        for at in range(0, len(sentence), SEMANTIC_CHARS):
            piece = sentence[at:at + SEMANTIC_CHARS]
            short = min(len(piece), len(windows[-1]) if windows else 0) < SHORT_SENTENCE
            if windows and short and len(windows[-1]) + 1 + len(piece) <= SEMANTIC_CHARS:
                windows[-1] += " " + piece  # a very short sentence ("Yes.") is read with its neighbour
            else:
                windows.append(piece)
    return windows


class ModerationError(ValueError):
    """A moderation request that cannot be served (no model, bad input); the API answers 400."""


@dataclass
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    scores: dict[str, float]  # the model's own categories (LABELS), before the derived ones
    lexicon: dict[str, str]  # categories the lexicon matched, with the phrase

    @property
    def flagged_categories(self) -> list[str]:
        return [c for c in CATEGORIES if self.categories[c]]

    def to_openai(self, input_type: str = "text") -> dict[str, Any]:
        return {"flagged": self.flagged, "categories": self.categories,
                "category_scores": {c: round(v, 6) for c, v in self.category_scores.items()},
                "category_applied_input_types": {c: [input_type] for c in CATEGORIES}}


class Moderator:
    """Loads the classifier once; `check` is thread-safe (one forward at a time)."""

    def __init__(self, model_dir: str | Path = MODEL_DIR, thresholds: dict[str, float] | None = None,
                 max_length: int = 256, name: str = DEFAULT_MODEL, threads: int | None = None,
                 semantic_dir: str | Path | None = None):
        from aigc.models.classifier import SequenceClassifier
        from aigc.tokenizer import Tokenizer

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise ModerationError(f"no moderation model at {folder} (train it with `aigc train moderation`)")
        self.name = name
        self.model = SequenceClassifier.from_pretrained(folder)
        if not self.model.multi_label or set(self.model.labels) != set(LABELS):
            raise ModerationError(f"{folder}: not a moderation classifier (labels {self.model.labels})")
        self.tokenizer = Tokenizer.from_dir(folder)
        path = folder / "thresholds.json"
        self.thresholds = thresholds or (json.loads(path.read_text(encoding="utf-8")) if path.is_file()
                                         else {label: 0.5 for label in LABELS})
        self.max_length = min(max_length, self.model.config.context_length)
        # Few threads: a check runs beside generation, whose cores it should not take (1 of 2 here).
        self.threads = threads or max(1, (os.cpu_count() or 2) // 4)
        self._lock = threading.Lock()
        from aigc.safety.semantic import SemanticScorer

        head = Path(semantic_dir) if semantic_dir is not None else folder
        self.semantic = SemanticScorer(head) if SemanticScorer.available(head) else None

    def _windows(self, text: str) -> list[list[int]]:
        ids = self.tokenizer.encode(text, add_special_tokens=True) or [self.model.pad_token_id]
        n = self.max_length
        if len(ids) <= n:
            return [ids]
        step = n // 2
        return [ids[at:at + n] for at in range(0, len(ids) - step, step)]

    def classifier_scores(self, texts: list[str]) -> list[dict[str, float]]:
        from aigc.models.classifier import predict_probs

        windows, owner = [], []
        for i, text in enumerate(texts):
            normal = normalize(text)  # as it was trained: the lexicon's normal form
            if not normal.strip():
                continue  # nothing to judge (the model has never seen an empty text)
            for w in self._windows(normal):
                windows.append(w)
                owner.append(i)
        import torch

        with self._lock:
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                probs = predict_probs(self.model, windows, batch_size=16).tolist() if windows else []
            finally:
                torch.set_num_threads(before)
        out = [dict.fromkeys(self.model.labels, 0.0) for _ in texts]
        for i, row in zip(owner, probs, strict=True):
            for label, p in zip(self.model.labels, row, strict=True):
                out[i][label] = max(out[i][label], p)
        return out

    def semantic_scores(self, texts: list[str]) -> list[dict[str, float]]:
        """The semantic head's probabilities. A text longer than SEMANTIC_CHARS is read sentence by
        sentence (short ones joined up to that length): a sentence vector of a long text is mostly
        the rest of it, so one harmful sentence in a long answer would be averaged away. Each
        category takes its highest window."""
        out = [dict.fromkeys(LABELS, 0.0) for _ in texts]
        if self.semantic is None:
            return out
        windows, owner = [], []
        for i, text in enumerate(texts):
            for window in semantic_windows(normalize(text)):
                windows.append(window)
                owner.append(i)
        for i, row in zip(owner, self.semantic.scores(windows), strict=True):
            for label in LABELS:
                out[i][label] = max(out[i][label], row.get(label, 0.0))
        return out

    def check(self, texts: list[str], *, semantic: bool = True) -> list[ModerationResult]:
        """Every layer's verdict on each text; `semantic=False` is the fast path (classifier and
        lexicon: a few milliseconds), for streamed output windows."""
        scores_per_text = self.classifier_scores(texts)
        if semantic and self.semantic is not None:
            for scores, extra in zip(scores_per_text, self.semantic_scores(texts), strict=True):
                for label, p in extra.items():
                    scores[label] = max(scores[label], p)
        results = []
        for text, scores in zip(texts, scores_per_text, strict=True):
            hits = lexicon_hits(text)
            for category in hits:
                if category in scores:
                    scores[category] = max(scores[category], LEXICON_SCORE)
            results.append(self._result(scores, hits))
        return results

    def lexicon_only(self, text: str) -> ModerationResult:
        """The lexicon's verdict alone (no classifier): for streamed output windows by default."""
        hits = lexicon_hits(text)
        scores = {label: (LEXICON_SCORE if label in hits else 0.0) for label in LABELS}
        return self._result(scores, hits)

    def _result(self, scores: dict[str, float], hits: dict[str, str]) -> ModerationResult:
        flags = {label: scores[label] >= self.thresholds.get(label, 0.5) for label in LABELS}
        category_scores = {c: scores.get(c, 0.0) for c in CATEGORIES}
        categories = {c: flags.get(c, False) for c in CATEGORIES}
        for derived, (a, b) in DERIVED.items():
            category_scores[derived] = min(scores[a], scores[b])
            categories[derived] = flags[a] and flags[b]
        return ModerationResult(any(categories.values()), categories, category_scores, scores, hits)


_shared: dict[str, Moderator] = {}
_shared_lock = threading.Lock()


def default_moderator(model_dir: str | Path = MODEL_DIR) -> Moderator:
    key = str(model_dir)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Moderator(model_dir)
        return _shared[key]
