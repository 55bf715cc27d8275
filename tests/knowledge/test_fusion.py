from __future__ import annotations

import pytest

from promptd.knowledge.search import RRF_K, fuse
from promptd.knowledge.store import query_terms


def test_reciprocal_rank_fusion() -> None:
    fused = dict(fuse([["a", "b", "c"], ["b", "a", "d"]]))
    assert fused["a"] == fused["b"] == pytest.approx((1 / (RRF_K + 1) + 1 / (RRF_K + 2)) / (2 / (RRF_K + 1)))
    assert fused["c"] == pytest.approx((1 / (RRF_K + 3)) / (2 / (RRF_K + 1)))
    assert fused["c"] == fused["d"]  # each third in one ranking
    assert fused["a"] > fused["c"]  # in both rankings beats in one
    assert [i for i, _ in fuse([["x"], ["x"]])] == ["x"] and fuse([["x"], ["x"]])[0][1] == pytest.approx(1.0)


def test_query_terms_drop_stopwords() -> None:
    assert query_terms("What is the river that flows through Paris? Paris!") == ["river", "flows", "through", "paris"]
