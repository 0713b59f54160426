"""Shared set-up of the pretraining tests: a Shakespeare slice, a tiny BPE tokenizer, prepared shards.

Built once per test session in a temporary directory (seconds), reused read-only by the tests.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest

from aigc.cli import main
from aigc.training.progress import read_metrics

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHAKESPEARE = SHARED_DATA / "en-shakespeare" / "tinyshakespeare.txt"
SLICE_CHARS = 120_000
VOCAB = 384

# A model small enough to train for dozens of steps in seconds on two CPU cores.
TINY_MODEL = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64", "--batch-size", "8",
              "--no-tensorboard", "--sample-tokens", "8", "--eval-batches", "4", "--dtype", "float32",
              "--threads", "1"]  # one thread: tiny matmuls gain nothing from more, and shared cores lose


@functools.cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="aigc-pretrain-tests-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@functools.cache
def shakespeare_slice() -> Path:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"shared data not found at {SHAKESPEARE}")
    path = workdir() / "shakespeare.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:SLICE_CHARS], encoding="utf-8")
    return path


@functools.cache
def tokenizer_dir() -> Path:
    out = workdir() / "tokenizer"
    assert main(["train", "tokenizer", "--input", str(shakespeare_slice()), "--vocab-size", str(VOCAB),
                 "--out", str(out), "--quiet"]) == 0
    return out


@functools.cache
def data_dir() -> Path:
    out = workdir() / "data"
    assert main(["data", "prepare", "--input", str(shakespeare_slice()), "--out", str(out), "--tokenizer",
                 str(tokenizer_dir()), "--val-fraction", "0.1", "--quiet"]) == 0
    return out


def losses(run_dir: Path, split: str = "train") -> dict[int, float]:
    """Logged loss per step of a run (train or val)."""
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == split}
