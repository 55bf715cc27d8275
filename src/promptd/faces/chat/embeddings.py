"""POST /api/v1/embeddings (and the OpenAI alias POST /v1/embeddings)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.errors import InputError
from promptd.faces.chat.auth import authenticate, split_model
from promptd.faces.chat.wire import EmbeddingsBody, decode, free_user, optional_uuid
from promptd.providers.base import EmbeddingProvider

__all__ = ["embeddings"]


async def embeddings(request: Request) -> Response:
    caller = await authenticate(request)
    body = decode(await request.body(), EmbeddingsBody)
    project_name, model_name = split_model(body.model)
    project = caller.project(project_name)
    free_user(body.user)
    optional_uuid(body.session_id, "session_id")
    model_key, model = caller.svc.engine.model(project, model_name)
    provider: Any = caller.svc.providers.get(model.provider)
    if not isinstance(provider, EmbeddingProvider):
        raise InputError(f"model {model_key!r} cannot make embeddings", param="model")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not t for t in texts):
        raise InputError("input must be a non-empty string or list of non-empty strings", param="input")
    fmt = (body.encoding_format or "float").lower()
    if fmt not in ("float", "base64"):
        raise InputError("encoding_format must be Float or Base64", param="encoding_format")
    vectors, tokens = await provider.embed(model=model.model, texts=texts)
    if body.dimensions:
        vectors = [v[: body.dimensions] for v in vectors]
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
            "model": f"{project}/{model_key}",
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        }
    )
