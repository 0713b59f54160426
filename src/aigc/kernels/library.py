"""Loading the native kernel library and declaring its C functions for ctypes.

The package install builds `_aigc_kernels*.so` next to this file. If it is missing or was built from
other sources (the checkout changed since the install), the library is built once into
`$XDG_CACHE_HOME/aigc/kernels/<source hash>/` (a file lock keeps concurrent processes from building
twice). `AIGC_KERNEL_ISA=portable|avx2|avx512` forces an instruction set (tests use it for the
portable path); by default the best one the CPU supports is used.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import threading
from pathlib import Path

from aigc.kernels.build import KernelBuildError, build, source_hash

HERE = Path(__file__).resolve().parent


class KernelUnavailableError(RuntimeError):
    """The native kernels could not be built or loaded on this machine."""


class CWeight(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("type", ctypes.c_int32), ("rows", ctypes.c_int64),
                ("cols", ctypes.c_int64)]


class CLayer(ctypes.Structure):
    _fields_ = [
        ("qkv", CWeight * 3), ("n_qkv", ctypes.c_int32), ("qkv_bias", ctypes.c_void_p),
        ("o", CWeight), ("o_bias", ctypes.c_void_p),
        ("gate_up", CWeight * 2), ("n_gate_up", ctypes.c_int32), ("gate_up_bias", ctypes.c_void_p),
        ("down", CWeight), ("down_bias", ctypes.c_void_p),
        ("attn_norm", ctypes.c_void_p), ("mlp_norm", ctypes.c_void_p),
        ("k_cache", ctypes.c_void_p), ("v_cache", ctypes.c_void_p),
        ("q_norm", ctypes.c_void_p), ("k_norm", ctypes.c_void_p),
        ("post_attn_norm", ctypes.c_void_p), ("post_mlp_norm", ctypes.c_void_p),
        ("window", ctypes.c_int32), ("local_rope", ctypes.c_int32),
    ]


class CModel(ctypes.Structure):
    _fields_ = [
        ("n_layers", ctypes.c_int32), ("hidden", ctypes.c_int32), ("n_heads", ctypes.c_int32),
        ("n_kv", ctypes.c_int32), ("head_dim", ctypes.c_int32), ("inter", ctypes.c_int32),
        ("vocab", ctypes.c_int32), ("eps", ctypes.c_float), ("inv_freq", ctypes.c_void_p),
        ("embed", CWeight), ("lm_head", CWeight), ("final_norm", ctypes.c_void_p),
        ("layers", ctypes.POINTER(CLayer)), ("kv_f16", ctypes.c_int32),
        ("kv_slot_stride", ctypes.c_int64), ("kv_head_stride", ctypes.c_int64), ("kv_capacity", ctypes.c_int64),
        ("inv_freq_local", ctypes.c_void_p), ("embed_scale", ctypes.c_float), ("attn_scale", ctypes.c_float),
        ("attn_softcap", ctypes.c_float), ("final_softcap", ctypes.c_float), ("act", ctypes.c_int32),
    ]


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aigc" / "kernels"


def _installed_build() -> Path | None:
    for path in sorted(HERE.glob("_aigc_kernels*.so")):
        return path
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    P, I64, I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.aigc_isa_name.restype = ctypes.c_char_p
    lib.aigc_source_hash.restype = ctypes.c_char_p
    lib.aigc_set_isa.argtypes = [ctypes.c_char_p]
    lib.aigc_set_isa.restype = I32
    lib.aigc_num_threads.restype = I32
    lib.aigc_set_num_threads.argtypes = [I32]
    lib.aigc_set_int8_min_rows.argtypes = [I64]
    lib.aigc_set_gemm_min_rows.argtypes = [I64]
    lib.aigc_argmax_lse.argtypes = [P, I64, I64, P, P]
    lib.aigc_argmax_lse.restype = None
    lib.aigc_set_activation_mode.argtypes = [I32]
    lib.aigc_row_bytes.argtypes = [I32, I64]
    lib.aigc_row_bytes.restype = I64
    lib.aigc_matmul.argtypes = [ctypes.POINTER(CWeight), I32, P, I64, P, P, I32]
    lib.aigc_matmul.restype = I32
    lib.aigc_dequantize.argtypes = [ctypes.POINTER(CWeight), P]
    lib.aigc_dequantize.restype = I32
    lib.aigc_quantize.argtypes = [I32, P, I64, I64, P]
    lib.aigc_quantize.restype = I32
    lib.aigc_forward.argtypes = [ctypes.POINTER(CModel), I64, I64, P, P, P, I64, P, P, P]
    lib.aigc_forward.restype = I32
    return lib


def _load_file(path: Path, digest: str) -> ctypes.CDLL | None:
    """The library at `path`, or None when it was built from other sources."""
    lib = ctypes.CDLL(str(path))
    lib.aigc_source_hash.restype = ctypes.c_char_p
    if lib.aigc_source_hash().decode() != digest:
        return None
    return _declare(lib)


def _build_cached(digest: str) -> Path:
    target = _cache_dir() / digest / "libaigc_kernels.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            build(target)
    return target


def load() -> ctypes.CDLL:
    """The loaded library (built on first use if the install did not build a current one)."""
    global _lib, _error
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        if _error is not None:
            raise KernelUnavailableError(_error)
        digest = source_hash()
        try:
            installed = _installed_build()
            lib = _load_file(installed, digest) if installed is not None else None
            if lib is None:
                lib = _load_file(_build_cached(digest), digest)
            if lib is None:
                raise KernelBuildError("the cached kernel build does not match its sources")
        except (OSError, KernelBuildError) as e:
            _error = f"native kernels unavailable: {e}"
            raise KernelUnavailableError(_error) from e
        forced = os.environ.get("AIGC_KERNEL_ISA", "")
        if forced and forced not in ("auto", "best") and lib.aigc_isa_name().decode() != forced:
            _error = f"AIGC_KERNEL_ISA={forced!r} is unknown or not supported by this CPU"
            raise KernelUnavailableError(_error)
        _lib = lib
        return lib


def available() -> bool:
    """True when the kernels load; otherwise warns once and callers take the torch path."""
    try:
        load()
        return True
    except KernelUnavailableError as e:
        if not _warned:
            _warned.append(True)
            logging.getLogger(__name__).warning("%s; using the slower torch path", e)
        return False


_warned: list[bool] = []
