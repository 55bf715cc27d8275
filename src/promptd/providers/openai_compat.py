"""Any OpenAI-compatible server: `/chat/completions` (streamed), `/audio/transcriptions`, `/audio/speech`.

One pooled aiohttp session per provider. Every failure is translated here, where it enters, into promptd's
errors (`raise … from exc`): callers never see aiohttp's exceptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from promptd.catalog.schema import OpenAIProviderConfig
from promptd.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from promptd.providers.openai_wire import ChunkReader, request_body
from promptd.types import Finish, ProviderCall, ProviderEvent

__all__ = ["OpenAICompatProvider", "parse_retry_after"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


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
    """(message, code) of an OpenAI-shaped error body {"error": {"message", "code", "type"}}."""
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


def http_error(status: int, body: bytes, headers: Any, who: str) -> ProviderError:
    message, code = _upstream_message(body)
    text = f"{who}: upstream answered {status}: {message}"
    if status == 429:
        return ProviderRateLimited(text, retry_after=parse_retry_after(headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return ProviderUnavailable(text)
    if code == "context_length_exceeded" or "maximum context length" in message or "context length" in message:
        return ProviderBadRequest(text, code="context_length_exceeded")
    if code == "content_filter" or "content_filter" in message or "content management policy" in message:
        return ProviderBadRequest(text, code="content_filter")
    return ProviderBadRequest(text)


class OpenAICompatProvider:
    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        self.name = name
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        t = config.timeout
        self._timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.read)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = dict(self.config.headers)
            if self.config.api_key:
                headers["Authorization"] = f"Bearer {self.config.api_key}"
            connector = aiohttp.TCPConnector(limit=self.config.max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector, timeout=self._timeout)
        return self._session

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        url = f"{self.config.base_url}/chat/completions"
        who = f"provider {self.name!r}"
        try:
            async with self._http().post(
                url, data=_encode(request_body(call, model=call.model)), headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status >= 400:
                    raise http_error(resp.status, await resp.read(), resp.headers, who)
                reader = ChunkReader()
                done = False
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue  # blank lines, comments (": keep-alive"), event: lines
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    try:
                        chunk = _decode(data)
                    except msgspec.DecodeError as exc:
                        raise ProviderUnavailable(f"{who}: malformed chunk from upstream: {data[:200]!r}") from exc
                    if not isinstance(chunk, dict):
                        raise ProviderUnavailable(f"{who}: malformed chunk from upstream: {data[:200]!r}")
                    if chunk.get("error"):
                        raise http_error(500, data, resp.headers, who)
                    for event in reader.events(chunk):
                        yield event
                if not done and reader.reason is None:
                    raise ProviderUnavailable(f"{who}: the stream ended before the answer was complete")
                yield Finish(reader.reason or "stop", reader.usage)
        except ProviderError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ProviderTimeout(f"{who}: timed out ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"{who}: {type(exc).__name__}: {exc}") from exc

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[bytes, str]:
        who = f"provider {self.name!r}"
        try:
            async with self._http().request(method, f"{self.config.base_url}{path}", **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise http_error(resp.status, body, resp.headers, who)
                return body, resp.headers.get("Content-Type", "")
        except ProviderError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ProviderTimeout(f"{who}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"{who}: {type(exc).__name__}: {exc}") from exc

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        body, _ = await self._request(
            "POST",
            "/embeddings",
            data=_encode({"model": model, "input": texts}),
            headers={"Content-Type": "application/json"},
        )
        try:
            reply = _decode(body)
            data = sorted(reply["data"], key=lambda d: d["index"])
            return [list(d["embedding"]) for d in data], int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name!r}: unexpected embeddings reply") from exc

    async def transcribe(self, *, model: str, filename: str, data: bytes, mime_type: str) -> str:
        form = aiohttp.FormData()
        form.add_field("model", model)
        form.add_field("file", data, filename=filename, content_type=mime_type)
        body, _ = await self._request("POST", "/audio/transcriptions", data=form)
        try:
            return str(_decode(body)["text"])
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name!r}: unexpected transcription reply") from exc

    async def speak(self, *, model: str, text: str, voice: str) -> tuple[bytes, str]:
        body, content_type = await self._request(
            "POST",
            "/audio/speech",
            data=_encode({"model": model, "input": text, "voice": voice}),
            headers={"Content-Type": "application/json"},
        )
        return body, content_type.split(";")[0].strip() or "audio/mpeg"

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports
