"""Text out of a document: txt, md, html, csv, pdf (pypdf) and docx (python-docx). Pure: bytes in, text out.

`extract_text(data, extension=…, mime_type=…)` picks the reader by extension, then by MIME type; a format it
cannot read raises `UnsupportedDocument`, a file it cannot parse `UnreadableDocument` (both InputErrors: the
client sent it). Call it off the event loop (`asyncio.to_thread`): a large PDF takes a while.
"""

from __future__ import annotations

import csv
import html.parser
import io
from collections.abc import Callable

from promptd.errors import InputError

__all__ = ["DOCUMENT_EXTENSIONS", "UnreadableDocument", "UnsupportedDocument", "extract_text", "readable"]


class UnsupportedDocument(InputError):
    code = "unsupported_file_type"


class UnreadableDocument(InputError):
    code = "invalid_param"


def _plain(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # every byte is a character: a text file in an older encoding still reads


class _HTMLText(html.parser.HTMLParser):
    """The visible text of an HTML page: script and style dropped, block elements on their own lines."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html(data: bytes) -> str:
    parser = _HTMLText()
    parser.feed(_plain(data))
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _csv(data: bytes) -> str:
    """Rows as lines of comma-separated cells (a CSV the model reads as it is, quoting normalised)."""
    rows = csv.reader(io.StringIO(_plain(data)))
    return "\n".join(", ".join(cell.strip() for cell in row) for row in rows if any(cell.strip() for cell in row))


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableDocument(f"The PDF could not be read: {exc}") from exc
    return "\n\n".join(p.strip() for p in pages if p.strip())


def _docx(data: bytes) -> str:
    import zipfile

    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableDocument(f"The Word document could not be read: {exc}") from exc
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n".join(line for line in lines if line.strip())


READERS: dict[str, Callable[[bytes], str]] = {
    "txt": _plain,
    "text": _plain,
    "md": _plain,
    "markdown": _plain,
    "mdx": _plain,
    "html": _html,
    "htm": _html,
    "csv": _csv,
    "pdf": _pdf,
    "docx": _docx,
}
DOCUMENT_EXTENSIONS = frozenset(READERS)
MIME_READERS: dict[str, str] = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/csv": "csv",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}


def _reader(extension: str, mime_type: str) -> str | None:
    ext = extension.lower().lstrip(".")
    if ext in READERS:
        return ext
    return MIME_READERS.get(mime_type.split(";", 1)[0].strip().lower())


def readable(extension: str, mime_type: str = "") -> bool:
    return _reader(extension, mime_type) is not None


def extract_text(data: bytes, *, extension: str = "", mime_type: str = "") -> str:
    """The document's text. NUL characters are dropped (PostgreSQL text cannot hold them)."""
    kind = _reader(extension, mime_type)
    if kind is None:
        shown = f".{extension}" if extension else mime_type or "this file"
        raise UnsupportedDocument(
            f"Text cannot be extracted from {shown}: documents may be txt, md, html, csv, pdf or docx.", param="files"
        )
    return READERS[kind](data).replace("\x00", "")
