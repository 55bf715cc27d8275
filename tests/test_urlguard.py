"""URLs in requests: only http, https and data are accepted; the guarded fetch refuses loopback, private and
link-local targets, and redirects to them. Real HTTP servers on two loopback addresses: 127.0.0.2 stands for
a public host (the test allows it explicitly), 127.0.0.1 for the server's own network."""

from __future__ import annotations

import base64
import copy
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from promptd.errors import InputError
from promptd.urlguard import check_url, fetch, inline, public_address
from tests.conftest import FAKE_CATALOG
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post
from tests.faces.dify.helpers import assert_dify_error, complete
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app, serve_in_thread

PUBLIC = [ipaddress.ip_network("127.0.0.2/32")]  # stands for the internet in these tests


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a", "gopher://x/", "/relative", "http:///x"])
def test_only_http_https_and_data_urls_are_accepted(url: str) -> None:
    with pytest.raises(InputError):
        check_url(url, "image_url")


@pytest.mark.parametrize("url", ["https://example.com/a.png", "HTTP://example.com/", "data:image/png;base64,AA=="])
def test_http_https_and_data_urls_pass(url: str) -> None:
    assert check_url(url, "image_url") == url


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
     "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_internal_addresses_are_refused(address: str) -> None:
    assert not public_address(address)


def test_public_addresses_and_allowed_networks_pass() -> None:
    assert public_address("8.8.8.8") and public_address("2606:4700:4700::1111")
    assert public_address("127.0.0.2", PUBLIC) and not public_address("127.0.0.3", PUBLIC)


@pytest.fixture
def internal() -> Iterator[str]:
    """A server on the 'internal' network (127.0.0.1)."""

    async def secret(request: Request) -> Response:
        return Response(b"internal secret")

    with serve_in_thread(Starlette(routes=[Route("/secret", secret)])) as url:
        yield url


@pytest.fixture
def public(internal: str) -> Iterator[str]:
    """A 'public' server (127.0.0.2): a file, a redirect to another public path, one to the internal server."""

    async def image(request: Request) -> Response:
        return Response(b"\x89PNG image", media_type="image/png")

    async def big(request: Request) -> Response:
        return Response(b"x" * 10_000, media_type="image/png")

    async def to_image(request: Request) -> Response:
        return RedirectResponse("/image.png")

    async def page(request: Request) -> Response:
        return Response(b"<html></html>", media_type="text/html")

    async def to_internal(request: Request) -> Response:
        return RedirectResponse(internal + "/secret")

    routes = [Route("/image.png", image), Route("/big.png", big), Route("/to-image", to_image),
              Route("/to-internal", to_internal), Route("/page.html", page)]  # fmt: skip
    with serve_in_thread(Starlette(routes=routes), host="127.0.0.2") as url:
        yield url


async def test_a_public_file_is_fetched_and_redirects_between_public_hosts_are_followed(public: str) -> None:
    assert await fetch(public + "/image.png", time_limit=10, max_bytes=1000, allow=PUBLIC) == (
        b"\x89PNG image",
        "image/png",
    )
    assert (await fetch(public + "/to-image", time_limit=10, max_bytes=1000, allow=PUBLIC))[0] == b"\x89PNG image"


async def test_internal_targets_and_redirects_to_them_are_refused(public: str, internal: str) -> None:
    with pytest.raises(InputError, match="not a public address"):
        await fetch(internal + "/secret", time_limit=10, max_bytes=1000, allow=PUBLIC)
    with pytest.raises(InputError, match="not a public address"):
        await fetch(public + "/to-internal", time_limit=10, max_bytes=1000, allow=PUBLIC)
    port = internal.rsplit(":", 1)[1]
    with pytest.raises(InputError, match="not a public address"):
        await fetch(f"http://localhost:{port}/secret", time_limit=10, max_bytes=1000, allow=PUBLIC)
    with pytest.raises(InputError, match="larger than"):
        await fetch(public + "/big.png", time_limit=10, max_bytes=1000, allow=PUBLIC)


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[RunningServer]:
    with serve_app(CHAT_CATALOG, tmp_path / "data") as server:
        yield server


def test_a_chat_image_url_of_a_local_file_is_a_400(chat: RunningServer) -> None:
    def body(url: str) -> dict[str, object]:
        content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
        return {"model": "demo/echo", "messages": [{"role": "user", "content": content}],
                "system_prompt_args": {"name": "A"}}  # fmt: skip

    assert_adaptive_error(post(chat, "/api/v1/chat/completions", body("file:///etc/passwd")), 400, "only http")
    r = post(chat, "/v1/chat/completions", body("FILE:///etc/passwd"))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert post(chat, "/api/v1/chat/completions", body("data:image/png;base64,AA==")).status_code == 200


