"""Every kernel format on every ISA path this CPU has (and the portable one): products equal a float
matmul on the dequantized weights; our quantizers write the standard GGUF layout."""

from __future__ import annotations

import os
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch

from aigc import kernels

INT_FORMATS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
FLOAT_FORMATS = ["F32", "F16", "BF16"]
ISAS = kernels.supported_isas()


@pytest.fixture(autouse=True)
def restore_isa():
    yield
    kernels.set_isa("auto")
    kernels.set_int8_min_rows(2**62)
    kernels.set_exact_activations(False)
    kernels.set_gemm_min_rows(0)


def _cols(fmt: str) -> int:
    # not a multiple of the 512-bit vector width (16 floats) where the format allows it
    return {"Q4_K": 768, "Q5_K": 768, "Q6_K": 768}.get(fmt, 224 if fmt in INT_FORMATS else 203)


def _weight(fmt: str, rows: int = 37) -> tuple[kernels.PackedWeight, torch.Tensor]:
    torch.manual_seed(hash(fmt) % 1000)
    w = torch.randn(rows, _cols(fmt))
    packed = kernels.quantize(w, fmt)
    return packed, kernels.dequantize(packed)


def test_the_portable_path_is_always_there():
    assert "portable" in ISAS
    if not os.environ.get("AIGC_KERNEL_ISA"):
        assert kernels.isa() == ISAS[-1]  # the best one is picked by default


@pytest.mark.parametrize("fmt", INT_FORMATS)
def test_our_quantizers_write_what_the_gguf_package_reads(fmt):
    packed, ours = _weight(fmt)
    raw = packed.data.numpy().reshape(packed.rows, -1)
    theirs = np.asarray(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[fmt]), dtype=np.float32)
    np.testing.assert_array_equal(ours.numpy(), theirs)


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_we_read_blocks_the_gguf_package_wrote(fmt):
    w = np.random.default_rng(1).standard_normal((19, 96)).astype(np.float32)
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType[fmt])
    packed = kernels.PackedWeight(torch.from_numpy(np.ascontiguousarray(raw)).view(-1), fmt, 19, 96)
    expected = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[fmt])
    np.testing.assert_array_equal(kernels.dequantize(packed).numpy(), expected)


def _activation_bound(x: torch.Tensor, dense: torch.Tensor, levels: int, block: int = 32) -> torch.Tensor:
    """Largest error activation blocks quantized to +-levels can cause: each activation moves by at most
    half a step (max |x| of its block / levels), times the weights it meets."""
    m, rows = x.shape[0], dense.shape[0]
    step = x.view(m, -1, block).abs().amax(-1).double() / levels  # [M, blocks]
    wsum = dense.abs().view(rows, -1, block).sum(-1).double()  # [N, blocks]
    return (step / 2) @ wsum.T


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", INT_FORMATS + FLOAT_FORMATS)
@pytest.mark.parametrize("m", [1, 3, 5, 9])
@pytest.mark.parametrize("exact", [False, True])
def test_matmul_equals_float_matmul_on_dequantized_weights(isa, fmt, m, exact):
    """Default: integer formats meet int16 activation blocks (error within their rounding bound, far
    below float16's); exact mode and the float formats: float32 math."""
    kernels.set_isa(isa)
    kernels.set_exact_activations(exact)
    packed, dense = _weight(fmt)
    x = torch.randn(m, packed.cols)
    bias = torch.randn(packed.rows)
    ref = x.double() @ dense.double().T + bias.double()
    y = kernels.matmul([packed], x, bias)
    rounding = 2e-6 * float((x.abs() @ dense.abs().T).max())
    allowed = rounding
    if fmt in INT_FORMATS and not exact and isa != "portable":
        # K-formats: one activation scale per super-block of 256, so sub-block scales stay integer
        block = 256 if fmt.endswith("_K") else 32
        allowed = _activation_bound(x, dense, 32767, block) * 1.001 + rounding
    err = (y.double() - ref).abs()
    assert (err <= allowed).all(), float(err.max())


