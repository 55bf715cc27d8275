"""Any OpenAI-compatible server: `/chat/completions` (streamed), `/embeddings`, `/audio/transcriptions`,
`/audio/speech`. Sessions, SSE and error translation come from providers/http.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import msgspec

from promptd.catalog.schema import OpenAIProviderConfig
from promptd.errors import (
    ProviderError,
    ProviderUnavailable,
)
from promptd.providers.http import HTTPProvider, http_error, sse_data, translate_errors
from promptd.providers.openai_wire import ChunkReader, request_body
from promptd.types import Finish, ProviderCall, ProviderEvent

__all__ = ["OpenAICompatProvider"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class OpenAICompatProvider(HTTPProvider):
    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        headers = dict(config.headers)
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        super().__init__(name, headers=headers, timeout=config.timeout, max_connections=config.max_connections)
        self.config = config

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        url = f"{self.config.base_url}/chat/completions"
        body = _encode(request_body(call, model=call.model))
        with translate_errors(self.who):
            async with self._http().post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                if resp.status >= 400:
                    raise http_error(resp.status, await resp.read(), resp.headers, self.who)
                reader = ChunkReader()
                done = False
                async for data in sse_data(resp.content):
                    if done:
                        continue  # read to the end of the body, so the connection goes back to the pool
                    if data == b"[DONE]":
                        done = True
                        continue
                    try:
                        chunk = _decode(data)
                    except msgspec.DecodeError as exc:
                        raise ProviderUnavailable(f"{self.who}: malformed chunk from upstream: {data[:200]!r}") from exc
                    if not isinstance(chunk, dict):
                        raise ProviderUnavailable(f"{self.who}: malformed chunk from upstream: {data[:200]!r}")
                    if chunk.get("error"):
                        raise http_error(500, data, resp.headers, self.who)
                    for event in reader.events(chunk):
                        yield event
                if not done and reader.reason is None:
                    raise ProviderUnavailable(f"{self.who}: the stream ended before the answer was complete")
                yield Finish(reader.reason or "stop", reader.usage)

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        body, _ = await self._request(
            "POST",
            f"{self.config.base_url}/embeddings",
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
        body, _ = await self._request("POST", f"{self.config.base_url}/audio/transcriptions", data=form)
        try:
            return str(_decode(body)["text"])
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name!r}: unexpected transcription reply") from exc

    async def speak(self, *, model: str, text: str, voice: str) -> tuple[bytes, str]:
        body, content_type = await self._request(
            "POST",
            f"{self.config.base_url}/audio/speech",
            data=_encode({"model": model, "input": text, "voice": voice}),
            headers={"Content-Type": "application/json"},
        )
        return body, content_type.split(";")[0].strip() or "audio/mpeg"
