"""POST /completion-messages and its stop endpoint, over real HTTP (reference §2.4-2.6), on the fake provider:
it stands for a model whose exact output we know ("Echo: " + the rendered prompt, one word per chunk, words
counted as tokens), so every answer, delta, token count and price below is exact."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptd.domain.ids import end_user_id
from promptd.errors import ProviderUnavailable
from promptd.types import ProviderCall, ProviderEvent, TextDelta
from tests.conftest import FAKE_CATALOG
from tests.faces.dify.helpers import assert_dify_error, message_count, stored_message
from tests.serving import RunningServer, serve_app

# the demo app's prompt is "Answer briefly: {{query}}"; the fake echoes it word by word
PROMPT = "Answer briefly: What is up"
ANSWER = "Echo: " + PROMPT
DELTAS = ["Echo:", " Answer", " briefly:", " What", " is", " up"]
# 5 prompt words at 0.15 USD per 1M tokens and 6 answer words at 0.60 per 1M, each to 7 decimals, half up
USAGE = {
    "prompt_tokens": 5,
    "prompt_unit_price": "0.15",
    "prompt_price_unit": "0.000001",
    "prompt_price": "0.0000008",  # 0.00000075 rounded half up
    "completion_tokens": 6,
    "completion_unit_price": "0.60",
    "completion_price_unit": "0.000001",
    "completion_price": "0.0000036",
    "total_tokens": 11,
    "total_price": "0.0000044",
    "currency": "USD",
}
ASK = {"inputs": {"query": "What is up"}, "user": "alice"}
HEAD = {"event", "message_id", "created_at", "task_id", "id"}  # the fields every message/message_end carries
LONG_REPLY = " ".join(f"w{i}" for i in range(1, 301))  # 300 words: long enough to be stopped part way


def with_provider(**options: Any) -> dict[str, Any]:
    """The fake catalog with options for its provider (chunk_delay_ms, first_token_ms, reply, fail)."""
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["providers"]["fake"].update(options)
    return catalog


# --- speaking HTTP --------------------------------------------------------------------------------------------------


def post(server: RunningServer, body: Any, *, key: str | None = None) -> httpx.Response:
    return httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=60)


def stop(server: RunningServer, task_id: str, body: Any, *, key: str | None = None) -> httpx.Response:
    url = f"{server.v1}/completion-messages/{task_id}/stop"
    return httpx.post(url, json=body, headers=server.headers(key), timeout=60)


def sse_blocks(response: httpx.Response) -> Iterator[dict[str, Any] | str]:
    """The raw stream, block by block: each block must be exactly `data: <json>` (yielded as the dict) or
    the bare keep-alive `event: ping` (yielded as "ping"), and blocks end with a blank line."""
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block == "event: ping":
                yield "ping"
                continue
            assert block.startswith("data: {") and "\n" not in block, f"not a Dify SSE block: {block!r}"
            yield json.loads(block[len("data: ") :])
    assert buffer == "", f"the stream ended inside a block: {buffer!r}"


def stream(server: RunningServer, body: dict[str, Any], *, key: str | None = None) -> list[dict[str, Any] | str]:
    """Every block of a streaming request, after checking it is a 200 text/event-stream."""
    body = {**body, "response_mode": "streaming"}
    with httpx.stream(
        "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=60
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(sse_blocks(r))


def data_events(blocks: list[dict[str, Any] | str]) -> list[dict[str, Any]]:
    return [b for b in blocks if isinstance(b, dict)]


class StreamReader:
    """A streaming request read in a background thread, so the test can act (stop it, …) while it runs."""

    def __init__(self, server: RunningServer, user: str, *, key: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        body = {"inputs": {"query": "go"}, "user": user, "response_mode": "streaming"}

        def run() -> None:
            try:
                with httpx.stream(
                    "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=60
                ) as r:
                    assert r.status_code == 200, r.read()
                    for block in sse_blocks(r):
                        if isinstance(block, dict):
                            self.events.append(block)
            except BaseException as exc:  # reported by finish(), in the test's thread
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.events) < n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {len(self.events)} events arrived"
            time.sleep(0.01)

    def finish(self) -> list[dict[str, Any]]:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the stream never ended"
        if self.error is not None:
            raise self.error
        return self.events


def only_message(server: RunningServer) -> dict[str, Any]:
    """The one message the app has recorded (waiting for the recorder to write it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = server.repo_call(lambda repo: repo.list_messages("demo"))
        if rows:
            assert len(rows) == 1, rows
            return rows[0]  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("no message was recorded")


# --- the blocking answer (§2.4) -------------------------------------------------------------------------------------


def test_blocking_answer_is_difys_completion_message(fake_server: RunningServer) -> None:
    before = time.time()
    started = time.perf_counter()
    r = post(fake_server, ASK)
    elapsed, after = time.perf_counter() - started, time.time()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["event", "task_id", "id", "message_id", "mode", "answer", "metadata", "created_at"]
    assert body["event"] == "message" and body["mode"] == "completion"
    assert body["answer"] == ANSWER
    assert body["id"] == body["message_id"]
    assert str(uuid.UUID(body["message_id"])) == body["message_id"]
    assert str(uuid.UUID(body["task_id"])) == body["task_id"] and body["task_id"] != body["message_id"]
    assert type(body["created_at"]) is int and int(before) <= body["created_at"] <= after
    assert list(body["metadata"]) == ["annotation_reply", "retriever_resources", "usage"]  # as Dify's
    assert body["metadata"]["annotation_reply"] is None and body["metadata"]["retriever_resources"] == []
    usage = dict(body["metadata"]["usage"])
    latency = pop_timings(usage)
    assert usage == USAGE
    assert 0 < latency <= elapsed  # seconds, measured inside the request


def pop_timings(usage: dict[str, Any]) -> float:
    """Take Dify's timings out of `usage` (seconds): latency, time_to_first_token and time_to_generate, the
    last two adding up to the first. Returns the latency."""
    latency, ttft, generate = (usage.pop(k) for k in ("latency", "time_to_first_token", "time_to_generate"))
    assert type(latency) is float and type(ttft) is float and type(generate) is float
    assert 0 < ttft <= latency and generate >= 0 and abs(ttft + generate - latency) < 1e-9
    return float(latency)


def test_prices_follow_the_catalog_price_and_unit(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["models"]["echo"]["price"] = {"input": "2.5", "output": "10", "unit": "1K", "currency": "EUR"}
    with serve_app(catalog, tmp_path) as server:
        usage = post(server, ASK).json()["metadata"]["usage"]
    pop_timings(usage)
    # 5 x 2.5 / 1000 and 6 x 10 / 1000, as decimal strings with Dify's 7 decimals
    assert usage == {
        "prompt_tokens": 5,
        "prompt_unit_price": "2.5",
        "prompt_price_unit": "0.001",
        "prompt_price": "0.0125000",
        "completion_tokens": 6,
        "completion_unit_price": "10",
        "completion_price_unit": "0.001",
        "completion_price": "0.0600000",
        "total_tokens": 11,
        "total_price": "0.0725000",
        "currency": "EUR",
    }


@pytest.mark.parametrize("response_mode", ["omitted", None, "blocking"])
def test_blocking_is_the_default_response_mode(fake_server: RunningServer, response_mode: str | None) -> None:
    body: dict[str, Any] = dict(ASK)
    if response_mode != "omitted":
        body["response_mode"] = response_mode
    r = post(fake_server, body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["event"] == "message" and r.json()["answer"] == ANSWER


# --- the streaming answer (§2.5) ------------------------------------------------------------------------------------


def test_streaming_sends_message_deltas_then_one_message_end(fake_server: RunningServer) -> None:
    blocks = stream(fake_server, ASK)
    events = data_events(blocks)
    *messages, end = events
    assert [e["event"] for e in messages] == ["message"] * len(DELTAS)
    assert [e["answer"] for e in messages] == DELTAS
    assert "".join(e["answer"] for e in messages) == ANSWER
    for e in messages:
        assert set(e) == HEAD | {"answer", "from_variable_selector"} and e["from_variable_selector"] is None
    assert end["event"] == "message_end"
    assert set(end) == HEAD | {"metadata", "files"} and end["files"] is None
    # one message: the same task, message id and creation time on every event
    assert len({(e["task_id"], e["message_id"], e["id"], e["created_at"]) for e in events}) == 1
    assert events[0]["id"] == events[0]["message_id"] and type(events[0]["created_at"]) is int
    assert end["metadata"]["annotation_reply"] is None and end["metadata"]["retriever_resources"] == []
    usage = dict(end["metadata"]["usage"])
    pop_timings(usage)
    assert usage == USAGE


def test_streaming_wire_is_data_blocks_without_a_done_sentinel(fake_server: RunningServer) -> None:
    r = httpx.post(
        fake_server.v1 + "/completion-messages",
        json={**ASK, "response_mode": "streaming"},
        headers=fake_server.headers(),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = r.text.split("\n\n")
    assert blocks[-1] == ""  # every block ends with a blank line
    assert len(blocks[:-1]) == len(DELTAS) + 1
    for block in blocks[:-1]:
        assert block.startswith("data: {") and "\n" not in block
        json.loads(block[len("data: ") :])
    assert json.loads(blocks[-2][len("data: ") :])["event"] == "message_end"
    assert "[DONE]" not in r.text


def test_streamed_answer_is_recorded_like_a_blocking_one(fake_server: RunningServer) -> None:
    events = data_events(stream(fake_server, ASK))
    row = stored_message(fake_server, events[0]["message_id"])
    assert row["answer"] == ANSWER and row["status"] == "normal" and row["task_id"] == events[0]["task_id"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_price"]) == (5, 6, "0.0000044")
    assert message_count(fake_server) == 1


def test_pings_keep_the_stream_alive_while_the_first_token_is_slow(tmp_path: Path) -> None:
    with serve_app(with_provider(first_token_ms=1500), tmp_path, ping_interval=0.2) as server:
        blocks = stream(server, ASK)
    first_data = next(i for i, b in enumerate(blocks) if isinstance(b, dict))
    assert first_data >= 1 and blocks[:first_data] == ["ping"] * first_data  # bare `event: ping` blocks
    events = data_events(blocks)
    assert "".join(e["answer"] for e in events[:-1]) == ANSWER and events[-1]["event"] == "message_end"


# --- what the request may carry -------------------------------------------------------------------------------------


def test_legacy_top_level_query_fills_the_query_variable(fake_server: RunningServer) -> None:
    r = post(fake_server, {"inputs": {}, "query": "What is up", "user": "alice"})
    assert r.status_code == 200 and r.json()["answer"] == ANSWER
    row = stored_message(fake_server, r.json()["message_id"])
    assert row["inputs"] == {"query": "What is up"} and row["query"] == "What is up"


def test_an_inputs_query_wins_over_the_legacy_query(fake_server: RunningServer) -> None:
    r = post(fake_server, {"inputs": {"query": "What is up"}, "query": "ignored", "user": "alice"})
    assert r.json()["answer"] == ANSWER


def test_legacy_query_goes_into_a_prompt_without_a_query_variable(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["prompt"] = "Translate to {{lang}}:"
    catalog["projects"]["demo"]["inputs"] = [
        {"type": "select", "variable": "lang", "options": ["French", "German"], "required": True}
    ]
    with serve_app(catalog, tmp_path) as server:
        r = post(server, {"inputs": {"lang": "French"}, "query": "good morning", "user": "u"})
        assert r.json()["answer"] == "Echo: Translate to French:\n\ngood morning"  # appended to the prompt


def test_unknown_input_keys_are_dropped(fake_server: RunningServer) -> None:
    r = post(fake_server, {"inputs": {"query": "What is up", "extra": "{{query}}", "n": 3}, "user": "alice"})
    assert r.json()["answer"] == ANSWER
    assert stored_message(fake_server, r.json()["message_id"])["inputs"] == {"query": "What is up"}


def test_unknown_body_fields_are_ignored(fake_server: RunningServer) -> None:
    r = post(fake_server, {**ASK, "retriever_from": "dev", "auto_generate_name": True, "conversation_id": "x"})
    assert r.status_code == 200 and r.json()["answer"] == ANSWER


# --- the input form (§2.4 "inputs values are validated against the app's user_input_form") --------------------------

FORM_CATALOG: dict[str, Any] = {
    **FAKE_CATALOG,
    "projects": {
        "demo": {
            "models": ["echo"],
            "prompt": "{{name}}|{{tone}}|{{n}}|{{topic}}",
            "inputs": [
                {"type": "text-input", "variable": "name", "required": True, "max_length": 5},
                {"type": "select", "variable": "tone", "options": ["formal", "casual"], "default": "casual"},
                {"type": "number", "variable": "n"},
                {"type": "paragraph", "variable": "topic"},
            ],
        }
    },
}


@pytest.fixture
def form_server(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(FORM_CATALOG, tmp_path) as server:
        yield server


@pytest.mark.parametrize(
    ("inputs", "variable", "message"),
    [
        ({}, "name", "name is required in input form"),
        ({"name": ""}, "name", "name is required in input form"),
        ({"name": None}, "name", "name is required in input form"),
        ({"name": 3}, "name", "(type 'text-input') name in input form must be a string"),
        ({"name": "Ann", "topic": ["x"]}, "topic", "(type 'paragraph') topic in input form must be a string"),
        ({"name": "Ann", "topic": 42}, "topic", "(type 'paragraph') topic in input form must be a string"),
        ({"name": "Ann", "tone": 1}, "tone", "(type 'select') tone in input form must be a string"),
        (
            {"name": "Ann", "tone": "rude"},
            "tone",
            "tone in input form must be one of the following: ['formal', 'casual']",
        ),
        ({"name": "Annabel"}, "name", "name in input form must be less than 5 characters"),
        ({"name": "Ann", "n": "many"}, "n", "n in input form must be a valid number"),
        ({"name": "Ann", "n": "1,5"}, "n", "n in input form must be a valid number"),
        ({"name": "Ann", "n": [1]}, "n", "n in input form must be a valid number"),
    ],
)
def test_bad_inputs_get_difys_message_blocking_and_streaming(
    form_server: RunningServer, inputs: dict[str, Any], variable: str, message: str
) -> None:
    body = {"inputs": inputs, "user": "u"}
    error = assert_dify_error(post(form_server, body), 400, "invalid_param", message)
    assert error["params"] == variable  # the field at fault, as Dify's dict-message 400s name it

    # streaming: the same check, before any stream exists (Dify validates inputs first): a 400 JSON answer
    streamed = post(form_server, {**body, "response_mode": "streaming"})
    assert streamed.headers["content-type"].startswith("application/json")
    assert assert_dify_error(streamed, 400, "invalid_param", message)["params"] == variable
    assert message_count(form_server) == 0  # nothing half-written


@pytest.mark.parametrize(
    ("inputs", "prompt", "stored"),
    [
        # defaults fill what is missing: the select's default, an empty paragraph, no number
        ({"name": "Ann"}, "Ann|casual||", {"name": "Ann", "tone": "casual", "n": None, "topic": ""}),
        # exactly max_length characters is allowed
        (
            {"name": "Annie", "tone": "formal"},
            "Annie|formal||",
            {"name": "Annie", "tone": "formal", "n": None, "topic": ""},
        ),
        # numbers sent as strings are parsed: an int stays an int, a decimal is a float
        ({"name": "Ann", "n": "3"}, "Ann|casual|3|", {"name": "Ann", "tone": "casual", "n": 3, "topic": ""}),
        ({"name": "Ann", "n": "2.5"}, "Ann|casual|2.5|", {"name": "Ann", "tone": "casual", "n": 2.5, "topic": ""}),
        ({"name": "Ann", "n": 7}, "Ann|casual|7|", {"name": "Ann", "tone": "casual", "n": 7, "topic": ""}),
        (
            {"name": "Ann", "topic": "cats"},
            "Ann|casual||cats",
            {"name": "Ann", "tone": "casual", "n": None, "topic": "cats"},
        ),
    ],
)
def test_good_inputs_are_cleaned_rendered_and_stored(
    form_server: RunningServer, inputs: dict[str, Any], prompt: str, stored: dict[str, Any]
) -> None:
    r = post(form_server, {"inputs": inputs, "user": "u"})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "Echo: " + prompt
    assert stored_message(form_server, r.json()["message_id"])["inputs"] == stored


def test_a_checkbox_takes_what_difys_validation_takes(tmp_path: Path) -> None:
    """Dify makes the words true/1/yes/on and false/0/no/off (any case) and the numbers 1 and 0 a checkbox's
    boolean, keeps any other value as sent, and refuses an object in its own words."""
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"].update(
        prompt="formal={{c}}", inputs=[{"type": "checkbox", "variable": "c", "required": True}]
    )
    sent: list[tuple[Any, str, Any]] = [
        (True, "true", True),
        ("true", "true", True),
        (" On ", "true", True),
        ("YES", "true", True),
        ("1", "true", True),
        (1, "true", True),
        ("off", "false", False),
        ("No", "false", False),
        ("0", "false", False),
        (0, "false", False),
        (False, "false", False),
        ("maybe", "maybe", "maybe"),
        (2, "2", 2),
    ]
    with serve_app(catalog, tmp_path) as server:
        for value, rendered, stored in sent:
            r = post(server, {"inputs": {"c": value}, "user": "u"})
            assert r.status_code == 200, (value, r.text)
            assert r.json()["answer"] == f"Echo: formal={rendered}", value
            assert stored_message(server, r.json()["message_id"])["inputs"] == {"c": stored}
        refused = post(server, {"inputs": {"c": {"checked": True}}, "user": "u"})
        assert assert_dify_error(refused, 400, "invalid_param", "Invalid input type for ['c']")["params"] == "c"


# --- malformed requests: Dify's 400s, and nothing recorded ----------------------------------------------------------

INVALID_JSON = "Invalid JSON payload received or JSON payload is empty."


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"", "bad_request", INVALID_JSON),
        (b"   ", "bad_request", INVALID_JSON),
        (b"{not json", "bad_request", INVALID_JSON),
        (b"[1, 2]", "bad_request", INVALID_JSON),
        (b'"text"', "bad_request", INVALID_JSON),
        (b"null", "bad_request", INVALID_JSON),
        # `user` is read first (as Dify's key check does), whatever else is wrong
        (b"{}", "invalid_param", "Arg user must be provided."),
        (b'{"inputs": {"query": "x"}}', "invalid_param", "Arg user must be provided."),
        (b'{"inputs": {"query": "x"}, "user": ""}', "invalid_param", "Arg user must be provided."),
        (b'{"inputs": {"query": "x"}, "user": null}', "invalid_param", "Arg user must be provided."),
        (b'{"inputs": 3}', "invalid_param", "Arg user must be provided."),
        # then the payload
        (b'{"user": "u"}', "invalid_param", "Object missing required field `inputs`"),
        (b'{"inputs": 3, "user": "u"}', "invalid_param", "Expected `object`, got `int` - at `inputs`"),
        (b'{"inputs": ["query"], "user": "u"}', "invalid_param", "Expected `object`, got `array` - at `inputs`"),
        (b'{"inputs": null, "user": "u"}', "invalid_param", "Expected `object`, got `null` - at `inputs`"),
        (b'{"inputs": {}, "query": 5, "user": "u"}', "invalid_param", "Expected `str`, got `int` - at `query`"),
        (
            b'{"inputs": {"query": "x"}, "user": "u", "response_mode": "fast"}',
            "invalid_param",
            "Invalid enum value 'fast' - at `response_mode`",
        ),
    ],
)
def test_malformed_requests_get_a_400_and_leave_no_record(
    fake_server: RunningServer, raw: bytes, code: str, message: str
) -> None:
    headers = {**fake_server.headers(), "Content-Type": "application/json"}
    r = httpx.post(fake_server.v1 + "/completion-messages", content=raw, headers=headers)
    assert_dify_error(r, 400, code, message)
    assert message_count(fake_server) == 0


def test_a_user_longer_than_the_store_keeps_is_refused_up_front(fake_server: RunningServer) -> None:
    # end users and messages keep `user` in VARCHAR(255), as Dify does: PostgreSQL would refuse the record of a
    # longer one after the client had its answer, so it is a 400 before anything runs
    too_long = post(fake_server, {**ASK, "user": "u" * 256})
    assert_dify_error(too_long, 400, "invalid_param", "Arg user must be at most 255 characters.")
    assert message_count(fake_server) == 0
    longest = post(fake_server, {**ASK, "user": "é" * 255})  # characters, not bytes
    assert longest.status_code == 200
    assert stored_message(fake_server, longest.json()["message_id"])["user"] == "é" * 255


def test_nul_characters_never_reach_the_store(fake_server: RunningServer) -> None:
    # PostgreSQL text cannot hold NUL: Dify strips it from the query (and the form from inputs), and a `user`
    # with one is refused, rather than answering and then losing the record
    r = post(fake_server, {"inputs": {"query": "What\x00 is up"}, "query": "le\x00gacy", "user": "alice"})
    assert r.json()["answer"] == ANSWER
    row = stored_message(fake_server, r.json()["message_id"])
    # the record's question is the form's `query` input (the legacy top-level one only fills an empty input)
    assert row["inputs"] == {"query": "What is up"} and row["query"] == "What is up"
    refused = post(fake_server, {**ASK, "user": "al\x00ice"})
    assert_dify_error(refused, 400, "invalid_param", "Arg user must not contain NUL characters.")
    assert message_count(fake_server) == 1


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Authorization header must be provided and start with 'Bearer'"),
        ("", "Authorization header must be provided and start with 'Bearer'"),
        ("app-nospace", "Authorization header must be provided and start with 'Bearer'"),
        ("Basic dXNlcjpwYXNz", "Authorization scheme must be 'Bearer'"),
        ("Token app-abc", "Authorization scheme must be 'Bearer'"),
        ("Bearer app-doesnotexistdoesnotexist1234", "Access token is invalid"),
        ("Bearer app-short", "Access token is invalid"),
    ],
)
@pytest.mark.parametrize("path", ["/completion-messages", "/completion-messages/some-task/stop"])
def test_bad_authorization_gets_difys_401(
    fake_server: RunningServer, path: str, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    r = httpx.post(fake_server.v1 + path, json={**ASK}, headers=headers)
    assert_dify_error(r, 401, "unauthorized", message)
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'
    assert message_count(fake_server) == 0


def test_the_bearer_scheme_is_case_insensitive(fake_server: RunningServer) -> None:
    r = httpx.post(
        fake_server.v1 + "/completion-messages", json=ASK, headers={"Authorization": f"bearer {fake_server.key}"}
    )
    assert r.status_code == 200 and r.json()["answer"] == ANSWER


def test_a_chat_app_key_cannot_use_the_completion_endpoints(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["chatty"] = {"mode": "chat", "models": ["echo"]}
    with serve_app(catalog, tmp_path) as server:
        key = server.new_key("chatty")
        unavailable = "App unavailable, please check your app configurations."
        assert_dify_error(post(server, ASK, key=key), 400, "app_unavailable", unavailable)
        assert_dify_error(stop(server, "some-task", {"user": "alice"}, key=key), 400, "app_unavailable", unavailable)
        # the user argument is still checked first
        assert_dify_error(post(server, {"inputs": {}}, key=key), 400, "invalid_param", "Arg user must be provided.")


# --- the model failing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail", "status", "code"),
    [
        ("unavailable", 400, "completion_request_error"),
        ("timeout", 400, "completion_request_error"),
        ("bad_request", 400, "completion_request_error"),
        ("rate_limited", 400, "completion_request_error"),  # Dify: no 429 for an upstream
    ],
)
def test_a_failing_model_gets_difys_error_codes(tmp_path: Path, fail: str, status: int, code: str) -> None:
    with serve_app(with_provider(fail=fail), tmp_path) as server:
        body = assert_dify_error(post(server, ASK), status, code)
        assert body["message"].startswith("fake provider: ")

        # in a stream every model invoke error is an `error` event, 400 completion_request_error (Dify's
        # _error_to_stream_response), and the HTTP status stays 200
        blocks = stream(server, ASK)
        assert len(blocks) == 1 and isinstance(blocks[0], dict)
        event = blocks[0]
        assert set(event) == {"event", "message_id", "created_at", "status", "code", "message"}
        assert (event["event"], event["status"], event["code"]) == ("error", 400, "completion_request_error")
        assert event["message"] == body["message"]

        # a failed generation is still recorded, once per request, as an error
        server.settle()
        rows = server.repo_call(lambda repo: repo.list_messages("demo"))
        assert len(rows) == 2
        assert {r["status"] for r in rows} == {"error"} and {r["answer"] for r in rows} == {""}
        assert {r["error"] for r in rows} == {body["message"]}
        assert event["message_id"] in {r["id"] for r in rows}


class FailsMidway:
    """A provider that sends two words and then loses its upstream."""

    def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        async def events() -> AsyncIterator[ProviderEvent]:
            yield TextDelta("Half")
            yield TextDelta(" an")
            raise ProviderUnavailable("upstream went away")

        return events()

    async def aclose(self) -> None:
        return None


def test_a_model_failing_mid_stream_ends_the_stream_with_an_error_event(tmp_path: Path) -> None:
    with serve_app(FAKE_CATALOG, tmp_path, providers={"fake": FailsMidway()}) as server:
        events = data_events(stream(server, ASK))
        assert [e["event"] for e in events] == ["message", "message", "error"]
        assert "".join(e["answer"] for e in events[:2]) == "Half an"
        error = events[-1]
        assert error["message_id"] == events[0]["message_id"] and error["created_at"] == events[0]["created_at"]
        assert (error["status"], error["code"], error["message"]) == (
            400,
            "completion_request_error",
            "upstream went away",
        )
        row = stored_message(server, events[0]["message_id"])
        assert row["status"] == "error" and row["answer"] == "Half an" and row["error"] == "upstream went away"

        # a blocking client saw nothing yet: it gets the error, not half an answer
        assert_dify_error(post(server, ASK), 400, "completion_request_error", "upstream went away")


# --- stop (§2.6) ----------------------------------------------------------------------------------------------------


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[RunningServer]:
    """An app whose answer is 300 words, 50 ms apart: a stream that is still running when the test acts."""
    with serve_app(with_provider(reply=LONG_REPLY, chunk_delay_ms=50), tmp_path) as server:
        yield server


def test_stop_ends_the_stream_with_message_end_and_keeps_the_partial_answer(slow_server: RunningServer) -> None:
    reader = StreamReader(slow_server, "alice")
    reader.wait_for(3)
    task_id = reader.events[0]["task_id"]
    r = stop(slow_server, task_id, {"user": "alice"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    events = reader.finish()

    *messages, end = events
    assert end["event"] == "message_end" and end["task_id"] == task_id and end["files"] is None
    assert {e["event"] for e in messages} == {"message"}
    answered = "".join(e["answer"] for e in messages)
    assert 3 <= len(messages) < 300 and LONG_REPLY.startswith(answered)  # a prefix: it stopped part way
    assert end["metadata"]["usage"]["completion_tokens"] == len(messages)

    row = stored_message(slow_server, end["message_id"])
    assert row["status"] == "stopped" and row["answer"] == answered
    assert row["finish_reason"] == "stop" and row["error"] is None  # a requested stop is not an error
    assert row["completion_tokens"] == len(messages) and row["user"] == "alice"


def test_stop_by_another_user_is_a_silent_no_op(tmp_path: Path) -> None:
    reply = " ".join(f"w{i}" for i in range(1, 21))
    with serve_app(with_provider(reply=reply, chunk_delay_ms=30), tmp_path) as server:
        reader = StreamReader(server, "alice")
        reader.wait_for(1)
        r = stop(server, reader.events[0]["task_id"], {"user": "mallory"})
        assert r.status_code == 200 and r.json() == {"result": "success"}
        events = reader.finish()
        assert "".join(e["answer"] for e in events[:-1]) == reply  # the whole answer arrived
        assert events[-1]["event"] == "message_end"
        assert stored_message(server, events[0]["message_id"])["status"] == "normal"


def test_stop_through_another_apps_key_is_a_silent_no_op(tmp_path: Path) -> None:
    reply = " ".join(f"w{i}" for i in range(1, 21))
    catalog = with_provider(reply=reply, chunk_delay_ms=30)
    catalog["projects"]["other"] = copy.deepcopy(catalog["projects"]["demo"])
    with serve_app(catalog, tmp_path) as server:
        reader = StreamReader(server, "alice")
        reader.wait_for(1)
        r = stop(server, reader.events[0]["task_id"], {"user": "alice"}, key=server.new_key("other"))
        assert r.json() == {"result": "success"}
        events = reader.finish()
        assert "".join(e["answer"] for e in events[:-1]) == reply
        assert stored_message(server, events[0]["message_id"])["status"] == "normal"


def test_stop_names_one_task_and_leaves_the_others_running(slow_server: RunningServer) -> None:
    stopped, other = StreamReader(slow_server, "alice"), StreamReader(slow_server, "alice")
    stopped.wait_for(1)
    other.wait_for(1)
    assert stop(slow_server, stopped.events[0]["task_id"], {"user": "alice"}).json() == {"result": "success"}
    assert stopped.finish()[-1]["event"] == "message_end"
    # the same user's other stream goes on after the first one ended
    seen = len(other.events)
    other.wait_for(seen + 1)
    assert other.thread.is_alive() and other.events[-1]["event"] == "message"
    assert stored_message(slow_server, stopped.events[0]["message_id"])["status"] == "stopped"
    stop(slow_server, other.events[0]["task_id"], {"user": "alice"})  # (not to wait for 300 words)
    assert other.finish()[-1]["event"] == "message_end"


@pytest.mark.parametrize("task_id", ["00000000-0000-0000-0000-000000000000", "not-a-task"])
def test_stop_of_an_unknown_task_succeeds(fake_server: RunningServer, task_id: str) -> None:
    r = stop(fake_server, task_id, {"user": "alice"})
    assert r.status_code == 200 and r.json() == {"result": "success"}


def test_stop_of_a_finished_task_succeeds_and_changes_nothing(fake_server: RunningServer) -> None:
    answered = post(fake_server, ASK).json()
    assert stop(fake_server, answered["task_id"], {"user": "alice"}).json() == {"result": "success"}
    assert stored_message(fake_server, answered["message_id"])["status"] == "normal"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, "invalid_param", "Arg user must be provided."),
        ({"user": ""}, "invalid_param", "Arg user must be provided."),
        ({"user": None}, "invalid_param", "Arg user must be provided."),
        (None, "bad_request", INVALID_JSON),
    ],
)
def test_stop_needs_a_user(slow_server: RunningServer, body: Any, code: str, message: str) -> None:
    reader = StreamReader(slow_server, "alice")
    reader.wait_for(1)
    raw = b"" if body is None else json.dumps(body).encode()
    r = httpx.post(
        f"{slow_server.v1}/completion-messages/{reader.events[0]['task_id']}/stop",
        content=raw,
        headers={**slow_server.headers(), "Content-Type": "application/json"},
    )
    assert_dify_error(r, 400, code, message)
    # the stream is untouched: stop it properly now, so the test does not wait for 300 words
    assert stop(slow_server, reader.events[0]["task_id"], {"user": "alice"}).json() == {"result": "success"}
    assert reader.finish()[-1]["event"] == "message_end"


# --- a client that goes away ----------------------------------------------------------------------------------------


def test_a_client_that_disconnects_mid_stream_leaves_a_stopped_record(slow_server: RunningServer) -> None:
    body = {**ASK, "response_mode": "streaming"}
    with httpx.stream(
        "POST", slow_server.v1 + "/completion-messages", json=body, headers=slow_server.headers(), timeout=60
    ) as r:
        received = []
        for block in sse_blocks(r):
            assert isinstance(block, dict)
            received.append(block)
            if len(received) == 2:
                break
    # the connection is closed here, with 298 words to go
    row = stored_message(slow_server, received[0]["message_id"])
    assert row["status"] == "stopped" and row["error"] == "client disconnected"
    assert row["answer"].startswith("w1 w2") and LONG_REPLY.startswith(row["answer"]) and row["answer"] != LONG_REPLY


def test_a_client_that_disconnects_before_the_first_token_leaves_a_stopped_record(tmp_path: Path) -> None:
    # the first token would take a minute: the disconnect must cancel the wait, not sit it out
    with serve_app(with_provider(first_token_ms=60_000), tmp_path, ping_interval=0.1) as server:
        body = {**ASK, "response_mode": "streaming"}
        with httpx.stream(
            "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=60
        ) as r:
            assert next(sse_blocks(r)) == "ping"  # the generation is waiting for its first token
        row = only_message(server)
        assert (row["status"], row["answer"], row["error"]) == ("stopped", "", "client disconnected")
        assert row["ttft"] is None and row["completion_tokens"] == 0


def test_a_client_that_disconnects_while_the_model_is_retried_leaves_a_stopped_record(tmp_path: Path) -> None:
    # a rate-limited model is retried after its Retry-After (1 s), here up to 10 times: the client leaves
    # during that wait, and the generation still ends with exactly one record
    catalog = with_provider(fail="rate_limited")
    catalog["models"]["echo"]["retry"] = {"attempts": 10, "max_retry_after_s": 5}
    with serve_app(catalog, tmp_path, ping_interval=0.1) as server:
        body = {**ASK, "response_mode": "streaming"}
        with httpx.stream(
            "POST", server.v1 + "/completion-messages", json=body, headers=server.headers(), timeout=60
        ) as r:
            assert next(sse_blocks(r)) == "ping"
        row = only_message(server)
        assert (row["status"], row["answer"], row["error"]) == ("stopped", "", "client disconnected")
        assert row["attempts"][0]["error_code"] == "provider_rate_limited"
        server.settle()
        assert message_count(server) == 1


# --- what is recorded -----------------------------------------------------------------------------------------------


def test_every_answer_is_recorded_once_with_what_was_asked_and_answered(fake_server: RunningServer) -> None:
    blocking = post(fake_server, {"inputs": {"query": "What is up"}, "user": "alice"}).json()
    streamed = data_events(stream(fake_server, {"inputs": {"query": "What is up"}, "query": "legacy", "user": "bob"}))
    assert message_count(fake_server) == 2
    for message_id, task_id, user, query in [
        # the question asked, for the console's search: the form's `query` input
        (blocking["message_id"], blocking["task_id"], "alice", "What is up"),
        (streamed[0]["message_id"], streamed[0]["task_id"], "bob", "What is up"),
    ]:
        row = stored_message(fake_server, message_id)
        assert row["project"] == "demo" and row["face"] == "dify" and row["task_id"] == task_id
        assert row["user"] == user and row["end_user_id"] == end_user_id("demo", user)
        assert row["inputs"] == {"query": "What is up"} and row["query"] == query
        assert row["prompt"] == [{"role": "user", "content": PROMPT}]
        assert row["answer"] == ANSWER and row["status"] == "normal" and row["error"] is None
        assert row["finish_reason"] == "stop"
        assert (row["model"], row["provider"], row["upstream_model"]) == ("echo", "fake", "echo")
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (5, 6, 11)
        assert (row["prompt_price"], row["completion_price"], row["total_price"], row["currency"]) == (
            "0.0000008",
            "0.0000036",
            "0.0000044",
            "USD",
        )
        assert row["latency"] > 0 and 0 < row["ttft"] <= row["latency"]
    # the response's usage is the record's: the latency reported is the latency stored
    row = stored_message(fake_server, blocking["message_id"])
    assert row["latency"] == blocking["metadata"]["usage"]["latency"]


def test_a_system_prompt_is_sent_before_the_rendered_prompt(tmp_path: Path) -> None:
    catalog = copy.deepcopy(FAKE_CATALOG)
    catalog["projects"]["demo"]["system_prompt"] = "Be terse about {{query}}."
    with serve_app(catalog, tmp_path) as server:
        r = post(server, ASK).json()
        assert r["answer"] == ANSWER  # the fake echoes the user message
        assert r["metadata"]["usage"]["prompt_tokens"] == 5 + 6  # the system prompt's words count too
        row = stored_message(server, r["message_id"])
        assert row["prompt"] == [
            {"role": "system", "content": "Be terse about What is up."},
            {"role": "user", "content": PROMPT},
        ]
