"""Tiny random transformers models of every family we load, for parity tests."""

import torch
import transformers


def tiny_hf(family: str, **over):
    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if family == "llama":
        cfg = transformers.LlamaConfig(**{**common, **over})
        model = transformers.LlamaForCausalLM(cfg)
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(**{**common, "tie_word_embeddings": True, **over})
        model = transformers.Qwen2ForCausalLM(cfg)
    elif family == "mistral":
        cfg = transformers.MistralConfig(**{"sliding_window": None, **common, **over})
        model = transformers.MistralForCausalLM(cfg)
    elif family == "qwen3":
        cfg = transformers.Qwen3Config(**{**common, "head_dim": 24, **over})
        model = transformers.Qwen3ForCausalLM(cfg)
    elif family == "gemma2":
        cfg = transformers.Gemma2Config(**{**common, "num_hidden_layers": 3, "head_dim": 16, "query_pre_attn_scalar": 24,
                                           "sliding_window": 8, **over})
        model = transformers.Gemma2ForCausalLM(cfg)
    elif family == "gemma3":
        cfg = transformers.Gemma3TextConfig(**{
            **common, "num_hidden_layers": 3, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0}},
            **over})
        model = transformers.Gemma3ForCausalLM(cfg)
    elif family == "phi3":
        cfg = transformers.Phi3Config(**{**common, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **over})
        model = transformers.Phi3ForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=256, **over)
        model = transformers.GPT2LMHeadModel(cfg)
    # Random (not zero or one) biases and norms so their handling is actually exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@torch.no_grad()
def reference_greedy(hf, prompt: list[int], n: int = 20) -> list[int]:
    """transformers' greedy tokens, each from a full forward: its cached `generate` lets a sliding
    layer see one key fewer than its own full forward does (and than the window says)."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]
