"""The native forward (models/native.py) against the torch network, and packed GGUF models against
the dequantized float reference (which test_gguf_checkpoint.py checks against transformers)."""

from __future__ import annotations

import pytest
import tiny_hf as families
import torch
import transformers

from aigc import kernels
from aigc.engine.offline import generate
from aigc.generation.params import SamplingParams
from aigc.models.config import ModelConfig
from aigc.models.gguf_checkpoint import read_gguf, write_gguf
from aigc.models.hf_checkpoint import model_from_hf_state_dict
from aigc.models.loader import LoadedModel, load_model
from aigc.models.native import NativeModel, new_native_cache
from aigc.models.quantized import QuantizedLinear, quantize_model
from aigc.tokenizer import Tokenizer

pytestmark = pytest.mark.skipif(not kernels.available(), reason="native kernels unavailable")

TOKENS = ["t", "1"] + [f"t{i}" for i in range(254)]
GGUF_TOKENIZER = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": TOKENS,
                  "tokenizer.ggml.token_type": [1] * 256, "tokenizer.ggml.merges": ["t 1"]}  # "t1" is a token too


def tiny_hf(arch: str = "llama", **extra):
    torch.manual_seed(0)
    common = {**dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                     initializer_range=0.2), **extra}
    if arch == "qwen2":
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.2)
    return hf.eval()


def ours(hf, dtype=torch.float32):
    return model_from_hf_state_dict(ModelConfig.from_hf_dict(hf.config.to_dict()), hf.state_dict(), dtype=dtype)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("isa", kernels.supported_isas())
def test_native_logits_equal_the_torch_network(arch, isa):
    kernels.set_isa(isa)
    try:
        model = ours(tiny_hf(arch))
        native = NativeModel(model, new_native_cache(model, 2, 64, torch.float32))
        ids = torch.randint(0, 256, (1, 21)).tolist()[0]
        got = native.forward(ids, list(range(21)), [0] * 21, list(range(21)))
        with torch.inference_mode():
            ref = model(torch.tensor([ids]))[0]
        assert torch.allclose(got, ref, atol=1e-4), float((got - ref).abs().max())
    finally:
        kernels.set_isa("auto")


FAMILIES = {
    "qwen3": ("qwen3", {}),
    "mistral-swa": ("mistral", {"sliding_window": 6}),
    "gemma2": ("gemma2", {}),
    "gemma3": ("gemma3", {}),
    "phi3": ("phi3", {"sliding_window": 5}),
}


@pytest.mark.parametrize("case", list(FAMILIES))
@pytest.mark.parametrize("isa", kernels.supported_isas())
def test_every_family_runs_natively(case, isa):
    """q/k norms, sandwich norms, GELU gates, soft-capping, sliding windows and Gemma 3's two rotary
    tables in the native forward: a prompt longer than the window, then decode steps."""
    family, over = FAMILIES[case]
    kernels.set_isa(isa)
    try:
        model = ours(families.tiny_hf(family, **over))
        native = NativeModel(model, new_native_cache(model, 2, 64, torch.float32))
        ids = torch.randint(0, 128, (24,), generator=torch.Generator().manual_seed(5)).tolist()
        got = [native.forward(ids[:20], list(range(20)), [1] * 20, list(range(20)))]
        got += [native.forward([ids[t]], [t], [1], [0], n_decode=1) for t in range(20, 24)]
        with torch.inference_mode():
            ref = model(torch.tensor([ids]))[0]
        got = torch.cat(got)
        assert torch.allclose(got, ref, atol=1e-4), float((got - ref).abs().max())
    finally:
        kernels.set_isa("auto")


def test_a_mixed_batch_equals_each_sequence_alone():
    """Decode tokens of one slot and a prompt chunk of another in one forward."""
    model = ours(tiny_hf())
    native = NativeModel(model, new_native_cache(model, 3, 64))
    a, b = list(range(5, 17)), list(range(40, 49))
    alone_a = native.forward(a, list(range(12)), [0] * 12, [11])
    alone_b = native.forward(b, list(range(9)), [1] * 9, [8])
    # slot 2 gets a's first 11 tokens, then a's last token decodes while b's prompt prefills in slot 1
    native.forward(a[:11], list(range(11)), [2] * 11, [])
    mixed = native.forward([a[11], *b], [11, *range(9)], [2] + [1] * 9, [0, 9])
    assert torch.allclose(mixed[0], alone_a[0], atol=1e-5)
    assert torch.allclose(mixed[1], alone_b[0], atol=1e-5)


