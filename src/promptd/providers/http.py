"""What every HTTP upstream adapter shares: a pooled aiohttp session, SSE data lines, and the translation of
HTTP and network failures into promptd's errors (where they enter: callers never see aiohttp's exceptions)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import msgspec

from promptd.catalog.schema import Timeouts
from promptd.errors import ProviderBadRequest, ProviderError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable

__all__ = ["MAX_LINE", "HTTPProvider", "Lines", "http_error", "parse_retry_after", "sse_data", "translate_errors"]

MAX_LINE = 16 * 1024 * 1024  # aiohttp's own readline gives up at 512 KiB; one tool-call chunk can be longer

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


def _upstream_message(body: bytes) -> tuple[str, str | None]:
    """(message, code) of an error body: OpenAI's {"error": {"message", "code"}} or Anthropic's
    {"type": "error", "error": {"type", "message"}}."""
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")[:500] or "no body", None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err), err.get("code") or err.get("type")
    if isinstance(err, str):
        return err, None
    return str(data)[:500], None


def http_error(status: int, body: bytes, headers: Mapping[str, str], who: str) -> ProviderError:
    message, code = _upstream_message(body)
    text = f"{who}: upstream answered {status}: {message}"
    if status == 429:
        return ProviderRateLimited(text, retry_after=parse_retry_after(headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return ProviderUnavailable(text)
    lowered = message.lower()
    if code == "context_length_exceeded" or any(m in lowered for m in CONTEXT_MARKERS):
        return ProviderBadRequest(text, code="context_length_exceeded")
    if code == "content_filter" or "content_filter" in lowered or "content management policy" in lowered:
        return ProviderBadRequest(text, code="content_filter")
    return ProviderBadRequest(text)


@contextlib.contextmanager
def translate_errors(who: str) -> Iterator[None]:
    try:
        yield
    except ProviderError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise ProviderTimeout(f"{who}: timed out ({type(exc).__name__})") from exc
    except aiohttp.ClientError as exc:
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


async def sse_data(content: aiohttp.StreamReader, who: str) -> AsyncIterator[bytes]:
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


class HTTPProvider:
    """A pooled session per provider, created inside the running loop on first use."""

    def __init__(self, name: str, *, headers: Mapping[str, str], timeout: Timeouts, max_connections: int) -> None:
        self.name = name
        self.who = f"provider {name!r}"
        self._headers = dict(headers)
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout.total, sock_connect=timeout.connect, sock_read=timeout.read)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector, timeout=self._timeout)
        return self._session

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[bytes, str]:
        """A whole (non-streamed) request: the body and its content type, or the translated error."""
        with translate_errors(self.who):
            async with self._http().request(method, url, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise http_error(resp.status, body, resp.headers, self.who)
                return body, resp.headers.get("Content-Type", "")

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports
