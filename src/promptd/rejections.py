"""Requests refused before any model call: a bad key (401), a client mistake (400, 404), a rate limit or budget
(429), limits or the store unavailable (503), and those the server refuses before the app sees them (serving.py:
a body too large, 413; a head or body too slow, 408; a head too large, 431; past `max_connections`, 503). They
leave no record in `messages`, so the overview would not see them; each is counted instead, off the request path,
as one increment of the `rejections` table (per UTC minute, project, key, face, status and error code:
store/tables.py), written by the recorder in its batches like the records, so the counts survive restarts and add
up across workers and replicas; and in `/metrics` as `promptd_rejections_total` (face, status, code: this
worker's view since its start).

Only the API faces count (the Dify API under /v1, the chat API under /api and the OpenAI aliases); the
management API, the console, /metrics and the health endpoints do not. A refusal by the server knows no key
(project and key empty), and one made before a request's path was read (a connection past `max_connections`)
no face either (empty).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import Scope

from promptd.access import RequestInfo
from promptd.faces.refusal import OPENAI_PATHS
from promptd.store.recorder import Row
from promptd.store.tables import rejections

__all__ = ["count_refusal", "count_rejection", "face_of"]

log = logging.getLogger("promptd.rejections")


def face_of(path: str) -> str | None:
    """The API face a path belongs to, as records name it (dify | chat); None for paths that are not a face's."""
    if path.startswith("/api/") or path.startswith(OPENAI_PATHS):
        return "chat"
    if path.startswith("/v1/"):
        return "dify"
    return None


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
    if face is not None:
        _count(scope.get("state"), face, info.status, code, info.project or "", info.key_id or "")


def count_refusal(state: Mapping[str, Any] | None, path: str, status: int, code: str) -> None:
    """Count a request (or a connection: `path` empty) the server refused before the app saw it (serving.py)."""
    face = face_of(path) if path else ""
    if face is not None:
        _count(state, face, status, code, "", "")


def _count(state: Mapping[str, Any] | None, face: str, status: int, code: str, project: str, key_id: str) -> None:
    svc = state.get("services") if isinstance(state, Mapping) else None
    if svc is None:  # not started, or stopping
        return
    code = code[:64]
    svc.engine.metrics.rejections.inc(face=face, status=str(status), code=code)
    values = {
        "minute": int(time.time() // 60) * 60,
        "project": project[:128],
        "key_id": key_id[:36],
        "face": face,
        "status": status,
        "code": code,
        "requests": 1,
    }
    try:
        # no `once` id (store/recorder.py): a flood of refusals must stay one row a minute, so a replay after a
        # crash can count a batch of refusals twice (a statistic; budgets never read it)
        svc.recorder.submit(Row(rejections, values))
    except RuntimeError:  # the recorder is closed (shutting down): the count is lost, not the request
        log.debug("rejection not counted: the recorder is closed")
