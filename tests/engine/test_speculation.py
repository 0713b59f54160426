"""Prompt-lookup speculative decoding: drafts from the text itself, verified in the step's forward."""

from __future__ import annotations

import pytest

from aigc import kernels
from aigc.engine.core import EngineCore
from aigc.engine.offline import stream_request
from aigc.engine.protocol import EngineRequest
from aigc.engine.speculation import DraftStats, PromptLookup, SpeculationPolicy, prompt_lookup
from aigc.generation.params import SamplingParams


def test_prompt_lookup_continues_the_latest_earlier_occurrence():
    text = [5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 5, 6]
    assert prompt_lookup(text) == [7, 2, 3, 5]  # "5 6" last seen before at index 6, followed by 7 2 3 ...
    assert prompt_lookup([1, 2, 3, 4]) == []  # nothing repeats
    assert prompt_lookup([1, 2, 9, 1, 2], max_draft=2) == [9, 1]


def test_the_index_grows_token_by_token_and_agrees_with_a_fresh_lookup():
    index, text = PromptLookup(), [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 9, 2, 6, 5]
    for i, t in enumerate(text):
        index.extend([t])
        assert index.draft(3) == prompt_lookup(text[: i + 1], max_draft=3)


def test_drafting_pauses_where_guesses_keep_failing():
    policy, stats = SpeculationPolicy(), DraftStats()
    prompt = [1, 2, 3, 1, 2]
    assert policy.draft(prompt, [], stats, room=4) == [3, 1, 2]
    policy.record(stats, 12, 1)  # mostly rejected
    assert stats.pause > 0
    assert policy.draft(prompt, [], stats, room=4) == []
    assert policy.drafted_tokens == 12 and policy.accepted_tokens == 1


def _run(model, tokenizer, prompt, max_rows, max_tokens=80):
    core = EngineCore(model, tokenizer, max_concurrency=2, max_context=1024,
                      speculation=SpeculationPolicy(max_rows=max_rows))
    try:
        req = EngineRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True))
        tokens = [t for d in stream_request(core, req) for t in d.token_ids]
        return tokens, core.stats()
    finally:
        core.close()


@pytest.mark.skipif(not kernels.available(), reason="speculation runs on the native forward")
def test_greedy_output_is_the_same_with_and_without_speculation(model, tokenizer):
    prompt = tokenizer.encode("one two three four one two three four one two three four one two")
    plain, plain_stats = _run(model, tokenizer, prompt, max_rows=0)
    spec, stats = _run(model, tokenizer, prompt, max_rows=2)
    assert spec == plain and len(spec) == 80
    assert plain_stats.spec_draft_tokens == 0 and stats.spec_draft_tokens > 0


@pytest.mark.slow
@pytest.mark.skipif(not kernels.available(), reason="speculation runs on the native forward")
def test_copying_text_accepts_drafts_and_changes_nothing():
    from aigc.models.loader import load_model

    lm = load_model("smollm2-135m-instruct", quantize="auto")
    passage = ("The river wound through the valley, past the old mill and the orchards, until it reached the "
               "harbor town where the fishermen mended their nets on the stone quay.")
    prompt = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Repeat this text exactly: {passage}"}], add_generation_prompt=True, tokenize=True)
    plain, _ = _run(lm.model, lm.tokenizer, prompt, max_rows=0, max_tokens=40)
    spec, stats = _run(lm.model, lm.tokenizer, prompt, max_rows=2, max_tokens=40)
    assert spec == plain
    assert stats.spec_accepted_tokens >= 10 and stats.spec_accepted_tokens >= 0.5 * stats.spec_draft_tokens
