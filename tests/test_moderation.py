"""Moderation (Dify's sensitive_word_avoidance) through a running server, on SQLite and PostgreSQL: keywords,
an OpenAI-compatible /moderations endpoint, and Dify's moderation API extension, each a real HTTP server."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from promptd.catalog.load import parse_catalog
from promptd.catalog.schema import OpenAIProviderConfig
from promptd.errors import CatalogError
from promptd.providers.openai_compat import OpenAICompatProvider
from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, complete, stored_message, stream
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app, serve_in_thread

PRESET_IN = "Sorry, I cannot answer that."
PRESET_OUT = "[answer withheld]"


def catalog(moderation: dict[str, Any], **providers: Any) -> dict[str, Any]:
    cat: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
    cat["projects"]["demo"]["moderation"] = moderation
    cat["providers"].update(providers)
    return cat


KEYWORDS = {
    "type": "keywords",
    "keywords": ["Forbidden", "secret plan"],
    "inputs": {"enabled": True, "preset_response": PRESET_IN},
    "outputs": {"enabled": True, "preset_response": PRESET_OUT},
}


@dataclass
class Checker:
    """A moderation service (OpenAI's /moderations and a Dify API extension in one app) that flags any text
    containing "bad" and, as an API extension asked to override, replaces "bad" by "good"."""

    action: str = "direct_output"
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/moderations", self.openai, methods=["POST"]),
                Route("/extension", self.extension, methods=["POST"]),
            ]
        )

    async def openai(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.status != 200:
            return JSONResponse({"error": {"message": "down"}}, status_code=self.status)
        flagged = "bad" in body["input"]
        return JSONResponse(
            {"id": "modr-1", "model": body["model"], "results": [{"flagged": flagged, "categories": {"hate": flagged}}]}
        )

    async def extension(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        if self.status != 200:
            return JSONResponse({"error": "down"}, status_code=self.status)
        params = body["params"]
        if body["point"] == "app.moderation.input":
            text = " ".join([*map(str, params["inputs"].values()), params["query"]])
            reply: dict[str, Any] = {"flagged": "bad" in text, "action": self.action, "preset_response": "ext says no"}
            reply["inputs"] = {k: str(v).replace("bad", "good") for k, v in params["inputs"].items()}
            reply["query"] = params["query"].replace("bad", "good")
        else:
            reply = {"flagged": "bad" in params["text"], "action": self.action, "preset_response": "ext output no"}
            reply["text"] = params["text"].replace("bad", "good")
        return JSONResponse(reply)


@pytest.fixture
def checker() -> Iterator[Checker]:
    service = Checker()
    with serve_in_thread(service.app()) as url:
        service.url = url
        yield service


def serve(
    tmp_path: Path,
    database_url: str,
    moderation: dict[str, Any],
    reply: str | None = None,
    checker: Checker | None = None,
) -> Any:
    model = RecordingProvider(reply=reply)  # stands for the app's model: a test sees whether it was called
    providers: dict[str, Any] = {"fake": model}
    extra: dict[str, Any] = {}
    if checker is not None:
        extra["mod"] = {"kind": "openai", "base_url": checker.url + "/v1", "api_key": "sk-mod"}
        providers["mod"] = OpenAICompatProvider("mod", OpenAIProviderConfig(**extra["mod"]))
    return model, serve_app(
        catalog(moderation, **extra), tmp_path / "data", providers=providers, database_url=database_url
    )


def ask(server: RunningServer, query: str) -> httpx.Response:
    return complete(server, {"inputs": {"query": query}, "user": "alice", "response_mode": "blocking"})


def test_keywords_answer_flagged_input_with_the_preset_response_without_calling_the_model(
    tmp_path: Path, database_url: str
) -> None:
    model, serving = serve(tmp_path, database_url, KEYWORDS)
    with serving as server:
        r = ask(server, "tell me the SECRET PLAN")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"] == PRESET_IN
        assert body["metadata"]["usage"]["total_tokens"] == 0
        assert model.calls == []
        row = stored_message(server, body["message_id"])
        assert row["answer"] == PRESET_IN
        assert row["moderation"] == {"input": {"type": "keywords", "flagged": True, "action": "direct_output"}}
        events = stream(server, {"inputs": {"query": "forbidden words"}, "user": "alice"})
        assert [e["event"] for e in events if isinstance(e, dict)] == ["message", "message_end"]
        assert events[0]["answer"] == PRESET_IN  # type: ignore[index]
        assert model.calls == []
        metrics = httpx.get(server.url + "/metrics").text
        assert 'promptd_moderation_total{outcome="flagged",project="demo",stage="input",type="keywords"} 2' in metrics


def test_keywords_replace_a_flagged_answer_blocking_and_with_message_replace_in_streams(
    tmp_path: Path, database_url: str
) -> None:
    model, serving = serve(tmp_path, database_url, KEYWORDS, reply="here is the secret plan in full")
    with serving as server:
        r = ask(server, "what is the plan?")
        assert r.status_code == 200, r.text
        assert r.json()["answer"] == PRESET_OUT
        assert len(model.calls) == 1
        row = stored_message(server, r.json()["message_id"])
        assert row["answer"] == PRESET_OUT  # the record keeps what the client was given, as Dify does
        assert row["moderation"] == {
            "input": {"type": "keywords", "flagged": False},
            "output": {"type": "keywords", "flagged": True, "action": "direct_output"},
        }
        events = [e for e in stream(server, {"inputs": {"query": "the plan?"}, "user": "alice"}) if isinstance(e, dict)]
        kinds = [e["event"] for e in events]
        assert kinds[-2:] == ["message_replace", "message_end"]
        assert set(kinds[:-2]) == {"message"}
        replace = events[-2]
        assert replace["answer"] == PRESET_OUT and replace["reason"] == "output_moderation"
        assert replace["message_id"] == events[-1]["message_id"] and replace["task_id"] == events[-1]["task_id"]


def test_chat_streams_send_an_answer_only_once_output_moderation_checked_it(tmp_path: Path, database_url: str) -> None:
    """An OpenAI-style stream cannot take a chunk back (Dify's face has message_replace): with output moderation,
    the chat API sends the text once checked, and a replaced answer ends with finish_reason content_filter."""
    _, serving = serve(tmp_path, database_url, KEYWORDS, reply="here is the secret plan in full")
    with serving as server:
        client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
        ask_chat = {"model": "demo", "messages": [{"role": "user", "content": "the plan?"}]}
        chunks = list(client.chat.completions.create(**ask_chat, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == PRESET_OUT  # never a word of the flagged answer
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
        blocking = client.chat.completions.create(**ask_chat)
        assert blocking.choices[0].message.content == PRESET_OUT
        assert blocking.choices[0].finish_reason == "content_filter"
    _, serving = serve(tmp_path / "passes", database_url, KEYWORDS, reply="all fine here")
    with serving as server:
        client = OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
        chunks = list(client.chat.completions.create(**ask_chat, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "all fine here"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_an_answer_that_passes_is_untouched(tmp_path: Path, database_url: str) -> None:
    _, serving = serve(tmp_path, database_url, KEYWORDS, reply="all fine here")
    with serving as server:
        r = ask(server, "hello")
        assert r.json()["answer"] == "all fine here"
        events = [e for e in stream(server, {"inputs": {"query": "hello"}, "user": "alice"}) if isinstance(e, dict)]
        assert "message_replace" not in [e["event"] for e in events]


def test_parameters_report_sensitive_word_avoidance_as_dify_does(tmp_path: Path, database_url: str) -> None:
    _, serving = serve(tmp_path, database_url, KEYWORDS)
    with serving as server:
        params = httpx.get(server.v1 + "/parameters", headers=server.headers()).json()
    assert params["sensitive_word_avoidance"] == {
        "enabled": True,
        "type": "keywords",
        "config": {
            "keywords": "Forbidden\nsecret plan",
            "inputs_config": {"enabled": True, "preset_response": PRESET_IN},
            "outputs_config": {"enabled": True, "preset_response": PRESET_OUT},
        },
    }


def test_parameters_say_disabled_without_moderation(fake_server: RunningServer) -> None:
    params = httpx.get(fake_server.v1 + "/parameters", headers=fake_server.headers()).json()
    assert params["sensitive_word_avoidance"] == {
        "enabled": False,
        "type": "",
        "configs": [],
    }  # Dify's default, as it is


OPENAI = {
    "type": "openai_moderation",
    "provider": "mod",
    "inputs": {"enabled": True, "preset_response": PRESET_IN},
    "outputs": {"enabled": True, "preset_response": PRESET_OUT},
}


def test_openai_moderation_calls_the_providers_moderations_endpoint(
    tmp_path: Path, database_url: str, checker: Checker
) -> None:
    model, serving = serve(tmp_path, database_url, OPENAI, reply="a bad answer", checker=checker)
    with serving as server:
        flagged = ask(server, "something bad")
        assert flagged.json()["answer"] == PRESET_IN and model.calls == []
        sent = checker.requests[0]
        assert sent["headers"]["authorization"] == "Bearer sk-mod"
        assert sent["body"] == {"model": "omni-moderation-latest", "input": "something bad"}
        replaced = ask(server, "something nice")
        assert replaced.json()["answer"] == PRESET_OUT and len(model.calls) == 1
        assert checker.requests[-1]["body"]["input"] == "a bad answer"
        row = stored_message(server, flagged.json()["message_id"])
        assert row["moderation"]["input"] == {
            "type": "openai_moderation",
            "flagged": True,
            "action": "direct_output",
            "categories": ["hate"],
        }


def test_a_failing_moderation_service_is_a_503_never_a_pass(
    tmp_path: Path, database_url: str, checker: Checker
) -> None:
    checker.status = 500
    model, serving = serve(tmp_path, database_url, OPENAI, checker=checker)
    with serving as server:
        r = ask(server, "anything")
        assert_dify_error(r, 503, "moderation_unavailable")
        assert model.calls == []
        metrics = httpx.get(server.url + "/metrics").text
        assert 'promptd_moderation_total{outcome="error",project="demo",stage="input",type="openai_moderation"} 1' in (
            metrics
        )


def test_a_failing_output_check_withholds_the_answer(tmp_path: Path, database_url: str, checker: Checker) -> None:
    only_output = {**OPENAI, "inputs": {"enabled": False}}
    model, serving = serve(tmp_path, database_url, only_output, reply="some answer", checker=checker)
    with serving as server:
        checker.status = 503
        r = ask(server, "hello")
        assert_dify_error(r, 503, "moderation_unavailable")
        assert len(model.calls) == 1
        events = [e for e in stream(server, {"inputs": {"query": "hi"}, "user": "alice"}) if isinstance(e, dict)]
        assert events[-1]["event"] == "error" and events[-1]["status"] == 503
        assert events[-1]["code"] == "moderation_unavailable"


def api_config(checker: Checker, **over: Any) -> dict[str, Any]:
    return {
        "type": "api",
        "api": {"url": checker.url + "/extension", "api_key": "ext-key"},
        "inputs": {"enabled": True},
        "outputs": {"enabled": True},
        **over,
    }


def test_api_extension_direct_output_uses_its_preset_response(
    tmp_path: Path, database_url: str, checker: Checker
) -> None:
    model, serving = serve(tmp_path, database_url, api_config(checker), checker=checker)
    with serving as server:
        r = ask(server, "a bad question")
        assert r.json()["answer"] == "ext says no" and model.calls == []
        sent = checker.requests[0]
        assert sent["headers"]["authorization"] == "Bearer ext-key"
        assert sent["body"] == {
            "point": "app.moderation.input",
            "params": {"app_id": "demo", "inputs": {"query": "a bad question"}, "query": ""},
        }
        params = httpx.get(server.v1 + "/parameters", headers=server.headers()).json()["sensitive_word_avoidance"]
        assert params["type"] == "api" and params["enabled"] is True
        assert "ext-key" not in str(params) and isinstance(params["config"]["api_based_extension_id"], str)


def test_api_extension_overrides_inputs_and_answer(tmp_path: Path, database_url: str, checker: Checker) -> None:
    checker.action = "overridden"
    model, serving = serve(tmp_path, database_url, api_config(checker), reply="a bad answer", checker=checker)
    with serving as server:
        r = ask(server, "a bad question")
        assert r.status_code == 200, r.text
        assert r.json()["answer"] == "a good answer"
        prompt = model.calls[0].messages[-1].content
        assert prompt == "Answer briefly: a good question"  # the model saw the overridden input
        assert checker.requests[-1]["body"] == {
            "point": "app.moderation.output",
            "params": {"app_id": "demo", "text": "a bad answer"},
        }
        events = [e for e in stream(server, {"inputs": {"query": "fine"}, "user": "alice"}) if isinstance(e, dict)]
        assert events[-2] == {**events[-2], "event": "message_replace", "answer": "a good answer"}


def test_catalog_checks_moderation() -> None:
    def problems(moderation: dict[str, Any]) -> str:
        with pytest.raises(CatalogError) as info:
            parse_catalog(catalog(moderation), {}, source="<test>")
        return "\n".join(info.value.problems)

    assert "preset_response" in problems({"type": "keywords", "keywords": ["x"], "inputs": {"enabled": True}})
    assert "keywords" in problems({"type": "keywords", "inputs": {"enabled": True, "preset_response": "no"}})
    assert "enable" in problems({"type": "keywords", "keywords": ["x"]})
    assert "no provider named 'nope'" in problems({**OPENAI, "provider": "nope"})
    assert "api" in problems({"type": "api", "inputs": {"enabled": True}})
