"""Native CPU kernels: matrix products over weights in their stored (GGUF block) formats, and a
whole-model forward for the Llama family. See csrc/ for the C code and build.py for how it is built.

    from aigc import kernels
    w = kernels.PackedWeight(raw_uint8_tensor, "Q4_K", rows, cols)
    y = kernels.matmul([w], x)          # x: [M, cols] float32 -> [M, rows]
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import torch

from aigc.kernels.formats import FORMATS, WeightFormat, weight_format
from aigc.kernels.library import CLayer, CModel, CWeight, KernelUnavailableError, available, load

__all__ = [
    "FORMATS", "WeightFormat", "weight_format", "PackedWeight", "matmul", "dequantize", "quantize", "isa",
    "set_isa", "set_int8_min_rows", "set_gemm_min_rows", "argmax_lse", "set_exact_activations", "supported_isas", "num_threads", "set_num_threads",
    "available", "load", "KernelUnavailableError", "CLayer", "CModel", "CWeight",
]


@dataclass
class PackedWeight:
    """A [rows, cols] weight in one format: `data` holds its bytes as stored (uint8 for block formats,
    float32/float16/bfloat16 tensors for the float formats), row-major, contiguous, on the CPU."""

    data: torch.Tensor
    format: WeightFormat | str
    rows: int
    cols: int
    owner: object = field(default=None, repr=False, compare=False)  # keeps a memory map alive
    _c: CWeight | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.format, str):
            self.format = weight_format(self.format)
        if not self.data.is_contiguous() or self.data.device.type != "cpu":
            raise ValueError("packed weights must be contiguous CPU tensors")
        want = self.rows * self.format.row_bytes(self.cols)
        if self.nbytes != want:
            raise ValueError(f"{self.format.name} [{self.rows}, {self.cols}] needs {want} bytes, got {self.nbytes}")

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def c_struct(self) -> CWeight:
        if self._c is None:
            self._c = CWeight(self.data.data_ptr(), self.format.ggml_type, self.rows, self.cols)
        return self._c


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def matmul(parts: list[PackedWeight], x: torch.Tensor, bias: torch.Tensor | None = None,
           out: torch.Tensor | None = None, accumulate: bool = False) -> torch.Tensor:
    """y = x @ cat(parts).T (+ bias); x [M, K] float32. Few rows: integer formats meet x as int16
    blocks of 32 (see set_exact_activations, set_int8_min_rows); many rows (set_gemm_min_rows): weight
    panels dequantized to float. `accumulate` adds into `out`."""
    lib = load()
    if x.dtype != torch.float32 or x.dim() != 2:
        raise ValueError("matmul takes a 2-D float32 activation tensor")
    x = x.contiguous()
    n = sum(p.rows for p in parts)
    if out is None:
        out = torch.empty(x.shape[0], n, dtype=torch.float32)
    arr = (CWeight * len(parts))(*[p.c_struct() for p in parts])
    if bias is not None:
        bias = bias.to(torch.float32).contiguous()
    rc = lib.aigc_matmul(arr, len(parts), x.data_ptr(), x.shape[0], out.data_ptr(), _ptr(bias), int(accumulate))
    if rc != 0:
        raise ValueError(f"kernel matmul rejected its arguments (code {rc}): parts must share one column count")
    return out


def dequantize(w: PackedWeight) -> torch.Tensor:
    """The weight as float32 [rows, cols] (reference results, embedding rows, other devices)."""
    out = torch.empty(w.rows, w.cols, dtype=torch.float32)
    if load().aigc_dequantize(ctypes.byref(w.c_struct()), out.data_ptr()) != 0:
        raise ValueError(f"cannot dequantize {w.format.name}")
    return out


def quantize(w: torch.Tensor, fmt: WeightFormat | str) -> PackedWeight:
    """Quantize a float [rows, cols] weight into a block format (Q8_0 ... Q6_K) or cast it to F32/F16/BF16."""
    fmt = weight_format(fmt) if isinstance(fmt, str) else fmt
    if w.dim() != 2:
        raise ValueError("quantize takes a 2-D weight")
    rows, cols = w.shape
    if fmt.is_float:
        dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[fmt.name]
        return PackedWeight(w.detach().to(dtype).contiguous(), fmt, rows, cols)
    x = w.detach().to(torch.float32).contiguous()
    out = torch.empty(rows * fmt.row_bytes(cols), dtype=torch.uint8)
    if load().aigc_quantize(fmt.ggml_type, x.data_ptr(), rows, cols, out.data_ptr()) != 0:
        raise ValueError(f"cannot quantize [{rows}, {cols}] to {fmt.name}")
    return PackedWeight(out, fmt, rows, cols)


def isa() -> str:
    """The instruction set the kernels use now: portable, avx2 or avx512."""
    return load().aigc_isa_name().decode()


def supported_isas() -> list[str]:
    """Every ISA path this CPU can run (the portable one always)."""
    lib, current, found = load(), isa(), []
    for name in ("portable", "avx2", "avx512"):
        if lib.aigc_set_isa(name.encode()) == 0:
            found.append(name)
    lib.aigc_set_isa(current.encode())
    return found


def set_isa(name: str) -> None:
    """Switch the ISA path (tests; `auto` = the best this CPU has)."""
    rc = load().aigc_set_isa(name.encode())
    if rc == -1:
        raise ValueError(f"unknown kernel ISA {name!r} (portable, avx2, avx512, auto)")
    if rc == -2:
        raise ValueError(f"this CPU cannot run the {name} kernels")


def set_int8_min_rows(rows: int) -> None:
    """Products with at least `rows` activation rows use int8 activations; fewer stay float.
    Default: never (exact), or 8 with AIGC_INT8_ACTIVATIONS=1. 1 = always int8 (llama.cpp's way)."""
    load().aigc_set_int8_min_rows(int(rows))


def set_gemm_min_rows(rows: int) -> None:
    """Products with at least `rows` activation rows dequantize weight panels once and run a
    register-tiled product (prefill, big batches); fewer use the packed-block kernels. Integer formats
    on AVX-512 VNNI get int16 panels (14-bit weights and activations per block of 32, error far below
    float16 rounding), everything else float panels. 0 = the measured defaults (12 rows for int16
    panels, 20 for float ones; or AIGC_GEMM_MIN_ROWS); 1 = always panels."""
    load().aigc_set_gemm_min_rows(int(rows))


def argmax_lse(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a contiguous float32 [B, V] CPU tensor: the argmax (long) and the log-sum-exp, in one
    native pass (greedy sampling's two reductions; torch takes two passes and ~100 us per 49k row)."""
    lib = load()
    x = x.contiguous()
    ids = torch.empty(x.shape[0], dtype=torch.int64)
    lse = torch.empty(x.shape[0], dtype=torch.float32)
    lib.aigc_argmax_lse(x.data_ptr(), x.shape[0], x.shape[1], ids.data_ptr(), lse.data_ptr())
    return ids, lse


def set_exact_activations(exact: bool) -> None:
    """True: integer-format products take float32 activations (slower, bit-for-bit float math).
    False (default): int16 activation blocks where the ISA has the kernel (error below float16 rounding)."""
    load().aigc_set_activation_mode(0 if exact else 1)


def num_threads() -> int:
    return load().aigc_num_threads()


def set_num_threads(n: int) -> None:
    """Threads for every later kernel call (0 = AIGC_NUM_THREADS or the CPUs this process may use)."""
    load().aigc_set_num_threads(int(n))

