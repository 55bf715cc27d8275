"""POST /api/v1/embeddings (and the OpenAI alias POST /v1/embeddings)."""

from __future__ import annotations

import base64
import struct

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.engine.call import EmbeddingCall, Origin
from promptd.errors import InputError
from promptd.faces.chat.auth import authenticate
from promptd.faces.chat.wire import EmbeddingsBody, decode, free_user, optional_uuid
from promptd.timing import UPSTREAM_KEY

__all__ = ["embeddings"]


async def embeddings(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), EmbeddingsBody)
    project, model_name = caller.model(body.model)
    user = free_user(body.user)
    session_id = optional_uuid(body.session_id, "session_id")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not t for t in texts):
        raise InputError("input must be a non-empty string or list of non-empty strings", param="input")
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
    answer = await caller.svc.engine.embed(EmbeddingCall(texts=texts, dimensions=body.dimensions or None), origin)
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
