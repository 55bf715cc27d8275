"""A/B campaigns: the traffic split, sticky assignment, forced entry, and the results endpoint."""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.campaigns import assign, campaign_uuid
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post, rows

CATALOG: dict[str, Any] = copy.deepcopy(CHAT_CATALOG)
CATALOG["projects"]["demo"]["system_prompt_template"] = None
CATALOG["projects"]["demo"]["campaigns"] = {
    "echo-vs-alt": {"models": ["echo", "alt"], "traffic_split": 0.4, "metric": "stars"},
    "old": {"models": ["echo", "alt"], "traffic_split": 1.0, "metric": "stars", "status": "done"},
}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from tests.serving import serve_app

    with serve_app(CATALOG, tmp_path / "data") as s:
        yield s


def ask(server: Any, **extra: Any) -> dict[str, Any]:
    r = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, **extra})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_assignment_splits_traffic_within_tolerance() -> None:
    """Pure: 4,000 sessions, 40 % enter, split evenly; the tolerance is 4 standard deviations (binomial)."""
    cid = campaign_uuid("demo", "echo-vs-alt")
    counts = Counter(assign(cid, str(uuid.uuid4()), ["echo", "alt"], 0.4, forced=False) for _ in range(4000))
    n = 4000
    assert abs(counts["echo"] + counts["alt"] - 0.4 * n) <= 4 * (n * 0.4 * 0.6) ** 0.5
    assert abs(counts["echo"] - 0.2 * n) <= 4 * (n * 0.2 * 0.8) ** 0.5
    assert abs(counts["alt"] - 0.2 * n) <= 4 * (n * 0.2 * 0.8) ** 0.5


def test_requests_follow_the_split_and_sessions_stay_sticky(server: Any) -> None:
    """Over HTTP: 300 sessions; 40 % ± 4 sd enter the campaign, and later turns of a session keep its model."""
    first_model = {}
    for _ in range(300):
        session = str(uuid.uuid4())
        first_model[session] = ask(server, session_id=session)["choices"][0]["model"]
    for session in list(first_model)[:40]:
        for _ in range(3):
            assert ask(server, session_id=session)["choices"][0]["model"] == first_model[session]
    turns = rows(server, expect=420)
    campaigns_by_session: dict[str, set[str | None]] = {}
    for t in turns:
        campaigns_by_session.setdefault(t["session_id"], set()).add(t["campaign"])
    assert all(len(c) == 1 for c in campaigns_by_session.values())  # a session is in or out, every turn
    entered = sum(1 for c in campaigns_by_session.values() if c == {"echo-vs-alt"})
    assert abs(entered - 120) <= 4 * (300 * 0.4 * 0.6) ** 0.5


def test_assignment_is_sticky_per_user_without_a_session(server: Any) -> None:
    user = str(uuid.uuid4())
    models = {ask(server, user=user, ab_campaign="echo-vs-alt")["choices"][0]["model"] for _ in range(5)}
    assert len(models) == 1


def test_ab_campaign_forces_entry_by_key_or_id(server: Any) -> None:
    cid = campaign_uuid("demo", "echo-vs-alt")
    models = Counter(ask(server, ab_campaign=ref)["choices"][0]["model"] for ref in ["echo-vs-alt", cid] * 20)
    assert set(models) == {"echo", "alt"}
    stored = rows(server, expect=40)
    assert len(stored) == 40 and all(s["campaign"] == "echo-vs-alt" for s in stored)


def test_a_finished_campaign_takes_no_traffic(server: Any) -> None:
    r = post(server, "/api/v1/chat/completions", {"model": "demo", "messages": USER, "ab_campaign": "old"})
    assert_adaptive_error(r, 400, "is done, not active")


def test_results_compare_the_models_with_intervals_and_significance(server: Any) -> None:
    for i in range(40):
        r = ask(server, ab_campaign="echo-vs-alt", session_id=str(uuid.uuid4()))
        choice = r["choices"][0]
        stars = (4 + i % 2) if choice["model"] == "alt" else (1 + i % 2)  # alt is clearly better
        fb = post(
            server, "/api/v1/feedback", {"completion_id": choice["completion_id"], "metric": "stars", "value": stars}
        )
        assert fb.status_code == 201
    res = httpx.get(f"{server.url}/api/v1/ab_campaigns/echo-vs-alt", headers=server.headers()).json()
    assert res["key"] == "echo-vs-alt" and res["id"] == campaign_uuid("demo", "echo-vs-alt")
    by_model = {m["model"]: m for m in res["models"]}
    assert by_model["echo"]["requests"] + by_model["alt"]["requests"] == 40
    assert by_model["alt"]["feedback_count"] == by_model["alt"]["requests"]
    alt, echo = by_model["alt"], by_model["echo"]
    assert 4 <= alt["metric_mean"] <= 5 and 1 <= echo["metric_mean"] <= 2
    assert alt["metric_ci95"][0] < alt["metric_mean"] < alt["metric_ci95"][1]
    assert alt["latency_ms"]["p50"] is not None and alt["cost"] != "0"
    assert res["leader"] == "alt" and res["significant"] is True
    assert res["comparisons"][0]["p_value"] < 0.001


def test_results_of_an_unknown_campaign_are_404(server: Any) -> None:
    r = httpx.get(f"{server.url}/api/v1/ab_campaigns/nope", headers=server.headers())
    assert_adaptive_error(r, 404, "A/B campaign 'nope'")
