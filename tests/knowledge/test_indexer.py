"""The indexer waits out a knowledge base's rate limit (the embeddings of a batch are asked again when the
refusal says), and fails the document on a budget. `models.embed` is replaced by a script of refusals: it stands
for the engine's admission refusing the indexing calls."""

from __future__ import annotations

from typing import Any

import pytest

from promptd.engine.call import Origin
from promptd.errors import BudgetExceeded, LimitExceeded
from promptd.knowledge import indexer as indexer_module
from promptd.knowledge.indexer import Indexer


def _scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[Exception | None]) -> list[int]:
    calls: list[int] = []

    async def embed(engine: Any, model: str, texts: list[str], origin: Origin) -> tuple[list[list[float]], int]:
        calls.append(len(texts))
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return [[1.0] for _ in texts], len(texts)

    monkeypatch.setattr(indexer_module.models, "embed", embed)
    return calls


def _rate(what: str = "tokens") -> LimitExceeded:
    return LimitExceeded("Rate limit reached", retry_after=0.01, scope="project", what=what)


async def test_a_rate_limit_is_waited_out_and_the_batch_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _scripted(monkeypatch, [_rate(), _rate("requests"), None])
    vectors, tokens = await Indexer(None, None)._embed("emb", ["a", "b"], Origin(face="knowledge", project="x"))  # type: ignore[arg-type]
    assert calls == [2, 2, 2] and vectors == [[1.0], [1.0]] and tokens == 2


async def test_a_budget_fails_at_once_and_a_limit_that_keeps_refusing_fails_in_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin = Origin(face="knowledge", project="x")
    calls = _scripted(monkeypatch, [BudgetExceeded("Budget reached", retry_after=60, scope="project", what="cost")])
    with pytest.raises(BudgetExceeded):
        await Indexer(None, None)._embed("emb", ["a"], origin)  # type: ignore[arg-type]
    assert calls == [1]
    calls = _scripted(monkeypatch, [_rate() for _ in range(indexer_module.RATE_WAITS + 1)])
    with pytest.raises(LimitExceeded):
        await Indexer(None, None)._embed("emb", ["a"], origin)  # type: ignore[arg-type]
    assert len(calls) == indexer_module.RATE_WAITS + 1
