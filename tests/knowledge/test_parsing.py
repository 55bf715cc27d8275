from __future__ import annotations

from pathlib import Path

import pytest

from promptd.documents import UnreadableDocument, UnsupportedDocument
from promptd.knowledge.parsing import extract_text
from tests.knowledge.documents import FACTS, write_documents


def test_every_type_is_read(tmp_path: Path) -> None:
    folder = write_documents(tmp_path / "docs")
    for name, text in FACTS.items():
        got = " ".join(extract_text(folder / name).split())
        if name.endswith(".html"):
            assert "Jupiter is the largest planet" in got
            assert "color" not in got and "hidden" not in got  # style and script are not text
        else:
            assert text.split("\n\n")[-1] in got, (name, got)


def test_unreadable_documents_say_why(tmp_path: Path) -> None:
    (tmp_path / "a.exe").write_bytes(b"MZ")
    with pytest.raises(UnsupportedDocument, match="documents may be"):
        extract_text(tmp_path / "a.exe")
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf at all")
    with pytest.raises(UnreadableDocument, match="PDF"):
        extract_text(tmp_path / "broken.pdf")
    (tmp_path / "broken.docx").write_bytes(b"not a zip")
    with pytest.raises(UnreadableDocument, match="Word document"):
        extract_text(tmp_path / "broken.docx")
