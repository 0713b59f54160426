"""Documents to text with their structure: txt, md, html, pdf, docx.

Each format is read by a well-kept library (pypdf, python-docx, BeautifulSoup) into one `Parsed`
document: the full text (what citations point into, by character offset) and its sections, each
with its heading path ("Returns > Refunds") and where it starts in the text. Anything wrong with a
file is a `DocumentError` with one line saying what; a broken file fails alone.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

MAX_BYTES = 20 << 20  # 20 MiB per file
KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
         ".htm": "html", ".pdf": "pdf", ".docx": "docx"}


class DocumentError(ValueError):
    """A file that cannot be read as a document; the message says why."""


@dataclass
class Section:
    heading: list[str]  # the heading path, outermost first ([] before the first heading)
    text: str
    start: int  # offset of `text` in Parsed.text


@dataclass
class Parsed:
    text: str
    sections: list[Section] = field(default_factory=list)
    kind: str = "text"


class _Builder:
    """Appends sections to one text, remembering where each starts."""

    def __init__(self, kind: str):
        self.parts: list[str] = []
        self.size = 0
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []  # (level, title)
        self.kind = kind

    def heading(self, level: int, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            return
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, title))
        self._append(title + "\n", None)

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if text:
            self._append(text + "\n\n", [t for _, t in self.path])

    def _append(self, piece: str, heading: list[str] | None) -> None:
        if heading is not None:
            last = self.sections[-1] if self.sections else None
            if last is not None and last.heading == heading and last.start + len(last.text) == self.size:
                last.text += piece
            else:
                self.sections.append(Section(heading, piece, self.size))
        self.parts.append(piece)
        self.size += len(piece)

    def done(self) -> Parsed:
        text = "".join(self.parts)
        if not text.strip():
            raise DocumentError("the document has no text (an empty file, or a scanned PDF without a text layer)")
        for s in self.sections:
            s.text = s.text.rstrip()
        return Parsed(text, [s for s in self.sections if s.text], self.kind)


def kind_of(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in KINDS:
        raise DocumentError(f"{filename}: unsupported type {suffix or '(none)'}; supported: "
                            + ", ".join(sorted(set(KINDS))))
    return KINDS[suffix]


def parse(filename: str, data: bytes) -> Parsed:
    """Read one uploaded file. Raises DocumentError (wrong type, empty, too large, broken)."""
    kind = kind_of(filename)
    if not data:
        raise DocumentError(f"{filename}: the file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise DocumentError(f"{filename}: {len(data)} bytes is over the {MAX_BYTES >> 20} MiB limit")
    try:
        return {"text": _text, "markdown": _markdown, "html": _html, "pdf": _pdf, "docx": _docx}[kind](data)
    except DocumentError as e:
        raise DocumentError(f"{filename}: {e}") from None
    except Exception as e:  # the libraries raise many kinds for a corrupt file
        raise DocumentError(f"{filename}: cannot be read as {kind} ({type(e).__name__}: {e})") from None


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):  # Chinese files are often GBK/GB18030
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError("the text is neither UTF-8 nor GB18030")


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


def _text(data: bytes) -> Parsed:
    b = _Builder("text")
    for p in _paragraphs(_decode(data)):
        b.paragraph(p)
    return b.done()


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _markdown(data: bytes) -> Parsed:
    b = _Builder("markdown")
    block: list[str] = []
    fenced = False
    for line in _decode(data).replace("\r\n", "\n").split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else _MD_HEADING.match(line)
        if m:
            b.paragraph("\n".join(block))
            block = []
            b.heading(len(m.group(1)), m.group(2))
        elif not line.strip() and not fenced:
            b.paragraph("\n".join(block))
            block = []
        else:
            block.append(line)
    b.paragraph("\n".join(block))
    return b.done()


def _html(data: bytes) -> Parsed:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for junk in soup(["script", "style", "noscript", "template", "nav", "footer", "head"]):
        junk.decompose()
    b = _Builder("html")
    blocks = soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "th", "blockquote", "dd", "dt"])
    for el in blocks:
        if el.find_parent(["p", "li", "pre", "td", "th", "blockquote", "dd", "dt"]) is not None:
            continue  # its text is in the enclosing block
        text = el.get_text(" ", strip=True)
        if el.name[0] == "h" and el.name[1:].isdigit():
            b.heading(int(el.name[1:]), text)
        else:
            b.paragraph(text)
    if not blocks:  # a page of bare text
        for p in _paragraphs(soup.get_text("\n")):
            b.paragraph(p)
    return b.done()


def _pdf(data: bytes) -> Parsed:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        raise DocumentError("the PDF is encrypted")
    b = _Builder("pdf")
    outline = _pdf_outline(reader)
    for number, page in enumerate(reader.pages):
        if number in outline:
            b.heading(1, outline[number])
        for p in _paragraphs(page.extract_text() or ""):
            b.paragraph(p)
    return b.done()


def _pdf_outline(reader) -> dict[int, str]:
    """Page number -> the first top-level bookmark on it (the PDF's own headings, if any)."""
    out: dict[int, str] = {}
    try:
        for item in reader.outline:
            if not isinstance(item, list):
                out.setdefault(reader.get_destination_page_number(item), str(item.title))
    except Exception:  # a malformed outline is no reason to lose the text
        pass
    return out


def _docx(data: bytes) -> Parsed:
    import docx

    document = docx.Document(io.BytesIO(data))
    b = _Builder("docx")
    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        level = re.match(r"(?i)heading\s*(\d)", style) or (re.match(r"(?i)title", style) and None)
        if level:
            b.heading(int(level.group(1)), para.text)
        elif style.lower() == "title":
            b.heading(1, para.text)
        else:
            b.paragraph(para.text)
    for table in document.tables:
        for row in table.rows:
            b.paragraph(" | ".join(cell.text.strip() for cell in row.cells))
    return b.done()
