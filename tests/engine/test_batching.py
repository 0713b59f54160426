"""Continuous batching gives every request exactly the tokens it gets alone."""

from __future__ import annotations

import asyncio

from aigc.engine import EngineRequest
from aigc.generation.params import SamplingParams


def greedy(max_tokens: int, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True, **kw)


def prompts(tokenizer, k: int) -> list[list[int]]:
    words = ["The cat", "Once upon a time there was", "def main():\n    return", "Bonjour",
             "1, 2, 3, 4, 5, 6, 7, 8", "Roses are red, violets are blue, sugar is sweet", "Q: why?\nA:", "x"]
    return [tokenizer.encode(words[i % len(words)] + " !" * i) for i in range(k)]


def test_concurrent_greedy_requests_match_alone_and_reference(make_engine, tokenizer, reference, run_all):
    ps = prompts(tokenizer, 8)
    lengths = [5 + 3 * i for i in range(8)]  # different lengths: rows leave the batch at different steps
    engine = make_engine(max_concurrency=8)
    together = run_all(engine, [EngineRequest(p, greedy(n)) for p, n in zip(ps, lengths, strict=True)])
    alone = [run_all(engine, [EngineRequest(p, greedy(n))])[0] for p, n in zip(ps, lengths, strict=True)]
    for p, n, t, a in zip(ps, lengths, together, alone, strict=True):
        assert t.tokens[0] == reference(p, n)
        assert a.tokens[0] == t.tokens[0]
        assert t.finish[0] == "length" and len(t.tokens[0]) == n
        assert t.text[0] == tokenizer.decode(t.tokens[0], skip_special_tokens=True)
        assert t.metrics.prompt_tokens == len(p) and t.metrics.completion_tokens == n
    assert engine.stats().kv_slots_used == 0 and engine.stats().running == 0


def test_requests_arriving_during_decode_join_without_disturbing(make_engine, tokenizer, reference, consume):
    ps = prompts(tokenizer, 4)
    engine = make_engine(max_concurrency=4)
    async def main():
        first = engine.submit(EngineRequest(ps[0], greedy(40)))
        it = first.__aiter__()
        head = [await it.__anext__() for _ in range(5)]  # the first request is decoding now
        late = [engine.submit(EngineRequest(p, greedy(12))) for p in ps[1:]]
        rest, *others = await asyncio.gather(consume(first), *(consume(s) for s in late))
        return [t for d in head for t in d.token_ids] + rest.tokens[0], others

    tokens0, others = asyncio.run(main())
    assert tokens0 == reference(ps[0], 40)
    for p, r in zip(ps[1:], others, strict=True):
        assert r.tokens[0] == reference(p, 12)


def test_late_request_streams_while_a_long_one_is_running(make_engine, tokenizer):
    engine = make_engine(max_concurrency=2)
    order: list[str] = []

    async def watch(name, stream):
        async for d in stream:
            order.append(name + (":end" if d.finish_reason else ""))

    async def main():
        long = engine.submit(EngineRequest(tokenizer.encode("a long one"), greedy(60)))
        task = asyncio.create_task(watch("long", long))
        while len(order) < 3:
            await asyncio.sleep(0.001)
        short = engine.submit(EngineRequest(tokenizer.encode("short"), greedy(3)))
        await asyncio.gather(task, watch("short", short))

    asyncio.run(main())
    # The short request finished while the long one was still producing tokens.
    assert order.index("short:end") < order.index("long:end")


def test_chunked_prefill_matches_unchunked(make_engine, tokenizer, reference, run_all):
    prompt = tokenizer.encode("It was the best of times, it was the worst of times, " * 4)
    assert len(prompt) > 40
    chunked = make_engine(max_concurrency=2, prefill_chunk=7)
    whole = make_engine(max_concurrency=2, prefill_chunk=512)
    other = tokenizer.encode("meanwhile")
    # The chunked prefill runs while another request decodes: both stay exact.
    a, b = run_all(chunked, [EngineRequest(other, greedy(30)), EngineRequest(prompt, greedy(10))])
    (c,) = run_all(whole, [EngineRequest(prompt, greedy(10))])
    assert b.tokens[0] == c.tokens[0] == reference(prompt, 10)
    assert a.tokens[0] == reference(other, 30)


def test_sync_iteration_outside_an_event_loop(make_engine, tokenizer, reference):
    engine = make_engine()
    prompt = tokenizer.encode("plain threads")
    stream = engine.submit(EngineRequest(prompt, greedy(6)))
    tokens = [t for d in stream for t in d.token_ids]
    assert tokens == reference(prompt, 6)
    assert stream.finish_reasons == ["length"]
