"""Tiny random transformers models, loaded into our network, and a tiny word-level tokenizer."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models

from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import model_from_hf_state_dict
from aigc.tokenizer import Tokenizer

# Multi-character tokens let a stop string end in the middle of a token.
WORDS = ["<eos>", *"abcdefghijklmnopqrstuvwxyz", " ", "ab", "cd", "xyz", "##", "#", "ing", "the "]


def hf_config(family: str, vocab: int, ctx: int) -> transformers.PretrainedConfig:
    # A wide init makes the tiny model's distributions peaked, so greedy choices are not near-ties.
    common = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=0, pad_token_id=0, initializer_range=0.2)
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=ctx, **common)
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "mistral": transformers.MistralConfig}[family]
    return cls(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=ctx, **common)


_CACHE: dict[tuple, tuple] = {}


def make_pair(family: str = "llama", vocab: int = 128, ctx: int = 128, seed: int = 0):
    """(HF model, our model) with the same random weights, both in eval mode."""
    key = (family, vocab, ctx, seed)
    if key not in _CACHE:
        torch.manual_seed(seed)
        cfg = hf_config(family, vocab, ctx)
        hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        ours = model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict())
        _CACHE[key] = (hf, ours)
    return _CACHE[key]


@pytest.fixture
def pair():
    return make_pair


@pytest.fixture(scope="session")
def word_tokenizer() -> Tokenizer:
    backend = Backend(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<eos>"))
    backend.decoder = decoders.Fuse()
    return Tokenizer(backend, eos_token="<eos>")