@pytest.mark.parametrize("fmt", ["q8_0", "f16"])
def test_decode_rows_do_not_depend_on_what_shares_the_forward(fmt):
    """A decode token's logits are bit-for-bit the same alone, with a long prompt chunk (which takes
    the many-row panel kernels) and with other decode rows: greedy output does not change with load."""
    model = quantize_model(ours(tiny_hf()), fmt)
    native = NativeModel(model, new_native_cache(model, 4, 128))
    prompt, chunk = list(range(5, 17)), list(range(30, 90))
    for slot in (0, 3):
        native.forward(prompt, list(range(12)), [slot] * 12, [])
    alone = native.forward([7], [12], [0], [0])
    crowded = native.forward([7, 9, *chunk], [12, 12, *range(60)], [0, 3] + [1] * 60, [0, 1, 61], n_decode=2)
    assert torch.equal(crowded[0], alone[0])


def _loaded(model, name="tiny") -> LoadedModel:
    tok = Tokenizer.from_gguf({**GGUF_TOKENIZER, "tokenizer.ggml.eos_token_id": 255})
    return LoadedModel(name, model, tok, model.config, None)


def _greedy(loaded: LoadedModel, prompt: list[int], n_tokens: int = 12) -> list[int]:
    params = SamplingParams(max_tokens=n_tokens, temperature=0.0, ignore_eos=True)
    return generate(loaded.model, [prompt], params, tokenizer=loaded.tokenizer)[0][0].token_ids


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_engine_greedy_equals_the_reference_model(dtype):
    hf = tiny_hf()
    prompt = [3, 17, 99, 4, 250, 8]
    with torch.no_grad():
        expected = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    assert _greedy(_loaded(ours(hf, dtype)), prompt) == expected


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0", "Q4_1", "Q5_1", "Q4_K", "Q6_K"])
def test_packed_gguf_models_match_the_dequantized_reference(tmp_path, quant):
    hf = tiny_hf(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2)
    cfg = ModelConfig.from_hf_dict(hf.config.to_dict())
    path = tmp_path / f"tiny-{quant}.gguf"
    write_gguf(path, cfg, hf.state_dict(), GGUF_TOKENIZER, quant=quant)
    packed = load_model(str(path), quantize="auto")
    assert all(quant in m.formats for m in packed.model.modules() if isinstance(m, QuantizedLinear))
    reference = model_from_hf_state_dict(*read_gguf(path)[:2])  # float32, dequantized on load
    ids = torch.tensor([[5, 77, 130, 2, 9, 31, 200]])
    with torch.inference_mode():
        got, ref = packed.model(ids), reference(ids)
    assert torch.allclose(got, ref, atol=5e-3), float((got - ref).abs().max())  # int16 activation blocks
    prompt = ids[0].tolist()
    kernels.set_exact_activations(True)  # float math on both sides: random tiny models have near-ties
    try:
        assert _greedy(packed, prompt) == _greedy(_loaded(reference), prompt)
    finally:
        kernels.set_exact_activations(False)


@pytest.mark.parametrize(("scheme", "fmt", "tolerance"), [("q8_0", "Q8_0", 0.06), ("q4_k", "Q4_K", 0.6)])
def test_hf_checkpoints_quantize_on_load(scheme, fmt, tolerance):
    model = ours(tiny_hf(hidden_size=256, intermediate_size=512))
    ref = ours(tiny_hf(hidden_size=256, intermediate_size=512))
    quantize_model(model, scheme)
    formats = {f for m in model.modules() if isinstance(m, QuantizedLinear) for f in m.formats}
    assert formats == {fmt}
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        rel = (model(ids) - ref(ids)).norm() / ref(ids).norm()
    assert rel < tolerance  # close, not equal (this random model's wide init amplifies weight error)


def test_k_formats_fall_back_for_rows_that_are_not_multiples_of_256():
    model = ours(tiny_hf())  # hidden 64
    quantize_model(model, "q4_k")
    assert {f for m in model.modules() if isinstance(m, QuantizedLinear) for f in m.formats} == {"Q5_0"}
