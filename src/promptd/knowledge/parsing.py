"""Text from a document file, by extension: txt and md as they are, html through the stdlib's parser, pdf through
pypdf, docx through python-docx. Runs in a thread (the parsers are synchronous)."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["EXTENSIONS", "UnreadableDocument", "extract_text"]

#: the document types ingested, by extension
EXTENSIONS = frozenset({".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})


class UnreadableDocument(Exception):
    """The file is not a document promptd can read (its type, or its content): the document's `error`."""


def _plain(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte is a character: nothing is lost, nothing refused


_BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template", "noscript"):
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html(data: bytes) -> str:
    parser = _Text()
    parser.feed(_plain(data))
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(lines)


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UnreadableDocument(f"not a readable PDF: {exc}") from exc
    return "\n\n".join(pages)


def _docx(data: bytes) -> str:
    import zipfile

    from docx import Document

    try:
        doc = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableDocument(f"not a readable DOCX file: {exc}") from exc
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n\n".join(parts)


def extract_text(path: Path, name: str | None = None) -> str:
    """The text of the document at `path`; its type comes from `name` (or the path's) extension."""
    ext = Path(name or path.name).suffix.lower()
    if ext not in EXTENSIONS:
        raise UnreadableDocument(f"{ext or 'a file without extension'} is not a document type promptd reads")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableDocument(f"cannot read the file: {exc.strerror}") from exc
    if ext == ".pdf":
        return _pdf(data)
    if ext == ".docx":
        return _docx(data)
    if ext in (".html", ".htm"):
        return _html(data)
    return _plain(data)
