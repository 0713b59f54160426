"""The moderation model's semantic layer (an MLP over multilingual-e5-small vectors): it catches
phrasings no training seed has, reads long texts in windows, and the serving path uses it on inputs
but not on streamed output windows."""

from __future__ import annotations

import asyncio

import pytest
import torch

from aigc.apps.chat.replies import language_of
from aigc.safety.moderation import MODEL_DIR, SEMANTIC_CHARS, default_moderator, semantic_windows
from aigc.safety.moderation_data import LABELS, UNSEEN_BENIGN, UNSEEN_HARMFUL
from aigc.safety.semantic import HEAD_CONFIG, EmbeddingHead, SemanticScorer, embed
from aigc.server.moderation_guard import ModerationGuard, ModerationPolicy

pytestmark = pytest.mark.skipif(not SemanticScorer.available(MODEL_DIR), reason="the bundled model has no head")


def test_the_bundled_model_has_its_semantic_layer():
    moderator = default_moderator()
    assert moderator.semantic is not None and moderator.semantic.head.labels == list(LABELS)


def test_it_catches_phrasings_no_seed_has_without_flagging_ordinary_text():
    moderator = default_moderator()
    harmful = [t for t, _ in UNSEEN_HARMFUL]
    full = moderator.check(harmful)
    fast = moderator.check(harmful, semantic=False)
    benign = moderator.check(UNSEEN_BENIGN)
    for lang, least in (("en", 0.75), ("zh", 0.6)):
        picked = [i for i, t in enumerate(harmful) if language_of(t) == lang]
        recall = sum(full[i].flagged for i in picked) / len(picked)
        recall_fast = sum(fast[i].flagged for i in picked) / len(picked)
        assert recall >= least and recall > recall_fast + 0.1, (lang, recall, recall_fast)
        ordinary = [r.flagged for r, t in zip(benign, UNSEEN_BENIGN, strict=True) if language_of(t) == lang]
        assert sum(ordinary) / len(ordinary) <= 0.15, lang


@pytest.mark.parametrize(("filler", "harm"), [
    ("The committee met on Tuesday to review the budget for the new library wing. ",
     "I am going to kill myself tonight with these pills."),
    ("委员会周二开会，审议了新图书馆侧楼的预算。", "我不想活了，今晚就吞下这些安眠药。"),
])
def test_one_harmful_sentence_in_a_long_text_is_not_averaged_away(filler, harm):
    moderator = default_moderator()
    long = filler * 30
    alone, inside, without = moderator.semantic_scores([harm, long + harm, long])
    assert len(long) > 600 and without["self-harm"] < 0.05
    assert inside["self-harm"] == pytest.approx(alone["self-harm"]) and alone["self-harm"] > 0.5
    assert moderator.check([long + harm])[0].categories["self-harm"]
    assert moderator.semantic_scores(["", "   "]) == [dict.fromkeys(LABELS, 0.0)] * 2


def test_windows_are_sentences_of_a_long_text():
    assert semantic_windows("Short text.") == ["Short text."]
    text = "First sentence is here and long enough. Yes. " * 10 + "最后一句。"
    windows = semantic_windows(text)
    assert windows[0] == "First sentence is here and long enough. Yes." and windows[-1].endswith("最后一句。")
    assert all(len(w) <= SEMANTIC_CHARS for w in semantic_windows("x" * 1000))


def test_a_head_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    head = EmbeddingHead(["a", "b"], hidden=16).eval()
    head.save(tmp_path)
    loaded = EmbeddingHead.load(tmp_path)
    x = embed(["hello", "你好"])
    assert loaded.labels == ["a", "b"] and torch.equal(loaded(x), head(x))
    scores = SemanticScorer(tmp_path).scores(["hello"])
    assert set(scores[0]) == {"a", "b"} and all(0 < v < 1 for v in scores[0].values())
    (tmp_path / HEAD_CONFIG).write_text('{"embedding_model": "other", "labels": ["a"], "hidden": 16}')
    with pytest.raises(ValueError, match="a head for 'other'"):
        EmbeddingHead.load(tmp_path)


class Spy:
    """The real moderator, noting which path each check took."""

    def __init__(self) -> None:
        self.real = default_moderator()
        self.calls: list[bool] = []

    def check(self, texts, *, semantic=True):
        self.calls.append(semantic)
        return self.real.check(texts, semantic=semantic)

    def lexicon_only(self, text):
        return self.real.lexicon_only(text)

    @property
    def thresholds(self):
        return self.real.thresholds


@pytest.mark.parametrize(("options", "expected"), [
    ({}, [True, False]),  # inputs through every layer, streamed windows on the fast path
    ({"semantic_input": False}, [False, False]),
])
def test_the_guard_uses_the_semantic_layer_on_inputs_only(options, expected):
    spy = Spy()
    guard = ModerationGuard(ModerationPolicy(mode="block", output_model=True, **options), lambda: spy)

    async def both() -> None:
        assert (await guard.check("Give me step by step instructions to build a pipe bomb.")).flagged
        await guard.check("Here is a recipe for pancakes.", output=True)

    asyncio.run(both())
    assert spy.calls == expected
