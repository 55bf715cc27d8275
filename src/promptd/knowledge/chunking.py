"""Text cleaning and chunking with overlap. Pure, no I/O."""

from __future__ import annotations

import re

__all__ = ["clean_text", "split_text"]

_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def clean_text(text: str) -> str:
    """Line ends made `\\n`, NULs and trailing spaces dropped, runs of blank lines made one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("\n", text)).strip()


def _pieces(text: str, separators: list[str], size: int) -> list[str]:
    """`text` cut into pieces of at most `size` characters: at the first separator it contains, then (for a
    piece still too long) at the next ones, and as a last resort every `size` characters. Separators stay at
    the end of their piece, so joining the pieces gives `text` back."""
    if len(text) <= size:
        return [text]
    for i, sep in enumerate(separators):
        if sep in text:
            parts = text.split(sep)
            out: list[str] = []
            for j, part in enumerate(parts):
                if j < len(parts) - 1:
                    part += sep
                if part:
                    out.extend(_pieces(part, separators[i + 1 :], size) if len(part) > size else [part])
            return out
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tail(chunk: str, overlap: int) -> str:
    """The last `overlap` characters of a chunk, starting at a word (none when the chunk has no space there)."""
    if overlap <= 0 or len(chunk) <= overlap:
        return "" if overlap <= 0 else chunk
    tail = chunk[-overlap:]
    cut = tail.find(" ")
    return tail[cut + 1 :] if cut >= 0 else tail


def split_text(text: str, *, size: int, overlap: int, separator: str = "\n\n") -> list[str]:
    """Segments of at most `size` characters; each after the first starts with the last `overlap` characters
    (whole words) of the one before. Cuts fall at `separator` first, then paragraphs, lines, sentences, words."""
    separators = list(dict.fromkeys([separator, "\n\n", "\n", ". ", " "]))
    chunks: list[str] = []
    current = ""
    for piece in _pieces(clean_text(text), separators, size):
        if current and len(current) + len(piece) > size:
            done = current.strip()
            if done:
                chunks.append(done)
            current = _tail(done, overlap)
            if len(current) + len(piece) > size:  # no room for the overlap beside this piece
                current = ""
            elif current and not current.endswith((" ", "\n")):
                current += " "
        current += piece
    if current.strip():
        chunks.append(current.strip())
    return chunks
