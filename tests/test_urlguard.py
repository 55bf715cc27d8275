"""URLs in requests: only http, https and data are accepted; the guard refuses loopback, private and link-local
targets, whether promptd fetches them (and redirects to them) or passes them on to the model; the fetch connects
to the address the guard checked (a rebinding DNS answer cannot redirect it). Real HTTP servers on two loopback
addresses: 127.0.0.2 stands for a public host (the test allows it explicitly), 127.0.0.1 for the server's own
network."""

from __future__ import annotations

import base64
import copy
import ipaddress
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from promptd.errors import InputError
from promptd.urlguard import check_url, fetch, inline, public_address, vet
from tests.conftest import FAKE_CATALOG
from tests.faces.chat.helpers import CHAT_CATALOG, assert_adaptive_error, post
from tests.faces.dify.helpers import assert_dify_error, complete
from tests.recording import RecordingProvider
from tests.serving import RunningServer, serve_app, serve_in_thread

PUBLIC = [ipaddress.ip_network("127.0.0.2/32")]  # stands for the internet in these tests
HANG = 30  # seconds a test may wait for what should not happen


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


PASSED: dict[str, Any] = copy.deepcopy(INLINE)
PASSED["models"]["echo"]["video"] = True
PASSED["projects"]["demo"]["file_upload"] = {
    "enabled": True,
    "allowed_file_types": ["image", "video"],
    "allowed_file_upload_methods": ["remote_url"],
    "number_limits": 2,
}


def _dify_files(*files: tuple[str, str]) -> dict[str, Any]:
    refs = [{"type": kind, "transfer_method": "remote_url", "url": url} for kind, url in files]
    return {"inputs": {"query": "what is this?"}, "user": "alice", "files": refs}


def test_by_default_remote_urls_pass_the_guard_and_are_passed_on_for_the_model_to_fetch(
    tmp_path: Path, public: str, internal: str
) -> None:
    """Without `inline_remote_images` the model's provider fetches a remote image (and a Dify video) itself: its URL
    is passed on as it is, once the same guard has vetted it; one naming the server's own network is a 400 in each
    face's shape and the model is never given it."""
    model = RecordingProvider(reply="I see it")
    with serve_app(PASSED, tmp_path / "data", providers={"fake": model}, fetch_allow_networks=("127.0.0.2/32",)) as s:
        assert post(s, "/api/v1/chat/completions", _chat_image(public + "/image.png")).status_code == 200
        assert model.calls[-1].messages[-1].content[1] == {  # type: ignore[index]
            "type": "image_url",
            "image_url": {"url": public + "/image.png"},
        }
        r = complete(s, _dify_files(("image", public + "/image.png"), ("video", public + "/clip.mp4")))
        assert r.status_code == 200, r.text
        assert model.calls[-1].messages[-1].content[1:] == [  # type: ignore[index]
            {"type": "image_url", "image_url": {"url": public + "/image.png", "detail": "high"}},
            {"type": "video_url", "video_url": {"url": public + "/clip.mp4"}},
        ]
        answered = len(model.calls)
        port = internal.rsplit(":", 1)[1]
        for url in (internal + "/secret", f"http://localhost:{port}/secret", "http://169.254.169.254/latest/"):
            r = post(s, "/api/v1/chat/completions", _chat_image(url))
            assert "not a public address" in assert_adaptive_error(r, 400, "cannot be used")
            r = post(s, "/v1/chat/completions", _chat_image(url))
            assert r.status_code == 400 and r.json()["error"]["param"] == "messages", r.text
            for kind in ("image", "video"):
                body = assert_dify_error(complete(s, _dify_files((kind, url))), 400, "invalid_param")
                assert "not a public address" in body["message"] and body["params"] == "files"
        # the guard decides on the host: many images on one host are one check; more hosts than it checks, a 400
        many = _chat_image(public + "/image.png")
        many["messages"][0]["content"] += [{"type": "image_url", "image_url": {"url": public + "/image.png"}}] * 30
        assert post(s, "/api/v1/chat/completions", many).status_code == 200
        hosts = _chat_image(public + "/image.png")
        hosts["messages"][0]["content"] += [
            {"type": "image_url", "image_url": {"url": f"http://127.0.0.2:{1000 + i}/a.png"}} for i in range(20)
        ]
        assert_adaptive_error(post(s, "/api/v1/chat/completions", hosts), 400, "at most 20 hosts")
        assert len(model.calls) == answered + 1


REBOUND = "files.promptd.test"  # a name only the test's resolver knows


