"""Fixtures shared by the fine-tuning tests."""

import pytest
from finetune_harness import byte_tokenizer, tiny_llama

from aigc.models.hf_checkpoint import save_hf_dir


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny random Llama with a byte tokenizer, saved as a Hugging Face directory."""
    d = tmp_path_factory.mktemp("base")
    save_hf_dir(tiny_llama(), d, tokenizer=byte_tokenizer())
    return d
