"""URLs in requests: only http, https and data are accepted; the guarded fetch refuses loopback, private and
link-local targets, and redirects to them. Real HTTP servers on two loopback addresses: 127.0.0.2 stands for
a public host (the test allows it explicitly), 127.0.0.1 for the server's own network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from promptd.errors import InputError
from promptd.urlguard import check_url, fetch, public_address
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post
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

    async def to_internal(request: Request) -> Response:
        return RedirectResponse(internal + "/secret")

    routes = [Route("/image.png", image), Route("/big.png", big), Route("/to-image", to_image),
              Route("/to-internal", to_internal)]  # fmt: skip
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