class RebindingDNS:
    """The resolver of the process (socket.getaddrinfo, which asyncio and anyio both call), answering REBOUND as a
    rebinding DNS server would: 127.0.0.2 (public, in these tests) the first time, 127.0.0.1 (the server's own
    network) every time after. Other names and addresses resolve as ever."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked = 0
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host in (REBOUND, REBOUND.encode()):
                self.asked += 1
                host = "127.0.0.2" if self.asked == 1 else "127.0.0.1"
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def twins() -> Iterator[tuple[int, Counter[str]]]:
    """Two servers on one port: the 'public' one on 127.0.0.2, an 'internal' one on 127.0.0.1; each answers
    /file with its own secret and counts its requests (by Host header)."""
    hits: Counter[str] = Counter()

    def app(answer: bytes, who: str) -> Starlette:
        async def file(request: Request) -> Response:
            hits[f"{who} {request.headers['host']}"] += 1
            return Response(answer, media_type="image/png")

        return Starlette(routes=[Route("/file", file)])

    with serve_in_thread(app(b"internal secret", "internal")) as internal:
        port = int(internal.rsplit(":", 1)[1])
        with serve_in_thread(app(b"public image", "public"), host="127.0.0.2", port=port):
            yield port, hits


async def test_a_rebinding_dns_answer_cannot_send_the_fetch_to_an_address_the_guard_did_not_check(
    twins: tuple[int, Counter[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard resolves the host once, checks the answer, and the fetch connects to that very address (the
    URL's host kept in the Host header): the second answer, loopback, is never asked for."""
    port, hits = twins
    dns = RebindingDNS(monkeypatch)
    url = f"http://{REBOUND}:{port}/file"
    assert await fetch(url, time_limit=10, max_bytes=1000, allow=PUBLIC) == (b"public image", "image/png")
    assert dns.asked == 1 and hits == {f"public {REBOUND}:{port}": 1}
    # asked again now, the name is loopback: refused
    with pytest.raises(InputError, match="not a public address"):
        await fetch(url, time_limit=10, max_bytes=1000, allow=PUBLIC)
    assert hits == {f"public {REBOUND}:{port}": 1}


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (openssl), and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_an_https_fetch_at_the_checked_address_keeps_the_host_name_for_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connected to the address the guard checked, an https fetch still sends the URL's host as its TLS server
    name (SNI) and checks the certificate against it: a certificate for that name (trusted here through
    SSL_CERT_FILE) is accepted, the same server under a name its certificate does not carry is refused."""
    cert, key = _certificate(tmp_path, REBOUND)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    dns = RebindingDNS(monkeypatch)

    async def image(request: Request) -> Response:
        return Response(b"secure image", media_type="image/png")

    with serve_in_thread(Starlette(routes=[Route("/file", image)]), host="127.0.0.2", tls=(cert, key)) as url:
        port = url.rsplit(":", 1)[1]
        got = await fetch(f"https://{REBOUND}:{port}/file", time_limit=10, max_bytes=1000, allow=PUBLIC)
        assert got == (b"secure image", "image/png") and dns.asked == 1
        with pytest.raises(InputError, match="cannot be fetched"):  # the certificate names REBOUND, not the address
            await fetch(f"https://127.0.0.2:{port}/file", time_limit=10, max_bytes=1000, allow=PUBLIC)


async def test_a_host_that_is_not_resolved_in_time_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers (here: one the test holds until the guard gave up) bounds nothing by itself:
    the guard's own time limit does, as a 400."""
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (REBOUND, REBOUND.encode()):
            released.wait(HANG)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        with pytest.raises(InputError, match=r"not resolved within 0\.1 s"):
            await vet(f"http://{REBOUND}/a.png", PUBLIC, time_limit=0.1)
    finally:
        released.set()


async def test_a_passed_on_url_whose_host_promptd_cannot_resolve_is_left_to_the_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A URL the provider fetches is resolved by the provider: a host promptd cannot resolve (a machine without
    public DNS), or not in time, names no address of this network, so it passes the guard with no addresses.
    One promptd fetches itself still needs an answer, and a passed-on host naming an internal address is still
    refused."""
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("nowhere.promptd.test", b"nowhere.promptd.test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host in (REBOUND, REBOUND.encode()):
            released.wait(HANG)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        passed = await vet("https://nowhere.promptd.test/a.png", PUBLIC, time_limit=5, passed_on=True)
        assert passed.addresses == ()
        slow = await vet(f"http://{REBOUND}/a.png", PUBLIC, time_limit=0.1, passed_on=True)
        assert slow.addresses == ()
        with pytest.raises(InputError, match="cannot be resolved"):
            await vet("https://nowhere.promptd.test/a.png", PUBLIC, time_limit=5)
        with pytest.raises(InputError, match="not a public address"):
            await vet("http://localhost/a.png", (), time_limit=5, passed_on=True)
    finally:
        released.set()
