"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp's server, Ollama, LiteLLM, …): streamed
`/chat/completions`, `/embeddings`, `/rerank`, `/audio/transcriptions`, `/audio/translations`, `/audio/speech` and
`/moderations` (the audio formats: providers/openai_audio.py).

The pooled session and the translation of HTTP and network failures come from providers/http.py, the chunk
format from providers/openai_wire.py. The SSE body is read here, on the gateway's hot path:

- one `readany()` per network read, split into lines there: a line may straddle reads, CRLF is fine, and a line
  may be up to `MAX_LINE` long (one tool-call chunk can be long);
- `data: [DONE]`, or a clean end after a finish_reason, completes the answer; any other end is a failure;
- after `[DONE]` the rest of the body is read in the background for at most `DRAIN_S`, so the connection goes
  back to the pool (an upstream that holds the body open costs that connection, never the answer, and nobody
  waits for the body's last bytes);
- an error object in the body (vLLM streams them) is translated like an HTTP error, its `code` as the status;
- a server that ignores `stream: true` and answers one `application/json` completion is read as one;
- a call that needs no stream (`ProviderCall.stream` false: a blocking answer with no first-token deadline and
  no hedge) asks for one unstreamed completion, and waits for it up to the `total` timeout only (nothing
  arrives before it is whole).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from promptd.catalog.schema import OpenAIProviderConfig
from promptd.errors import ProviderError, ProviderUnavailable
from promptd.providers.http import (
    MALFORMED_RUN,
    MAX_LINE,
    HTTPProvider,
    Lines,
    http_error,
    multipart,
    translate_errors,
)  # fmt: skip
from promptd.providers.openai_audio import speech_type, transcript
from promptd.providers.openai_wire import ChunkReader, request_body
from promptd.types import Finish, Malformed, ProviderCall, ProviderEvent, Transcript

__all__ = ["DRAIN_S", "MAX_LINE", "OpenAICompatProvider"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_JSON_HEADERS = {"Content-Type": "application/json"}
#: what a chunk that is not JSON, or not a chunk's shape, raises while it is read
_SHAPE_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)  # msgspec.DecodeError is a ValueError

DRAIN_S = 0.25


class OpenAICompatProvider(HTTPProvider):
    """`Provider`, `EmbeddingProvider` (`TokenEmbeddingProvider` too) and `SpeechProvider` for one
    OpenAI-compatible base URL."""

    accepts = None  # every parameter goes upstream, which judges it (as OpenAI, vLLM or Ollama would)
    #: vLLM's way to continue a final assistant message instead of answering after it
    CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        headers = dict(config.headers)
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        super().__init__(name, headers=headers, timeout=config.timeout, max_connections=config.max_connections)
        self.config = config
        self._chat_url = f"{config.base_url}/chat/completions"
        # whether (and how) this server continues a partial answer: a rescue's prefill (engine/generation.py)
        self.continues = config.continuation == "continue_final_message"
        self.continue_params = self.CONTINUE if self.continues else {}

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        body = _encode(request_body(call, model=call.model, stream=call.stream))
        with translate_errors(self.who):
            post = self._http().post(self._chat_url, data=body, headers=_JSON_HEADERS, whole=not call.stream)
            async with post as resp:
                if resp.status >= 400:
                    raise http_error(resp.status, await resp.read(), resp.headers, self.who)
                if resp.content_type == "application/json":
                    for event in self._whole(await resp.read()):
                        yield event
                    return
                reader, lines, done, malformed = ChunkReader(), Lines(self.who), False, 0
                while not done:
                    block = await resp.readany()
                    for line in lines.feed(block):
                        if line.startswith(b"data:"):  # comments, blank lines, event: and id: lines are skipped
                            data = line[5:].strip()
                            if data == b"[DONE]":
                                done = True
                                resp.drain_later(DRAIN_S)  # the answer is complete: nobody waits for the rest
                                break
                            for event in self._events(reader, data):
                                if isinstance(event, Malformed):
                                    malformed += 1
                                    if malformed >= MALFORMED_RUN:
                                        raise ProviderUnavailable(
                                            f"{self.who}: {malformed} malformed chunks in a row from upstream, "
                                            f"the last: {event.data!r}"
                                        )
                                else:
                                    malformed = 0
                                yield event
                    if not block:
                        break
                if not done and reader.reason is None:
                    raise ProviderUnavailable(f"{self.who}: the stream ended before completion")
                yield Finish(reader.reason or "stop", reader.usage, reader.fingerprint)

    def _events(self, reader: ChunkReader, data: bytes) -> list[ProviderEvent]:
        try:
            chunk = _decode(data)
            if not chunk.get("error"):
                return reader.events(chunk)
        except _SHAPE_ERRORS:
            return [Malformed(data[:200].decode("utf-8", "replace"))]  # skipped and counted; a run of them is fatal
        raise self._body_error(chunk["error"], data)

    def _whole(self, raw: bytes) -> list[ProviderEvent]:
        """One non-streamed chat.completion, as the events its stream would have carried."""
        try:
            reply = _decode(raw)
            if not reply.get("error"):
                choice = reply["choices"][0]
                delta = dict(choice.get("message") or {})
                delta["tool_calls"] = [{**tc, "index": i} for i, tc in enumerate(delta.get("tool_calls") or [])]
                reader = ChunkReader()
                finish = choice.get("finish_reason")
                chunk = {"choices": [{"delta": delta, "finish_reason": finish, "logprobs": choice.get("logprobs")}]}
                fingerprint = reply.get("system_fingerprint")
                events = reader.events({**chunk, "usage": reply.get("usage"), "system_fingerprint": fingerprint})
                return [*events, Finish(reader.reason or "stop", reader.usage, reader.fingerprint)]
        except _SHAPE_ERRORS as exc:
            raise ProviderUnavailable(f"{self.who}: malformed reply from upstream: {raw[:200]!r}") from exc
        raise self._body_error(reply["error"], raw)

    def _body_error(self, error: Any, raw: bytes) -> ProviderError:
        """An error object sent with a 200: its `code` is taken as the HTTP status when it is one (vLLM)."""
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return http_error(status, raw, {}, self.who)

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        return await self._embeddings(model, texts)

    async def embed_tokens(self, *, model: str, tokens: list[list[int]]) -> tuple[list[list[float]], int]:
        """Token ids go upstream as they came (OpenAI, vLLM and llama.cpp's server take them); an upstream that
        does not answers its own 400."""
        return await self._embeddings(model, tokens)

    async def _embeddings(self, model: str, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        body, _ = await self._request(
            "POST",
            f"{self.config.base_url}/embeddings",
            data=_encode({"model": model, "input": inputs}),
            headers=_JSON_HEADERS,
        )
        try:
            reply = _decode(body)
            data = sorted(reply["data"], key=lambda d: d["index"])
            return [list(d["embedding"]) for d in data], int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        except _SHAPE_ERRORS as exc:
            raise ProviderError(f"{self.who}: unexpected embeddings reply") from exc

    async def rerank(self, *, model: str, query: str, documents: list[str]) -> tuple[list[float], int]:
        """Relevance scores from `{base_url}/rerank` (the Jina/Cohere shape vLLM and llama.cpp's server serve), and
        the tokens it reported (`usage.prompt_tokens` or `usage.total_tokens`; 0 when none)."""
        body, _ = await self._request(
            "POST",
            f"{self.config.base_url}/rerank",
            data=_encode({"model": model, "query": query, "documents": documents, "top_n": len(documents)}),
            headers=_JSON_HEADERS,
        )
        try:
            reply = _decode(body)
            scores = [0.0] * len(documents)
            for item in reply["results"]:
                scores[int(item["index"])] = float(item["relevance_score"])
            usage = reply.get("usage") or {}
            return scores, int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        except _SHAPE_ERRORS as exc:
            raise ProviderError(f"{self.who}: unexpected rerank reply") from exc

    async def transcribe(
        self,
        *,
        model: str,
        filename: str,
        data: bytes,
        mime_type: str,
        params: Sequence[tuple[str, str]] = (),
        translate: bool = False,
    ) -> Transcript:
        fields = [("model", model), *params]
        form, content_type = multipart(fields, name="file", filename=filename, data=data, mime_type=mime_type)
        url = f"{self.config.base_url}/audio/{'translations' if translate else 'transcriptions'}"
        body, media_type = await self._request("POST", url, data=form, headers={"Content-Type": content_type})
        asked = next((v for k, v in params if k == "response_format"), "") or "json"
        return transcript(body, media_type, asked, self.who)

    async def moderate(self, *, model: str, text: str) -> tuple[bool, list[str]]:
        body, _ = await self._request(
            "POST",
            f"{self.config.base_url}/moderations",
            data=_encode({"model": model, "input": text}),
            headers=_JSON_HEADERS,
        )
        try:
            result = _decode(body)["results"][0]
            categories = result.get("categories") or {}
            return bool(result["flagged"]), sorted(k for k, v in categories.items() if v is True)
        except _SHAPE_ERRORS as exc:
            raise ProviderError(f"{self.who}: unexpected moderations reply") from exc

    async def speak(
        self, *, model: str, text: str, voice: str | dict[str, Any], params: Mapping[str, Any] | None = None
    ) -> tuple[bytes, str]:
        params = params or {}
        body, media_type = await self._request(
            "POST",
            f"{self.config.base_url}/audio/speech",
            data=_encode({**params, "model": model, "input": text, "voice": voice}),
            headers=_JSON_HEADERS,
        )
        return body, speech_type(params.get("response_format"), media_type, self.who)
