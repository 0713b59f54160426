"""Per-request features: prefix reuse, n choices, stops, logprobs, cancellation, limits and errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from aigc.engine import EngineNotReadyError, EngineRequest, QueueFullError
from aigc.engine.offline import generate
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.prefill import ContextLengthError


def greedy(max_tokens: int | None, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True, **kw)


def chat(tokenizer, *turns: str) -> list[int]:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
    return tokenizer.apply_chat_template(messages, tokenize=True)


def wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


# ---- prefix cache -----------------------------------------------------------------------------------

def test_second_chat_turn_reuses_the_first_turns_cache(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=2)
    first = chat(tokenizer, "Hi, who are you?")
    (r1,) = run_all(engine, [EngineRequest(first, greedy(8))])
    assert r1.metrics.cached_prompt_tokens == 0
    second = first + r1.tokens[0] + tokenizer.encode("<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n"
                                                     "<|im_start|>assistant\n")
    (r2,) = run_all(engine, [EngineRequest(second, greedy(8))])
    # All of turn one is cached except the answer's last token, whose K/V was never computed.
    assert r2.metrics.cached_prompt_tokens == len(first) + len(r1.tokens[0]) - 1 >= len(first)
    assert r2.tokens[0] == reference(second, 8)
    (fresh,) = run_all(make_engine(max_concurrency=2), [EngineRequest(second, greedy(8))])
    assert fresh.metrics.cached_prompt_tokens == 0 and fresh.tokens[0] == r2.tokens[0]


def test_concurrent_requests_share_a_system_prompt(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=4)
    system = tokenizer.encode("You are a helpful assistant who answers in rhymes. " * 3)
    asks = [system + tokenizer.encode(q) for q in (" Tell me a joke", " What is two plus two?")]
    a, b = run_all(engine, [EngineRequest(asks[0], greedy(6)), EngineRequest(asks[1], greedy(6))])
    # The second was admitted after the first's prefill and copied the shared start from its slot.
    assert b.metrics.cached_prompt_tokens >= len(system)
    assert a.tokens[0] == reference(asks[0], 6) and b.tokens[0] == reference(asks[1], 6)


def test_identical_prompt_keeps_one_token_to_prefill(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=2)
    prompt = tokenizer.encode("the same prompt twice")
    run_all(engine, [EngineRequest(prompt, greedy(1))])
    (again,) = run_all(engine, [EngineRequest(prompt, greedy(5))])
    assert again.metrics.cached_prompt_tokens == len(prompt) - 1
    assert again.tokens[0] == reference(prompt, 5)


# ---- choices and sampling ---------------------------------------------------------------------------

def test_n_choices_with_a_seed_are_reproducible(make_engine, tokenizer, run_all):
    engine = make_engine(max_concurrency=4)
    prompt = tokenizer.encode("Sample me")
    params = dict(max_tokens=10, temperature=1.0, top_k=50, seed=7, ignore_eos=True)
    (both,) = run_all(engine, [EngineRequest(prompt, SamplingParams(n=2, **params))])
    (again,) = run_all(engine, [EngineRequest(prompt, SamplingParams(n=2, **params))])
    assert set(both.tokens) == {0, 1} and all(len(t) == 10 for t in both.tokens.values())
    assert both.tokens == again.tokens
    assert both.tokens[0] != both.tokens[1]
    # Choice i uses seed + i: each is reproducible on its own, whatever shares the batch.
    solo1, noise = run_all(engine, [EngineRequest(prompt, SamplingParams(n=1, **{**params, "seed": 8})),
                                    EngineRequest(tokenizer.encode("other"), SamplingParams(max_tokens=12))])
    assert solo1.tokens[0] == both.tokens[1]


def test_n_choices_greedy_are_identical_and_free_all_slots(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=3)
    prompt = tokenizer.encode("fork")
    (r,) = run_all(engine, [EngineRequest(prompt, greedy(6, n=3))])
    assert [r.tokens[i] for i in range(3)] == [reference(prompt, 6)] * 3
    assert engine.stats().kv_slots_used == 0


def test_logprobs(make_engine, tokenizer, model, run_all):
    engine = make_engine()
    (r,) = run_all(engine, [EngineRequest(tokenizer.encode("log"), greedy(4, logprobs=3))])
    for d in r.deltas:
        (lp,) = d.logprobs
        assert lp.token_id == d.token_ids[0] and len(lp.top) == 3
        assert lp.top[0].token_id == lp.token_id and lp.top[0].logprob == pytest.approx(lp.logprob)
        assert lp.top[0].logprob >= lp.top[1].logprob >= lp.top[2].logprob
        assert lp.token == tokenizer.decode([lp.token_id]) and lp.logprob <= 0
    (plain,) = run_all(engine, [EngineRequest(tokenizer.encode("log"), greedy(2))])
    assert all(d.logprobs is None for d in plain.deltas)


# ---- how choices end --------------------------------------------------------------------------------

def test_stop_string_is_not_emitted(make_engine, tokenizer, reference, run_all):
    engine = make_engine()
    prompt = tokenizer.encode("stop here")
    full = tokenizer.decode(reference(prompt, 20), skip_special_tokens=True)
    stop = full[12:16]
    assert stop.strip() and full.index(stop) == 12
    (r,) = run_all(engine, [EngineRequest(prompt, greedy(20, stop=["never appears", stop]))])
    assert r.text[0] == full[:12]
    assert r.finish[0] == "stop" and r.stop_reason[0] == stop


def test_stop_token_ends_the_choice(make_engine, tokenizer, reference, run_all):
    engine = make_engine()
    prompt = tokenizer.encode("stop token")
    ref = reference(prompt, 12)
    stop_id = ref[4]
    cut = ref.index(stop_id)
    (r,) = run_all(engine, [EngineRequest(prompt, greedy(12, stop_token_ids=[stop_id]))])
    assert r.tokens[0] == ref[: cut + 1]
    assert r.text[0] == tokenizer.decode(ref[:cut], skip_special_tokens=True)
    assert r.finish[0] == "stop" and r.stop_reason[0] == stop_id


def test_max_tokens_and_context_end_give_length(make_engine, tokenizer, run_all):
    engine = make_engine(max_context=24)
    prompt = tokenizer.encode("fill the window " * 4)
    a, b = run_all(engine, [EngineRequest(prompt, greedy(3)), EngineRequest(prompt, greedy(None))])
    assert a.finish[0] == "length" and len(a.tokens[0]) == 3
    assert b.finish[0] == "length" and len(prompt) + len(b.tokens[0]) == 24


# ---- cancellation, queueing, errors -----------------------------------------------------------------

def test_cancel_frees_the_slot_and_leaves_others_alone(make_engine, tokenizer, reference, consume):
    engine = make_engine(max_concurrency=3)
    ps = [tokenizer.encode(t) for t in ("first", "second one", "third, cancelled")]

    async def main():
        streams = [engine.submit(EngineRequest(p, greedy(60))) for p in ps]
        victim = streams[2].__aiter__()
        await victim.__anext__()
        while engine.stats().kv_slots_used != 3:  # stats are published right after the step
            await asyncio.sleep(0.001)
        streams[2].cancel()
        tail = [d async for d in victim]
        while engine.stats().running != 2:
            await asyncio.sleep(0.001)
        used_after = engine.stats().kv_slots_used
        results = await asyncio.gather(*(consume(s) for s in streams[:2]))
        return tail, used_after, results

    tail, used_after, results = asyncio.run(main())
    assert tail[-1].finish_reason == "abort"
    assert used_after == 2  # freed at the next step, while the others still run
    for p, r in zip(ps[:2], results, strict=True):
        assert r.tokens[0] == reference(p, 60)


def test_cancelled_consumer_task_frees_the_slot(make_engine, tokenizer):
    engine = make_engine(max_concurrency=2)

    async def main():
        stream = engine.submit(EngineRequest(tokenizer.encode("bye"), greedy(400)))

        async def read():
            async for _ in stream:
                pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_for(lambda: engine.stats().kv_slots_used == 0 and engine.stats().running == 0)


def test_queue_full(make_engine, tokenizer):
    engine = make_engine(max_concurrency=1, max_queue=1)
    prompt = tokenizer.encode("busy")
    running = engine.submit(EngineRequest(prompt, greedy(300)))
    queued = engine.submit(EngineRequest(prompt, greedy(300)))
    with pytest.raises(QueueFullError) as err:
        engine.submit(EngineRequest(prompt, greedy(5)))
    assert err.value.status_code == 429 and err.value.retry_after > 0
    wait_for(lambda: engine.stats().running == 1 and engine.stats().queued == 1)
    running.cancel()
    queued.cancel()
    wait_for(lambda: engine.stats().running == 0 and engine.stats().queued == 0)
    assert [d.token_ids for d in engine.submit(EngineRequest(prompt, greedy(2)))]  # room again


def test_submit_errors(make_engine, model, tokenizer):
    engine = make_engine(max_context=16)
    with pytest.raises(ContextLengthError):
        engine.submit(EngineRequest(list(range(16)), greedy(1)))
    with pytest.raises(InvalidParameterError):
        engine.submit(EngineRequest([1, 2], SamplingParams(temperature=-1)))
    with pytest.raises(InvalidParameterError):
        engine.submit(EngineRequest([model.config.vocab_size], greedy(1)))
    with pytest.raises(InvalidParameterError):
        engine.submit(EngineRequest([], greedy(1)))
    with pytest.raises(InvalidParameterError):
        engine.submit(EngineRequest([1], greedy(1, n=9)))  # more choices than slots
    engine.stop()
    with pytest.raises(EngineNotReadyError):
        engine.submit(EngineRequest([1], greedy(1)))


def test_not_ready_before_start(model, tokenizer):
    from aigc.engine import Engine

    with pytest.raises(EngineNotReadyError):
        Engine(model, tokenizer, "tiny").submit(EngineRequest([1], greedy(1)))


def test_stop_aborts_requests_in_flight(make_engine, tokenizer):
    engine = make_engine(max_concurrency=1, max_queue=4)
    streams = [engine.submit(EngineRequest(tokenizer.encode("x"), greedy(400))) for _ in range(3)]
    engine.stop()
    for s in streams:
        deltas = list(s)
        assert deltas[-1].finish_reason == "abort"


# ---- beam search and hooks --------------------------------------------------------------------------

def test_beam_search_shares_steps_and_equals_beam_search_alone(make_engine, model, tokenizer, run_all):
    engine = make_engine()
    prompt = tokenizer.encode("beams")
    params = SamplingParams(max_tokens=6, temperature=0, num_beams=3, n=2, ignore_eos=True)
    side = tokenizer.encode("side")
    r, other = run_all(engine, [EngineRequest(prompt, params), EngineRequest(side, greedy(4))])
    alone = generate(model, [prompt], params, tokenizer=tokenizer)[0]  # checked against HF in tests/generation
    assert [r.tokens[i] for i in range(2)] == [c.token_ids for c in alone]
    assert r.finish == {0: "length", 1: "length"}
    assert r.text[0] == alone[0].text
    assert len(other.tokens[0]) == 4


def test_a_beam_search_request_does_not_pause_other_streams(make_engine, tokenizer, consume):
    """While a long beam search runs, a concurrent stream keeps receiving tokens step after step."""
    engine = make_engine()
    beam = SamplingParams(max_tokens=40, temperature=0, num_beams=4, ignore_eos=True)

    async def main():
        stream = engine.submit(EngineRequest(tokenizer.encode("a long story"), greedy(400)))
        first = await stream.__anext__()  # the stream is decoding
        beam_stream = engine.submit(EngineRequest(tokenizer.encode("beams"), beam))
        beam_task = asyncio.ensure_future(consume(beam_stream))
        during = 0
        while not beam_task.done():
            await stream.__anext__()
            during += 1
        stream.cancel()
        return first, during, await beam_task

    first, during, beam_result = asyncio.run(main())
    assert beam_result.finish[0] == "length" and len(beam_result.tokens[0]) == 40
    assert during >= 30  # one token per shared step (a blocking job would give ~0)


def test_on_finish_hook_and_metrics(make_engine, tokenizer, run_all):
    seen = []
    engine = make_engine(on_finish=lambda rid, m, reasons: seen.append((rid, m.completion_tokens, reasons)))
    req = EngineRequest(tokenizer.encode("hook"), greedy(3))
    (r,) = run_all(engine, [req])
    assert seen == [(req.request_id, 3, ["length"])]
    m = r.metrics
    assert m.prompt_tokens == len(req.prompt_token_ids) and m.completion_tokens == 3
    assert 0 <= m.queued_s <= m.time_to_first_token_s <= m.total_s
    assert engine.requests_finished == 1 and engine.tokens_generated == 3


# ---- the cache under a batch with gaps --------------------------------------------------------------

def test_idle_rows_inside_the_decode_range_keep_their_cached_prefix(make_engine, tokenizer, reference, consume):
    engine = make_engine(max_concurrency=3)
    pa, pb, pc = (tokenizer.encode(t) for t in ("A runs long", "B is short", "C starts later"))

    async def main():
        a = engine.submit(EngineRequest(pa, greedy(80)))
        a_it = a.__aiter__()
        a_head = [await a_it.__anext__()]
        rb = await consume(engine.submit(EngineRequest(pb, greedy(3))))  # slot 1, then cached
        c = engine.submit(EngineRequest(pc, greedy(30)))  # slot 2: slot 1 idles inside the batch
        c_it = c.__aiter__()
        c_head = [await c_it.__anext__() for _ in range(5)]
        assert engine._core.table.slots[1].owner is None and engine._core.table.slots[2].owner == c.request_id
        pd = pb + rb.tokens[0] + tokenizer.encode(" and D continues B")
        rd, ra, rc = await asyncio.gather(consume(engine.submit(EngineRequest(pd, greedy(8)))),
                                          consume(a), consume(c))
        tokens = lambda head, rest: [t for d in head for t in d.token_ids] + rest.tokens[0]  # noqa: E731
        return rb, pd, rd, tokens(a_head, ra), tokens(c_head, rc)

    rb, pd, rd, ta, tc = asyncio.run(main())
    assert rd.metrics.cached_prompt_tokens == len(pb) + 2
    assert rd.tokens[0] == reference(pd, 8)
    assert ta == reference(pa, 80) and tc == reference(pc, 30)


def test_partial_match_copies_and_keeps_the_longer_cache(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=3)
    p1 = tokenizer.encode("A long conversation about the weather in spring and the flowers in bloom")
    (x,) = run_all(engine, [EngineRequest(p1, greedy(4))])
    py = p1[:8] + tokenizer.encode(" but something else")
    (y,) = run_all(engine, [EngineRequest(py, greedy(4))])
    assert y.metrics.cached_prompt_tokens == 8 and y.tokens[0] == reference(py, 4)
    pz = p1 + x.tokens[0] + tokenizer.encode(" more")
    (z,) = run_all(engine, [EngineRequest(pz, greedy(4))])
    assert z.metrics.cached_prompt_tokens == len(p1) + 3  # the first conversation's slot survived
    assert z.tokens[0] == reference(pz, 4)


def test_request_timeout_aborts(make_engine, tokenizer, run_all):
    engine = make_engine(request_timeout_s=0.05)
    (r,) = run_all(engine, [EngineRequest(tokenizer.encode("slow"), greedy(None))])
    assert r.finish[0] == "abort" and len(r.tokens[0]) < 500
    assert engine.stats().kv_slots_used == 0


def test_penalised_request_is_unaffected_by_batch_changes(make_engine, tokenizer, run_all):
    engine = make_engine(max_concurrency=4)
    prompt = tokenizer.encode("repeat repeat repeat")
    params = greedy(16, repetition_penalty=1.5, presence_penalty=0.5, frequency_penalty=0.3)
    (alone,) = run_all(engine, [EngineRequest(prompt, params)])
    # Neighbours with and without penalties join and leave the batch at different steps.
    others = [EngineRequest(tokenizer.encode(f"neighbour {i}"), greedy(3 + 4 * i, repetition_penalty=1.2 + i))
              for i in range(3)]
    together = run_all(engine, [others[0], EngineRequest(prompt, params), *others[1:]])
    assert together[1].tokens[0] == alone.tokens[0]
    plain = run_all(engine, [EngineRequest(prompt, greedy(16))])[0]
    assert plain.tokens[0] != alone.tokens[0]  # the penalties did something


def test_a_failed_forward_fails_its_requests_and_the_engine_goes_on(make_engine, tokenizer, reference, run_all):
    engine = make_engine(max_concurrency=2)
    real_forward, calls = engine._core.runner.forward, []

    def broken_once(batch, chunk):
        calls.append(batch)
        if len(calls) == 2:  # the first decode step (the first step only prefills)
            raise RuntimeError("device fell over")
        return real_forward(batch, chunk)

    engine._core.runner.forward = broken_once
    prompt = tokenizer.encode("fragile")
    with pytest.raises(RuntimeError, match="device fell over"):
        run_all(engine, [EngineRequest(prompt, greedy(5))])
    wait_for(lambda: engine.stats().kv_slots_used == 0)
    (ok,) = run_all(engine, [EngineRequest(prompt, greedy(5))])
    assert ok.tokens[0] == reference(prompt, 5)
    assert ok.metrics.cached_prompt_tokens == 0  # the failed request's slot contents were dropped
