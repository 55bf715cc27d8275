"""POST /api/v1/embeddings (and the OpenAI alias POST /v1/embeddings)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.engine.call import EmbeddingCall, Origin
from promptd.errors import InputError
from promptd.faces.chat.auth import authenticate
from promptd.faces.chat.wire import EmbeddingsBody, decode, free_user, optional_uuid
from promptd.timing import UPSTREAM_KEY

__all__ = ["embeddings"]


def _token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_token_id(t) for t in value)


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _inputs(raw: str | list[Any]) -> tuple[list[str], list[list[int]] | None]:
    """OpenAI's `input`: a text, a list of texts, one array of token ids, or a list of them, as (texts, token
    arrays). Each text and each array must be non-empty."""
    if isinstance(raw, str):
        raw = [raw]
    if raw and all(isinstance(t, str) and t for t in raw):
        return raw, None
    if _token_ids(raw):
        return [], [raw]
    if raw and all(_token_ids(t) for t in raw):
        return [], raw
    raise InputError(
        "input must be a non-empty string, a list of non-empty strings, an array of token ids (integers, 0 or "
        "more) or a list of non-empty such arrays",
        param="input",
    )


async def embeddings(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), EmbeddingsBody)
    project, model_name = caller.model(body.model)
    user = free_user(body.user)
    session_id = optional_uuid(body.session_id, "session_id")
    texts, token_ids = _inputs(body.input)
    fmt = (body.encoding_format or "float").lower()
    if fmt not in ("float", "base64"):
        raise InputError("encoding_format must be Float or Base64", param="encoding_format")
    origin = Origin(
        face="chat",
        project=project,
        model=model_name,
        key_id=caller.key.id,
        key_limits=caller.key.limits,
        user=user,
        session_id=session_id,
    )
    call = EmbeddingCall(texts=texts, tokens=token_ids, dimensions=body.dimensions or None)
    answer = await caller.svc.engine.embed(call, origin)
    vectors, tokens = answer.value, answer.result.usage.prompt_tokens
    request.scope[UPSTREAM_KEY] = answer.result.upstream_s
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if fmt == "base64" else v,
        }
        for i, v in enumerate(vectors)
    ]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": f"{project}/{answer.result.model}",
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        }
    )
