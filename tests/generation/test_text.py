"""Text output: detokenized completions, stop strings and streaming, with a tiny word-level tokenizer."""

import pytest

from aigc.engine.offline import generate, stream_generate
from aigc.generation import InvalidParameterError, SamplingParams

PROMPT = [1, 2, 28, 3, 4]
PARAMS = dict(temperature=0, max_tokens=30)


@pytest.fixture
def model(pair, word_tokenizer):
    return pair("llama", vocab=word_tokenizer.vocab_size)[1]


def free_run(model, tok):
    return generate(model, [PROMPT], SamplingParams(**PARAMS), tokenizer=tok, eos_token_ids=[])[0][0]


def test_text_is_the_decoded_tokens(model, word_tokenizer):
    c = free_run(model, word_tokenizer)
    assert c.text == word_tokenizer.decode(c.token_ids, skip_special_tokens=True) and len(c.text) >= 30


def test_stop_string_split_across_tokens(model, word_tokenizer):
    free = free_run(model, word_tokenizer)
    pieces = [word_tokenizer.decode([t]) for t in free.token_ids]
    k = 10
    stop = pieces[k][-1] + pieces[k + 1][:2]  # ends inside token k+1
    cut = free.text.find(stop)
    c = generate(model, [PROMPT], SamplingParams(stop=[stop], **PARAMS), tokenizer=word_tokenizer,
                 eos_token_ids=[])[0][0]
    assert c.finish_reason == "stop" and c.stop_reason == stop
    assert c.text == free.text[:cut] and stop not in c.text
    assert c.token_ids == free.token_ids[: len(c.token_ids)]
    assert stop in word_tokenizer.decode(c.token_ids) and stop not in word_tokenizer.decode(c.token_ids[:-1])


def test_held_back_text_is_released_when_no_stop_string_completes(model, word_tokenizer):
    free = free_run(model, word_tokenizer)
    never = free.text[-1] + "Q"  # starts like the last character, cannot complete ("Q" is not in the vocab)
    c = generate(model, [PROMPT], SamplingParams(stop=[never], **PARAMS), tokenizer=word_tokenizer,
                 eos_token_ids=[])[0][0]
    assert c.text == free.text and c.finish_reason == "length" and c.stop_reason is None


def test_stop_token_text_is_never_emitted(model, word_tokenizer):
    free = free_run(model, word_tokenizer)
    stop_tok = free.token_ids[7]
    c = generate(model, [PROMPT], SamplingParams(**PARAMS), tokenizer=word_tokenizer, eos_token_ids=[stop_tok])
    c = c[0][0]
    end = free.token_ids.index(stop_tok)
    assert c.token_ids == free.token_ids[: end + 1] and c.finish_reason == "stop" and c.stop_reason == stop_tok
    assert c.text == word_tokenizer.decode(free.token_ids[:end])


def test_stream_deltas_add_up_to_the_completion(model, word_tokenizer):
    free = free_run(model, word_tokenizer)
    stop = free.text[20:23]
    params = SamplingParams(stop=[stop], logprobs=2, **PARAMS)
    events = list(stream_generate(model, word_tokenizer, PROMPT, params, eos_token_ids=[]))
    c = generate(model, [PROMPT], params, tokenizer=word_tokenizer, eos_token_ids=[])[0][0]
    assert "".join(e.text_delta for e in events) == c.text == free.text[: free.text.find(stop)]
    assert [e.token_id for e in events] == c.token_ids
    assert [e.finish_reason for e in events] == [None] * (len(events) - 1) + ["stop"]
    assert all(e.logprobs is not None and len(e.logprobs.top) == 2 for e in events)
    assert not any(stop in e.text_delta for e in events)


def test_stream_runs_to_the_length_limit(model, word_tokenizer):
    events = list(stream_generate(model, word_tokenizer, PROMPT, SamplingParams(temperature=0, max_tokens=5),
                                  eos_token_ids=[]))
    assert len(events) == 5 and events[-1].finish_reason == "length"


@pytest.mark.parametrize("params", [SamplingParams(n=2), SamplingParams(num_beams=2)])
def test_stream_rejects_n_and_beams(model, word_tokenizer, params):
    with pytest.raises(InvalidParameterError, match="streaming supports n=1"):
        next(stream_generate(model, word_tokenizer, PROMPT, params))


def test_beam_search_completions_have_text(model, word_tokenizer):
    c = generate(model, [PROMPT], SamplingParams(num_beams=3, n=2, max_tokens=8), tokenizer=word_tokenizer,
                 eos_token_ids=[])[0]
    assert [x.text for x in c] == [word_tokenizer.decode(x.token_ids, skip_special_tokens=True) for x in c]
