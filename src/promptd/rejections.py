"""Requests refused before any model call: a bad key (401), a client mistake (400, 404), a rate limit or budget
(429), limits or the store unavailable (503). They leave no record in `messages`, so the overview would not see
them; each is counted instead, off the request path, as one increment of the `rejections` table (per UTC minute,
project, key, face, status and error code: store/tables.py), written by the recorder in its batches like the
records, so the counts survive restarts and add up across workers and replicas.

Only the API faces count (the Dify API under /v1, the chat API under /api and the OpenAI aliases); the
management API, the console, /metrics and the health endpoints do not. Connections the server refuses before
the app sees them (too large, too slow: serving.py) are not counted here.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Scope

from promptd.access import RequestInfo
from promptd.faces.refusal import api_of
from promptd.store.recorder import Row
from promptd.store.tables import rejections

__all__ = ["count_rejection", "face_of"]

log = logging.getLogger("promptd.rejections")


def face_of(path: str) -> str | None:
    """The API face a path belongs to, as records name it (dify | chat); None for paths that are not a face's."""
    api = api_of(path)
    return "chat" if api in ("adaptive", "openai") else "dify" if api == "dify" else None


def count_rejection(info: RequestInfo, scope: Scope) -> None:
    """Count a request answered with an error before any model call (Observed's `on_refused`)."""
    code = info.error_code
    if code is None or code == "client_disconnected" or info.status is None:
        return
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    face = face_of(path)
    state = scope.get("state")
    svc = state.get("services") if isinstance(state, dict) else None
    if face is None or svc is None:
        return
    values = {
        "minute": int(time.time() // 60) * 60,
        "project": (info.project or "")[:128],
        "key_id": (info.key_id or "")[:36],
        "face": face,
        "status": info.status,
        "code": code[:64],
        "requests": 1,
    }
    try:
        # no `once` id (store/recorder.py): a flood of refusals must stay one row a minute, so a replay after a
        # crash can count a batch of refusals twice (a statistic; budgets never read it)
        svc.recorder.submit(Row(rejections, values))
    except RuntimeError:  # the recorder is closed (shutting down): the count is lost, not the request
        log.debug("rejection not counted: the recorder is closed")
