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
from promptd.types import Finish, ProviderCall, ProviderEvent, TextDelta, ToolCallDelta, Usage

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

    def _body(self, call: ProviderCall) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [m.to_openai() for m in call.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in ("max_tokens", "temperature", "top_p", "stop", "tools"):
            value = getattr(call, key)
            if value is not None:
                body[key] = value
        body.update(call.extra)
        return body

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        url = f"{self.config.base_url}/chat/completions"
        who = f"provider {self.name!r}"
        try:
            async with self._http().post(
                url, data=_encode(self._body(call)), headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status >= 400:
                    raise http_error(resp.status, await resp.read(), resp.headers, who)
                reason: str | None = None
                usage: Usage | None = None
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
                        raise ProviderError(f"{who}: malformed chunk from upstream: {data[:200]!r}") from exc
                    if not isinstance(chunk, dict):
                        raise ProviderError(f"{who}: malformed chunk from upstream: {data[:200]!r}")
                    if chunk.get("error"):
                        raise http_error(500, data, resp.headers, who)
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield TextDelta(delta["content"])
                        for tc in delta.get("tool_calls") or []:
                            fn = tc.get("function") or {}
                            yield ToolCallDelta(
                                int(tc.get("index") or 0), tc.get("id"), fn.get("name"), fn.get("arguments") or ""
                            )
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                if not done and reason is None:
                    raise ProviderUnavailable(f"{who}: the stream ended before the answer was complete")
                yield Finish(reason or "stop", usage)
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
