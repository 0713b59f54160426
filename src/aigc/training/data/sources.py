"""Reading training text: plain text, gzip, JSON Lines, poem records and dialogs -> documents.

Formats (`--format`):
- `text`: .txt / .txt.gz. `doc_split="blank"` makes every blank-line-separated block a document
  (a speech in a play, a paragraph of a novel); `doc_split="file"` keeps the whole file as one
  document, read in fixed-size chunks so a big book never sits in one string.
- `jsonl`: one JSON object per line with a text field (`text_field`, default "text").
- `poems`: `{title, author, paragraphs: [lines]}` -> "title\\nline1\\nline2...".
- `chat`: `{"messages": [{role, content}]}` or `{"turns": [str, ...]}` -> the utterances, one per line.
- `auto`: by extension, and for JSON Lines by the fields of the first record.

Gzip is recognised by its magic bytes, whatever the name. A directory input means every .txt/.jsonl
(optionally .gz) file below it, in sorted order, so runs are reproducible.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("auto", "text", "jsonl", "poems", "chat")
DOC_SPLITS = ("blank", "file")
TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
CHUNK_CHARS = 1 << 20  # `doc_split="file"`: piece size handed to the tokenizer


@dataclass(frozen=True)
class Piece:
    """Text to tokenize; `end_of_document` means an EOS token follows it."""

    text: str
    end_of_document: bool = True


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files named by `paths` (directories expanded); raises for a missing path or nothing to read."""
    if not paths:
        raise ValueError("no input given")
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) in TEXT_SUFFIXES + JSONL_SUFFIXES
                           and f.name.lower() != "readme.md")
            if not found:
                raise ValueError(f"{p}: directory holds no .txt or .jsonl files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return files


def open_text(path: Path) -> TextIO:
    """A UTF-8 text stream of a plain or gzip-compressed file.

    `stream.file_position()` tells how many bytes of the file on disk were read (for progress bars).
    """
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    binary = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
    stream = io.TextIOWrapper(binary, encoding="utf-8", newline=None)
    stream.file_position = raw.tell  # type: ignore[attr-defined]
    if binary is not raw:  # GzipFile does not close a file object it was given
        inner_close = stream.close

        def close() -> None:
            inner_close()
            raw.close()
        stream.close = close  # type: ignore[method-assign]
    return stream


def detect_format(path: Path) -> str:
    """`text` or `jsonl`/`poems`/`chat`, from the extension and the first JSON record."""
    if _suffix(path) not in JSONL_SUFFIXES:
        return "text"
    with open_text(path) as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}: first line is not JSON; pass --format text") from None
                if isinstance(record, dict):
                    if "messages" in record or "turns" in record:
                        return "chat"
                    if "paragraphs" in record:
                        return "poems"
                return "jsonl"
    return "jsonl"


def _read_errors(path: Path) -> Callable[[Exception], ValueError]:
    def wrap(e: Exception) -> ValueError:
        if isinstance(e, UnicodeDecodeError):
            return ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
        if isinstance(e, gzip.BadGzipFile | EOFError):
            return ValueError(f"{path}: damaged gzip file ({e})")
        return ValueError(f"{path}: {e}")
    return wrap


def iter_pieces(path: str | Path, fmt: str = "auto", *, text_field: str = "text", doc_split: str = "blank",
                on_position: Callable[[int], None] | None = None) -> Iterator[Piece]:
    """The pieces of text in one file, in order. Raises ValueError naming the file (and line).

    on_position(bytes_read) is called now and then with how far into the file (on disk) reading got.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if doc_split not in DOC_SPLITS:
        raise ValueError(f"unknown document split {doc_split!r}; choose one of {', '.join(DOC_SPLITS)}")
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    wrap = _read_errors(path)
    try:
        if fmt == "auto":
            fmt = detect_format(path)
        if fmt == "text":
            yield from _text_pieces(path, doc_split, on_position)
        else:
            render = {"jsonl": _jsonl_renderer(text_field), "poems": _render_poem, "chat": _render_chat}[fmt]
            for lineno, record in _json_records(path, on_position):
                try:
                    text = render(record)
                except ValueError as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
                if text.strip():
                    yield Piece(text)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise wrap(e) from None


def iter_documents(path: str | Path, fmt: str = "auto", *, text_field: str = "text",
                   doc_split: str = "blank") -> Iterator[str]:
    """Whole documents (pieces of one document joined)."""
    parts: list[str] = []
    for piece in iter_pieces(path, fmt, text_field=text_field, doc_split=doc_split):
        parts.append(piece.text)
        if piece.end_of_document:
            yield "".join(parts)
            parts = []
    if parts:
        yield "".join(parts)


def _report(f: TextIO, lineno: int, on_position: Callable[[int], None] | None) -> None:
    if on_position is not None and lineno % 1024 == 0:
        on_position(f.file_position())  # type: ignore[attr-defined]


def _text_pieces(path: Path, doc_split: str, on_position: Callable[[int], None] | None) -> Iterator[Piece]:
    with open_text(path) as f:
        if doc_split == "file":
            buf: list[str] = []
            size = 0
            for lineno, line in enumerate(f):
                _report(f, lineno, on_position)
                buf.append(line)
                size += len(line)
                if size >= CHUNK_CHARS:  # cut at a line end; the document goes on
                    yield Piece("".join(buf), end_of_document=False)
                    buf, size = [], 0
            text = "".join(buf).rstrip("\n")
            yield Piece(text, end_of_document=True)
            return
        block: list[str] = []
        for lineno, line in enumerate(f):
            _report(f, lineno, on_position)
            if line.strip():
                block.append(line)
            elif block:
                yield Piece("".join(block).rstrip("\n"))
                block = []
        if block:
            yield Piece("".join(block).rstrip("\n"))


def _json_records(path: Path, on_position: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            _report(f, lineno, on_position)
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None


def _fields(record: Any) -> str:
    return ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__


def _jsonl_renderer(field: str) -> Callable[[Any], str]:
    def render(record: Any) -> str:
        if not isinstance(record, dict) or field not in record:
            raise ValueError(f"no {field!r} field (record has: {_fields(record)}); pass --text-field or --format")
        value = record[field]
        if not isinstance(value, str):
            raise ValueError(f"field {field!r} is {type(value).__name__}, not text")
        return value
    return render


def _render_poem(record: Any) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("paragraphs"), list):
        raise ValueError(f"not a poem record: no 'paragraphs' list (record has: {_fields(record)})")
    lines = [str(x) for x in record["paragraphs"] if str(x).strip()]
    title = str(record.get("title") or "").strip()
    return "\n".join([title, *lines] if title else lines)


def _render_chat(record: Any) -> str:
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        texts = []
        for m in record["messages"]:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise ValueError("every message needs a string 'content'")
            texts.append(m["content"])
    elif isinstance(record, dict) and isinstance(record.get("turns"), list):
        texts = [str(t) for t in record["turns"]]
    else:
        raise ValueError(f"not a chat record: no 'messages' or 'turns' list (record has: {_fields(record)})")
    return "\n".join(t.strip() for t in texts if t.strip())


class Simplifier:
    """Traditional -> Simplified Chinese with OpenCC (`t2s`); other text passes through unchanged."""

    def __init__(self) -> None:
        try:
            import opencc
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ValueError("--simplify needs the 'opencc' package (pip install opencc)") from e
        self._cc = opencc.OpenCC("t2s")

    def __call__(self, text: str) -> str:
        return self._cc.convert(text)
