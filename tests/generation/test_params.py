import pytest

from aigc.generation import InvalidParameterError, SamplingParams


def test_defaults_are_valid():
    p = SamplingParams().validate(vocab_size=100)
    assert p.max_tokens == 256 and p.temperature == 1.0 and not p.greedy and not p.use_beam_search


@pytest.mark.parametrize("field, value, fragment", [
    ("temperature", -1, "temperature must be >= 0, got -1"),
    ("temperature", float("nan"), "temperature must be a finite number"),
    ("top_p", 0.0, "top_p must be in (0, 1]"),
    ("top_p", 1.5, "top_p must be in (0, 1]"),
    ("top_k", -2, "top_k"),
    ("top_k", 2.5, "top_k must be an integer"),
    ("min_p", 1.1, "min_p must be in [0, 1]"),
    ("repetition_penalty", 0.0, "repetition_penalty must be > 0"),
    ("presence_penalty", 2.5, "presence_penalty must be in [-2, 2]"),
    ("frequency_penalty", -3, "frequency_penalty must be in [-2, 2]"),
    ("max_tokens", 0, "max_tokens must be >= 1"),
    ("max_tokens", True, "max_tokens must be an integer"),
    ("n", 0, "n must be in [1, 16]"),
    ("n", 17, "n must be in [1, 16]"),
    ("num_beams", 0, "num_beams must be in [1, 16]"),
    ("logprobs", 21, "logprobs must be in [0, 20]"),
    ("logit_bias", {5: 101}, "logit_bias values must be in [-100, 100]"),
    ("logit_bias", {"x": 1}, "logit_bias keys must be token ids"),
    ("logit_bias", {500: 1}, "logit_bias has token id 500, outside the vocabulary"),
    ("stop", [""], "stop strings must not be empty"),
    ("stop", ["s"] * 17, "stop must have at most 16 strings"),
    ("stop_token_ids", [100], "stop_token_ids has 100, outside the vocabulary"),
    ("early_stopping", "sometimes", "early_stopping must be"),
    ("seed", 1.5, "seed must be an integer"),
])
def test_invalid_values_name_the_parameter(field, value, fragment):
    with pytest.raises(InvalidParameterError) as e:
        SamplingParams(**{field: value}).validate(vocab_size=100)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_loose_json_shapes_are_normalised():
    p = SamplingParams(stop="###", logit_bias={"7": 5}, stop_token_ids=None).validate()
    assert p.stop == ["###"] and p.logit_bias == {7: 5.0} and p.stop_token_ids == []


@pytest.mark.parametrize("changes, fragment", [
    ({"top_p": 0.9}, "top_p is not supported with beam search"),
    ({"top_k": 5}, "top_k is not supported with beam search"),
    ({"min_p": 0.1}, "min_p is not supported with beam search"),
    ({"temperature": 0.7}, "temperature must be 0 or 1 with beam search"),
    ({"n": 4}, "n must be <= num_beams"),
    ({"stop": ["x"]}, "stop strings are not supported with beam search"),
    ({"logprobs": 2}, "logprobs is not supported with beam search"),
])
def test_beam_search_rejects_sampling_knobs(changes, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        SamplingParams(num_beams=3, **changes).validate()


def test_beam_search_accepts_default_and_zero_temperature():
    SamplingParams(num_beams=3, n=3).validate()
    SamplingParams(num_beams=3, temperature=0, early_stopping="never").validate()


def test_invalid_parameter_error_is_a_value_error():
    assert issubclass(InvalidParameterError, ValueError)
