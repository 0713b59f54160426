"""Builds the native CPU kernels during `pip install` (editable installs too); metadata is in pyproject.toml.

The library is plain C called through ctypes (no Python C API), compiled once per instruction set by
`src/aigc/kernels/build.py`, which the package's loader also uses to rebuild a stale build.
"""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _kernel_builder():
    spec = importlib.util.spec_from_file_location("aigc_kernel_build", HERE / "src/aigc/kernels/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildKernels(build_ext):
    def build_extension(self, ext):
        if ext.name != "aigc.kernels._aigc_kernels":
            return super().build_extension(ext)
        out = Path(self.get_ext_fullpath(ext.name))
        try:
            _kernel_builder().build(out)
        except Exception as e:  # no compiler: the loader reports it; the torch path still works
            print(f"warning: aigc native kernels not built ({e})")


setup(
    ext_modules=[Extension("aigc.kernels._aigc_kernels", sources=["src/aigc/kernels/csrc/runtime.c"])],
    cmdclass={"build_ext": BuildKernels},
)
