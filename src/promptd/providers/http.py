"""What every HTTP upstream adapter shares: a pooled client (providers/client.py), SSE data lines, and the
translation of HTTP and network failures into promptd's errors (where they enter: callers never see the
client's exceptions)."""

from __future__ import annotations

import contextlib
import email.utils
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping

import msgspec

from promptd.catalog.schema import Timeouts
from promptd.errors import ProviderBadRequest, ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from promptd.providers.client import HTTPClient, ProtocolError, Response

__all__ = [
    "MALFORMED_RUN",
    "MAX_LINE", "HTTPProvider", "Lines", "http_error", "multipart", "parse_retry_after", "sse_data", "translate_errors",
]  # fmt: skip

#: malformed chunks (or events) in a row that end a stream; one, or a few apart, are skipped and counted
MALFORMED_RUN = 3
MAX_LINE = 16 * 1024 * 1024  # one tool-call chunk can be long (aiohttp's readline gave up at 512 KiB)

_decode = msgspec.json.Decoder().decode
CONTEXT_MARKERS = ("maximum context length", "context length", "prompt is too long", "too many tokens")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _upstream_message(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, param) of an error body: OpenAI's {"error": {"message", "code", "param"}} or Anthropic's
    {"type": "error", "error": {"type", "message"}}."""
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")[:500] or "no body", None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        param = err.get("param")
        return (
            str(err.get("message") or err),
            err.get("code") or err.get("type"),
            param if isinstance(param, str) else None,
        )
    if isinstance(err, str):
        return err, None, None
    return str(data)[:500], None, None


def http_error(status: int, body: bytes, headers: Mapping[str, str], who: str) -> ProviderError:
    message, code, param = _upstream_message(body)
    text = f"{who}: upstream answered {status}: {message}"
    if status == 429:
        return ProviderRateLimited(text, retry_after=parse_retry_after(headers.get("retry-after")))
    if status >= 500 or status == 408:
        return ProviderUnavailable(text)
    lowered = message.lower()
    if code == "context_length_exceeded" or any(m in lowered for m in CONTEXT_MARKERS):
        return ProviderBadRequest(text, code="context_length_exceeded")
    if code == "content_filter" or "content_filter" in lowered or "content management policy" in lowered:
        return ProviderBadRequest(text, code="content_filter")
    return ProviderBadRequest(text, param=param)


@contextlib.contextmanager
def translate_errors(who: str) -> Iterator[None]:
    try:
        yield
    except ProviderError:
        raise
    except TimeoutError as exc:  # before OSError, which it is
        raise ProviderTimeout(f"{who}: timed out ({type(exc).__name__})") from exc
    except (OSError, ProtocolError) as exc:  # refused, reset, DNS, TLS, not HTTP
        raise ProviderUnavailable(f"{who}: {type(exc).__name__}: {exc}") from exc


class Lines:
    """Splits a body, as it arrives, into lines. `feed(b"")` at the end returns a last, unterminated line."""

    __slots__ = ("_parts", "_size", "_who")

    def __init__(self, who: str) -> None:
        self._parts: list[bytes] = []  # the start of a line not ended yet
        self._size = 0
        self._who = who

    def feed(self, block: bytes) -> list[bytes]:
        if not block:
            rest = b"".join(self._parts)
            self._parts.clear()
            return [rest] if rest else []
        if b"\n" not in block:
            self._parts.append(block)
            self._size += len(block)
            if self._size > MAX_LINE:
                raise ProviderError(f"{self._who}: malformed stream: a line longer than {MAX_LINE} bytes")
            return []
        if self._parts:
            self._parts.append(block)
            block = b"".join(self._parts)
            self._parts.clear()
        lines = block.split(b"\n")
        tail = lines.pop()
        if tail:
            self._parts.append(tail)
        self._size = len(tail)
        return lines


async def sse_data(content: Response, who: str) -> AsyncIterator[bytes]:
    """The payloads of `data:` lines (blank lines, comments and `event:` lines are skipped); lines may straddle
    network reads and be up to MAX_LINE long."""
    splitter = Lines(who)
    while True:
        block = await content.readany()
        for raw in splitter.feed(block):
            line = raw.strip()
            if line.startswith(b"data:"):
                yield line[5:].strip()
        if not block:
            return


def multipart(
    fields: Iterable[tuple[str, str]], *, name: str, filename: str, data: bytes, mime_type: str
) -> tuple[bytes, str]:
    """A multipart/form-data body (text fields in order, a name repeated as often as it comes, then one file) and
    its Content-Type."""
    boundary = uuid.uuid4().hex

    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")

    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted(key)}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted(name)}"; filename="{quoted(filename)}"\r\n'
        f"Content-Type: {mime_type}\r\n\r\n".encode()
    )
    return b"".join([*parts, data, f"\r\n--{boundary}--\r\n".encode()]), f"multipart/form-data; boundary={boundary}"


class HTTPProvider:
    """A pooled client per provider, created inside the running loop on first use."""

    def __init__(self, name: str, *, headers: Mapping[str, str], timeout: Timeouts, max_connections: int) -> None:
        self.name = name
        self.who = f"provider {name!r}"
        self._headers = dict(headers)
        self._max_connections = max_connections
        self._timeout = timeout
        self._client: HTTPClient | None = None

    def _http(self) -> HTTPClient:
        if self._client is None or self._client.closed:
            self._client = HTTPClient(
                headers=self._headers, timeout=self._timeout, max_connections=self._max_connections, keepalive=30
            )
        return self._client

    async def _request(
        self, method: str, url: str, *, data: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, str]:
        """A whole (non-streamed) request: the body and its media type ("" if none), or the translated error."""
        with translate_errors(self.who):
            async with self._http().request(method, url, data, headers) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise http_error(resp.status, body, resp.headers, self.who)
                return body, resp.content_type

    async def aclose(self) -> None:
        if self._client is not None and not self._client.closed:
            await self._client.aclose()
