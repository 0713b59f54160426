"""Token shards on disk and the manifest that describes a prepared data directory.

A prepared directory:

    manifest.json          token counts, characters, sources, dtype, tokenizer, split settings
    tokenizer/             the tokenizer the ids belong to (copied into every model trained on it)
    train-00000.bin ...    token ids, raw little-endian uint16 (vocab <= 65,536) or uint32
    val-00000.bin ...

Shards are flat arrays (no header) so `numpy.memmap` opens them without reading them; documents
are separated by the EOS token id recorded in the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
MANIFEST_VERSION = 1
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends token ids to `<split>-NNNNN.bin` files of at most `shard_tokens` ids each."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int = 1 << 25):
        if shard_tokens < 1:
            raise ValueError("shard size must be at least one token")
        self.directory, self.split, self.dtype, self.shard_tokens = directory, split, np.dtype(dtype), shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.tokens = 0

    def write(self, ids: list[int] | np.ndarray) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        self._buffer.append(arr)
        self._buffered += len(arr)
        self.tokens += len(arr)
        while self._buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        data = np.concatenate(self._buffer) if self._buffer else np.zeros(0, self.dtype)
        head, rest = data[:n], data[n:]
        name = f"{self.split}-{len(self.shards):05d}.bin"
        head.tofile(self.directory / name)
        self.shards.append({"file": name, "tokens": int(len(head))})
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)

    def take_tail(self, n: int) -> np.ndarray:
        """Remove and return the last `n` ids written (used to carve a validation split)."""
        n = min(n, self.tokens)
        while self._buffered < n and self.shards:  # reopen the last written shard
            last = self.shards.pop()
            arr = np.fromfile(self.directory / last["file"], dtype=self.dtype)
            (self.directory / last["file"]).unlink()
            self._buffer.insert(0, arr)
            self._buffered += len(arr)
        data = np.concatenate(self._buffer) if self._buffer else np.zeros(0, self.dtype)
        self._buffer = [data[: len(data) - n]]
        self._buffered = len(data) - n
        self.tokens -= n
        return data[len(data) - n:]

    def close(self) -> list[dict[str, Any]]:
        if self._buffered:
            self._flush(self._buffered)
        return self.shards


class TokenStore:
    """The shards of one split as one long read-only sequence of ids (memory-mapped)."""

    def __init__(self, directory: Path, shards: list[dict[str, Any]], dtype: np.dtype):
        self.arrays = []
        for s in shards:
            path = directory / s["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{directory}: shard {s['file']} listed in the manifest is missing")
            arr = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
            if len(arr) != s["tokens"]:
                raise ValueError(f"{path}: {len(arr)} tokens, manifest says {s['tokens']} (damaged data dir?)")
            self.arrays.append(arr)
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """ids[start : start + length] as int64, across shard boundaries."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"read [{start}, {start + length}) outside 0..{len(self)}")
        out = np.empty(length, dtype=np.int64)
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos, filled = start, 0
        while filled < length:
            a = self.arrays[i]
            lo = pos - int(self.offsets[i])
            take = min(length - filled, len(a) - lo)
            out[filled : filled + take] = a[lo : lo + take]
            filled, pos, i = filled + take, pos + take, i + 1
        return out


@dataclass
class DataDir:
    """A prepared data directory: its manifest and the token stores of its splits."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> DataDir:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"data directory not found: {path}")
        mf = path / MANIFEST_FILE
        if not mf.is_file():
            raise FileNotFoundError(f"{path}: no {MANIFEST_FILE}; prepare it with `aigc data prepare --out {path}`")
        try:
            manifest = json.loads(mf.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{mf}: invalid JSON ({e.msg})") from None
        for key in ("dtype", "vocab_size", "eos_token_id", "splits"):
            if key not in manifest:
                raise ValueError(f"{mf}: missing {key!r}; prepare the data again")
        return cls(path, manifest)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def eos_token_id(self) -> int:
        return int(self.manifest["eos_token_id"])

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest.get("tokenizer", TOKENIZER_DIR)

    def split(self, name: str) -> TokenStore:
        info = self.manifest["splits"].get(name)
        if info is None:
            raise ValueError(f"{self.path}: no {name!r} split")
        return TokenStore(self.path, info["shards"], np.dtype(self.manifest["dtype"]))

    def tokens(self, name: str) -> int:
        return int(self.manifest["splits"].get(name, {}).get("tokens", 0))

    def chars(self, name: str) -> int:
        return int(self.manifest["splits"].get(name, {}).get("chars", 0))
