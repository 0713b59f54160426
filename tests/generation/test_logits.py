import pytest
import torch
from torch.testing import assert_close
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from aigc.generation.logits import (
    apply_presence_frequency,
    apply_repetition_penalty,
    apply_temperature,
    filter_logits,
)

B, V = 4, 64


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, V, generator=g) * 3


def per_row(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("k", [1, 5, 63, 64, 100])
def test_top_k_matches_hf(logits, k):
    ours = filter_logits(logits, top_k=per_row([k] * B, torch.long))
    assert_close(ours, TopKLogitsWarper(k)(None, logits.clone()))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.95, 1.0])
def test_top_p_matches_hf(logits, p):
    ours = filter_logits(logits, top_p=per_row([p] * B))
    assert_close(ours, TopPLogitsWarper(p)(None, logits.clone()))


@pytest.mark.parametrize("m", [0.0, 0.05, 0.2, 0.9, 1.0])
def test_min_p_matches_hf(logits, m):
    ours = filter_logits(logits, min_p=per_row([m] * B))
    assert_close(ours, MinPLogitsWarper(m)(None, logits.clone()))


def test_each_row_gets_its_own_filters_in_hf_order(logits):
    """Row i uses (k_i, p_i, minp_i); HF applies TopK -> TopP -> MinP to each row alone."""
    ks, ps, ms = [0, 10, 3, 40], [0.8, 1.0, 0.5, 0.9], [0.1, 0.0, 0.0, 0.05]
    ours = filter_logits(logits, per_row(ks, torch.long), per_row(ps), per_row(ms))
    for i in range(B):
        ref = logits[i : i + 1].clone()
        if ks[i] > 0:
            ref = TopKLogitsWarper(ks[i])(None, ref)
        ref = MinPLogitsWarper(ms[i])(None, TopPLogitsWarper(ps[i])(None, ref))
        assert_close(ours[i : i + 1], ref)
    assert torch.isfinite(ours).sum(-1).min() >= 1


def test_a_row_gives_the_same_result_alone_and_in_a_batch(logits):
    both = filter_logits(logits[:2], per_row([5, 0], torch.long), per_row([1.0, 0.6]), per_row([0.0, 0.1]))
    alone0 = filter_logits(logits[:1], per_row([5], torch.long), per_row([1.0]), per_row([0.0]))
    alone1 = filter_logits(logits[1:2], per_row([0], torch.long), per_row([0.6]), per_row([0.1]))
    assert torch.equal(both, torch.cat([alone0, alone1]))


def test_repetition_penalty_matches_hf_per_row(logits):
    input_ids = torch.randint(0, V, (B, 12), generator=torch.Generator().manual_seed(1))
    seen = torch.zeros(B, V, dtype=torch.bool).scatter_(1, input_ids, True)
    penalties = [1.0, 1.3, 0.8, 2.0]
    ours = logits.clone()
    apply_repetition_penalty(ours, seen, per_row(penalties))
    for i, p in enumerate(penalties):
        ref = RepetitionPenaltyLogitsProcessor(p)(input_ids[i : i + 1], logits[i : i + 1].clone())
        assert_close(ours[i : i + 1], ref)


def test_presence_and_frequency_follow_openai_formula(logits):
    counts = torch.zeros(B, V)
    counts[0, 3], counts[1, 3], counts[1, 7] = 2, 1, 4
    presence, frequency = per_row([0.5, -1.0, 0.0, 2.0]), per_row([0.25, 0.5, 1.0, 0.0])
    ours = logits.clone()
    apply_presence_frequency(ours, counts, presence, frequency)
    expected = logits.clone()
    for i in range(B):
        for t in range(V):
            c = counts[i, t].item()
            expected[i, t] -= frequency[i] * c + presence[i] * (c > 0)
    assert_close(ours, expected)


def test_temperature_matches_hf_and_leaves_greedy_rows(logits):
    ours = logits.clone()
    apply_temperature(ours, per_row([0.5, 1.0, 0.0, 1.7]))
    for i, t in enumerate([0.5, 1.0, None, 1.7]):
        ref = logits[i : i + 1] if t is None else TemperatureLogitsWarper(t)(None, logits[i : i + 1].clone())
        assert_close(ours[i : i + 1], ref)