def _weight_bound(x: torch.Tensor, dense: torch.Tensor, levels: int) -> torch.Tensor:
    """Largest error weights requantized per block of 32 to +-levels can cause."""
    m, rows = x.shape[0], dense.shape[0]
    step = dense.abs().view(rows, -1, 32).amax(-1).double() / levels  # [N, blocks]
    xsum = x.abs().view(m, -1, 32).sum(-1).double()  # [M, blocks]
    return xsum @ (step / 2).T


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", INT_FORMATS + FLOAT_FORMATS)
@pytest.mark.parametrize("m", [1, 7, 20, 41])
@pytest.mark.parametrize("exact", [False, True])
def test_panel_product_equals_float_matmul_on_dequantized_weights(isa, fmt, m, exact):
    """Many activation rows (prefill) go through dequantized panels, for row counts that fill whole
    register tiles and ones that leave a remainder, and weight rows (37) that are not a multiple of
    the panel width. Float formats and exact mode: float32 math. Integer formats where the CPU has
    VNNI: int16 panels, within the bound of 14-bit weights and activations per block of 32."""
    kernels.set_isa(isa)
    kernels.set_gemm_min_rows(1)
    kernels.set_exact_activations(exact)
    packed, dense = _weight(fmt)
    x = torch.randn(m, packed.cols)
    bias = torch.randn(packed.rows)
    out = torch.randn(m, packed.rows)
    ref = out.double() + x.double() @ dense.double().T + bias.double()
    kernels.matmul([packed], x, bias, out=out, accumulate=True)
    allowed = 2e-6 * float((x.abs() @ dense.abs().T).max()) + 1e-6 * float(ref.abs().max())
    if fmt in INT_FORMATS and not exact and isa != "portable":
        allowed = allowed + (_activation_bound(x, dense, 8191) + _weight_bound(x, dense, 8191)) * 1.01
    assert ((out.double() - ref).abs() <= allowed).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", INT_FORMATS)
def test_int8_activations_stay_within_their_rounding_bound(isa, fmt):
    """With activations quantized to int8 blocks, each activation moves by at most half a step:
    the error of every output is bounded by sum over blocks of (step / 2) * sum |w|."""
    kernels.set_isa(isa)
    kernels.set_int8_min_rows(1)
    packed, dense = _weight(fmt)
    x = torch.randn(6, packed.cols)
    y = kernels.matmul([packed], x)
    ref = x.double() @ dense.double().T
    assert ((y.double() - ref).abs() <= _activation_bound(x, dense, 127) * 1.001 + 1e-4).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [4, 25])  # packed-block kernels, then panels across part borders
@pytest.mark.parametrize("last", ["F16", "Q4_1"])  # float panels / int16 panels (all integer, on VNNI)
def test_parts_in_different_formats_act_as_one_stacked_weight(isa, m, last):
    kernels.set_isa(isa)
    parts = [kernels.quantize(torch.randn(r, 256), f) for r, f in ((33, "Q4_K"), (7, "Q8_0"), (5, last))]
    x = torch.randn(m, 256)
    dense = torch.cat([kernels.dequantize(p) for p in parts])
    out = torch.ones(m, 45)
    kernels.matmul(parts, x, out=out, accumulate=True)
    scale = float((x.abs() @ dense.abs().T).max())
    # int16 activations: ~1e-5 of the scale; int16 panels (14-bit weights and activations): ~1e-4
    assert torch.allclose(out, 1 + x @ dense.T, atol=3e-4 * scale)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        kernels.quantize(torch.randn(4, 48), "Q8_0")
    with pytest.raises(ValueError, match="needs"):
        kernels.PackedWeight(torch.zeros(10, dtype=torch.uint8), "Q4_0", 1, 32)
    a, b = kernels.quantize(torch.randn(2, 64), "Q8_0"), kernels.quantize(torch.randn(2, 32), "Q8_0")
    with pytest.raises(ValueError, match="column"):
        kernels.matmul([a, b], torch.randn(1, 64))


def test_the_isa_can_be_forced_with_an_environment_variable():
    code = "from aigc import kernels; print(kernels.isa())"
    env = {**os.environ, "AIGC_KERNEL_ISA": "portable"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "portable"
    env["AIGC_KERNEL_ISA"] = "no-such-isa"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "AIGC_KERNEL_ISA" in bad.stderr


def test_threads_can_be_set_and_results_do_not_depend_on_them():
    packed, _ = _weight("Q4_1", rows=301)
    x = torch.randn(2, packed.cols)
    before = kernels.num_threads()
    try:
        kernels.set_num_threads(1)
        one = kernels.matmul([packed], x)
        kernels.set_num_threads(3)
        assert kernels.num_threads() == 3
        assert torch.equal(kernels.matmul([packed], x), one)
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("isa", ISAS)
def test_argmax_and_logsumexp_in_one_pass(isa):
    """Greedy sampling's reductions: torch's argmax (first of tied maxima) and logsumexp."""
    kernels.set_isa(isa)
    x = torch.randn(3, 49157) * 4  # not a multiple of any vector width
    x[1, 100] = x[1, 4000] = 99.0  # a tie: the first index wins, as in torch
    ids, lse = kernels.argmax_lse(x)
    assert torch.equal(ids, x.argmax(dim=-1)) and int(ids[1]) == 100
    assert torch.allclose(lse, torch.logsumexp(x, dim=-1), rtol=1e-5, atol=1e-4)
