"""Compile the native kernels: one shared library holding every instruction-set variant.

Used by the package install (setup.py's build_ext) and, when that build is missing or older than the
sources (a checkout edited after `pip install -e .`), by the loader, which builds into a cache folder.
`kernels_isa.c` is compiled once per ISA with that ISA's flags; `runtime.c` picks one at run time,
so a wheel built on one CPU runs on any other. Never `-march=native`: CI machines differ.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("aigc_kernels.h", "f16.h", "kernels_isa.c", "runtime.c", "quantize.c")

# (name, flags) per ISA build of kernels_isa.c; the portable one must compile anywhere.
_X86_VARIANTS = [
    ("avx2", ["-mavx2", "-mfma", "-mf16c"]),
    ("avx512", ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                "-mavx512vnni"]),
]
COMMON_FLAGS = ["-O3", "-fPIC", "-std=gnu11", "-fno-math-errno", "-Wall", "-Wno-unused-function"]


class KernelBuildError(RuntimeError):
    """The C compiler failed (its output is in the message)."""


def source_hash() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    return h.hexdigest()[:16]


def isa_variants() -> list[tuple[str, list[str]]]:
    variants = [("portable", [])]
    if platform.machine().lower() in ("x86_64", "amd64"):
        variants += _X86_VARIANTS
    return variants


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KernelBuildError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def build(out: str | Path, cc: str | None = None) -> Path:
    """Compile the library to `out` (atomically: a concurrent loader never sees half a file)."""
    out = Path(out)
    cc = cc or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or "cc"
    digest = source_hash()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aigc-kernels-") as tmp:
        objs = []
        for name, flags in isa_variants():
            obj = Path(tmp) / f"kernels_{name}.o"
            _run([cc, *COMMON_FLAGS, *flags, f"-DISA={name}", "-c", str(CSRC / "kernels_isa.c"), "-o", str(obj)])
            objs.append(str(obj))
        rt = Path(tmp) / "runtime.o"
        _run([cc, *COMMON_FLAGS, "-pthread", f'-DAIGC_SOURCE_HASH="{digest}"', "-c", str(CSRC / "runtime.c"),
              "-o", str(rt)])
        qz = Path(tmp) / "quantize.o"
        _run([cc, *COMMON_FLAGS, "-c", str(CSRC / "quantize.c"), "-o", str(qz)])
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        _run([cc, "-shared", "-pthread", "-o", str(partial), *objs, str(rt), str(qz), "-lm"])
        os.replace(partial, out)
    return out
