"""The management API over real HTTP, on traffic made by real requests through both faces, on a real SQLite
file and a real PostgreSQL database (when PROMPTD_TEST_POSTGRES_URL is set, as in CI)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.campaigns import campaign_uuid
from tests.conftest import _fresh_pg_database
from tests.console.helpers import (
    ALICE,
    CATALOG,
    Traffic,
    admin_key,
    assert_admin_error,
    get,
    make_traffic,
    nearest_rank,
)
from tests.serving import RunningServer, serve_app


@dataclass
class Env:
    server: RunningServer
    key: str
    traffic: Traffic
    rows: list[dict[str, Any]]  # every stored message, straight from the repository


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("console-api")
    drop = None
    url = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_server_url")
        if pg is None:
            pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
        url, drop = _fresh_pg_database(pg)
    try:
        with serve_app(CATALOG, data / "data", database_url=url) as server:
            traffic = make_traffic(server)
            rows = [
                r
                for project in CATALOG["projects"]
                for r in server.repo_call(lambda repo, p=project: repo.list_messages(p, limit=10_000))
            ]
            assert len(rows) == traffic.total
            yield Env(server, admin_key(server), traffic, rows)
    finally:
        if drop is not None:
            drop()


ENDPOINTS = [
    ("GET", "/me"),
    ("GET", "/projects"),
    ("GET", "/projects/demo"),
    ("GET", "/projects/demo/campaigns/echo-vs-alt"),
    ("GET", "/campaigns"),
    ("GET", "/overview"),
    ("GET", "/rejections"),
    ("GET", "/users"),
    ("GET", "/messages"),
    ("GET", "/messages/x"),
    ("GET", "/sessions"),
    ("GET", "/sessions/x"),
    ("GET", "/usage"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("DELETE", "/keys/x"),
]


def test_every_endpoint_needs_an_admin_key(env: Env) -> None:
    """No key, a wrong key and an app key (valid on the faces) are all 401 in the one error shape."""
    app_key = env.server.key
    for method, path in ENDPOINTS:
        url = f"{env.server.url}/admin/v1{path}"
        for headers in ({}, {"Authorization": "Bearer adm-" + "x" * 32}, {"Authorization": f"Bearer {app_key}"}):
            r = httpx.request(method, url, headers=headers, json={"project": "demo"})
            assert_admin_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
    me = get(env.server, env.key, "/me")
    assert me.status_code == 200 and env.key.startswith(me.json()["prefix"])


def test_the_console_is_served_with_a_content_security_policy(env: Env) -> None:
    page = httpx.get(f"{env.server.url}/console/")
    assert page.status_code == 200 and '<div id="app">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{env.server.url}/console/assets/console.js")
    assert script.status_code == 200 and "content-security-policy" in script.headers


def test_an_admin_key_never_calls_the_faces(env: Env) -> None:
    body = {"inputs": {"query": "hi"}, "user": "u"}
    r = httpx.post(f"{env.server.v1}/completion-messages", json=body, headers=env.server.headers(env.key))
    assert r.status_code == 401


def test_overview_totals_and_breakdown_match_the_stored_records(env: Env) -> None:
    r = get(env.server, env.key, "/overview", range="hour")
    assert r.status_code == 200, r.text
    body = r.json()
    totals = body["totals"]
    assert totals["requests"] == env.traffic.total == len(env.rows)
    assert totals["errors"] == env.traffic.error_count == sum(x["status"] == "error" for x in env.rows)
    assert totals["tokens"] == sum(x["total_tokens"] for x in env.rows) > 0
    assert totals["cost"]["USD"] == pytest.approx(sum(float(x["total_price"]) for x in env.rows))
    # the series covers the hour in 5-minute buckets and adds up to the totals
    assert body["bucket"] == 300 and len(body["series"]) == 12 and body["end"] - body["start"] == 3600
    assert sum(b["requests"] for b in body["series"]) == totals["requests"]
    assert sum(b["errors"] for b in body["series"]) == totals["errors"]
    per = Counter((x["project"], x["model"]) for x in env.rows)
    assert {(b["project"], b["model"]): b["requests"] for b in body["breakdown"]} == dict(per)


def test_overview_percentiles_are_the_nearest_rank_of_the_stored_latencies(env: Env) -> None:
    body = get(env.server, env.key, "/overview", range="day").json()
    for field, column in (("latency_ms", "latency"), ("ttft_ms", "ttft")):
        values = [x[column] for x in env.rows if x[column] is not None]
        for p in (50, 95):
            assert body["totals"][field][f"p{p}"] == pytest.approx(nearest_rank(values, p) * 1000)
        for b in body["breakdown"]:
            mine = [x[column] for x in env.rows if (x["project"], x["model"]) == (b["project"], b["model"])]
            mine = [v for v in mine if v is not None]
            expected = nearest_rank(mine, 95) * 1000 if mine else None
            assert b[field]["p95"] == pytest.approx(expected)


def test_overview_filters_by_project_and_model(env: Env) -> None:
    body = get(env.server, env.key, "/overview", range="week", project="support").json()
    assert body["totals"]["requests"] == env.traffic.session_turns
    assert {b["project"] for b in body["breakdown"]} == {"support"}
    body = get(env.server, env.key, "/overview", project="demo", model="broken").json()
    assert body["totals"]["requests"] == body["totals"]["errors"] == 1
    start = min(x["created_at"] for x in env.rows) - 1
    explicit = get(env.server, env.key, "/overview", start=start, end=start + 3600, bucket=600).json()
    assert explicit["bucket"] == 600 and len(explicit["series"]) == 6
    assert explicit["totals"]["requests"] == len(env.rows)


def test_logs_filter_by_every_field(env: Env) -> None:
    def ids(**params: Any) -> set[str]:
        r = get(env.server, env.key, "/messages", limit=500, **params)
        assert r.status_code == 200, r.text
        return {m["id"] for m in r.json()["data"]}

    rows = env.rows
    assert ids() == {x["id"] for x in rows}
    assert ids(project="support") == {x["id"] for x in rows if x["project"] == "support"}
    assert ids(model="alt") == {x["id"] for x in rows if x["model"] == "alt"}
    assert ids(status="error") == {x["id"] for x in rows if x["status"] == "error"} != set()
    assert ids(face="dify") == set(env.traffic.dify_ids)
    assert ids(user=ALICE) == {x["id"] for x in rows if x["user"] == ALICE} != set()
    assert ids(session=env.traffic.session) == {x["id"] for x in rows if x["session_id"] == env.traffic.session}
    assert ids(label="env:prod") == {x["id"] for x in rows if (x["labels"] or {}).get("env") == "prod"} != set()
    assert ids(label=["env:prod", "channel:web"]) == ids(label="env:prod")
    assert ids(label="env:nope") == set()
    assert ids(tag="vip") == ids(session=env.traffic.session)
    assert ids(tag=["vip", "nope"]) == set()
    assert ids(campaign="echo-vs-alt") == {i for v in env.traffic.campaign_ids.values() for i in v}
    assert ids(q="CAPITAL of france") == {env.traffic.dify_ids[0]}
    assert ids(q="100%") == set()  # % is a literal character, not a wildcard
    asked = {x["id"] for x in rows if x["face"] == "chat" and "campaign question 3" in (x["query"] or "")}
    assert ids(q="campaign question 3") == asked != set()  # a chat request is found by what the user asked
    newest = max(x["created_at"] for x in rows)
    assert ids(start=newest) == {x["id"] for x in rows if x["created_at"] >= newest}
    assert ids(end=newest) == {x["id"] for x in rows if x["created_at"] < newest}


def test_logs_paginate_newest_first_without_gaps_or_repeats(env: Env) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = get(env.server, env.key, "/messages", **params).json()
        assert len(body["data"]) <= 4
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(env.rows) and len({m["id"] for m in seen}) == len(seen)
    keys = [(m["created_at"], m["id"]) for m in seen]
    assert keys == sorted(keys, reverse=True)


def test_message_detail_has_inputs_prompt_answer_attempts_and_feedback(env: Env) -> None:
    first = env.traffic.dify_ids[0]
    m = get(env.server, env.key, f"/messages/{first}").json()
    assert m["inputs"] == {"query": "What is the capital of France?"}
    assert m["prompt"][-1]["content"] == "Answer briefly: What is the capital of France?"
    assert m["answer"] == "Echo: Answer briefly: What is the capital of France?"
    assert m["attempts"] and m["attempts"][0]["model"] == "echo" and m["attempts"][0]["status"] == "ok"
    assert m["total_tokens"] > 0 and m["total_price"] != "0"
    assert [(f["rating"], f["content"]) for f in m["feedbacks"]] == [("like", "spot on")]
    scored = env.traffic.campaign_ids["alt"][0]
    m = get(env.server, env.key, f"/messages/{scored}").json()
    assert [f["metric"] for f in m["metric_feedback"]] == ["stars"]
    failed = next(x["id"] for x in env.rows if x["status"] == "error")
    m = get(env.server, env.key, f"/messages/{failed}").json()
    assert m["error_code"] and m["attempts"][0]["status"] != "ok"
    assert_admin_error(get(env.server, env.key, "/messages/nope"), 404, "not_found")


def test_sessions_list_and_turns_in_order(env: Env) -> None:
    listed = get(env.server, env.key, "/sessions", project="support").json()["data"]
    assert [(s["session_id"], s["turns"], s["user"]) for s in listed] == [(env.traffic.session, 3, ALICE)]
    every = get(env.server, env.key, "/sessions", limit=500).json()["data"]
    assert {s["session_id"] for s in every} == {x["session_id"] for x in env.rows if x["session_id"]}
    body = get(env.server, env.key, f"/sessions/{env.traffic.session}").json()
    assert body["project"] == "support"
    turns = body["turns"]
    assert [t["input"] for t in turns] == ["Hi, I need help", "My order is late", "Thanks!"]
    assert [t["created_at"] for t in turns] == sorted(t["created_at"] for t in turns)
    assert all(t["answer"] for t in turns)
    assert_admin_error(get(env.server, env.key, f"/sessions/{uuid.uuid4()}"), 404, "not_found")


def test_campaign_results_intervals_significance_and_series(env: Env) -> None:
    r = get(env.server, env.key, "/projects/demo/campaigns/echo-vs-alt")
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["id"] == campaign_uuid("demo", "echo-vs-alt") and res["metric"] == "stars"
    by_model = {m["model"]: m for m in res["models"]}
    sent = env.traffic.campaign_ids
    assert {m: by_model[m]["requests"] for m in by_model} == {m: len(sent.get(m, [])) for m in ("echo", "alt")}
    assert by_model["alt"]["feedback_count"] == len(sent["alt"])
    alt, echo = by_model["alt"], by_model["echo"]
    assert 4 <= alt["metric_mean"] <= 5 and 1 <= echo["metric_mean"] <= 2
    assert alt["metric_ci95"][0] < alt["metric_mean"] < alt["metric_ci95"][1]
    assert res["leader"] == "alt" and res["significant"] is True and res["comparisons"][0]["p_value"] < 0.01
    series = res["series"]
    assert set(series["models"]) == {"echo", "alt"}
    for model, points in series["models"].items():
        assert points[-1]["n"] == len(sent[model])  # the running count ends at every value
        assert points[-1]["mean"] == pytest.approx(by_model[model]["metric_mean"])
    listed = get(env.server, env.key, "/campaigns").json()["data"]
    assert [(c["project"], c["key"]) for c in listed] == [("demo", "echo-vs-alt")]
    assert_admin_error(get(env.server, env.key, "/projects/demo/campaigns/nope"), 404, "not_found")
    assert_admin_error(get(env.server, env.key, "/projects/nope/campaigns/echo-vs-alt"), 404, "not_found")


def test_usage_comes_from_the_daily_rollups_with_exact_costs(env: Env) -> None:
    r = get(env.server, env.key, "/usage")
    assert r.status_code == 200, r.text
    body = r.json()
    rows = env.rows
    totals = body["totals"]
    assert totals["requests"] == len(rows)
    assert totals["errors"] == sum(x["status"] == "error" for x in rows)
    assert totals["prompt_tokens"] == sum(x["prompt_tokens"] for x in rows)
    assert totals["completion_tokens"] == sum(x["completion_tokens"] for x in rows)
    exact = sum((Decimal(x["total_price"]) for x in rows), Decimal(0))
    assert Decimal(totals["cost"]["USD"]) == exact
    assert {(u["project"], u["model"]) for u in body["data"]} == {(x["project"], x["model"]) for x in rows}
    support = get(env.server, env.key, "/usage", project="support").json()
    assert support["totals"]["requests"] == sum(x["project"] == "support" for x in rows)
    key_id = rows[0]["key_id"]
    by_key = get(env.server, env.key, "/usage", key_id=key_id).json()
    assert by_key["totals"]["requests"] == sum(x["key_id"] == key_id for x in rows)
    assert get(env.server, env.key, "/usage", since="2001-01-01", until="2001-01-31").json()["data"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [({"since": "yesterday"}, "since"), ({"since": "2026-02-01", "until": "2026-01-01"}, "since"),
     ({"since": "2020-01-01", "until": "2026-01-01"}, "since"), ({"until": "2026-13-01"}, "until")],
)  # fmt: skip
def test_bad_usage_ranges_are_400_naming_the_parameter(env: Env, params: dict[str, str], param: str) -> None:
    assert_admin_error(get(env.server, env.key, "/usage", **params), 400, "invalid_param", param)
    assert_admin_error(get(env.server, env.key, "/usage", project="nope"), 404, "not_found")


def test_projects_show_the_catalog_without_secrets(env: Env) -> None:
    listed = get(env.server, env.key, "/projects").json()["data"]
    assert [p["project"] for p in listed] == ["demo", "support"]
    demo = get(env.server, env.key, "/projects/demo").json()
    assert demo["config"]["prompt"] == "Answer briefly: {{query}}"
    assert demo["config"]["inputs"][0]["variable"] == "query"
    assert "get_weather" in demo["config"]["tools"]
    assert [m["name"] for m in demo["models"]] == ["echo", "alt", "broken"]
    assert demo["models"][0]["price"] == {"input": "0.15", "output": "0.60", "unit": "1M", "currency": "USD"}
    assert demo["models"][0]["deployments"] == [{"provider": "fake", "kind": "fake", "model": "echo", "weight": 1.0}]
    assert demo["campaigns"][0]["key"] == "echo-vs-alt"
    assert_admin_error(get(env.server, env.key, "/projects/nope"), 404, "not_found")


def test_keys_create_use_copy_once_and_revoke(env: Env) -> None:
    s = env.server
    r = httpx.post(
        f"{s.url}/admin/v1/keys", json={"project": "demo", "name": "ci", "rpm": 100}, headers=s.headers(env.key)
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith("app-") and made["state"] == "active" and made["limits"] == {"rpm": 100}
    body = {"inputs": {"query": "hi"}, "user": "k", "response_mode": "blocking"}
    assert httpx.post(f"{s.v1}/completion-messages", json=body, headers=s.headers(made["key"])).status_code == 200
    listed = get(s, env.key, "/keys", project="demo").json()["data"]
    mine = next(k for k in listed if k["id"] == made["id"])
    assert "key" not in mine and mine["prefix"] == made["key"][:12] and mine["name"] == "ci"
    r = httpx.delete(f"{s.url}/admin/v1/keys/{made['id']}", headers=s.headers(env.key))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    refused = httpx.post(f"{s.v1}/completion-messages", json=body, headers=s.headers(made["key"]))
    assert refused.status_code == 401  # at once: the admin API clears this process's key cache
    again = httpx.delete(f"{s.url}/admin/v1/keys/{made['id']}", headers=s.headers(env.key))
    assert again.json()["revoked_at"] == r.json()["revoked_at"]
    assert_admin_error(httpx.delete(f"{s.url}/admin/v1/keys/nope", headers=s.headers(env.key)), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"project": "nope"}, 404, "not_found", None),
        ({"name": "no project"}, 400, "invalid_param", None),
        ({"project": "demo", "expires_in": -5}, 400, "invalid_param", "expires_in"),
        ({"project": "demo", "rpm": 0}, 400, "invalid_param", "rpm"),
        ({"project": "demo", "cost_per_day": "lots"}, 400, "invalid_param", "cost_per_day"),
        ({"project": "demo", "cost_per_month": "0"}, 400, "invalid_param", "cost_per_month"),  # as the CLI
        ({"project": "demo", "surprise": 1}, 400, "invalid_param", None),
    ],
)
def test_bad_key_requests_are_client_errors(
    env: Env, body: dict[str, Any], status: int, code: str, param: str | None
) -> None:
    r = httpx.post(f"{env.server.url}/admin/v1/keys", json=body, headers=env.server.headers(env.key))
    assert_admin_error(r, status, code, param)


def test_a_body_that_is_not_json_is_a_400(env: Env) -> None:
    r = httpx.post(f"{env.server.url}/admin/v1/keys", content=b"{nope", headers=env.server.headers(env.key))
    assert_admin_error(r, 400, "bad_request")


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/messages", {"status": "bogus"}, "status"),
        ("/messages", {"start": "yesterday"}, "start"),
        ("/messages", {"start": "2026-01-02T00:00:00", "end": "2026-01-01T00:00:00"}, "end"),
        ("/messages", {"limit": "0"}, "limit"),
        ("/messages", {"limit": "many"}, "limit"),
        ("/messages", {"cursor": "zzz"}, "cursor"),
        ("/messages", {"label": "no-colon"}, "label"),
        ("/messages", {"start": "nan"}, "start"),
        ("/overview", {"range": "year"}, "range"),
        ("/overview", {"start": "0", "end": "86400000", "bucket": "60"}, "bucket"),
        ("/overview", {"bucket": "-1"}, "bucket"),
        ("/sessions", {"limit": "100000"}, "limit"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(env: Env, path: str, params: dict[str, str], param: str) -> None:
    assert_admin_error(get(env.server, env.key, path, **params), 400, "invalid_param", param)


def test_unknown_routes_and_methods_use_the_error_shape(env: Env) -> None:
    assert_admin_error(get(env.server, env.key, "/nothing-here"), 404, "not_found")
    r = httpx.put(f"{env.server.url}/admin/v1/keys", headers=env.server.headers(env.key))
    assert_admin_error(r, 405, "method_not_allowed")


def test_sessions_default_to_the_last_30_days_and_old_ones_stay_reachable(tmp_path: Path) -> None:
    """Imported interactions (the chat API's /interactions) carry their own time: one 60 days old, one now."""
    with serve_app(CATALOG, tmp_path / "data") as s:
        key = admin_key(s)
        old, new = str(uuid.uuid4()), str(uuid.uuid4())
        when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for session, created in ((old, when), (new, None)):
            body: dict[str, Any] = {
                "project": "demo",
                "messages": [{"role": "user", "content": "imported"}],
                "completion": "an answer",
                "session_id": session,
            }
            if created:
                body["created_at"] = created
            r = httpx.post(f"{s.url}/api/v1/interactions", json=body, headers=s.headers())
            assert r.status_code == 201, r.text
        recent = get(s, key, "/sessions").json()["data"]
        assert [x["session_id"] for x in recent] == [new]
        every = get(s, key, "/sessions", start=0).json()["data"]
        assert [x["session_id"] for x in every] == [new, old]
        assert [t["input"] for t in get(s, key, f"/sessions/{old}").json()["turns"]] == ["imported"]
        assert get(s, key, "/overview", range="week").json()["totals"]["requests"] == 1
        assert {m["face"] for m in get(s, key, "/messages", face="import").json()["data"]} == {"import"}
