"""A tiny random Llama with SmolLM2's vocabulary, the real SmolLM2 tokenizer, and stream helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
import torch
import transformers

from aigc.engine import Engine, EngineRequest
from aigc.engine.protocol import CompletionDelta, RequestMetrics
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import read_gguf_metadata
from aigc.models.hf_checkpoint import model_from_hf_state_dict
from aigc.models.registry import ModelNotFoundError, bundled_path
from aigc.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """SmolLM2's tokenizer, built from the GGUF header (our fast metadata reader)."""
    try:
        path = bundled_path("smollm2-135m-instruct")
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    return Tokenizer.from_gguf(read_gguf_metadata(path))


@pytest.fixture(scope="session")
def model():
    torch.manual_seed(0)
    # A wide init makes the tiny model's distributions peaked, so greedy choices are not near-ties.
    cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   initializer_range=0.2)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    return model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict()).eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The machines running tests are small and shared: many OpenMP threads on tiny ops only spin.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_engine(model, tokenizer):
    engines: list[Engine] = []

    def make(**kw) -> Engine:
        engine = Engine(model, tokenizer, "tiny", **{"max_concurrency": 8, **kw})
        engine.start()
        engines.append(engine)
        return engine

    yield make
    for e in engines:
        e.stop()


@pytest.fixture
def reference(model):
    def greedy_reference(prompt: list[int], max_new: int) -> list[int]:
        """A plain greedy loop without any cache: the whole sequence is recomputed every step."""
        ids = list(prompt)
        with torch.inference_mode():
            for _ in range(max_new):
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        return ids[len(prompt):]

    return greedy_reference


@dataclass
class Result:
    tokens: dict[int, list[int]] = field(default_factory=dict)
    text: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str | None] = field(default_factory=dict)
    stop_reason: dict[int, str | int | None] = field(default_factory=dict)
    deltas: list[CompletionDelta] = field(default_factory=list)
    metrics: RequestMetrics | None = None


async def _consume(stream) -> Result:
    r = Result()
    async for d in stream:
        r.deltas.append(d)
        r.tokens.setdefault(d.index, []).extend(d.token_ids)
        r.text[d.index] = r.text.get(d.index, "") + d.text
        if d.finish_reason is not None:
            r.finish[d.index], r.stop_reason[d.index] = d.finish_reason, d.stop_reason
    r.metrics = stream.metrics
    return r


def run(engine: Engine, requests: list[EngineRequest]) -> list[Result]:
    """Submit all requests at once and collect every stream."""

    async def main():
        streams = [engine.submit(r) for r in requests]
        return await asyncio.gather(*(_consume(s) for s in streams))

    return asyncio.run(main())


@pytest.fixture
def consume():
    """async consume(stream) -> Result"""
    return _consume


@pytest.fixture
def run_all():
    """run_all(engine, requests) -> list[Result]: submit together, collect every stream."""
    return run
