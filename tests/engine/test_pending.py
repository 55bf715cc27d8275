"""A call's pending parts (engine/pending.py: remote files promptd fetches, documents it reads, audio it has
transcribed) are made only for a call the engine admitted and whose input moderation gave no preset answer. A
request over its rate limit or budget, through either face, blocking or streaming, gets its face's 429 and the
file server sees no request, the speech model no call; an admitted request fetches, and the model, the record
and the reservation see the grown prompt.

Real HTTP throughout: promptd, a file server on 127.0.0.2 that counts its hits (it stands for the internet: the
URL guard refuses loopback unless `fetch_allow_networks` allows it, as here) and OpenAI's audio endpoints. The
last test drives `make_all` directly: its concurrency bound and its cancellation."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from promptd.domain.limits import Limits
from promptd.engine.call import Origin
from promptd.engine.pending import CONCURRENCY, Pending, make_all
from promptd.errors import InputError
from promptd.types import ContentPart
from tests.conftest import FAKE_CATALOG
from tests.faces.chat.helpers import assert_adaptive_error, post
from tests.faces.dify.helpers import assert_dify_error, complete, serve_with_files, stored_message, stream
from tests.faces.dify.test_audio import SpeechUpstream
from tests.recording import RecordingProvider, TextOnly
from tests.serving import RunningServer, serve_app, serve_in_thread

PNG = b"\x89PNG image"
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
NOTES = b"remote notes say 42"
LONG = b"many words " * 400  # 4,400 bytes: a prompt bound of as many tokens once read
PRESET = "Sorry, I cannot answer that."


class Files:
    """A web server of remote files that counts the requests for each path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()

    def app(self) -> Starlette:
        files = {
            "/image.png": (PNG, "image/png"),
            "/notes.txt": (NOTES, "text/plain"),
            "/long.txt": (LONG, "text/plain"),
        }

        async def serve(request: Request) -> Response:
            self.hits[request.url.path] += 1
            data, mime = files[request.url.path]
            return Response(data, media_type=mime)

        return Starlette(routes=[Route(path, serve) for path in files] + [Route("/missing.txt", self.missing)])

    async def missing(self, request: Request) -> Response:
        self.hits[request.url.path] += 1
        return Response(b"no", status_code=404)


@dataclass
class Setup:
    server: RunningServer
    model: RecordingProvider  # stands for the app's vision model: a test reads the prompt it was given
    files: Files
    url: str  # the file server's base URL
    speech: SpeechUpstream

    def key(self, limits: Limits) -> str:
        async def make(repo: Any) -> str:
            key, _ = await repo.create_key("demo", limits=limits)
            return str(key)

        return str(self.server.repo_call(make))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    files, speech = Files(), SpeechUpstream()
    with serve_in_thread(files.app(), host="127.0.0.2") as files_url, serve_in_thread(speech.app()) as speech_url:
        catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
        catalog["models"]["echo"]["vision"] = True
        catalog["providers"]["openai"] = {"kind": "openai", "base_url": speech_url + "/v1", "api_key": "sk-audio"}
        catalog["models"]["stt"] = {"provider": "openai", "model": "whisper-1", "type": "speech_to_text"}
        catalog["projects"]["demo"].update(
            file_upload={
                "enabled": True,
                "allowed_file_types": ["image", "document", "audio"],
                "allowed_file_upload_methods": ["remote_url", "local_file"],
                "number_limits": 4,
            },
            audio={"speech_to_text": "stt"},
            moderation={
                "type": "keywords",
                "keywords": ["Forbidden"],
                "inputs": {"enabled": True, "preset_response": PRESET},
            },
        )
        model = RecordingProvider(reply="ok")
        with serve_with_files(catalog, tmp_path / "data", model, inline_remote_images=True) as server:
            yield Setup(server, model, files, files_url, speech)


def chat_body(text: str, image: str, **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image}}]
    return {"model": "demo/echo", "messages": [{"role": "user", "content": content}], **extra}


def remote(kind: str, url: str) -> dict[str, Any]:
    return {"type": kind, "transfer_method": "remote_url", "url": url}


