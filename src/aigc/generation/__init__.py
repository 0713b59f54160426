"""Decoding: sampling parameters, logits processors, the sampler, stop strings, beam search, generate."""

from aigc.generation.beam_search import Hypothesis, beam_search
from aigc.generation.generate import Completion, StreamEvent, generate, stream_generate
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.prefill import ContextLengthError
from aigc.generation.sampler import SampleOutput, Sampler, SamplingState, TokenLogprobs
from aigc.generation.stop import StopMatcher

__all__ = [
    "Completion", "ContextLengthError", "Hypothesis", "InvalidParameterError", "SampleOutput", "Sampler",
    "SamplingParams", "SamplingState", "StopMatcher", "StreamEvent", "TokenLogprobs", "beam_search",
    "generate", "stream_generate",
]
