"""Every GGUF architecture we load, against transformers: a tiny random HF model is written as GGUF
(the gguf package's writer, llama.cpp's names and conventions), then read by our loader and by
transformers' own GGUF loader; logits and greedy continuations must agree."""

from __future__ import annotations

import gguf
import pytest
import torch
import transformers
from tiny_hf import reference_greedy, tiny_hf

from aigc.engine.offline import generate
from aigc.generation.params import SamplingParams
from aigc.generation.prefill import ContextLengthError
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import (
    GGUFError,
    read_gguf,
    read_gguf_config,
    write_gguf,
)
from aigc.models.hf_checkpoint import model_from_hf_state_dict
from aigc.models.quantized import model_from_packed_state

TOL = 1e-4
VOCAB = 128
TOKENS = {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.tokens": [f"t{i}" for i in range(VOCAB)],
    "tokenizer.ggml.token_type": [1] * VOCAB,
    "tokenizer.ggml.merges": ["t 1"],
}
# Shapes transformers' GGUF loader reads back as we wrote them: it takes Gemma's query scale and
# Qwen3's head size from its config defaults (256 and 128), not from the file.
GGUF_SIZES = {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1}
CASES = {
    "llama": ("llama", {}),
    "mistral-swa": ("mistral", {"sliding_window": 8}),
    "qwen2": ("qwen2", {"tie_word_embeddings": False}),
    "qwen3": ("qwen3", {"head_dim": 128}),
    "gemma2": ("gemma2", {"head_dim": 256, "query_pre_attn_scalar": 256}),
    # six layers: transformers' loader takes Gemma 3's default pattern (five sliding, one global)
    "gemma3": ("gemma3", {"head_dim": 256, "query_pre_attn_scalar": 256, "num_hidden_layers": 6, "layer_types": None,
                          "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                              "full_attention": {"rope_type": "default", "rope_theta": 1e6}}}),
    "phi3": ("phi3", {}),
}
LONGROPE = {"max_position_embeddings": 256, "original_max_position_embeddings": 64,
            "rope_scaling": {"rope_type": "longrope", "short_factor": [1.0 + 0.05 * i for i in range(16)],
                             "long_factor": [2.0 + 0.1 * i for i in range(16)]}}
# transformers reads these files as the same model (a Mistral window it cannot read from a llama file)
TRANSFORMERS_READS = set(CASES) - {"mistral-swa"}


def write_case(tmp_path, case: str, quant: str = "F32"):
    family, over = CASES[case]
    hf = tiny_hf(family, **GGUF_SIZES, **over)
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    path = tmp_path / f"{case}-{quant}.gguf"
    write_gguf(path, config, hf.state_dict(), {**TOKENS, "general.name": case}, quant=quant)
    return hf, config, path


def ours_from_gguf(path, packed: bool = False):
    cfg, state, _ = read_gguf(path, packed=packed)
    if packed:
        return model_from_packed_state(cfg, state, dtype=torch.float32)
    return model_from_hf_state_dict(cfg, state)


def transformers_from_gguf(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()


def greedy(model, prompt: list[int], n: int = 20) -> list[int]:
    params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
    return generate(model, [prompt], params)[0][0].token_ids


IDS = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(3))
PROMPT = IDS[0, :10].tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_f32_file_matches_transformers(tmp_path, case):
    hf, config, path = write_case(tmp_path, case)
    assert read_gguf_config(path).family == config.family
    ours = ours_from_gguf(path)
    with torch.no_grad():
        ref = hf(IDS).logits
        assert (ours(IDS) - ref).abs().max().item() < TOL
    assert greedy(ours, PROMPT) == reference_greedy(hf, PROMPT)
    if case in TRANSFORMERS_READS:
        theirs = transformers_from_gguf(path)
        with torch.no_grad():
            assert (theirs(IDS).logits - ref).abs().max().item() < TOL


@pytest.mark.parametrize("case", list(CASES))
def test_quantized_file_matches_transformers_on_the_same_blocks(tmp_path, case):
    _, _, path = write_case(tmp_path, case, quant="Q8_0")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert "Q8_0" in types.values()
    ours = ours_from_gguf(path)  # dequantized: the very weights transformers dequantizes
    packed = ours_from_gguf(path, packed=True)  # blocks as stored, our kernels
    with torch.no_grad():
        got = ours(IDS)
        fast = packed(IDS)
        if case in TRANSFORMERS_READS:
            assert (transformers_from_gguf(path)(IDS).logits - got).abs().max().item() < TOL
    # the kernels also quantize activations: close, not equal
    assert ((fast - got).norm() / got.norm()).item() < 0.02
    assert greedy(packed, PROMPT)[:5] == greedy(ours, PROMPT)[:5]


def test_gemma_norms_are_stored_plus_one(tmp_path):
    hf, _, path = write_case(tmp_path, "gemma2")
    raw = {t.name: t for t in gguf.GGUFReader(path).tensors}
    stored = torch.from_numpy(raw["blk.0.attn_norm.weight"].data.copy())
    assert torch.allclose(stored, hf.state_dict()["model.layers.0.input_layernorm.weight"] + 1)


def test_only_llama_files_permute_q_and_k(tmp_path):
    for case, permuted in (("llama", True), ("qwen2", False), ("gemma3", False)):
        hf, _, path = write_case(tmp_path, case)
        raw = {t.name: t for t in gguf.GGUFReader(path).tensors}
        stored = torch.from_numpy(raw["blk.0.attn_q.weight"].data.copy())
        same = torch.equal(stored, hf.state_dict()["model.layers.0.self_attn.q_proj.weight"])
        assert same is not permuted, case


def test_sliding_layers_round_trip(tmp_path):
    _, config, path = write_case(tmp_path, "gemma3")
    got = read_gguf_config(path)
    assert got.sliding_window == config.sliding_window == 8
    assert got.layer_types == config.layer_types == ["sliding_attention"] * 5 + ["full_attention"]
    assert got.rope_local_theta == 10000.0 and got.rope_theta == 1e6


def test_unknown_architecture_names_the_supported_ones(tmp_path):
    path = tmp_path / "falcon.gguf"
    writer = gguf.GGUFWriter(str(path), "falcon")
    writer.add_tensor("token_embd.weight", torch.zeros(8, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match=r"unsupported GGUF architecture 'falcon' \(supported: llama, qwen2"):
        read_gguf(path)


def test_longrope_phi3_round_trips_and_matches_transformers(tmp_path):
    """Phi-3.5 / Phi-3-128k files: LongRoPE factors as llama.cpp stores them (rope_factors_short/long),
    run with the short factors, exact up to the original context, which is then the limit."""
    hf = tiny_hf("phi3", **GGUF_SIZES, **LONGROPE)
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    assert config.context_length == 64 and config.max_position_embeddings == 256
    path = tmp_path / "phi3-long.gguf"
    write_gguf(path, config, hf.state_dict(), TOKENS)
    got = read_gguf_config(path)
    assert got.rope_scaling["rope_type"] == "longrope" and got.context_length == 64
    assert abs(got.query_scale - config.query_scale) < 1e-6
    ours = ours_from_gguf(path)
    with torch.no_grad():
        assert (ours(IDS) - hf(IDS).logits).abs().max().item() < TOL
    assert greedy(ours, PROMPT, 20) == reference_greedy(hf, PROMPT)
    with pytest.raises(ContextLengthError, match="context window is 64"):
        greedy(ours, list(range(70)), 1)


def test_a_q4_k_m_mix_holds_several_types_and_loads_packed(tmp_path):
    """A Q4_K_M file as llama-quantize makes them: Q4_K, Q6_K for the output and some attn_v/ffn_down,
    Q5_0/Q8_0 where rows are not multiples of 256, F32 norms; every type is read as stored."""
    hf = tiny_hf("qwen2", hidden_size=256, intermediate_size=320, num_attention_heads=4, num_key_value_heads=2,
                 num_hidden_layers=8, tie_word_embeddings=False)
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    path = tmp_path / "mix-Q4_K_M.gguf"
    write_gguf(path, config, hf.state_dict(), TOKENS, quant="Q4_K_M")
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == "Q4_K" and types["output.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == "Q6_K" and types["blk.1.attn_v.weight"] == "Q4_K"
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # 320 columns: Q6_K's fallback
    assert types["blk.1.ffn_down.weight"] == "Q5_0"  # Q4_K's fallback
    assert types["blk.0.attn_norm.weight"] == "F32"
    cfg, state, _ = read_gguf(path, packed=True)
    assert {state[f"model.layers.0.{n}.weight"].format.name for n in ("self_attn.q_proj", "self_attn.v_proj",
                                                                       "mlp.down_proj")} == {"Q4_K", "Q6_K", "Q8_0"}
    packed = model_from_packed_state(cfg, state, dtype=torch.float32)
    reference = ours_from_gguf(path)
    with torch.no_grad():
        theirs = transformers_from_gguf(path)(IDS).logits
        got, fast = reference(IDS), packed(IDS)
    assert (theirs - got).abs().max().item() < TOL
    assert ((fast - got).norm() / got.norm()).item() < 0.02
