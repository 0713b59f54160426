"""Our network against transformers' reference implementations, on tiny random checkpoints."""

import pytest
import torch
import transformers
from tiny_hf import reference_greedy, tiny_hf

from aigc.models.config import ModelConfig
from aigc.models.hf_checkpoint import load_hf_dir, model_from_hf_state_dict, save_hf_dir
from aigc.models.transformer import CacheWrite

TOL = 1e-4


def ours_from(hf) -> torch.nn.Module:
    cfg = ModelConfig.from_hf_dict(hf.config.to_dict())
    return model_from_hf_state_dict(cfg, hf.state_dict())


FAMILIES = [
    ("llama", {}),
    ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
               "rope_theta": 500000.0}),
    ("qwen2", {}),
    ("qwen3", {}),
    ("mistral", {}),
    ("mistral", {"sliding_window": 8}),
    ("gemma2", {}),
    ("gemma3", {}),
    ("phi3", {}),
    ("phi3", {"sliding_window": 7}),
    ("phi3", {"max_position_embeddings": 256, "original_max_position_embeddings": 64,
              "rope_scaling": {"rope_type": "longrope", "short_factor": [1.0 + 0.05 * i for i in range(8)],
                               "long_factor": [2.0 + 0.1 * i for i in range(8)]}}),
    ("gpt2", {}),
]
IDS = ["llama", "llama-bias-tied", "llama-linear-rope", "llama3-rope", "qwen2", "qwen3", "mistral", "mistral-swa",
       "gemma2", "gemma3", "phi3", "phi3-swa", "phi3-longrope", "gpt2"]


@pytest.mark.parametrize(("family", "over"), FAMILIES, ids=IDS)
def test_logits_match_full_sequence(family, over):
    hf = tiny_hf(family, **over)
    ours = ours_from(hf)
    x = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        ref = hf(x).logits
        got = ours(x)
    assert (ref - got).abs().max().item() < TOL


def _hf_positions(mask: torch.Tensor) -> torch.Tensor:
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


@pytest.mark.parametrize(("family", "over"), FAMILIES, ids=IDS)
def test_padded_batch_matches(family, over):
    hf = tiny_hf(family, **over)
    ours = ours_from(hf)
    x = torch.randint(0, 128, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    mask[2, :11] = 0
    pos = _hf_positions(mask)
    with torch.no_grad():
        ref = hf(x, attention_mask=mask, position_ids=pos).logits
        got = ours(x, pos, attention_mask=mask)
    real = mask.bool()
    assert (ref - got)[real].abs().max().item() < TOL
    assert torch.isfinite(got).all()


@pytest.mark.parametrize(("family", "over"), FAMILIES, ids=IDS)
def test_incremental_decoding_with_cache_matches(family, over):
    hf = tiny_hf(family, **over)
    ours = ours_from(hf)
    x = torch.randint(0, 128, (2, 30))
    with torch.no_grad():
        ref = hf(x).logits
        cache = ours.new_cache(slots=2, max_len=64)
        # Prefill 20 tokens, then one token at a time.
        out = [ours(x[:, :20], cache=cache, write=CacheWrite(rows=slice(0, 2), length=20, start=0))]
        for t in range(20, 30):
            out.append(ours(x[:, t : t + 1], cache=cache, write=CacheWrite(rows=slice(0, 2), length=t + 1, start=t)))
        got = torch.cat(out, dim=1)
    assert (ref - got).abs().max().item() < TOL


def test_ragged_rows_in_one_decode_step():
    """Two sequences of different lengths decode in one batch (what the serving engine does)."""
    hf = tiny_hf("llama")
    ours = ours_from(hf)
    a, b = torch.randint(0, 128, (1, 9)), torch.randint(0, 128, (1, 4))
    with torch.no_grad():
        cache = ours.new_cache(slots=2, max_len=32)
        ours(a[:, :8], cache=cache, write=CacheWrite(rows=slice(0, 1), length=8, start=0))
        ours(b[:, :3], cache=cache, write=CacheWrite(rows=slice(1, 2), length=3, start=0))
        pos = torch.tensor([[8], [3]])
        step = ours(torch.cat([a[:, 8:9], b[:, 3:4]]), pos, cache=cache,
                    write=CacheWrite(rows=slice(0, 2), length=9, positions=pos,
                                     key_mask=torch.tensor([[True] * 9, [True] * 4 + [False] * 5])))
        ref_a, ref_b = hf(a).logits[:, -1], hf(b).logits[:, -1]
    assert (step[0, -1] - ref_a[0]).abs().max() < TOL
    assert (step[1, -1] - ref_b[0]).abs().max() < TOL


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi3", "gpt2"])
def test_saved_dir_opens_in_transformers(tmp_path, family):
    hf = tiny_hf(family)
    ours = ours_from(hf)
    save_hf_dir(ours, tmp_path)
    reopened = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    again = load_hf_dir(tmp_path)
    x = torch.randint(0, 128, (1, 16))
    with torch.no_grad():
        assert (reopened(x).logits - ours(x)).abs().max() < TOL
        assert (again(x) - ours(x)).abs().max() < TOL


def test_bf16_model_runs_close_to_fp32():
    hf = tiny_hf("llama")
    ours = ours_from(hf)
    x = torch.randint(0, 128, (1, 16))
    with torch.no_grad():
        ref = ours(x)
        got = ours.to(torch.bfloat16)(x).float()
    assert (ref - got).abs().max() < 0.1


def test_a_multimodal_gemma3_checkpoint_loads_its_text_model(tmp_path):
    """gemma-3-4b-it and larger are Gemma3ForConditionalGeneration: the text model is ours to run,
    the vision tower is left out; logits equal transformers' on text."""
    text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32, sliding_window=8)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    torch.manual_seed(0)
    hf = transformers.Gemma3ForConditionalGeneration(
        transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)).eval()
    hf.save_pretrained(tmp_path)
    ours = load_hf_dir(tmp_path)
    assert ours.config.family == "gemma3" and ours.config.sliding_window == 8
    x = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        assert (hf(input_ids=x).logits - ours(x)).abs().max() < TOL


def test_sharded_safetensors_load(tmp_path):
    hf = tiny_hf("qwen3")
    hf.save_pretrained(tmp_path, max_shard_size="60KB")
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    ours = load_hf_dir(tmp_path)
    x = torch.randint(0, 128, (1, 16))
    with torch.no_grad():
        assert (hf(x).logits - ours(x)).abs().max() < TOL


@pytest.mark.parametrize(("family", "over"), FAMILIES, ids=IDS)
def test_engine_greedy_matches_transformers_for_20_tokens(family, over):
    from aigc.engine.offline import generate
    from aigc.generation.params import SamplingParams

    hf = tiny_hf(family, **over)
    prompt = torch.randint(0, 128, (12,), generator=torch.Generator().manual_seed(7)).tolist()
    params = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    assert generate(ours_from(hf), [prompt], params)[0][0].token_ids == reference_greedy(hf, prompt)
