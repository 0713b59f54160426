"""LoRA adapters: our fused-layer LoRA exported in PEFT format, loaded back by `peft` on transformers."""

import json

import peft
import pytest
import torch
import transformers

from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import load_hf_dir, model_from_hf_state_dict, save_hf_dir
from aigc.training.lora import (
    AdapterError,
    LoRALinear,
    add_lora,
    freeze_for_lora,
    lora_layers,
    merge_lora,
    merge_peft_adapter,
    save_peft_adapter,
)

TOL = 1e-4


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if family == "gpt2":
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=96, n_embd=48, n_layer=2, n_head=4,
                                                                  n_positions=64))
    elif family == "qwen2":
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=True))
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    return model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict())


def randomize_lora(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_layers(model).values():
            for b in m.lora_B:
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


IDS = torch.tensor([[1, 5, 9, 33, 2, 7, 60, 11], [4, 4, 8, 90, 3, 1, 0, 12]])


@pytest.mark.parametrize(("family", "targets"), [
    ("llama", None), ("llama", ["q_proj", "v_proj"]), ("llama", ["k_proj", "up_proj", "o_proj"]),
    ("qwen2", None), ("gpt2", ["c_attn", "c_proj"]),
])
def test_adapter_loads_in_peft_with_same_logits(tmp_path, family, targets):
    ours = tiny(family)
    save_hf_dir(ours, tmp_path / "base")
    add_lora(ours, ours.config, r=4, alpha=8, targets=targets)
    randomize_lora(ours)
    with torch.no_grad():
        expected = ours(IDS)
    save_peft_adapter(ours, ours.config, tmp_path / "adapter", base_model=str(tmp_path / "base"))
    conf = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 4 and conf["lora_alpha"] == 8

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    with torch.no_grad():
        assert (hf(IDS).logits - expected).abs().max() > 1e-3  # the adapter matters
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        got = hf(IDS).logits
    torch.testing.assert_close(got, expected, atol=TOL, rtol=TOL)

    # Merged in our network and saved: a plain transformers model gives the same logits.
    merge_lora(ours)
    assert not lora_layers(ours)
    save_hf_dir(ours, tmp_path / "merged")
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS).logits, expected, atol=TOL, rtol=TOL)

    # Reading the adapter back onto a fresh base gives the same model.
    fresh = merge_peft_adapter(load_hf_dir(tmp_path / "base"), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(fresh(IDS), expected, atol=TOL, rtol=TOL)


def test_adapter_trained_by_peft_merges_into_our_network(tmp_path):
    ours = tiny("llama")
    save_hf_dir(ours, tmp_path / "base")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    cfg = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "k_proj", "gate_proj", "down_proj"],
                          use_rslora=True, init_lora_weights=False)  # random B: a non-trivial adapter
    pm = peft.get_peft_model(hf, cfg).eval()
    with torch.no_grad():
        expected = pm(IDS).logits
    pm.save_pretrained(tmp_path / "adapter")
    merged = merge_peft_adapter(load_hf_dir(tmp_path / "base"), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS), expected, atol=TOL, rtol=TOL)


def test_freeze_and_shapes():
    ours = tiny("llama")
    add_lora(ours, ours.config, r=3, alpha=3, targets="q_proj,v_proj,down_proj")
    freeze_for_lora(ours)
    trainable = [n for n, p in ours.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    qkv = ours.layers[0].attn.qkv
    assert isinstance(qkv, LoRALinear) and len(qkv.lora_B) == 2  # q and v, not k
    assert isinstance(ours.layers[0].mlp.proj, LoRALinear) and not isinstance(ours.layers[0].mlp.fc, LoRALinear)
    # B starts at zero: a fresh adapter does not change the model.
    with torch.no_grad():
        before = tiny("llama")(IDS)
        torch.testing.assert_close(ours(IDS), before)


def test_bad_targets_and_adapter_dirs(tmp_path):
    ours = tiny("llama")
    with pytest.raises(ValueError, match="unknown LoRA target"):
        add_lora(ours, ours.config, r=2, alpha=2, targets=["qkv"])
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        merge_peft_adapter(ours, tmp_path)
    # An adapter for a different (wider) model says so instead of failing somewhere deep in torch.
    other = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2))
    peft.get_peft_model(other, peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "a")
    with pytest.raises(AdapterError, match="wrong base model"):
        merge_peft_adapter(ours, tmp_path / "a")
