"""Beam search equals transformers' `generate(num_beams=..., do_sample=False)` token for token."""

import pytest
import torch

from aigc.engine.offline import generate
from aigc.generation import SamplingParams

PROMPT = [1, 5, 9, 22, 33, 7]
MAX_NEW = 15


def greedy_tokens(model) -> list[int]:
    return generate(model, [PROMPT], SamplingParams(temperature=0, max_tokens=20), eos_token_ids=[])[0][0].token_ids


def hf_beams(hf, eos: list[int], **kw):
    out = hf.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos,
                      pad_token_id=0, output_scores=True, return_dict_in_generate=True, **kw)
    return out.sequences[:, len(PROMPT):].tolist(), out.sequences_scores


def assert_same_as_hf(ours, hf_seqs, hf_scores, eos):
    fill = eos[0]  # HF pads finished rows with `pad_token_id or eos_token_id[0]` (our pad id is 0)
    width = len(hf_seqs[0])
    assert [c.token_ids + [fill] * (width - len(c.token_ids)) for c in ours] == hf_seqs
    # scores: sums of logprobs over the whole sequence; our KV cache is float16 (HF: float32)
    assert torch.allclose(torch.tensor([c.score for c in ours]), hf_scores, rtol=1e-3, atol=3e-3)
    for c in ours:
        assert c.finish_reason == ("stop" if c.token_ids[-1] in eos else "length")
        assert len(c.token_ids) == MAX_NEW or c.finish_reason == "stop"


# eos positions are taken from the greedy continuation, so hypotheses really end at different lengths.
@pytest.mark.parametrize("eos_at", [(3,), (5,), (2, 8), ()])
@pytest.mark.parametrize("num_beams, length_penalty, early_stopping", [
    (3, 1.0, False), (3, 0.5, True), (3, 1.0, True), (4, 2.0, "never"), (3, -1.0, False), (2, 0.0, "never"),
])
def test_matches_hf(pair, eos_at, num_beams, length_penalty, early_stopping):
    hf, ours = pair("llama")
    greedy = greedy_tokens(ours)
    eos = [greedy[i] for i in eos_at] or [127]  # 127: an id the greedy continuation never hits
    params = SamplingParams(num_beams=num_beams, n=num_beams, max_tokens=MAX_NEW, length_penalty=length_penalty,
                            early_stopping=early_stopping)
    completions = generate(ours, [PROMPT], params, eos_token_ids=eos)[0]
    seqs, scores = hf_beams(hf, eos, num_beams=num_beams, num_return_sequences=num_beams,
                            length_penalty=length_penalty, early_stopping=early_stopping)
    assert_same_as_hf(completions, seqs, scores, eos)


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_matches_hf_other_families_with_repetition_penalty(pair, family):
    hf, ours = pair(family)
    eos = [greedy_tokens(ours)[4]]
    params = SamplingParams(num_beams=3, n=2, max_tokens=MAX_NEW, repetition_penalty=1.5)
    completions = generate(ours, [PROMPT], params, eos_token_ids=eos)[0]
    seqs, scores = hf_beams(hf, eos, num_beams=3, num_return_sequences=2, repetition_penalty=1.5)
    assert len(completions) == 2
    assert_same_as_hf(completions, seqs, scores, eos)


def test_best_beam_scores_at_least_greedy(pair):
    _, ours = pair("llama")
    params = SamplingParams(num_beams=4, max_tokens=10, length_penalty=0.0, early_stopping="never")
    beam = generate(ours, [PROMPT], params, eos_token_ids=[])[0][0]
    greedy = generate(ours, [PROMPT], SamplingParams(temperature=0, max_tokens=10), eos_token_ids=[])[0][0]
    assert beam.cumulative_logprob >= greedy.cumulative_logprob - 1e-4
