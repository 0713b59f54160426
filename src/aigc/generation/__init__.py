"""Decoding pieces: sampling parameters, logits processors, the sampler, stop strings, beam search.

The decode loop that uses them is the engine core (`aigc.engine.core`); `generate()` and
`stream_generate()` live in `aigc.engine.offline`.
"""

from aigc.generation.beam_search import BeamSearch, Hypothesis
from aigc.generation.params import InvalidParameterError, SamplingParams
from aigc.generation.prefill import ContextLengthError
from aigc.generation.sampler import SampleOutput, Sampler, SamplingState, TokenLogprobs
from aigc.generation.stop import StopMatcher

__all__ = [
    "BeamSearch", "ContextLengthError", "Hypothesis", "InvalidParameterError", "SampleOutput", "Sampler",
    "SamplingParams", "SamplingState", "StopMatcher", "TokenLogprobs",
]
