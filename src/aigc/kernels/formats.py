"""The weight formats the kernels read, by ggml type id (the numbers GGUF files store)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightFormat:
    name: str
    ggml_type: int
    block_size: int  # elements per block
    block_bytes: int

    @property
    def is_float(self) -> bool:
        return self.name in ("F32", "F16", "BF16")

    def row_bytes(self, cols: int) -> int:
        if cols % self.block_size:
            raise ValueError(f"{self.name} rows need a multiple of {self.block_size} columns, got {cols}")
        return cols // self.block_size * self.block_bytes


FORMATS = {f.name: f for f in (
    WeightFormat("F32", 0, 1, 4),
    WeightFormat("F16", 1, 1, 2),
    WeightFormat("BF16", 30, 1, 2),
    WeightFormat("Q4_0", 2, 32, 18),
    WeightFormat("Q4_1", 3, 32, 20),
    WeightFormat("Q5_0", 6, 32, 22),
    WeightFormat("Q5_1", 7, 32, 24),
    WeightFormat("Q8_0", 8, 32, 34),
    WeightFormat("Q4_K", 12, 256, 144),
    WeightFormat("Q5_K", 13, 256, 176),
    WeightFormat("Q6_K", 14, 256, 210),
)}
BY_TYPE = {f.ggml_type: f for f in FORMATS.values()}

# K-formats need rows of 256 elements; other rows take these formats instead (llama-quantize's choice)
K_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def weight_format(name_or_type: str | int) -> WeightFormat:
    try:
        if isinstance(name_or_type, int):
            return BY_TYPE[name_or_type]
        return FORMATS[name_or_type.upper()]
    except KeyError:
        raise ValueError(f"the kernels do not read weight format {name_or_type!r} "
                         f"(they read {', '.join(FORMATS)})") from None