def completion_body(query: str, *files: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": {"query": query}, "user": "alice", "files": list(files)}


def dify_stream(server: RunningServer, body: dict[str, Any], key: str) -> httpx.Response:
    """A streaming completion that is answered before any stream: read whole."""
    body = {**body, "response_mode": "streaming"}
    return httpx.post(server.v1 + "/completion-messages", json=body, headers=server.headers(key), timeout=60)


def test_a_chat_over_its_rate_limit_fetches_no_remote_image(setup: Setup) -> None:
    server, key = setup.server, setup.key(Limits(rpm=1))
    body = chat_body("what is this?", setup.url + "/image.png")
    r = post(server, "/api/v1/chat/completions", body, key)
    assert r.status_code == 200, r.text
    assert setup.model.calls[-1].messages[-1].content[1] == {"type": "image_url", "image_url": {"url": DATA_URL}}  # type: ignore[index]
    assert setup.files.hits["/image.png"] == 1
    # over the limit: the face's 429, blocking, streaming and on the OpenAI alias, and no fetch
    assert_adaptive_error(post(server, "/api/v1/chat/completions", body, key), 429, "Rate limit reached")
    assert_adaptive_error(post(server, "/api/v1/chat/completions", {**body, "stream": True}, key), 429, "Rate limit")
    openai = post(server, "/v1/chat/completions", body, key)
    assert openai.status_code == 429 and openai.json()["error"]["code"] == "rate_limit_exceeded"
    assert setup.files.hits["/image.png"] == 1 and len(setup.model.calls) == 1


def test_a_completion_over_its_rate_limit_fetches_no_remote_file(setup: Setup) -> None:
    server, key = setup.server, setup.key(Limits(rpm=1))
    body = completion_body(
        "read", remote("document", setup.url + "/notes.txt"), remote("image", setup.url + "/image.png")
    )
    r = complete(server, body, key)
    assert r.status_code == 200, r.text
    parts = setup.model.calls[-1].messages[-1].content
    assert parts[1:] == [  # type: ignore[index]
        {"type": "text", "text": "Document notes.txt:\nremote notes say 42"},
        {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "high"}},
    ]
    assert stored_message(server, r.json()["message_id"])["prompt"][-1]["content"][1]["text"].endswith("say 42")
    assert setup.files.hits == {"/notes.txt": 1, "/image.png": 1}
    assert_dify_error(complete(server, body, key), 429, "too_many_requests")
    assert_dify_error(dify_stream(server, body, key), 429, "too_many_requests")  # JSON, not a stream
    assert setup.files.hits == {"/notes.txt": 1, "/image.png": 1} and len(setup.model.calls) == 1


def test_over_a_budget_nothing_is_fetched(setup: Setup) -> None:
    server, key = setup.server, setup.key(Limits(cost_per_day=Decimal("0.000001")))  # less than any reservation
    image = chat_body("what is this?", setup.url + "/image.png")
    assert_adaptive_error(post(server, "/api/v1/chat/completions", image, key), 429, "Budget reached")
    assert_adaptive_error(post(server, "/api/v1/chat/completions", {**image, "stream": True}, key), 429, "Budget")
    document = completion_body("read", remote("document", setup.url + "/notes.txt"))
    assert_dify_error(complete(server, document, key), 429, "rate_limit_error")
    assert_dify_error(dify_stream(server, document, key), 429, "rate_limit_error")
    assert setup.files.hits == {} and setup.model.calls == []


def test_the_prompt_a_fetch_grows_is_reserved_for_again(setup: Setup) -> None:
    """Admitted with the document not yet read (a prompt bound of a few dozen tokens plus max_tokens 1024), the
    call fetches it; its text alone is 4,400 tokens of the bound, over the key's 3,000 a minute: refused then,
    before the model is asked."""
    server, key = setup.server, setup.key(Limits(tpm=3000))
    r = complete(server, completion_body("read", remote("document", setup.url + "/long.txt")), key)
    assert "this request alone needs" in assert_dify_error(r, 429, "too_many_requests")["message"]
    assert setup.files.hits["/long.txt"] == 1 and setup.model.calls == []
    # what that call held was given back: a short document fits, streamed, the stream carrying its answer
    events = stream(server, completion_body("read", remote("document", setup.url + "/notes.txt")))
    assert events[-1]["event"] == "message_end"  # type: ignore[index]
    assert setup.model.calls[-1].messages[-1].content[1]["text"].endswith("say 42")  # type: ignore[index]


def test_a_fetch_that_fails_after_admission_is_a_400_before_any_stream(setup: Setup) -> None:
    server = setup.server
    body = completion_body("read", remote("document", setup.url + "/missing.txt"))
    r = dify_stream(server, body, server.key)
    assert "404" in assert_dify_error(r, 400, "invalid_param")["message"]
    chat = chat_body("what is this?", setup.url + "/missing.txt", stream=True)
    assert_adaptive_error(post(server, "/api/v1/chat/completions", chat), 400, "cannot be used")
    assert setup.files.hits["/missing.txt"] == 2 and setup.model.calls == []


