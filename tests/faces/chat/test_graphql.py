"""POST /api/graphql through adaptive-sdk itself (`feedback.log_metric` sends the AddDirectScore mutation,
`feedback.get_key` the DescribeMetric query), and raw HTTP for the error shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from adaptive_sdk import Adaptive

from promptd.domain.ids import metric_uuid
from tests.faces.chat.helpers import CHAT_CATALOG
from tests.serving import RunningServer, serve_app


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    catalog = {**CHAT_CATALOG, "projects": {**CHAT_CATALOG["projects"]}}
    catalog["projects"]["demo"] = {**catalog["projects"]["demo"], "system_prompt_template": None}
    with serve_app(catalog, tmp_path / "data") as s:
        yield s


@pytest.fixture
def client(server: RunningServer) -> Iterator[Adaptive]:
    c = Adaptive(base_url=server.url, api_key=server.key)
    c.set_default_project("demo")
    yield c
    c.close()


def scores(server: RunningServer) -> list[dict[str, object]]:
    from sqlalchemy import select

    from promptd.store.tables import metric_feedback

    async def read(repo: object) -> list[dict[str, object]]:
        async with repo.engine.connect() as conn:  # type: ignore[attr-defined]
            return [dict(r._mapping) for r in (await conn.execute(select(metric_feedback))).all()]

    return server.repo_call(read)  # type: ignore[no-any-return]


def test_log_metric_through_the_sdk_stores_the_score(client: Adaptive, server: RunningServer) -> None:
    completion = client.chat.create(messages=[{"role": "user", "content": "hi"}]).choices[0].completion_id
    out = client.feedback.log_metric(value=True, completion_id=completion, feedback_key="helpful", details="spot on")
    stars = client.feedback.log_metric(value=4.5, completion_id=str(completion), feedback_key="stars")
    stored = {str(r["id"]): r for r in scores(server)}
    assert set(stored) == {str(out.feedback_id), str(stars.feedback_id)}
    helpful = stored[str(out.feedback_id)]
    assert (helpful["metric"], helpful["value"], helpful["details"]) == ("helpful", 1.0, "spot on")
    assert helpful["completion_id"] == str(completion) and helpful["project"] == "demo"
    assert stored[str(stars.feedback_id)]["value"] == 4.5


def test_log_metric_mistakes_are_graphql_errors(client: Adaptive, server: RunningServer) -> None:
    completion = client.chat.create(messages=[{"role": "user", "content": "hi"}]).choices[0].completion_id
    with pytest.raises(Exception, match="does not exist") as unknown:
        client.feedback.log_metric(value=1, completion_id=completion, feedback_key="nope")
    assert "metric 'nope'" in str(unknown.value)
    with pytest.raises(Exception, match="bool metric"):
        client.feedback.log_metric(value=7, completion_id=completion, feedback_key="helpful")
    with pytest.raises(Exception, match="does not exist"):
        client.feedback.log_metric(value=1, completion_id=uuid.uuid4(), feedback_key="helpful")
    assert scores(server) == []


def post(server: RunningServer, body: object, key: str | None = "default") -> httpx.Response:
    headers = server.headers() if key == "default" else ({"Authorization": f"Bearer {key}"} if key else {})
    return httpx.post(server.url + "/api/graphql", json=body, headers=headers, timeout=30)


def test_errors_have_graphqls_shape_and_statuses(server: RunningServer) -> None:
    query = 'mutation { addDirectScore(completionId: "x", metricId: "helpful", input: {value: 1}) { id } }'
    for key in (None, "app-not-a-real-key-000000000000000"):
        refused = post(server, {"query": query}, key=key)
        assert refused.status_code == 401
        [error] = refused.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED" and error["message"]
    broken = httpx.post(server.url + "/api/graphql", content=b"{", headers=server.headers())
    assert broken.status_code == 400 and broken.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    deep = b'{"query": "{ ok }", "variables": ' + b'{"a":' * 100_000 + b"{}" + b"}" * 100_000 + b"}"
    nested = httpx.post(server.url + "/api/graphql", content=deep, headers=server.headers())
    assert nested.status_code == 400 and "nested too deeply" in nested.json()["errors"][0]["message"]
    # a UUID that is not one: a variable error, in a 200 answer as GraphQL has it
    bad_id = post(server, {"query": query})
    assert bad_id.status_code == 200 and bad_id.json().get("data") is None
    assert "UUID" in bad_id.json()["errors"][0]["message"]
    assert bad_id.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # an Adaptive operation promptd does not serve is named, not answered empty
    other = post(server, {"query": "{ metrics { id key } }"})
    [error] = other.json()["errors"]
    assert "metrics" in error["message"] and error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_an_operations_own_error_carries_promptds_reason(server: RunningServer) -> None:
    mutation = (
        'mutation Score($id: UUID!) { addDirectScore(completionId: $id, metricId: "helpful", input: {value: 1}) '
        "{ id } }"
    )
    r = post(server, {"query": mutation, "variables": {"id": str(uuid.uuid4())}, "operationName": "Score"})
    assert r.status_code == 200 and r.json()["data"] is None
    [error] = r.json()["errors"]
    assert error["extensions"]["code"] == "NOT_FOUND" and "does not exist" in error["message"]
    assert error["path"] == ["addDirectScore"]


def test_get_key_through_the_sdk_describes_a_catalog_metric(client: Adaptive, server: RunningServer) -> None:
    helpful = client.feedback.get_key("demo", "helpful")
    assert helpful is not None and helpful.key == "helpful" and helpful.name == "helpful"
    assert (helpful.kind.value, helpful.scoring_type.value) == ("BOOL", "HIGHER_IS_BETTER")
    assert helpful.id == metric_uuid("demo", "helpful") and not helpful.has_direct_scores
    assert helpful.created_at <= time.time() and not helpful.has_comparison_scores
    stars = client.feedback.get_key("demo", "stars")
    assert stars is not None and stars.kind.value == "SCALAR"
    assert client.feedback.get_key("demo", "nope") is None  # as the SDK's `MetricData | None` has it
    # a score logged by the metric's id counts as the metric's
    completion = client.chat.create(messages=[{"role": "user", "content": "hi"}]).choices[0].completion_id
    client.feedback.log_metric(value=False, completion_id=completion, feedback_key=str(helpful.id))
    scored = client.feedback.get_key("demo", str(helpful.id))
    assert scored is not None and scored.key == "helpful" and scored.has_direct_scores
    assert [r["metric"] for r in scores(server)] == ["helpful"]
    with pytest.raises(Exception, match="not valid for project 'plain'"):
        client.feedback.get_key("plain", "helpful")
