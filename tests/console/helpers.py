"""Helpers for the console's tests: a catalog with two projects, a campaign and a failing model; an admin key;
real traffic through both faces; the management API's error-shape check."""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import FAKE_CATALOG
from tests.serving import RunningServer

ALICE = "a11ce000-0000-4000-8000-000000000001"  # the chat API's users are UUIDs
BOB = "b0b00000-0000-4000-8000-000000000002"

__all__ = [
    "ALICE",
    "BOB",
    "CATALOG",
    "Traffic",
    "admin_key",
    "assert_admin_error",
    "get",
    "make_traffic",
    "nearest_rank",
]

#: On the deterministic fake provider (it stands in for a real model: the tests assert exact counts and text).
CATALOG: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
CATALOG["providers"]["down"] = {"kind": "fake", "fail": "unavailable"}
CATALOG["models"]["alt"] = {"provider": "fake", "model": "alt", "price": {"input": "1", "output": "2", "unit": "1M"}}
CATALOG["models"]["broken"] = {"provider": "down", "model": "broken", "retry": {"attempts": 0}}
CATALOG["projects"]["demo"].update(
    models=["echo", "alt", "broken"],
    default_model="echo",
    metrics={"stars": {"kind": "scalar"}},
    campaigns={"echo-vs-alt": {"models": ["echo", "alt"], "traffic_split": 0.0, "metric": "stars"}},
    tools={"get_weather": {"description": "Weather for a city"}},
)
CATALOG["projects"]["support"] = {
    "mode": "chat",
    "name": "Support bot",
    "models": ["alt"],
    "system_prompt_template": "You help {{ name }}.",
}


def admin_key(server: RunningServer) -> str:
    async def make(repo: Any) -> str:
        key, _ = await repo.create_key("*", name="test admin", role="admin")
        return str(key)

    return str(server.repo_call(make))


def get(server: RunningServer, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/admin/v1{path}", params=params, headers=server.headers(key), timeout=60)


def assert_admin_error(resp: httpx.Response, status: int, code: str, param: str | None = None) -> str:
    """The management API's one error shape, with this status and code (and `param` for a bad parameter)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"status", "code", "message", "param"}, err
    assert err["status"] == status and err["code"] == code and isinstance(err["message"], str) and err["message"]
    assert err["param"] == param, err
    return str(err["message"])


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


@dataclass
class Traffic:
    """What make_traffic sent, to check against what the management API reports."""

    dify_ids: list[str] = field(default_factory=list)
    chat_ids: list[str] = field(default_factory=list)
    error_count: int = 0
    session: str = ""
    session_turns: int = 0
    campaign_ids: dict[str, list[str]] = field(default_factory=dict)  # model → completion ids

    @property
    def total(self) -> int:
        return len(self.dify_ids) + len(self.chat_ids) + self.error_count


def make_traffic(server: RunningServer, *, campaign_requests: int = 16) -> Traffic:
    """Real requests through both faces: Dify completions (blocking and streaming, with feedback), chat
    turns in a labelled, tagged session, one failing model, and a campaign whose `alt` scores higher."""
    t = Traffic(session=str(uuid.uuid4()))
    support_key = server.new_key("support")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for i, query in enumerate(["What is the capital of France?", "Name a prime number", "Say hello"]):
            body = {"inputs": {"query": query}, "user": f"dify-user-{i % 2}", "response_mode": "blocking"}
            headers = {**server.headers(), "X-Request-Id": f"console-req-{i}"}
            r = c.post("/v1/completion-messages", json=body, headers=headers)
            assert r.status_code == 200, r.text
            t.dify_ids.append(r.json()["message_id"])
        with c.stream(
            "POST",
            "/v1/completion-messages",
            json={"inputs": {"query": "stream me"}, "user": "dify-user-0", "response_mode": "streaming"},
            headers=server.headers(),
        ) as r:
            assert r.status_code == 200
            ids = {line for line in r.iter_lines() if line.startswith("data: ") and '"message_id"' in line}
            assert ids
        t.dify_ids.append(json.loads(next(iter(ids))[6:])["message_id"])
        r = c.post(
            f"/v1/messages/{t.dify_ids[0]}/feedbacks",
            json={"rating": "like", "user": "dify-user-0", "content": "spot on"},
            headers=server.headers(),
        )
        assert r.status_code == 200, r.text
        history: list[dict[str, Any]] = []
        for text in ["Hi, I need help", "My order is late", "Thanks!"]:
            history.append({"role": "user", "content": text})
            body = {
                "model": "support",
                "messages": history,
                "session_id": t.session,
                "user": ALICE,
                "labels": {"env": "prod", "channel": "web"},
                "tags": ["vip", "orders"],
                "system_prompt_args": {"name": "Alice"},
            }
            r = c.post("/api/v1/chat/completions", json=body, headers=server.headers(support_key))
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            t.chat_ids.append(choice["completion_id"])
            history.append({"role": "assistant", "content": choice["message"]["content"]})
        t.session_turns = 3
        r = c.post(
            "/api/v1/chat/completions",
            json={"model": "demo/broken", "messages": [{"role": "user", "content": "fail"}], "user": BOB},
            headers=server.headers(),
        )
        assert r.status_code >= 500, r.text
        t.error_count = 1
        for i in range(campaign_requests):
            body = {
                "model": "demo",
                "messages": [{"role": "user", "content": f"campaign question {i}"}],
                "ab_campaign": "echo-vs-alt",
                # fixed sessions: the same split every run (a random one left a model all one value, sometimes)
                "session_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"promptd-test:campaign:{i}")),
                "labels": {"env": "staging"},
            }
            r = c.post("/api/v1/chat/completions", json=body, headers=server.headers())
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            t.campaign_ids.setdefault(choice["model"], []).append(choice["completion_id"])
            t.chat_ids.append(choice["completion_id"])
            mine = len(t.campaign_ids[choice["model"]])  # each model's values alternate: never all one value
            stars = (4 if choice["model"] == "alt" else 1) + mine % 2
            fb = {"completion_id": choice["completion_id"], "metric": "stars", "value": stars}
            assert c.post("/api/v1/feedback", json=fb, headers=server.headers()).status_code == 201
    server.settle()
    deadline = time.monotonic() + 20
    while len(server.repo_call(lambda repo: repo.list_messages("demo", limit=10_000))) < t.total - 3:
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.05)
    return t
