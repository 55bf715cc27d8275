"""The management API's rejected requests (refused before any model call: they leave no record) and spend per
key, per end user and each key's remaining budget, over real HTTP on real SQLite and PostgreSQL databases.

The fake provider stands in for a real model (exact answers and token counts, so exact costs)."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FAKE_CATALOG
from tests.console.helpers import admin_key, get
from tests.serving import RunningServer, serve_app

CATALOG: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
CATALOG["projects"]["support"] = {"mode": "chat", "models": ["echo"], "system_prompt_template": "Help {{ name }}."}
DIFY = {"inputs": {"query": "What is 2 + 2?"}, "user": "ann", "response_mode": "blocking"}


def make_key(s: RunningServer, admin: str, project: str, **limits: Any) -> dict[str, Any]:
    r = httpx.post(f"{s.url}/admin/v1/keys", json={"project": project, **limits}, headers=s.headers(admin))
    assert r.status_code == 201, r.text
    return dict(r.json())


def refuse_some(s: RunningServer, limited: str) -> None:
    """Requests refused before any model call, on both faces: 2 allowed then 1 rate-limited (429) on a key
    allowing 2 a minute, 2 with a wrong key (401: no project known), 1 Dify body without `user` (400), and 1
    chat request for a model the project does not have (404)."""
    with httpx.Client(base_url=s.url, timeout=30) as c:
        codes = [c.post("/v1/completion-messages", json=DIFY, headers=s.headers(limited)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        for _ in range(2):
            wrong = c.post("/v1/completion-messages", json=DIFY, headers=s.headers("app-" + "x" * 40))
            assert wrong.status_code == 401
        no_user = c.post("/v1/completion-messages", json={"inputs": {"query": "q"}}, headers=s.headers())
        assert no_user.status_code == 400, no_user.text
        chat = {"model": "demo/nope", "messages": [{"role": "user", "content": "hi"}]}
        assert c.post("/api/v1/chat/completions", json=chat, headers=s.headers()).status_code == 404


def expected(limited_id: str, default_id: str) -> list[dict[str, Any]]:
    """What refuse_some leaves, as GET /admin/v1/rejections lists it: most first (ties in column order, which
    depends on the random key ids: `rejections` sorts them the test's way)."""
    return [
        {"project": None, "key_id": None, "face": "dify", "status": 401, "code": "unauthorized", "requests": 2},
        {
            "project": "demo",
            "key_id": default_id,
            "face": "dify",
            "status": 400,
            "code": "invalid_param",
            "requests": 1,
        },
        {
            "project": "demo",
            "key_id": default_id,
            "face": "chat",
            "status": 404,
            "code": "model_not_found",
            "requests": 1,
        },
        {
            "project": "demo",
            "key_id": limited_id,
            "face": "dify",
            "status": 429,
            "code": "rate_limit_exceeded",
            "requests": 1,
        },
    ]


def rejections(s: RunningServer, admin: str, **params: Any) -> list[dict[str, Any]]:
    r = get(s, admin, "/rejections", **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == sum(g["requests"] for g in body["data"])
    counts = [g["requests"] for g in body["data"]]
    assert counts == sorted(counts, reverse=True)
    for g in body["data"]:
        assert isinstance(g.pop("last_at"), float)
    return sorted(body["data"], key=lambda g: (-g["requests"], g["status"]))


def default_key_id(s: RunningServer, admin: str) -> str:
    keys = get(s, admin, "/keys", project="demo").json()["data"]
    return str(next(k["id"] for k in keys if k["name"] == ""))


def test_rejected_requests_are_counted_shown_in_the_overview_and_survive_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    with serve_app(CATALOG, tmp_path / "data", database_url=database_url) as s:
        admin = admin_key(s)
        limited = make_key(s, admin, "demo", rpm=2)
        refuse_some(s, limited["key"])
        default_id = default_key_id(s, admin)
        want = expected(limited["id"], default_id)
        assert rejections(s, admin) == want
        overview = get(s, admin, "/overview", range="hour").json()
        assert overview["totals"]["requests"] == 2 and overview["totals"]["errors"] == 0  # the records
        assert overview["totals"]["rejected"] == 5 == sum(b["rejected"] for b in overview["series"])
        by_group = {(g["project"], g["status"], g["code"]): g["requests"] for g in overview["rejections"]}
        assert by_group == {
            (None, 401, "unauthorized"): 2,
            ("demo", 404, "model_not_found"): 1,
            ("demo", 400, "invalid_param"): 1,
            ("demo", 429, "rate_limit_exceeded"): 1,
        }
        demo = get(s, admin, "/overview", range="hour", project="demo").json()
        assert demo["totals"]["rejected"] == 3  # the 401s named no project
        assert rejections(s, admin, project="demo", key_id=limited["id"]) == want[3:]
        assert rejections(s, admin, project="support") == []
        # the management API's own mistakes, the console and health checks are not the traffic's: not counted
        assert get(s, admin, "/projects/nope").status_code == 404
        assert httpx.get(f"{s.url}/admin/v1/me").status_code == 401
        assert httpx.get(f"{s.url}/console/nothing").status_code == 404
    with serve_app(CATALOG, tmp_path / "data", database_url=database_url) as s:  # a restart: the counts stay
        assert rejections(s, admin) == want


def test_replicas_on_one_database_add_their_counts(tmp_path: Path, database_url: str) -> None:
    """Two servers (as two replicas, or two workers) on the same database: each counts its own refusals into
    the same rows, and either reports the sum."""
    with (
        serve_app(CATALOG, tmp_path / "one", database_url=database_url) as a,
        serve_app(CATALOG, tmp_path / "two", database_url=database_url) as b,
    ):
        admin = admin_key(a)
        for server, n in ((a, 3), (b, 4)):
            for _ in range(n):
                r = httpx.post(f"{server.v1}/completion-messages", json=DIFY, headers=server.headers("app-nope"))
                assert r.status_code == 401
        for server in (a, b):
            get(server, admin, "/rejections")  # drains this server's recorder
        for server in (a, b):
            assert [(g["code"], g["requests"]) for g in rejections(server, admin)] == [("unauthorized", 7)]


def test_bad_rejection_and_user_queries_are_400_naming_the_parameter(tmp_path: Path) -> None:
    with serve_app(CATALOG, tmp_path / "data") as s:
        admin = admin_key(s)
        for path in ("/rejections", "/users"):
            for params, param in (({"range": "year"}, "range"), ({"limit": "0"}, "limit"), ({"start": "x"}, "start")):
                r = get(s, admin, path, **params)
                assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
            r = get(s, admin, path, project="nope")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_keys_show_their_spend_and_remaining_budget_and_users_their_spend(tmp_path: Path, database_url: str) -> None:
    with serve_app(CATALOG, tmp_path / "data", database_url=database_url) as s:
        admin = admin_key(s)
        budgeted = make_key(s, admin, "demo", name="budgeted", cost_per_day="0.001", cost_per_month="0.5")
        chat_key = make_key(s, admin, "support", name="chat")
        with httpx.Client(base_url=s.url, timeout=30) as c:
            for user, query in (("ann", "short"), ("bob", "a somewhat longer question"), ("ann", "again")):
                body = {"inputs": {"query": query}, "user": user, "response_mode": "blocking"}
                r = c.post("/v1/completion-messages", json=body, headers=s.headers(budgeted["key"]))
                assert r.status_code == 200, r.text
            chat = {
                "model": "support",
                "messages": [{"role": "user", "content": "hello"}],
                "system_prompt_args": {"name": "Cy"},
                "user": "c0000000-0000-4000-8000-000000000003",
            }
            assert c.post("/api/v1/chat/completions", json=chat, headers=s.headers(chat_key["key"])).status_code == 200
        keys = {k["id"]: k for k in get(s, admin, "/keys").json()["data"]}  # drains the recorder first
        records = [
            r
            for project in ("demo", "support")
            for r in s.repo_call(lambda repo, p=project: repo.list_messages(p, limit=100))
        ]
        assert len(records) == 4

        def spent(**match: Any) -> Decimal:
            return sum(
                (Decimal(r["total_price"]) for r in records if all(r[k] == v for k, v in match.items())), Decimal(0)
            )

        mine = keys[budgeted["id"]]
        day_spent = spent(key_id=budgeted["id"])
        assert day_spent > 0
        for window in ("day", "month"):
            assert mine["spend"][window]["requests"] == 3
            assert Decimal(mine["spend"][window]["cost"]["USD"]) == day_spent
            assert mine["spend"][window]["tokens"] == sum(
                r["total_tokens"] for r in records if r["key_id"] == budgeted["id"]
            )
        now = dt.datetime.now(dt.UTC)
        assert mine["budget"]["cost_per_day"]["window"] == now.strftime("%Y-%m-%d")
        assert mine["budget"]["cost_per_month"]["window"] == now.strftime("%Y-%m")
        assert Decimal(mine["budget"]["cost_per_day"]["spent"]) == day_spent
        assert Decimal(mine["budget"]["cost_per_day"]["remaining"]) == Decimal("0.001") - day_spent
        assert Decimal(mine["budget"]["cost_per_month"]["remaining"]) == Decimal("0.5") - day_spent
        tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert abs(mine["budget"]["cost_per_day"]["resets_at"] - tomorrow.timestamp()) <= 1
        assert keys[chat_key["id"]]["budget"] == {}  # no budget: nothing remains to show
        assert keys[chat_key["id"]]["spend"]["day"]["requests"] == 1
        demo_keys = get(s, admin, "/keys", project="demo").json()["data"]
        assert {k["project"] for k in demo_keys} == {"demo"}

        users = get(s, admin, "/users").json()["data"]
        got = {(u["project"], u["user"]): (u["requests"], Decimal(str(u["cost"]["USD"]))) for u in users}
        want = {
            ("demo", "ann"): (2, spent(project="demo", user="ann")),
            ("demo", "bob"): (1, spent(project="demo", user="bob")),
            ("support", chat["user"]): (1, spent(project="support")),
        }
        assert set(got) == set(want)
        for who, (n, cost) in want.items():
            assert got[who][0] == n and abs(got[who][1] - cost) < Decimal("1e-12")
        costs = [sum(u["cost"].values()) for u in users]
        assert costs == sorted(costs, reverse=True)  # the dearest first
        only = get(s, admin, "/users", project="support", range="month").json()["data"]
        assert [(u["project"], u["user"]) for u in only] == [("support", chat["user"])]
