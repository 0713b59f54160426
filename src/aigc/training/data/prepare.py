"""`aigc data prepare`: text files -> token shards + validation split + manifest.

Pipeline: read documents (sources.py) -> optional Traditional->Simplified conversion -> tokenize in
batches (`encode_batch` runs on all cores in the Rust backend) -> EOS after every document ->
each document goes to `val` with probability `val_fraction` (a seeded RNG, so the split is the same
on every run) -> shards. Everything is written into a temporary directory that is renamed to the
output only when complete, so an interrupted run never leaves something that looks prepared.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from aigc.tokenizer import Tokenizer
from aigc.training.checkpointing import atomic_directory, refuse_to_overwrite
from aigc.training.data.shards import MANIFEST_FILE, MANIFEST_VERSION, TOKENIZER_DIR, ShardWriter, token_dtype
from aigc.training.data.sources import Simplifier, detect_format, expand_inputs, iter_pieces

DOCUMENT_SEPARATOR = "<|endoftext|>"  # preferred EOS between documents when the tokenizer has it
BATCH_CHARS = 1 << 22  # characters per encode_batch call: big enough for all cores, small in memory


def load_tokenizer(spec: str | Path, *, models_dir: Path | None = None) -> Tokenizer:
    """A tokenizer directory, a .gguf file, a model directory, or a model name from the registry."""
    path = Path(spec)
    if path.exists():
        return Tokenizer.load(path)
    from aigc.models.registry import resolve_model

    return Tokenizer.load(resolve_model(str(spec), models_dir=models_dir, offline=True).path)


def separator_id(tokenizer: Tokenizer) -> int:
    """The id placed between documents: <|endoftext|> when it is a special token, else EOS."""
    sep = tokenizer.token_to_id(DOCUMENT_SEPARATOR)
    if sep is not None and tokenizer.is_special(sep):
        return sep
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token to separate documents")
    return tokenizer.eos_token_id


def prepare_data(
    inputs: list[str | Path],
    out_dir: str | Path,
    tokenizer: Tokenizer,
    *,
    tokenizer_source: str = "",
    fmt: str = "auto",
    text_field: str = "text",
    doc_split: str = "blank",
    simplify: bool = False,
    val_fraction: float = 0.005,
    seed: int = 1337,
    shard_tokens: int = 1 << 25,
    force: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Tokenize `inputs` into `out_dir`; returns the manifest (also written as manifest.json)."""
    out_dir = Path(out_dir)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    refuse_to_overwrite(out_dir, force)
    files = expand_inputs(inputs)
    sep = separator_id(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    simplifier = Simplifier() if simplify else None
    started = time.time()

    with atomic_directory(out_dir) as tmp, _Progress(files, show_progress) as progress:
        router = _SplitRouter(tmp, dtype, shard_tokens, sep, random.Random(seed), val_fraction)
        writers, stats = router.writers, router.stats
        sources = []
        for file in files:
            source = {"path": str(file), "format": detect_format(file) if fmt == "auto" else fmt,
                      "documents": 0, "tokens": 0, "chars": 0}
            batch: list[tuple[str, bool]] = []
            batch_chars, at_document_start = 0, True
            for piece in iter_pieces(file, source["format"], text_field=text_field, doc_split=doc_split,
                                     on_position=progress.position):
                text = simplifier(piece.text) if simplifier else piece.text
                if at_document_start and piece.end_of_document and not text.strip():
                    continue  # an empty document
                at_document_start = piece.end_of_document
                batch.append((text, piece.end_of_document))
                batch_chars += len(text)
                if batch_chars >= BATCH_CHARS:
                    router.add(batch, tokenizer.encode_batch([t for t, _ in batch]), source)
                    progress.tokens(source["tokens"])
                    batch, batch_chars = [], 0
            if batch:
                router.add(batch, tokenizer.encode_batch([t for t, _ in batch]), source)
            progress.tokens(source["tokens"])
            progress.file_done()
            sources.append(source)

        if writers["train"].tokens + writers["val"].tokens == 0:
            raise ValueError(f"no text found in {len(files)} input file(s)")
        if val_fraction > 0 and writers["val"].tokens == 0:
            # Too few documents for a document-level split (e.g. one book): use the end of the text.
            tail = writers["train"].take_tail(max(1, int(writers["train"].tokens * val_fraction)))
            writers["val"].write(tail)
            moved_chars = int(stats["train"]["chars"] * len(tail) / max(1, len(tail) + writers["train"].tokens))
            stats["train"]["chars"] -= moved_chars
            stats["val"]["chars"] += moved_chars
        if writers["train"].tokens == 0:
            raise ValueError("every document went to the validation split; lower --val-fraction or add data")

        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        manifest = {
            "version": MANIFEST_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokenizer": TOKENIZER_DIR,
            "tokenizer_source": tokenizer_source,
            "tokenizer_sha256": _sha256(tmp / TOKENIZER_DIR / "tokenizer.json"),
            "vocab_size": tokenizer.vocab_size,
            "eos_token_id": sep,
            "dtype": dtype.name,
            "format": fmt,
            "text_field": text_field,
            "doc_split": doc_split,
            "simplify": simplify,
            "val_fraction": val_fraction,
            "seed": seed,
            "sources": sources,
            "splits": {s: {"tokens": w.tokens, **stats[s], "shards": w.close()} for s, w in writers.items()},
            "seconds": round(time.time() - started, 2),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


class _SplitRouter:
    """Sends each document, piece by piece, to the split its seeded coin flip chose."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_tokens: int, sep: int, rng: random.Random,
                 val_fraction: float):
        self.writers = {s: ShardWriter(directory, s, dtype, shard_tokens) for s in ("train", "val")}
        self.stats = {s: {"documents": 0, "chars": 0} for s in self.writers}
        self.sep, self.rng, self.val_fraction = sep, rng, val_fraction
        self.split: str | None = None  # the split of the document in progress

    def add(self, pieces: list[tuple[str, bool]], ids_list: list[list[int]], source: dict[str, Any]) -> None:
        for (text, end), ids in zip(pieces, ids_list, strict=True):
            if self.split is None:  # a new document starts
                self.split = "val" if self.rng.random() < self.val_fraction else "train"
                self.stats[self.split]["documents"] += 1
                source["documents"] += 1
            split = self.split
            if end:
                ids = [*ids, self.sep]
                self.split = None
            self.writers[split].write(ids)
            self.stats[split]["chars"] += len(text)
            source["tokens"] += len(ids)
            source["chars"] += len(text)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Progress:
    """A rich progress bar over the input bytes, with a running token count (or nothing)."""

    def __init__(self, files: list[Path], enabled: bool):
        self.sizes = [f.stat().st_size for f in files]
        self.enabled = enabled
        self.done_bytes = 0
        self.index = 0
        self.total_tokens = 0
        self.file_tokens = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("tokenizing"), BarColumn(), DownloadColumn(),
                                TextColumn("{task.fields[tokens]:,} tokens"), TimeRemainingColumn(),
                                transient=True)
            self.task = self.bar.add_task("prepare", total=sum(self.sizes), tokens=0)
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def position(self, pos: int) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=self.done_bytes + pos)

    def tokens(self, file_tokens: int) -> None:
        self.file_tokens = file_tokens
        if self.enabled:
            self.bar.update(self.task, tokens=self.total_tokens + file_tokens)

    def file_done(self) -> None:
        self.done_bytes += self.sizes[self.index]
        self.index += 1
        self.total_tokens += self.file_tokens
        self.file_tokens = 0
        if self.enabled:
            self.bar.update(self.task, completed=self.done_bytes, tokens=self.total_tokens)


def read_token_ids(path: str | Path, dtype: str | np.dtype) -> np.ndarray:
    """All ids of one shard file (for inspection and tests)."""
    return np.fromfile(Path(path), dtype=np.dtype(dtype))

