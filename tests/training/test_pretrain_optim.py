"""AdamW parameter groups (no decay on norms, biases, embeddings) and the warmup + cosine schedule."""

import math

import pytest
import torch

from aigc.models.config import ModelConfig
from aigc.models.transformer import Transformer
from aigc.training.optim import build_optimizer, lr_at, param_groups


def tiny(**over) -> Transformer:
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=16, **over)
    return Transformer(cfg)


def test_groups_decay_matrices_only_and_count_tied_weights_once():
    model = tiny(tie_word_embeddings=True, qkv_bias=True)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed == {f"layers.{i}.{n}" for i in range(2)
                       for n in ("attn.qkv.weight", "attn.out.weight", "mlp.fc.weight", "mlp.proj.weight")}
    assert {"tok_emb.weight", "norm.weight", "layers.0.attn.qkv.bias", "layers.1.attn_norm.weight"} <= kept
    n_total = sum(len(g["params"]) for g in (decay, no_decay))
    assert n_total == len(list(model.parameters()))  # the tied head is the embedding, listed once


def test_untied_head_is_decayed_and_frozen_parameters_are_skipped():
    model = tiny(tie_word_embeddings=False)
    model.layers[0].requires_grad_(False)
    groups = param_groups(model, 0.1)
    params = {id(p) for g in groups for p in g["params"]}
    assert id(model.lm_head.weight) in {id(p) for p in groups[0]["params"]}
    assert not any(id(p) in params for p in model.layers[0].parameters())
    assert len(param_groups(model, 0.1, trainable_only=False)[0]["params"]) == 9


def test_build_optimizer_steps_and_refuses_frozen_models():
    model = tiny()
    opt = build_optimizer(model, 1e-2, 0.1)
    before = model.layers[0].mlp.fc.weight.detach().clone()
    model(torch.randint(0, 64, (2, 8))).sum().backward()
    opt.step()
    assert not torch.equal(before, model.layers[0].mlp.fc.weight)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(tiny().requires_grad_(False), 1e-3)


def test_lr_schedule_warmup_cosine_floor():
    lr, lo = 1e-3, 1e-4
    assert lr_at(0, 10, 100, lr, lo) == pytest.approx(1e-4)
    assert lr_at(9, 10, 100, lr, lo) == pytest.approx(lr)
    assert lr_at(10, 10, 100, lr, lo) == pytest.approx(lr)
    assert lr_at(55, 10, 100, lr, lo) == pytest.approx(lo + 0.5 * (lr - lo))
    assert lr_at(100, 10, 100, lr, lo) == pytest.approx(lo) and lr_at(500, 10, 100, lr, lo) == lo
    values = [lr_at(s, 10, 100, lr, lo) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert lr_at(0, 0, 100, lr, lo) == pytest.approx(lr) and not math.isnan(lr_at(5, 0, 5, lr, lo))
