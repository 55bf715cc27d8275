from __future__ import annotations

import itertools

from promptd.knowledge.chunking import clean_text, split_text


def test_short_text_is_one_segment() -> None:
    assert split_text("One paragraph.\n\nAnother one.", size=1000, overlap=100) == ["One paragraph.\n\nAnother one."]


def test_segments_respect_size_and_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = split_text(text, size=200, overlap=40)
    assert len(chunks) > 10
    assert all(len(c) <= 200 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        first_word = after.split()[0]
        # the next segment starts with words from the end of the previous one (the overlap)
        assert first_word in before.split()[-8:]
    words = {w for c in chunks for w in c.split()}
    assert words == {f"word{i}" for i in range(400)}  # nothing lost


def test_separator_is_preferred() -> None:
    text = "alpha beta gamma###delta epsilon###zeta eta theta"
    assert split_text(text, size=25, overlap=0, separator="###") == [
        "alpha beta gamma###",
        "delta epsilon###",
        "zeta eta theta",
    ]


def test_a_word_longer_than_size_is_cut() -> None:
    chunks = split_text("x" * 250, size=100, overlap=0)
    assert chunks == ["x" * 100, "x" * 100, "x" * 50]


def test_clean_text() -> None:
    assert clean_text("a  \r\nb\n\n\n\nc\x00") == "a\nb\n\nc"
