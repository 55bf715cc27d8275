"""A knowledge document's text: read from its file, extracted by promptd/documents.py (txt, md, html, csv, pdf
through pypdf, docx through python-docx), the same reader Dify `files` go through. Runs in a thread."""

from __future__ import annotations

from pathlib import Path

from promptd.documents import DOCUMENT_EXTENSIONS, UnreadableDocument
from promptd.documents import extract_text as document_text

__all__ = ["EXTENSIONS", "UnreadableDocument", "extract_text"]

#: the document types ingested, by extension (with its dot)
EXTENSIONS = frozenset(f".{ext}" for ext in DOCUMENT_EXTENSIONS)


def extract_text(path: Path, name: str | None = None) -> str:
    """The text of the document at `path`; its type comes from `name`'s (or the path's) extension. Raises an
    InputError (UnsupportedDocument, UnreadableDocument) that says why."""
    ext = Path(name or path.name).suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableDocument(f"The file cannot be read: {exc.strerror}") from exc
    return document_text(data, extension=ext.lstrip("."))