IMAGE_DATA_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG image").decode()


async def test_inline_makes_a_public_image_a_data_url_and_refuses_anything_else(public: str) -> None:
    assert await inline(public + "/to-image", kind="image", time_limit=10, max_bytes=1000, allow=PUBLIC) == (
        IMAGE_DATA_URL
    )
    with pytest.raises(InputError, match="not an image but text/html"):
        await inline(public + "/page.html", kind="image", time_limit=10, max_bytes=1000, allow=PUBLIC)


INLINE: dict[str, Any] = copy.deepcopy(FAKE_CATALOG)
INLINE["models"]["echo"]["vision"] = True
INLINE["projects"]["demo"]["file_upload"] = {"image": {"enabled": True}}


@pytest.fixture
def inlining(tmp_path: Path) -> Iterator[tuple[RunningServer, RecordingProvider]]:
    """A server that inlines remote images (`inline_remote_images`); the recording provider stands for its
    vision model (a test reads the parts it was given)."""
    model = RecordingProvider(reply="I see it")
    with serve_app(
        INLINE,
        tmp_path / "data",
        providers={"fake": model},
        inline_remote_images=True,
        fetch_allow_networks=("127.0.0.2/32",),
    ) as server:
        yield server, model


def _chat_image(url: str) -> dict[str, Any]:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "demo/echo", "messages": [{"role": "user", "content": content}]}


def _dify_image(url: str) -> dict[str, Any]:
    files = [{"type": "image", "transfer_method": "remote_url", "url": url}]
    return {"inputs": {"query": "what is this?"}, "user": "alice", "files": files}


def test_remote_images_are_inlined_under_the_guard_when_the_operator_asks(
    inlining: tuple[RunningServer, RecordingProvider], public: str, internal: str
) -> None:
    server, model = inlining
    r = post(server, "/api/v1/chat/completions", _chat_image(public + "/image.png"))
    assert r.status_code == 200, r.text
    assert model.calls[-1].messages[-1].content[1] == {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}}  # type: ignore[index]
    r = complete(server, _dify_image(public + "/to-image"))  # a redirect between public hosts is followed
    assert r.status_code == 200, r.text
    assert model.calls[-1].messages[-1].content[1] == {  # type: ignore[index]
        "type": "image_url",
        "image_url": {"url": IMAGE_DATA_URL, "detail": "high"},
    }
    answered = len(model.calls)
    # the server's own network, directly or by a redirect, and a page that is not an image: a 400 in each
    # face's shape, and the model is never asked
    for url in (internal + "/secret", public + "/to-internal"):
        assert_adaptive_error(post(server, "/api/v1/chat/completions", _chat_image(url)), 400, "not a public address")
        assert (
            "not a public address"
            in assert_dify_error(complete(server, _dify_image(url)), 400, "invalid_param")["message"]
        )
    r = post(server, "/v1/chat/completions", _chat_image(public + "/page.html"))
    assert r.status_code == 400 and "not an image" in r.json()["error"]["message"]
    # URLs no client library would build: a 400, never a 500
    for url in ("http://example.com:99999/x.png", "http://" + "a" * 64 + ".com/x.png", "http://8.8.8.8/a\x7fb"):
        assert_adaptive_error(post(server, "/api/v1/chat/completions", _chat_image(url)), 400, "cannot be used")
        assert_dify_error(complete(server, _dify_image(url)), 400, "invalid_param")
    # more remote images than a request may fetch
    many = _chat_image(public + "/image.png")
    many["messages"][0]["content"] += [{"type": "image_url", "image_url": {"url": public + "/image.png"}}] * 20
    assert_adaptive_error(post(server, "/api/v1/chat/completions", many), 400, "at most 20 remote images")
    assert len(model.calls) == answered


def test_by_default_a_remote_image_url_is_passed_on_for_the_model_to_fetch(tmp_path: Path, public: str) -> None:
    model = RecordingProvider(reply="I see it")
    with serve_app(INLINE, tmp_path / "data", providers={"fake": model}) as server:
        assert post(server, "/api/v1/chat/completions", _chat_image(public + "/image.png")).status_code == 200
        assert model.calls[-1].messages[-1].content[1] == {  # type: ignore[index]
            "type": "image_url",
            "image_url": {"url": public + "/image.png"},
        }
