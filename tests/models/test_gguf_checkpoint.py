"""GGUF reading/writing: round trips against transformers, the rotary permutation, the real model."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import (
    GGUFError,
    permute_for_gguf,
    read_gguf,
    read_gguf_config,
    read_gguf_metadata,
    unpermute_from_gguf,
    write_gguf,
)
from aigc.models.registry import ModelNotFoundError, bundled_path

TOKENIZER_META = {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.tokens": [f"tok{i}" for i in range(128)],
    "tokenizer.ggml.token_type": [3] + [1] * 127,
    "tokenizer.ggml.merges": ["t o", "to k"],
    "tokenizer.ggml.add_bos_token": False,
    "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
}


def tiny_config(**changes) -> ModelConfig:
    base = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                num_kv_heads=2, max_position_embeddings=256, rope_theta=10000.0, norm_eps=1e-5,
                bos_token_id=0, eos_token_id=1)
    return ModelConfig(**{**base, **changes})


def hf_model(config: ModelConfig) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config.to_hf_dict())).eval()
    with torch.no_grad():  # norms start at 1.0: randomize so a mixed-up name cannot pass
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def expected_state(model: LlamaForCausalLM, tied: bool) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {k: v for k, v in sd.items() if not (tied and k == "lm_head.weight")}


@pytest.mark.parametrize("tied", [False, True])
def test_f32_round_trip_is_exact(tmp_path, tied):
    config = tiny_config(tie_word_embeddings=tied)
    model = hf_model(config)
    path = tmp_path / "m.gguf"
    write_gguf(path, config, model.state_dict(), TOKENIZER_META)

    cfg, state, meta = read_gguf(path)
    want = expected_state(model, tied)
    assert set(state) == set(want)
    for k, v in want.items():
        assert torch.equal(state[k], v), k
    assert cfg == config
    assert meta["tokenizer.ggml.tokens"] == TOKENIZER_META["tokenizer.ggml.tokens"]
    assert meta["tokenizer.chat_template"] == TOKENIZER_META["tokenizer.chat_template"]
    assert meta["tokenizer.ggml.add_bos_token"] is False


def test_loaded_weights_give_transformers_logits(tmp_path):
    config = tiny_config()
    model = hf_model(config)
    path = tmp_path / "m.gguf"
    write_gguf(path, config, model.state_dict())
    cfg, state, _ = read_gguf(path)
    again = LlamaForCausalLM(LlamaConfig(**cfg.to_hf_dict())).eval()
    again.load_state_dict(state, strict=True)
    ids = torch.randint(0, 128, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits)


@pytest.mark.parametrize("quant,tol", [("F16", 1e-3), ("BF16", 0.01), ("Q8_0", 0.01), ("Q4_0", 0.15), ("Q4_1", 0.15)])
def test_quantized_round_trip_is_close(tmp_path, quant, tol):
    config = tiny_config()
    model = hf_model(config)
    path = tmp_path / f"m-{quant}.gguf"
    write_gguf(path, config, model.state_dict(), quant=quant)

    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == quant and types["blk.0.attn_norm.weight"] == "F32"
    _, state, _ = read_gguf(path)
    for k, v in model.state_dict().items():
        err = (state[k] - v).norm() / v.norm()
        assert err < tol, (k, float(err))
        if v.ndim == 1:
            assert torch.equal(state[k], v), k  # norms stay F32


def test_rotary_permutation_interleaves_pairs():
    # Per head, HF rotates row i with row i + d/2; ggml rotates adjacent rows (2i, 2i+1).
    n_heads, head_dim = 3, 8
    hf = np.arange(n_heads * head_dim * 2, dtype=np.float32).reshape(n_heads * head_dim, 2)
    g = permute_for_gguf(hf, n_heads)
    for h in range(n_heads):
        base = h * head_dim
        for i in range(head_dim // 2):
            np.testing.assert_array_equal(g[base + 2 * i], hf[base + i])
            np.testing.assert_array_equal(g[base + 2 * i + 1], hf[base + i + head_dim // 2])
    np.testing.assert_array_equal(unpermute_from_gguf(g, n_heads), hf)
    bias = np.arange(n_heads * head_dim, dtype=np.float32)
    np.testing.assert_array_equal(unpermute_from_gguf(permute_for_gguf(bias, n_heads), n_heads), bias)


def test_our_header_parser_agrees_with_gguf_reader(tmp_path):
    config = tiny_config()
    path = tmp_path / "m.gguf"
    write_gguf(path, config, hf_model(config).state_dict(), TOKENIZER_META, quant="Q8_0")
    ours = read_gguf_metadata(path)
    reader = gguf.GGUFReader(path)
    theirs = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert ours.keys() == theirs.keys()
    for k, v in theirs.items():
        assert ours[k] == v, k


@pytest.mark.parametrize("scaling", [
    {"rope_type": "linear", "factor": 2.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
])
def test_rope_scaling_round_trip(tmp_path, scaling):
    config = tiny_config(rope_theta=500000.0, rope_scaling=scaling)
    path = tmp_path / "m.gguf"
    write_gguf(path, config, hf_model(config.replace(rope_scaling=None)).state_dict())
    cfg, state, _ = read_gguf(path)
    assert cfg.rope_scaling == scaling
    assert "rope_freqs.weight" not in state


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "bert.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="unsupported GGUF architecture 'bert'"):
        read_gguf(path)


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not gguf at all")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError):
        read_gguf(empty)


def test_truncated_file(tmp_path):
    config = tiny_config()
    path = tmp_path / "m.gguf"
    write_gguf(path, config, hf_model(config).state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GGUFError, match="truncated"):
        read_gguf(path)


# ---- the real bundled model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_path():
    try:
        return bundled_path("smollm2-135m-instruct")
    except ModelNotFoundError as e:
        pytest.skip(str(e))


def test_real_model_config(smollm2_path):
    cfg = read_gguf_config(smollm2_path)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (30, 576, 9, 3)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (1536, 49152, 8192)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 100000.0 and cfg.norm_eps == 1e-5
    assert (cfg.bos_token_id, cfg.eos_token_id) == (1, 2)


@pytest.mark.slow
def test_real_model_answers_paris(smollm2_path):
    """End to end: wrong names, shapes or q/k permutation would not produce this answer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    cfg, state, meta = read_gguf(smollm2_path)
    tokens = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True)
                            for t, kind in zip(tokens, meta["tokenizer.ggml.token_type"], strict=True) if kind == 3])
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(prompt).ids
    assert ids[:2] == [1, 4093] and len(ids) == 16  # <|im_start|> user

    model = LlamaForCausalLM(LlamaConfig(**cfg.to_hf_dict())).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # tied to the embedding
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, len(ids):].tolist())
    assert "Paris" in answer, answer
