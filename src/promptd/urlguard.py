"""URLs that requests carry (images, files): which ones are accepted, and a fetch that cannot be turned
against the server's own network (SSRF).

`check_url(url, where)` accepts http, https and data URLs only: `file:///etc/passwd`, `ftp:`, `gopher:` and
the like are the client's InputError (a 400), never forwarded to an upstream, which might read them.

`fetch(url, ...)` downloads an http(s) URL to inline it (for upstreams that cannot reach the internet); `inline`
makes it a data URL, and `inline_image` does that for a chat's remote `image_url` part (`remote_images` finds
them without fetching; the engine inlines them once it admitted the call, engine/pending.py). Every hop is
checked before it is requested: its host is resolved and each address must be public. Loopback,
private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254), carrier-grade NAT,
multicast, reserved and unspecified addresses are refused, unless the operator allows a network explicitly
(`allow`). Redirects are followed by hand, at most MAX_REDIRECTS, each target checked the same way. The size
and the time are bounded. Known gap: the address is checked, then httpx resolves the name again to connect;
a DNS server that answers differently the second time (rebinding) is not caught.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import httpx

from promptd.errors import InputError
from promptd.types import ContentPart, Message

__all__ = [
    "MAX_INLINED",
    "MAX_REDIRECTS",
    "Network",
    "check_url",
    "fetch",
    "inline",
    "inline_image",
    "public_address",
    "remote_images",
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


async def _check_target(url: str, allow: Sequence[Network]) -> None:
    check_url(url, "url", schemes=("http", "https"))
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)  # ValueError: out of range
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (ValueError, UnicodeError):  # a port out of range, a host name IDNA cannot encode
        raise InputError("url: not a valid http(s) URL") from None
    except OSError:
        raise InputError(f"url: the host {host!r} cannot be resolved") from None
    for *_, sockaddr in infos:
        if not public_address(str(sockaddr[0]), allow):
            raise InputError(f"url: {host!r} is not a public address; fetching it is refused")


async def fetch(
    url: str,
    *,
    time_limit: float,
    max_bytes: int,
    allow: Sequence[Network] = (),
    client: httpx.AsyncClient | None = None,
) -> tuple[bytes, str]:
    """(body, content type) of a public http(s) URL, every redirect checked; InputError when refused, too
    large, too slow (`time_limit` seconds for everything), or answered with an error."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=time_limit, follow_redirects=False)
    try:
        async with asyncio.timeout(time_limit):
            return await _fetch(http, url, max_bytes, allow)
    except TimeoutError:
        raise InputError(f"url: not fetched within {time_limit:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:  # InvalidURL: not an HTTPError
        raise InputError(f"url: cannot be fetched ({type(exc).__name__})") from None
    finally:
        if own:
            await http.aclose()


async def _fetch(http: httpx.AsyncClient, url: str, max_bytes: int, allow: Sequence[Network]) -> tuple[bytes, str]:
    for _ in range(MAX_REDIRECTS + 1):
        await _check_target(url, allow)
        async with http.stream("GET", url) as response:
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
    raise InputError(f"url: more than {MAX_REDIRECTS} redirects")


async def inline(url: str, *, kind: str, time_limit: float, max_bytes: int, allow: Sequence[Network] = ()) -> str:
    """A public http(s) URL's file as a data URL, fetched as `fetch` does; InputError unless its content type
    is one of `kind` (`image`: image/*)."""
    data, content_type = await fetch(url, time_limit=time_limit, max_bytes=max_bytes, allow=allow)
    mime = content_type.split(";", 1)[0].strip().lower()
    if not mime.startswith(f"{kind}/"):
        raise InputError(f"url: not an {kind} but {mime or 'a file without content type'}")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


MAX_INLINED = 20  # remote images fetched for one request, at most


def remote_images(messages: Sequence[Message]) -> list[ContentPart]:
    """The `image_url` parts of `messages` whose URL is http(s) (those `inline_image` makes data URLs of), checked
    without fetching anything: InputError past MAX_INLINED."""
    parts = [
        part
        for m in messages
        if not isinstance(m.content, str)
        for part in m.content
        if part.get("type") == "image_url" and str(part["image_url"]["url"]).lower().startswith(("http:", "https:"))
    ]
    if len(parts) > MAX_INLINED:
        raise InputError(
            f"at most {MAX_INLINED} remote images a request are fetched; this one has {len(parts)}", param="messages"
        )
    return parts


async def inline_image(
    part: ContentPart, *, time_limit: float, max_bytes: int, allow: Sequence[Network] = ()
) -> ContentPart:
    """An http(s) `image_url` part with its image as a data URL, fetched here under the guard, so that the upstream
    never fetches a URL a client chose. InputError naming the URL when it is refused or cannot be fetched."""
    url = str(part["image_url"]["url"])
    try:
        data_url = await inline(url, kind="image", time_limit=time_limit, max_bytes=max_bytes, allow=allow)
    except InputError as exc:
        reason = exc.message.removeprefix("url: ")
        raise InputError(f"the image at {url} cannot be used: {reason}", param="messages") from None
    return {**part, "image_url": {**part["image_url"], "url": data_url}}
