import torch

from aigc.generation import Sampler, SamplingParams, SamplingState

V = 32


def state(prompt=(), **kw) -> SamplingState:
    return SamplingState(SamplingParams(**kw).validate(V), list(prompt), V)


def random_logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * 2


def draws(rows: list[SamplingState], steps: int, seed: int = 0) -> list[list[int]]:
    sampler = Sampler()
    out = []
    for s in range(steps):
        out.append(sampler.sample(random_logits(len(rows), seed + s), rows).token_ids.tolist())
    return [list(col) for col in zip(*out, strict=True)]


def test_greedy_takes_argmax_and_logit_bias_applies():
    logits = random_logits(2)
    rows = [state(temperature=0), state(temperature=0, logit_bias={5: 100})]
    tokens = Sampler().sample(logits, rows).token_ids
    assert tokens.tolist() == [int(logits[0].argmax()), 5]


def test_penalties_use_the_rows_history():
    logits = torch.zeros(2, V)
    logits[:, 3], logits[:, 4] = 2.0, 1.0
    rows = [state(temperature=0, frequency_penalty=1.5), state(temperature=0)]
    sampler = Sampler()
    first = sampler.sample(logits, rows).token_ids.tolist()
    second = sampler.sample(logits, rows).token_ids.tolist()
    assert first == [3, 3] and second == [4, 3]  # only the penalised row moves off token 3


def test_repetition_penalty_counts_the_prompt():
    logits = torch.zeros(1, V)
    logits[0, 3], logits[0, 4] = 2.0, 1.5
    assert Sampler().sample(logits, [state([3], temperature=0, repetition_penalty=2.0)]).token_ids.item() == 4


def test_same_seed_same_tokens_whatever_the_batch():
    alone = draws([state(seed=7)], 20)[0]
    logits_rows = [state(seed=7), state(), state(seed=99, top_p=0.5)]
    # Row order differs, other rows differ; logits of the seeded row are made identical.
    sampler = Sampler()
    got = []
    for s in range(20):
        row_logits = random_logits(1, s)
        batch = torch.cat([random_logits(1, 100 + s), row_logits, random_logits(1, 200 + s)])
        got.append(sampler.sample(batch, [logits_rows[1], logits_rows[0], logits_rows[2]]).token_ids[1].item())
    assert got == alone
    assert draws([state(seed=7)], 20)[0] == alone
    assert draws([state(seed=8)], 20)[0] != alone


def test_top_k_1_and_tiny_top_p_are_greedy():
    logits = random_logits(3)
    rows = [state(top_k=1), state(top_p=1e-6), state(min_p=1.0)]
    assert Sampler().sample(logits, rows).token_ids.tolist() == logits.argmax(-1).tolist()


def test_sampled_frequencies_follow_the_tempered_distribution():
    torch.manual_seed(0)
    base = torch.tensor([2.0, 1.0, 0.0, -1.0] + [-30.0] * (V - 4))
    n = 4000
    rows = [state(temperature=0.5)] * n
    tokens = Sampler().sample(base.expand(n, V).clone(), rows).token_ids
    freq = torch.bincount(tokens, minlength=V).float() / n
    expected = torch.softmax(base / 0.5, -1)
    assert (freq - expected).abs().max() < 0.03


def test_logprobs_are_raw_log_softmax_with_sorted_alternatives():
    logits = random_logits(3)
    rows = [state(logprobs=3, logit_bias={0: 50}), state(), state(logprobs=0, temperature=0.3)]
    out = Sampler().sample(logits, rows)
    ids, lps, infos = out.tolist(rows)
    ref = torch.log_softmax(logits, -1)
    for i in range(3):
        assert abs(lps[i] - ref[i, ids[i]].item()) < 1e-5  # raw: before logit_bias / temperature
    assert infos[1] is None and infos[2].top == [] and infos[2].token_id == ids[2]
    top = infos[0].top
    assert len(top) == 3 and [t for t, _ in top] == ref[0].topk(3).indices.tolist()
    assert all(a[1] >= b[1] for a, b in zip(top, top[1:], strict=False))
    assert abs(top[0][1] - ref[0].max().item()) < 1e-5
    assert ids[0] == 0  # the bias steered the choice, not the reported logprob


def test_logprobs_zero_gives_the_chosen_token_only():
    rows = [state(logprobs=0, temperature=0)]
    _, lps, infos = Sampler().sample(random_logits(1), rows).tolist(rows)
    assert infos[0] is not None and infos[0].top == [] and infos[0].logprob == lps[0] < 0


def test_penalty_history_follows_a_row_across_batches_and_samplers():
    """A row's history must survive moving between batch compositions (and the engine's two samplers)."""
    logits = random_logits(1, 3).expand(3, V).clone()

    def run(switching: bool) -> list[int]:
        a, b = Sampler(), Sampler()
        row = state(temperature=0, frequency_penalty=0.7, repetition_penalty=1.3)
        other = state(temperature=0, presence_penalty=1.0)
        out = []
        for step in range(12):
            if switching and step % 2:  # `a` keeps its cached batch [row] while `b` takes the row over
                out.append(b.sample(logits[:3], [other, row, state()]).token_ids[1].item())
            else:
                out.append(a.sample(logits[:1], [row]).token_ids[0].item())
        return out

    steady = run(switching=False)
    assert len(set(steady)) > 1  # the penalties really move the greedy choice
    assert run(switching=True) == steady