def test_flagged_input_fetches_nothing(setup: Setup) -> None:
    server = setup.server
    r = complete(server, completion_body("Forbidden topic", remote("document", setup.url + "/notes.txt")))
    assert r.status_code == 200 and r.json()["answer"] == PRESET, r.text
    r = post(server, "/api/v1/chat/completions", chat_body("Forbidden topic", setup.url + "/image.png"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == PRESET, r.text
    assert setup.files.hits == {} and setup.model.calls == []


def test_an_attached_audio_file_is_transcribed_only_for_an_admitted_call(setup: Setup) -> None:
    """The transcript is a model call made for the call: after its admission, counted in its tokens and cost
    but not as one more request (a key allowed one request a minute can send one with audio)."""
    server, key = setup.server, setup.key(Limits(rpm=1))
    uploaded = httpx.post(
        server.v1 + "/files/upload",
        files={"file": ("voice.mp3", b"ID3 fake audio", "audio/mpeg")},
        data={"user": "alice"},
        headers=server.headers(key),
    )
    assert uploaded.status_code == 201, uploaded.text
    audio = {"type": "audio", "transfer_method": "local_file", "upload_file_id": uploaded.json()["id"]}
    r = complete(server, completion_body("listen", audio), key)
    assert r.status_code == 200, r.text
    assert setup.model.calls[-1].messages[-1].content[1] == {  # type: ignore[index]
        "type": "text",
        "text": "Audio voice.mp3 (transcript):\nheard 14 bytes of voice.mp3",
    }
    assert len(setup.speech.transcriptions) == 1
    assert_dify_error(complete(server, completion_body("listen", audio), key), 429, "too_many_requests")
    assert len(setup.speech.transcriptions) == 1 and len(setup.model.calls) == 1


def test_an_image_for_a_model_that_cannot_read_it_is_refused_before_it_is_fetched(tmp_path: Path) -> None:
    """`blind` is declared `vision: true` but its provider reads text only (as an operator might declare the
    embedded model): the engine's check of what the model reads comes before admission, so with
    `inline_remote_images` the image is never fetched for it, through either face, and no model is asked."""
    files = Files()
    with serve_in_thread(files.app(), host="127.0.0.2") as files_url:
        catalog: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
        catalog["providers"]["textonly"] = {"kind": "fake"}
        catalog["models"]["blind"] = {"provider": "textonly", "model": "blind", "vision": True}
        catalog["projects"]["demo"]["models"] = ["echo", "blind"]
        catalog["projects"]["blind"] = {**catalog["projects"]["demo"], "models": ["blind"]}
        catalog["projects"]["blind"]["file_upload"] = {"image": {"enabled": True}}
        text_only, anything = TextOnly(), RecordingProvider()
        with serve_app(
            catalog,
            tmp_path / "data",
            providers={"fake": anything, "textonly": text_only},
            inline_remote_images=True,
            fetch_allow_networks=("127.0.0.2/32",),
        ) as server:
            image = files_url + "/image.png"
            r = post(server, "/api/v1/chat/completions", {**chat_body("what is this?", image), "model": "demo/blind"})
            assert_adaptive_error(r, 400, "image_url content is not supported by model 'blind'")
            r = post(server, "/v1/chat/completions", {**chat_body("what is this?", image), "model": "demo/blind"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content", r.text
            r = complete(server, completion_body("what is this?", remote("image", image)), server.new_key("blind"))
            assert "not supported by model 'blind'" in assert_dify_error(r, 400, "unsupported_content")["message"]
            assert files.hits == {} and text_only.calls == [] and anything.calls == []
            # a model that reads it: fetched once, and answered
            assert post(server, "/api/v1/chat/completions", chat_body("what is this?", image)).status_code == 200
            assert files.hits == {"/image.png": 1} and len(anything.calls) == 1


async def test_pending_parts_are_made_a_few_at_a_time_in_place_and_the_first_failure_cancels_the_rest() -> None:
    running, most, cancelled = 0, 0, 0

    async def make(part: ContentPart, origin: Origin) -> ContentPart:
        nonlocal running, most, cancelled
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.01 if part["text"] != "fails" else 0.005)
            if part["text"] == "fails":
                raise InputError("the file at x cannot be fetched")
            if part["text"] == "slow":
                await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        finally:
            running -= 1
        return {"type": "text", "text": part["text"].upper()}

    parts = [{"type": "text", "text": f"part {i}"} for i in range(10)]
    assert await make_all([Pending(p, make) for p in parts], Origin(face="chat", project="demo"))  # changed
    assert [p["text"] for p in parts] == [f"PART {i}" for i in range(10)] and most == CONCURRENCY
    failing = [{"type": "text", "text": "slow"}, {"type": "text", "text": "fails"}]
    with pytest.raises(InputError, match="cannot be fetched"):  # the face's own error, not an ExceptionGroup
        await make_all([Pending(p, make) for p in failing], Origin(face="chat", project="demo"))
    assert cancelled == 1 and failing[0] == {"type": "text", "text": "slow"}

    async def keep(part: ContentPart, origin: Origin) -> ContentPart:  # a vetted URL: kept as it is
        return part

    kept = [{"type": "text", "text": "as is"}, {"type": "text", "text": "too"}]
    assert not await make_all([Pending(p, keep) for p in kept], Origin(face="chat", project="demo"))  # unchanged
    assert kept == [{"type": "text", "text": "as is"}, {"type": "text", "text": "too"}]
