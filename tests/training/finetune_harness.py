"""Tiny tokenizers and models for fine-tuning tests (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as Backend

from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import model_from_hf_state_dict
from aigc.tokenizer import Tokenizer

# SmolLM2-135M-Instruct's template, as shipped in its GGUF / tokenizer_config.json.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5 style: default system prompt, ChatML turns.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, a helpful assistant.<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
# Llama 3 style: BOS, header tokens, <|eot_id|> and no newline after it.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>"]


def byte_tokenizer(template: str = SMOLLM2_TEMPLATE, eos: str = "<|im_end|>", bos: str | None = None) -> Tokenizer:
    """Byte-level tokenizer with one token per byte (no merges) and chat special tokens: vocab 263."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Backend(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return Tokenizer(backend, eos_token=eos, bos_token=bos, pad_token="<|endoftext|>", chat_template=template)


def tiny_llama(vocab: int = 263, seed: int = 0, layers: int = 2, **over):
    """Our network with random weights, via a transformers config (so HF can load what we save)."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, **over)
    hf = transformers.LlamaForCausalLM(cfg)
    return model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict())


def write_records(directory: Path, *, sft_count: int = 24, sft_reply=lambda i: "pong") -> dict[str, Path]:
    """Small SFT, classification and DPO files (one per trainer) in `directory`: {name: path}."""
    rows = {
        "sft": [{"messages": [{"role": "user", "content": f"ping {i}"},
                              {"role": "assistant", "content": sft_reply(i)}]} for i in range(sft_count)],
        "classify": [{"text": f"{'good' if i % 2 else 'bad'} thing {i}", "label": "pos" if i % 2 else "neg"}
                     for i in range(40)],
        "dpo": [{"prompt": [{"role": "user", "content": f"q {i}"}],
                 "chosen": [{"role": "assistant", "content": "yes"}],
                 "rejected": [{"role": "assistant", "content": "no way"}]} for i in range(24)],
    }
    paths = {}
    for name, records in rows.items():
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths
