"""URLs that requests carry (images, files, videos): which ones are accepted, and the one guard every remote URL a
client gives passes before anything is done with it, so that neither promptd nor a model's provider can be
turned against the server's own network (SSRF).

`check_url(url, where)` accepts http, https and data URLs only: `file:///etc/passwd`, `ftp:`, `gopher:` and
the like are the client's InputError (a 400), never forwarded to an upstream, which might read them. It reads
the URL only (no I/O): the faces call it as they parse a request.

`vet(url)` is the guard: the URL's host is resolved once and each address must be public. Loopback, private
(RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, reserved
and unspecified addresses are refused, unless the operator allows a network explicitly (`allow`). A URL that
is passed on for the provider to fetch (a remote image without `inline_remote_images`, a Dify remote video) is
vetted as it is (`vet_image` for a chat's `image_url` part); one that promptd fetches is vetted at every hop by
`fetch`. The faces hand the engine either as a pending part (engine/pending.py), made once the call is admitted.

`fetch(url, ...)` downloads an http(s) URL (to read a document, or to inline an image for upstreams that
cannot reach the internet: `inline`, `inline_image`; `remote_images` finds a chat's remote images without
fetching them). Each hop is vetted, then connected to at an address the guard checked, never resolved again:
a DNS server that answers differently the second time (rebinding) cannot send the request anywhere the guard
did not check. The request keeps the URL's host in its Host header and, for https, as the TLS server name
(SNI) the certificate is checked against. Redirects are followed by hand, at most MAX_REDIRECTS, each target
vetted the same way; connections are not reused between hops. The size and the time are bounded.

What the guard cannot do: a URL passed on is fetched by the provider's upstream, which resolves the host
itself, elsewhere; the guard refuses the hosts that name internal addresses when it looks, not one whose DNS
answers change after. `inline_remote_images` closes that for images: promptd fetches them, pinned.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from promptd.errors import InputError
from promptd.types import ContentPart, Message

__all__ = [
    "MAX_REDIRECTS",
    "MAX_REMOTE",
    "Network",
    "Target",
    "check_url",
    "fetch",
    "inline",
    "inline_image",
    "public_address",
    "remote_images",
    "vet",
    "vet_image",
]

MAX_REDIRECTS = 3
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def check_url(url: str, where: str, *, schemes: Sequence[str] = ("http", "https", "data")) -> str:
    """`url` if its scheme is one of `schemes` (and an http(s) URL names a host), else InputError."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InputError(f"{where}: not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = ", ".join(schemes)
        raise InputError(f"{where}: only {allowed} URLs are accepted, not {scheme or 'a relative'} URL")
    if scheme in ("http", "https") and not parts.hostname:
        raise InputError(f"{where}: the URL has no host")
    return url


def public_address(address: str, allow: Sequence[Network] = ()) -> bool:
    """Whether a request may go to this IP address: a public one, or one of the `allow`ed networks."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return True
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _CGNAT
    )


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted http(s) URL, as httpx reads it (the guard and the request never parse it apart), and the
    addresses its host resolved to, every one checked."""

    url: httpx.URL
    addresses: tuple[str, ...]


async def vet(
    url: str, allow: Sequence[Network] = (), *, time_limit: float | None = None, passed_on: bool = False
) -> Target:
    """The guard: `url` must be http(s), and every address its host resolves to public (or `allow`ed); InputError
    ("url: …") otherwise, or when it is malformed or its host cannot be resolved (within `time_limit` s).

    `passed_on`: the URL goes to the provider, which resolves it itself; a host promptd cannot resolve (a machine
    without public DNS) names no address of this network, so it passes, with no addresses."""
    check_url(url, "url", schemes=("http", "https"))
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if not 0 < port < 65536:
            raise ValueError(port)
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise InputError("url: not a valid http(s) URL") from None
    try:
        async with asyncio.timeout(time_limit):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        if passed_on:
            return Target(parsed, ())
        within = f" within {time_limit:g} s" if time_limit is not None else ""
        raise InputError(f"url: the host {parsed.host!r} was not resolved{within}") from None
    except UnicodeError:  # a host name IDNA cannot encode
        raise InputError("url: not a valid http(s) URL") from None
    except OSError:
        if passed_on:
            return Target(parsed, ())
        raise InputError(f"url: the host {parsed.host!r} cannot be resolved") from None
    addresses = tuple(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in infos))
    for address in addresses:
        if not public_address(address, allow):
            raise InputError(f"url: {parsed.host!r} is not a public address; fetching it is refused")
    return Target(parsed, addresses)


async def fetch(url: str, *, time_limit: float, max_bytes: int, allow: Sequence[Network] = ()) -> tuple[bytes, str]:
    """(body, content type) of a public http(s) URL, every hop vetted and connected to at the address checked;
    InputError when refused, too large, too slow (`time_limit` seconds for everything), or answered with an
    error."""
    # no connection kept between hops: one to the same address for another host would keep the first's TLS name
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=time_limit, follow_redirects=False, limits=limits) as http:
        try:
            async with asyncio.timeout(time_limit):
                return await _fetch(http, url, max_bytes, allow)
        except TimeoutError:
            raise InputError(f"url: not fetched within {time_limit:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:  # InvalidURL: not an HTTPError
            raise InputError(f"url: cannot be fetched ({type(exc).__name__})") from None


async def _fetch(http: httpx.AsyncClient, url: str, max_bytes: int, allow: Sequence[Network]) -> tuple[bytes, str]:
    for _ in range(MAX_REDIRECTS + 1):
        response = await _send(http, await vet(url, allow))
        try:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("location", ""))
                continue
            if response.status_code >= 400:
                raise InputError(f"url: the server answered {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise InputError(f"url: the file is larger than {max_bytes} bytes")
            return bytes(data), response.headers.get("content-type", "application/octet-stream")
        finally:
            await response.aclose()
    raise InputError(f"url: more than {MAX_REDIRECTS} redirects")


async def _send(http: httpx.AsyncClient, target: Target) -> httpx.Response:
    """GET `target` (streamed: the caller closes it) at the first of its checked addresses that takes the
    connection, the URL's host kept as the Host header and, for https, as the TLS server name."""
    url = target.url
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    refused: httpx.ConnectError | None = None
    for address in target.addresses:
        request = http.build_request("GET", url.copy_with(host=address), headers=headers, extensions=extensions)
        try:
            return await http.send(request, stream=True)
        except httpx.ConnectError as exc:  # that address did not answer: the next one (the IPv4 beside an IPv6)
            refused = exc
    assert refused is not None  # getaddrinfo gives at least one address or raises
    raise refused


async def inline(url: str, *, kind: str, time_limit: float, max_bytes: int, allow: Sequence[Network] = ()) -> str:
    """A public http(s) URL's file as a data URL, fetched as `fetch` does; InputError unless its content type
    is one of `kind` (`image`: image/*)."""
    data, content_type = await fetch(url, time_limit=time_limit, max_bytes=max_bytes, allow=allow)
    mime = content_type.split(";", 1)[0].strip().lower()
    if not mime.startswith(f"{kind}/"):
        raise InputError(f"url: not an {kind} but {mime or 'a file without content type'}")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


MAX_REMOTE = 20  # remote images fetched for one request, or hosts of remote images vetted, at most


def _origin(url: str) -> str:
    """What the guard decides a URL on: its scheme, host and port (the URL itself when it has none to read)."""
    try:
        parsed = httpx.URL(url)
        return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
    except (httpx.InvalidURL, UnicodeError):
        return url


def remote_images(messages: Sequence[Message], *, fetched: bool) -> list[ContentPart]:
    """The `image_url` parts of `messages` whose URL is http(s), found without any I/O: all of them when they are
    to be `fetched` (inlined), else the first of each host (the guard decides on the host, not the path).
    InputError past MAX_REMOTE."""
    parts = [
        part
        for m in messages
        if not isinstance(m.content, str)
        for part in m.content
        if part.get("type") == "image_url" and str(part["image_url"]["url"]).lower().startswith(("http:", "https:"))
    ]
    if not fetched:
        first: dict[str, ContentPart] = {}
        for part in parts:
            first.setdefault(_origin(str(part["image_url"]["url"])), part)
        parts = list(first.values())
    if len(parts) > MAX_REMOTE:
        what = "remote images a request are fetched" if fetched else "hosts of remote images a request are checked"
        raise InputError(f"at most {MAX_REMOTE} {what}; this one has {len(parts)}", param="messages")
    return parts


def _image_error(part: ContentPart, exc: InputError) -> InputError:
    reason = exc.message.removeprefix("url: ")
    return InputError(f"the image at {part['image_url']['url']} cannot be used: {reason}", param="messages")


async def inline_image(
    part: ContentPart, *, time_limit: float, max_bytes: int, allow: Sequence[Network] = ()
) -> ContentPart:
    """An http(s) `image_url` part with its image as a data URL, fetched here under the guard, so that the upstream
    never fetches a URL a client chose. InputError naming the URL when it is refused or cannot be fetched."""
    url = str(part["image_url"]["url"])
    try:
        data_url = await inline(url, kind="image", time_limit=time_limit, max_bytes=max_bytes, allow=allow)
    except InputError as exc:
        raise _image_error(part, exc) from None
    return {**part, "image_url": {**part["image_url"], "url": data_url}}


async def vet_image(part: ContentPart, *, time_limit: float, allow: Sequence[Network] = ()) -> ContentPart:
    """An http(s) `image_url` part passed on for the provider to fetch: the same part once the guard has vetted its
    URL. InputError naming the URL when it is refused."""
    try:
        await vet(str(part["image_url"]["url"]), allow, time_limit=time_limit, passed_on=True)
    except InputError as exc:
        raise _image_error(part, exc) from None
    return part
